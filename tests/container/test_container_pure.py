"""The container launcher's pure parts, no runtime needed: sizes, the runtime's log lines, the run command (variable
names only, never values), GPU options per runtime, how an ended container maps to a job's end, and the memory
remediation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from adjutant.jobs import Job, JobState, JobStore
from adjutant.launchers import make_launcher
from adjutant.launchers.container import (
    ContainerLauncher,
    gpu_options,
    log_lines,
    memory_text,
    parse_memory,
)
from adjutant.settings import Settings
from tests.container.conftest import SCRIPT

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "size"),
    [("32m", 32 * MIB), ("16g", 16 * 1024 * MIB), ("1.5G", 1536 * MIB), ("2048k", 2 * MIB), ("100", 100)],
)
def test_memory_sizes(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1m", "0", "16 g", "16t"])
def test_memory_sizes_refused(text: str) -> None:
    assert parse_memory(text) is None


def test_memory_text() -> None:
    assert [memory_text(n) for n in (32 * MIB, 48 * MIB, 16 * 1024 * MIB, 1536 * MIB)] == [
        "32 MiB",
        "48 MiB",
        "16 GiB",
        "1.5 GiB",
    ]


def test_podman_log_lines_become_the_plain_output_and_a_half_written_line_waits() -> None:
    data = (
        b"2026-12-07T10:34:37.693242150+00:00 stdout F hello world\n"
        b"2026-12-07T10:34:37.693242150+00:00 stdout P partial \n"
        b"2026-12-07T10:34:37.693318243+00:00 stdout F line\n"
        b"2026-12-07T10:34:37.693318243+00:00 stderr F \n"
        b"2026-12-07T10:34:37.69331"
    )
    text, used = log_lines(data, json_lines=False)
    assert text == b"hello world\npartial line\n\n"
    assert used == data.rindex(b"\n") + 1


def test_docker_json_lines() -> None:
    data = b'{"log":"step 1\\n","stream":"stdout","time":"t"}\n{"log":"no newline yet","stream":"stderr"}\n{"log'
    assert log_lines(data, json_lines=True) == (b"step 1\nno newline yet", data.rindex(b"\n") + 1)


def test_gpu_options_per_runtime() -> None:
    assert gpu_options("podman", (2, 3)) == ["--device", "nvidia.com/gpu=2", "--device", "nvidia.com/gpu=3"]
    assert gpu_options("docker", (2, 3)) == ["--gpus", '"device=2,3"']
    assert gpu_options("podman", ()) == []


def a_job(tmp_path: Path, **changes: object) -> Job:
    from tests.test_scheduler import request

    store = JobStore(tmp_path / "adjutant.sqlite3")
    try:
        job = store.add(replace(request(1), script=str(SCRIPT), backend="container"), tmp_path / "logs")
    finally:
        store.close()
    return replace(job, **changes)  # type: ignore[arg-type]


def launcher_with(tmp_path: Path, **env: str) -> ContainerLauncher:
    settings = Settings.from_env({"ADJUTANT_LAUNCHER": "container", "ADJUTANT_CONTAINER_RUNTIME": "podman", **env})
    # by name: loading the extension elsewhere in the run makes discord.py re-import adjutant's modules
    assert (
        type(make_launcher("container", settings, str(tmp_path / "adjutant.sqlite3"))).__name__ == "ContainerLauncher"
    )
    return ContainerLauncher(settings, str(tmp_path / "adjutant.sqlite3"))


def test_the_run_command_names_the_variables_and_never_holds_their_values(tmp_path: Path) -> None:
    launcher = launcher_with(
        tmp_path,
        ADJUTANT_CONTAINER_MEMORY="2g",
        ADJUTANT_CONTAINER_CPUS="1.5",
        ADJUTANT_CONTAINER_NETWORK="none",
        ADJUTANT_CONTAINER_MOUNTS="/data:/data:ro '/my scratch:/scratch'",
        ADJUTANT_CONTAINER_ARGS="--runtime runc",
        ADJUTANT_JOB_ENV="HF_TOKEN",
    )
    job = a_job(tmp_path, gpu_ids=(3,))
    env = {"ADJUTANT_JOB_ID": job.id, "HF_TOKEN": "hf-secret-value", "DISCORD_TOKEN": "nope", "HOME": "/root"}
    inside = launcher.container_env(job, env)
    assert inside["HF_TOKEN"] == "hf-secret-value" and "DISCORD_TOKEN" not in inside and "HOME" not in inside
    assert inside["CUDA_VISIBLE_DEVICES"] == "0" and inside["ADJUTANT_GPUS"] == "3"
    argv = launcher.run_argv(job, list(inside), "localhost/img:1")
    assert "hf-secret-value" not in " ".join(argv)
    assert [argv[i + 1] for i, word in enumerate(argv) if word == "--env"] == sorted(inside)
    folder = str(SCRIPT.parent)
    volumes = [argv[i + 1] for i, word in enumerate(argv) if word == "--volume"]
    output = str(tmp_path / "outputs" / job.id)
    assert volumes == [f"{folder}:{folder}:ro", f"{output}:{output}:rw", "/data:/data:ro", "/my scratch:/scratch"]
    assert argv[argv.index("--memory") + 1] == "2g" and argv[argv.index("--memory-swap") + 1] == "2g"
    assert argv[argv.index("--cpus") + 1] == "1.5" and argv[argv.index("--network") + 1] == "none"
    assert argv[argv.index("--device") + 1] == "nvidia.com/gpu=3"
    assert argv[argv.index("--name") + 1] == f"adjutant-{job.id}"
    assert argv[argv.index("--workdir") + 1] == folder
    assert argv[-5:] == ["--runtime", "runc", "localhost/img:1", str(SCRIPT), job.params_text]


def test_a_remediation_s_memory_wins_and_grows_by_half(tmp_path: Path) -> None:
    launcher = launcher_with(tmp_path, ADJUTANT_CONTAINER_MEMORY="32m")
    job = a_job(tmp_path)
    assert launcher.remediation(job, "mem") == ("32m", "48m")
    assert launcher.remediation(job, "time") is None
    grown = replace(job, overrides={"mem": "48m"})
    assert launcher.memory_of(grown) == "48m"
    assert launcher.remediation(grown, "mem") == ("48m", "72m")
    assert launcher_with(tmp_path).remediation(job, "mem") is None, "no limit: nothing to grow"


def test_how_an_ended_container_ends_its_job(tmp_path: Path) -> None:
    launcher = launcher_with(tmp_path)
    job = a_job(tmp_path, state=JobState.RUNNING, external_id="adjutant-x", external_state="running")
    end = {"attempt": 1, "status": "exited", "code": 137, "oom": False, "memory": 32 * MIB, "ended": "t"}
    oom = launcher._end(job, end, None)
    assert (oom.state, oom.exit_code, oom.reason) == (JobState.FAILED, 137, "out of memory (limit 32 MiB)")
    assert oom.external_state == "OUT_OF_MEMORY (limit 32 MiB)"
    killed = launcher._end(job, {**end, "memory": 0}, None)
    assert (killed.state, killed.reason, killed.external_state) == (JobState.FAILED, None, "exited")
    said = launcher._end(job, {**end, "code": 1, "oom": True, "memory": 0}, None)
    assert said.reason == "out of memory (limit 0 MiB)", "the runtime said OOMKilled"
    cancelled = launcher._end(replace(job, state=JobState.CANCELLING), end, None)
    assert cancelled.state == JobState.CANCELLED and cancelled.reason is None
    assert launcher._end(job, {**end, "code": 0}, None).state == JobState.SUCCEEDED


def test_an_end_kept_beside_the_log_is_read_back_for_its_attempt_only(tmp_path: Path) -> None:
    launcher = launcher_with(tmp_path)
    job = a_job(tmp_path, state=JobState.RUNNING, external_id="adjutant-x")
    Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
    launcher.end_file(job).write_text(json.dumps({"attempt": 1, "status": "exited", "code": 3, "ended": "t"}))
    update = launcher._news(job, None)
    assert update is not None and (update.state, update.exit_code) == (JobState.FAILED, 3)
    lost = launcher._news(replace(job, attempt=2), None)
    assert lost is not None and lost.state == JobState.LOST and "is gone" in (lost.reason or "")


def test_a_projects_table_names_its_image(tmp_path: Path) -> None:
    config = tmp_path / "projects.toml"
    config.write_text(
        '[[projects]]\nproject = "vision"\nchannel = "vision-runs"\nimage = "localhost/vision:2"\n'
        '[[projects]]\nproject = "nlp"\nchannel = "nlp-runs"\n'
    )
    launcher = launcher_with(tmp_path, ADJUTANT_CONFIG=str(config), ADJUTANT_CONTAINER_IMAGE="localhost/base:1")
    assert launcher.image_of(a_job(tmp_path, route="vision-runs")) == "localhost/vision:2"
    assert launcher.image_of(a_job(tmp_path, route="nlp-runs")) == "localhost/base:1"
    config.write_text('[[projects]]\nproject = "vision"\nchannel = "vision-runs"\nimage = "two words"\n')
    with pytest.raises(Exception, match="image must be a container image name"):
        Settings.from_env({"ADJUTANT_CONFIG": str(config)})


def test_memory_and_cpus_asked_at_launch_win_over_the_settings(tmp_path: Path) -> None:
    from dataclasses import replace

    launcher = launcher_with(tmp_path, ADJUTANT_CONTAINER_MEMORY="2g", ADJUTANT_CONTAINER_CPUS="1")
    job = replace(a_job(tmp_path), overrides={"mem": "16G", "cpus": "4"})
    argv = launcher.run_argv(job, [], "localhost/img:1")
    assert argv[argv.index("--memory") + 1] == "16G" and argv[argv.index("--cpus") + 1] == "4"
