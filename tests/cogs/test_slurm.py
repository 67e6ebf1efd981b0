"""The Slurm launcher against a real single-node Slurm (tests/slurm/cluster.sh), end to end through Discord."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from adjutant.hparams import to_argument
from adjutant.jobs import ENDED, JobState, JobStore
from adjutant.launchers import JOB_VARIABLES, LaunchError
from adjutant.launchers.slurm import SlurmLauncher
from adjutant.settings import Settings
from tests.cogs.conftest import TOKEN
from tests.cogs.test_experiments import SCRIPT, acks, fields, launch, received, wait_report
from tests.conftest import eventually

CLUSTER = Path(__file__).resolve().parent.parent / "slurm" / "cluster.sh"
#: Where tests/slurm/cluster.sh keeps the cluster (its StateSaveLocation is state/ under it).
SLURM_DIR = Path(os.environ.get("ADJUTANT_SLURM_DIR", "/var/tmp/adjutant-slurm"))


def cluster(command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLUSTER), command], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    """A running Slurm: started here if needed (and then stopped here), else the one .ci/run started."""
    required = bool(os.environ.get("ADJUTANT_REQUIRE_SLURM"))
    if cluster("status", 30).returncode == 0:
        yield
        return
    problem = None
    if os.geteuid() != 0:
        problem = "Slurm tests need root to install and start munge, slurmctld and slurmd"
    else:
        started = cluster("start")
        if started.returncode != 0:
            problem = f"could not start a single-node Slurm: {started.stderr.strip()[-500:]}"
    if problem:
        if required:
            pytest.fail(problem)
        pytest.skip(problem)
    try:
        yield
    finally:
        cluster("stop", 60)


def slurm_env(**extra: str) -> dict[str, str]:
    return {
        "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT),
        "ADJUTANT_LAUNCHER": "slurm",
        "ADJUTANT_SLURM_TIMEOUT": "15",
        "ADJUTANT_SLURM_ARGS": "--cpus-per-task=1",
        "ADJUTANT_JOB_ENV": "ADJUTANT_TEST_OUT",  # where the test script records what it got
        **extra,
    }


async def test_slurm_launch_runs_and_completes(slurm, start_adjutant, discord_standin, out_dir) -> None:
    # Long enough to be seen running: Slurm is asked at most every 2 s (one squeue a batch) and may start it late.
    params = {"name": 'it\'s "quoted"; $(touch /tmp/slurm-pwned) `id`', "sleep": 8}
    async with start_adjutant(slurm_env()) as bot:
        job_id = await launch(discord_standin, json.dumps(params))
        store = bot.get_cog("Experiments").services.jobs
        await eventually(lambda: store.get(job_id).state == "running", timeout=30)
        running = store.get(job_id)
        assert running.external_id and running.external_state.startswith("RUNNING")
        done = await wait_report(discord_standin, job_id, timeout=60)
    assert done["embeds"][0]["title"] == f"✅ Experiment {job_id} succeeded"
    got = fields(done)
    assert got["Exit code"] == "0"
    assert got["Scheduler"] == f"slurm job {running.external_id}: COMPLETED"
    record = received(out_dir, job_id)
    assert record["argv"] == [to_argument(params)]
    assert not Path("/tmp/slurm-pwned").exists()
    env = record["env"]
    assert "DISCORD_TOKEN" not in env and TOKEN not in env.values() and "WANDB_SERVICE" not in env
    assert env["ADJUTANT_JOB_ID"] == job_id and env["WANDB_RUN_ID"] == running.wandb_run_id
    assert env["SLURM_JOB_ID"] == running.external_id


async def test_a_slurm_job_gets_only_the_allow_list_and_slurm_keeps_no_secret(
    slurm, start_adjutant, discord_standin, out_dir, monkeypatch
) -> None:
    """The bot's environment holds an AWS key and a W&B key: sbatch exports only the allow-list by name, the job
    gets that (plus its login environment and Slurm's own variables), and the environment Slurm saved with the job
    on its controller holds no secret."""
    aws_key, wandb_key = "aws-secret-planted-wJalrXUtnFEMI", "wandb-key-planted-0123456789abcdef0123"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_key)
    monkeypatch.setenv("WANDB_API_KEY", wandb_key)
    monkeypatch.setenv("HF_HOME", "/data/hf-cache")
    monkeypatch.setenv("WANDB_TAGS", "team-a,team-b")  # a comma inside a value must not split --export's list
    async with start_adjutant(slurm_env(ADJUTANT_JOB_ENV="ADJUTANT_TEST_OUT,HF_HOME")) as bot:
        job_id = await launch(discord_standin, '{"sleep": 4}')
        store = bot.get_cog("Experiments").services.jobs
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=30)
        slurm_id = store.get(job_id).external_id
        saved = list(SLURM_DIR.glob(f"state/hash.*/job.{slurm_id}/environment"))
        kept = saved[0].read_bytes().decode(errors="replace") if saved else None
        done = await wait_report(discord_standin, job_id, timeout=60)
    assert done["embeds"][0]["title"] == f"✅ Experiment {job_id} succeeded"
    env = received(out_dir, job_id)["env"]
    exported = env.get("SLURM_EXPORT_ENV", "(unset: sbatch exported ALL)").split(",")
    assert set(exported) - set(JOB_VARIABLES) == {"ADJUTANT_TEST_OUT", "HF_HOME"}, exported
    assert {"ADJUTANT_JOB_ID", "WANDB_RUN_ID", "WANDB_TAGS"} <= set(exported)
    assert env["HF_HOME"] == "/data/hf-cache" and env["ADJUTANT_JOB_ID"] == job_id
    assert env["WANDB_TAGS"] == f"team-a,team-b,adjutant,job-{job_id}"
    for secret in (aws_key, wandb_key, TOKEN):
        assert secret not in env.values()
    assert "AWS_SECRET_ACCESS_KEY" not in env and "WANDB_API_KEY" not in env and "DISCORD_TOKEN" not in env
    assert kept is not None, "Slurm saved the running job's environment"
    assert "HF_HOME=/data/hf-cache" in kept and f"ADJUTANT_JOB_ID={job_id}" in kept
    assert aws_key not in kept and wandb_key not in kept and TOKEN not in kept


async def test_slurm_failure_reports_exit_code_and_log(slurm, start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(slurm_env()):
        job_id = await launch(discord_standin, '{"exit": 3}')
        done = await wait_report(discord_standin, job_id, timeout=60)
        count = len(discord_standin.sent())
        await discord_standin.post(f"$logs {job_id}")
        logs = await discord_standin.wait_for_message(after=count, timeout=10)
    assert done["embeds"][0]["title"] == f"❌ Experiment {job_id} failed"
    got = fields(done)
    assert got["Exit code"] == "3"
    assert "FAILED (NonZeroExitCode)" in got["Scheduler"]
    assert "exiting with 3" in got["End of the log"]
    assert "exiting with 3" in logs["content"]


async def test_slurm_cancel(slurm, start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(slurm_env()) as bot:
        job_id = await launch(discord_standin, '{"sleep": 600}')
        store = bot.get_cog("Experiments").services.jobs
        await eventually(lambda: store.get(job_id).state == "running", timeout=30)
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=30)
        count = len(discord_standin.sent())
        await discord_standin.post(f"$cancel {job_id}")
        reply = await discord_standin.wait_for_message(after=count, timeout=20)
        assert "scancel sent" in reply["content"]
        done = await wait_report(discord_standin, job_id, timeout=60)
    assert done["embeds"][0]["title"] == f"⏹️ Experiment {job_id} cancelled"
    assert "CANCELLED" in fields(done)["Scheduler"]


async def test_slurm_job_end_reported_once_after_bot_restart(slurm, start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(slurm_env()) as bot:
        job_id = await launch(discord_standin, '{"sleep": 8}')  # seen running although Slurm is asked every 2 s
        store = bot.get_cog("Experiments").services.jobs
        await eventually(lambda: store.get(job_id).state == "running", timeout=30)
        slurm_id = store.get(job_id).external_id
    # the bot is down; the job finishes under Slurm
    await eventually(
        lambda: "COMPLETED" in subprocess.run(
            ["squeue", "-j", slurm_id, "-h", "-t", "all", "-o", "%T"], capture_output=True, text=True, check=False
        ).stdout,
        timeout=30,
    )  # fmt: skip
    async with start_adjutant(slurm_env()):
        await wait_report(discord_standin, job_id, timeout=30)
        await asyncio.sleep(3)
    reports = [
        m for m in discord_standin.sent() if m["embeds"] and f"Experiment {job_id} succeeded" in m["embeds"][0]["title"]
    ]
    assert len(reports) == 1


async def test_sbatch_missing_is_a_clear_error(slurm, start_adjutant, discord_standin, out_dir, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # the job's environment, where sbatch is looked up
    async with start_adjutant(slurm_env()):
        job_id = await launch(discord_standin, '{"epochs": 1}')
        done = await wait_report(discord_standin, job_id, timeout=30)
    assert done["embeds"][0]["title"] == f"❌ Experiment {job_id} failed"
    assert "sbatch is not installed on this machine" in fields(done)["Why"]
    assert not (out_dir / f"{job_id}.json").exists()


async def test_controller_down_is_reported_and_bot_keeps_working(
    slurm, start_adjutant, discord_standin, out_dir
) -> None:
    """slurmctld stopped for real: sbatch hangs; Adjutant times out, says so, and still answers."""
    pid = int(Path("/var/tmp/adjutant-slurm/slurmctld.pid").read_text())
    os.kill(pid, 15)
    await eventually(
        lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], timeout=20
    )
    try:
        async with start_adjutant(slurm_env(ADJUTANT_SLURM_TIMEOUT="3")):
            job_id = await launch(discord_standin, '{"epochs": 1}')
            done = await wait_report(discord_standin, job_id, timeout=40)
            count = len(discord_standin.sent())
            await discord_standin.post("$hello")
            hello = await discord_standin.wait_for_message(after=count, timeout=10)
    finally:
        assert cluster("start").returncode == 0
    assert "not reachable" in fields(done)["Why"] or "Unable to contact" in fields(done)["Why"]
    assert hello["content"] == "Hello!"
    assert acks(discord_standin)


@pytest.mark.timeout(420)
async def test_a_timeout_runs_once_more_with_half_again_the_time(
    slurm, start_adjutant, discord_standin, out_dir
) -> None:
    """--time=1 and a script that needs 75 s: Slurm ends it TIMEOUT; it runs once more with --time=2 and succeeds;
    the job's thread says so with the old and new value."""
    async with start_adjutant(slurm_env(ADJUTANT_SLURM_TIME="1", ADJUTANT_RETRIES="0")) as bot:
        job_id = await launch(discord_standin, '{"sleep": 75}')
        done = await wait_report(discord_standin, job_id, timeout=360)
        job = await bot.get_cog("Experiments").scheduler.get(job_id)
    assert done["embeds"][0]["title"] == f"✅ Experiment {job_id} succeeded"
    assert job is not None and job.attempt == 2 and job.overrides == {"time": "2"} and job.remedied == ("time",)
    notes = [e for m in discord_standin.sent() for e in m["embeds"] if "running again with more" in e.get("title", "")]
    assert len(notes) == 1 and "TIMEOUT" in notes[0]["title"] and "`--time` 1 → 2" in notes[0]["description"]


class CountingSlurm(SlurmLauncher):
    """The Slurm launcher with each Slurm command it runs counted."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "")
        self.calls: Counter[str] = Counter()

    def _run(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        self.calls[argv[0]] += 1
        return super()._run(argv, env)


def test_one_squeue_answers_for_all_jobs_as_scontrol_does_per_job(slurm, out_dir: Path, tmp_path: Path) -> None:
    """Against the real controller: a job that succeeds, one that exits 3 and one Slurm never had are followed with
    one squeue (and one sacct, for the unknown one) per batch, no scontrol; each batched answer equals the per-job
    scontrol answer; a batch serves the calls within its 2 s; a batch of only unknown jobs (squeue's "Invalid job
    id") goes to sacct."""
    from tests.test_scheduler import request

    launcher = CountingSlurm(Settings.from_env(slurm_env()))
    store = JobStore(tmp_path / "adjutant.sqlite3")
    try:
        jobs = [
            store.add(replace(request(n), params=params, script=str(SCRIPT), backend="slurm"), tmp_path / "logs")
            for n, params in enumerate(({"sleep": 0}, {"exit": 3}))
        ]
    finally:
        store.close()
    submitted = []
    try:
        for job in jobs:
            env = {"PATH": os.environ["PATH"], "ADJUTANT_JOB_ID": job.id, "ADJUTANT_TEST_OUT": str(out_dir)}
            update = launcher.submit(job, env)
            submitted.append(replace(job, state=JobState.STARTING, external_id=update.external_id))
        never = replace(submitted[0], id="jnever1", external_id="999999")
        launcher.calls.clear()
        batches = 0
        deadline = time.monotonic() + 120  # other tests' jobs may hold the two CPUs for a while
        while True:
            answers = launcher.refresh_all([*submitted, never])
            batches += 1
            ended = [answers[job.id] for job in submitted]
            if all(a is not None and a.state in ENDED for a in ended):
                break
            assert time.monotonic() < deadline, answers
            time.sleep(launcher.batch_seconds)
        assert launcher.calls["scontrol"] == 0
        assert launcher.calls["squeue"] == batches and launcher.calls["sacct"] == batches, "one each per batch"
        assert [(a.state, a.exit_code) for a in ended if a] == [(JobState.SUCCEEDED, 0), (JobState.FAILED, 3)]
        lost = answers[never.id]
        assert lost is not None and lost.state == JobState.LOST and lost.reason == "Slurm no longer knows job 999999"
        launcher.calls.clear()
        assert launcher.refresh_all([*submitted, never]) == answers, "within the batch's time: the same batch"
        assert not launcher.calls
        for job in submitted:
            assert launcher.refresh(job) == answers[job.id], f"scontrol says the same of {job.external_id}"
        alone = launcher.refresh(never)
        assert alone is not None and (alone.state, alone.reason) == (lost.state, lost.reason)
        launcher.calls.clear()
        launcher.batch_seconds = 0  # a batch of only unknown ids: squeue fails with "Invalid job id"
        unknown = launcher.refresh_all([never])[never.id]
        assert unknown is not None and unknown.state == JobState.LOST
        assert launcher.calls == Counter({"squeue": 1, "sacct": 1})
    finally:
        for job in submitted:
            with contextlib.suppress(LaunchError):  # already ended: scancel says so
                launcher.cancel(job)
