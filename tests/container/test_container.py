"""The container launcher against a real rootful Podman (tests/container/conftest.py builds the image), end to end
through Discord: a failure's exit code and log tail, the exact JSON argument, the allow-listed environment, cancel,
the memory remediation, a bot killed mid-job, and GPUs handed over as devices."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adjutant.hparams import to_argument
from adjutant.jobs import JobState, JobStore
from adjutant.launchers.container import ContainerLauncher
from adjutant.settings import Settings
from tests.cogs.conftest import TOKEN
from tests.cogs.test_experiments import fields, launch, report, wait_report
from tests.conftest import DiscordStandIn, eventually, start_standalone, subprocess_env
from tests.container.conftest import SCRIPT, Podman

pytestmark = pytest.mark.xdist_group("container")  # one worker: the machine's containers, one at a time

MIB = 1024 * 1024


def output(state: Path, job_id: str, name: str) -> str:
    """What the job's script wrote into its output folder."""
    return (state / "outputs" / job_id / name).read_text()


def variables(text: str) -> dict[str, str]:
    """``env``'s output as a mapping."""
    return dict(tuple(line.split("=", 1)) for line in text.splitlines() if "=" in line)  # type: ignore[misc]


def inspect(podman: Podman, name: str) -> dict | None:
    found = podman.run("container", "inspect", name)
    records = json.loads(found.stdout or "[]")
    return records[0] if records else None


async def test_a_failure_says_exit_3_with_its_log_and_the_job_got_its_json_and_only_its_variables(
    podman, container_env, start_adjutant, discord_standin, base_env, monkeypatch
) -> None:
    aws_key, wandb_key = "aws-secret-planted-wJalrXUtnFEMI", "wandb-key-planted-0123456789abcdef0123"
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("WANDB_SERVICE", "3-12345-unix-/tmp/wandb-service.sock")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_key)
    monkeypatch.setenv("WANDB_API_KEY", wandb_key)
    monkeypatch.setenv("HF_HOME", "/data/hf cache; $(id)")
    params = {"act": "fail", "name": 'it\'s "quoted"; $(touch /tmp/container-pwned) `id`'}
    state = Path(base_env["ADJUTANT_STATE_DIR"])
    async with start_adjutant({**container_env, "ADJUTANT_JOB_ENV": "HF_HOME"}) as bot:
        job_id = await launch(discord_standin, json.dumps(params))
        done = await wait_report(discord_standin, job_id, timeout=60)
        count = len(discord_standin.sent())
        await discord_standin.post(f"$logs {job_id}")
        logs = await discord_standin.wait_for_message(after=count, timeout=10)
        job = bot.get_cog("Experiments").services.jobs.get(job_id)
        await eventually(lambda: not podman.containers(f"adjutant.job={job_id}"), timeout=10)  # removed once told
    assert done["embeds"][0]["title"] == f"❌ Experiment {job_id} failed"
    got = fields(done)
    assert got["Exit code"] == "3"
    assert "something went wrong: exiting with 3" in got["End of the log"]
    assert "something went wrong: exiting with 3" in logs["content"]
    assert got["Scheduler"] == f"container job adjutant-{job_id}: exited"
    assert job.external_id == f"adjutant-{job_id}"
    assert output(state, job_id, "argc") == "1"
    assert output(state, job_id, "argv") == to_argument(params)
    assert not Path("/tmp/container-pwned").exists()
    env = variables(output(state, job_id, "env"))
    assert env["ADJUTANT_JOB_ID"] == job_id and env["WANDB_RUN_ID"] == job.wandb_run_id
    assert env["HF_HOME"] == "/data/hf cache; $(id)"
    assert env["ADJUTANT_OUTPUT_DIR"] == str(state / "outputs" / job_id)
    for secret in (aws_key, wandb_key, TOKEN, "3-12345-unix-/tmp/wandb-service.sock"):
        assert secret not in env.values()
    assert not {"AWS_SECRET_ACCESS_KEY", "WANDB_API_KEY", "DISCORD_TOKEN", "WANDB_SERVICE"} & set(env)
    assert "CUDA_VISIBLE_DEVICES" not in env, "no GPUs handed out: none named"


async def test_the_log_comes_as_it_is_written_and_cancel_stops_within_the_grace_and_two_seconds(
    podman, container_env, start_adjutant, discord_standin, base_env
) -> None:
    """The job's first line is in its log while it runs; the script ignores SIGTERM (a shell as PID 1): stop's SIGKILL
    ends it after the 2 s grace."""
    state = Path(base_env["ADJUTANT_STATE_DIR"])
    async with start_adjutant(container_env) as bot:
        job_id = await launch(discord_standin, '{"act": "sleep"}')
        store = bot.get_cog("Experiments").services.jobs
        await eventually(lambda: store.get(job_id).state == "running", timeout=30)
        await eventually(lambda: (state / "outputs" / job_id / "env").exists(), timeout=30)
        log = state / "logs" / f"{job_id}.log"
        await eventually(lambda: log.exists() and "training with" in log.read_text(), timeout=5)  # while it runs
        count = len(discord_standin.sent())
        asked = time.monotonic()
        await discord_standin.post(f"$cancel {job_id}")
        await discord_standin.wait_for_message(after=count, timeout=20)
        await eventually(lambda: store.get(job_id).state == "cancelled", timeout=20)
        took = time.monotonic() - asked
        done = await wait_report(discord_standin, job_id, timeout=20)
    assert took <= 2 + 2, f"cancelled after {took:.1f}s"
    assert done["embeds"][0]["title"] == f"⏹️ Experiment {job_id} cancelled"
    assert fields(done)["Exit code"] == "137"


async def test_out_of_memory_runs_once_more_with_half_again_the_memory_then_ends(
    podman, container_env, start_adjutant, discord_standin
) -> None:
    """--memory 32m and a script that asks for 100 MiB: killed (exit 137), it runs once more with 48 MiB (seen in
    podman inspect), is killed again, and ends saying so; the thread got one note of each."""
    env = {**container_env, "ADJUTANT_CONTAINER_MEMORY": "32m", "ADJUTANT_RETRIES": "0"}
    left_here = Path.cwd() / "oom"  # Podman's conmon writes "oom" into its working directory on an OOM kill
    had_it = left_here.exists()
    async with start_adjutant(env) as bot:
        job_id = await launch(discord_standin, '{"act": "hog"}')
        store = bot.get_cog("Experiments").services.jobs
        await eventually(lambda: store.get(job_id).attempt == 2 and store.get(job_id).state == "running", timeout=60)
        second = inspect(podman, f"adjutant-{job_id}")
        done = await wait_report(discord_standin, job_id, timeout=60)
        job = store.get(job_id)
    assert second is not None and second["Config"]["Labels"]["adjutant.attempt"] == "2"
    assert second["HostConfig"]["Memory"] == 48 * MIB
    assert done["embeds"][0]["title"] == f"❌ Experiment {job_id} failed"
    got = fields(done)
    assert got["Exit code"] == "137"
    assert got["Why"] == "out of memory (limit 48 MiB)"
    assert "asking for 100 MiB" in got["End of the log"]
    assert job.attempt == 2 and job.overrides == {"mem": "48m"} and job.remedied == ("mem",)
    titles = [e.get("title", "").replace("\\", "") for m in discord_standin.sent() for e in m["embeds"]]  # markdown
    grown = [e for m in discord_standin.sent() for e in m["embeds"] if "running again with more" in e.get("title", "")]
    assert len(grown) == 1 and "OUT\\_OF\\_MEMORY" in grown[0]["title"]
    assert "`--memory` 32m → 48m" in grown[0]["description"]
    assert sum("OUT_OF_MEMORY again" in title for title in titles) == 1
    assert had_it or not left_here.exists(), "the runtime runs in the state folder, not in the bot's working directory"


async def test_a_bot_killed_mid_job_adopts_its_container_and_reports_once(
    podman, container_env, tmp_path: Path, monkeypatch
) -> None:
    """kill -9 of a standalone bot while its job's container runs; the restarted bot finds the container by its
    name, starts no second one, copies the rest of the log once and reports the end once."""
    state = tmp_path / "state"
    async with DiscordStandIn(token=TOKEN) as standin:
        env = subprocess_env(
            standin, {**container_env, "ADJUTANT_STATE_DIR": str(state), "CONTAINERS_CONF": str(podman.conf)}
        )

        async def start_bot() -> asyncio.subprocess.Process:
            return await start_standalone(standin, env, tmp_path)

        def row() -> tuple[str, int, int]:
            with sqlite3.connect(state / "adjutant.sqlite3") as db:
                return db.execute("SELECT state, reported, attempt FROM jobs WHERE id=?", (job_id,)).fetchone()

        bot = await start_bot()
        try:
            job_id = await launch(standin, '{"act": "nap"}')
            await eventually(lambda: row()[0] == "running", timeout=30)
            bot.kill()
            await bot.wait()
            alive = inspect(podman, f"adjutant-{job_id}")
            assert alive is not None and alive["State"]["Status"] == "running", "the job outlives the bot"
            bot = await start_bot()
            await wait_report(standin, job_id, timeout=40)
            await asyncio.sleep(3)
            assert podman.containers(f"adjutant.job={job_id}") == [], "removed once its end was recorded"
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
                await asyncio.wait_for(bot.wait(), 20)
    assert len(report(standin, job_id)) == 1
    assert report(standin, job_id)[0]["embeds"][0]["title"] == f"✅ Experiment {job_id} succeeded"
    assert row() == ("succeeded", 1, 1), "one attempt: the restarted bot never started a second container"
    log = (state / "logs" / f"{job_id}.log").read_text()
    assert [line for line in log.splitlines() if line.startswith("nap ")] == ["nap 1", "nap 2", "nap 3", "nap 4"]


@pytest.fixture
def fake_gpus() -> object:
    """A CDI specification of two GPUs, ``nvidia.com/gpu=0`` and ``=1``, each of which only sets a variable (no
    real GPU is needed to see which devices a container got)."""
    folder = Path("/var/run/cdi")
    if folder.exists() and any("nvidia.com/gpu" in p.read_text(errors="replace") for p in folder.glob("*.yaml")):
        pytest.skip("this machine has a CDI specification of nvidia.com/gpu already")
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / f"adjutant-test-{os.getpid()}.yaml"
    devices = "".join(
        f'  - name: "{n}"\n    containerEdits:\n      env: ["ADJUTANT_TEST_CDI_GPU={n}"]\n' for n in (0, 1)
    )
    spec.write_text(f'cdiVersion: "0.5.0"\nkind: nvidia.com/gpu\ndevices:\n{devices}')
    try:
        yield spec
    finally:
        spec.unlink(missing_ok=True)


def test_two_jobs_on_two_gpus_get_different_devices(
    podman, container_env, fake_gpus, base_env, tmp_path: Path, monkeypatch
) -> None:
    """Two jobs holding GPU 0 and GPU 1 (as the scheduler hands them out with ADJUTANT_GPUS=0,1): each container
    gets its own device (``--device nvidia.com/gpu=N`` in podman inspect's record, and the device's own edits
    inside), and CUDA_VISIBLE_DEVICES counts the container's one GPU from 0."""
    from tests.test_scheduler import request

    settings = Settings.from_env({**base_env, **container_env, "ADJUTANT_GPUS": "0,1"})
    state = Path(base_env["ADJUTANT_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    store = JobStore(state / "adjutant.sqlite3")
    launcher = ContainerLauncher(settings, str(state / "adjutant.sqlite3"))
    names = []
    try:
        jobs = []
        for n in (0, 1):
            asked = replace(request(n), params={"act": "nap"}, script=str(SCRIPT), backend="container", gpus=1)
            queued = store.add(asked, state / "logs")
            assert store.start(queued.id, [n])
            started = store.get(queued.id)
            assert started is not None
            jobs.append(started)
        for job in jobs:
            env = {"ADJUTANT_JOB_ID": job.id, "CUDA_VISIBLE_DEVICES": str(job.gpu_ids[0]), "PATH": "/nonexistent"}
            update = launcher.submit(job, env)
            names.append(update.external_id)
        records = [inspect(podman, f"adjutant-{job.id}") for job in jobs]  # before their end: then they are removed
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answers = launcher.refresh_all([replace(j, external_id=f"adjutant-{j.id}") for j in jobs])
            if all(a is not None and a.state == JobState.SUCCEEDED for a in answers.values()):
                break
            time.sleep(0.2)
        assert all(a is not None and a.state == JobState.SUCCEEDED for a in answers.values()), answers
        for n, (job, record) in enumerate(zip(jobs, records, strict=True)):
            assert record is not None
            command = record["Config"]["CreateCommand"]
            devices = [command[i + 1] for i, word in enumerate(command) if word == "--device"]
            assert devices == [f"nvidia.com/gpu={n}"]
            inside = variables(output(state, job.id, "env"))
            assert inside["ADJUTANT_TEST_CDI_GPU"] == str(n), "the device's own edits reached the container"
            assert inside["CUDA_VISIBLE_DEVICES"] == "0" and inside["ADJUTANT_GPUS"] == str(n)
            assert "PATH" not in command and "/nonexistent" not in inside.values()
        assert not podman.containers(f"adjutant.job={jobs[0].id}"), "removed once their end was told"
    finally:
        if names:
            podman.run("rm", "-f", *[n for n in names if n])
        store.close()


def test_check_names_the_runtime_the_image_and_how_long_a_trivial_container_took(
    podman, container_env, base_env
) -> None:
    from adjutant.doctor import check_containers

    findings = check_containers(Settings.from_env({**base_env, **container_env}))
    assert [f.ok for f in findings] == [True, True], findings
    assert findings[0].message.startswith("podman 4.")
    assert re.fullmatch(
        rf"image {re.escape(podman.image)}: a container starts and ends in \d+\.\d\ds", findings[1].message
    )
    missing = check_containers(
        Settings.from_env({**base_env, **container_env, "ADJUTANT_CONTAINER_IMAGE": "localhost/adjutant-no-such:1"})
    )
    assert [f.ok for f in missing] == [True, False]
    assert missing[1].message.startswith("image localhost/adjutant-no-such:1 is not on this machine: build it")
    assert check_containers(Settings.from_env(base_env)) == [], "only with ADJUTANT_LAUNCHER=container"


async def test_two_launches_on_adjutant_gpus_0_1_get_different_devices(
    podman, container_env, fake_gpus, start_adjutant, discord_standin, base_env
) -> None:
    """ADJUTANT_GPUS=0,1: two launches at once each hold one GPU of the pool; podman inspect shows each container
    its own --device nvidia.com/gpu=N, and the device's own edits reached each."""
    state = Path(base_env["ADJUTANT_STATE_DIR"])
    async with start_adjutant({**container_env, "ADJUTANT_GPUS": "0,1", "ADJUTANT_MAX_CONCURRENT": "2"}) as bot:
        store = bot.get_cog("Experiments").services.jobs
        first = await launch(discord_standin, '{"act": "nap", "n": 1}')
        second = await launch(discord_standin, '{"act": "nap", "n": 2}')
        await eventually(lambda: all(store.get(j).state == "running" for j in (first, second)), timeout=30)
        records = {j: inspect(podman, f"adjutant-{j}") for j in (first, second)}
        held = {j: store.get(j).gpu_ids for j in (first, second)}
        await wait_report(discord_standin, first, timeout=30)
        await wait_report(discord_standin, second, timeout=30)
    assert sorted(held.values()) == [(0,), (1,)]
    for job_id, record in records.items():
        assert record is not None
        command = record["Config"]["CreateCommand"]
        devices = [command[i + 1] for i, word in enumerate(command) if word == "--device"]
        assert devices == [f"nvidia.com/gpu={held[job_id][0]}"]
        inside = variables(output(state, job_id, "env"))
        assert inside["ADJUTANT_TEST_CDI_GPU"] == str(held[job_id][0])
        assert inside["CUDA_VISIBLE_DEVICES"] == "0" and inside["ADJUTANT_GPUS"] == str(held[job_id][0])
