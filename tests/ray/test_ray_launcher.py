"""The Ray launcher end to end: the real discord.py client ↔ Discord stand-in, a real Ray head (Jobs API), the test
training script run by Ray. Only collected inside the loopback-only namespace (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from adjutant.hparams import to_argument
from adjutant.jobs import ENDED, JobState, JobStore
from adjutant.settings import Settings
from tests.cogs.conftest import TOKEN
from tests.cogs.test_alert_cards import say
from tests.cogs.test_experiments import SCRIPT, fields, launch, received, wait_report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


def ray_env(address: str, **extra: str) -> dict[str, str]:
    return {
        "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT),
        "ADJUTANT_LAUNCHER": "ray",
        "ADJUTANT_RAY_ADDRESS": address,
        "ADJUTANT_CANCEL_GRACE_SECONDS": "10",
        "ADJUTANT_JOB_ENV": "ADJUTANT_TEST_OUT",  # where the test script records what it got
        **extra,
    }


def ray_jobs(address: str, submission_id: str) -> list:
    from ray.job_submission import JobSubmissionClient

    return [j for j in JobSubmissionClient(address).list_jobs() if j.submission_id == submission_id]


async def test_a_ray_job_gets_its_json_byte_for_byte_and_a_clean_environment(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path, ray_head: str, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    hostile = {"q": f'it\'s "x" $(touch {canary}) `touch {canary}` ; touch {canary}', "nl": "a\nb\r\n", "u": "é ✓"}
    async with start_adjutant(ray_env(ray_head)):
        job_id = await launch(discord_standin, json.dumps(hostile))
        done = await wait_report(discord_standin, job_id, timeout=90)
    assert (
        done["embeds"][0]["title"].startswith("✅") and f"Experiment {job_id} succeeded" in done["embeds"][0]["title"]
    )
    got = received(out_dir, job_id)
    assert bytes.fromhex(got["argv_hex"]) == to_argument(hostile).encode(), "the JSON arrived byte for byte"
    assert len(got["argv"]) == 1 and not canary.exists(), "one argument, nothing run by a shell"
    env = got["env"]
    assert env["ADJUTANT_JOB_ID"] == job_id and env["WANDB_RUN_ID"] and env["WANDB_RESUME"] == "allow"
    assert "DISCORD_TOKEN" not in env and "WANDB_SERVICE" not in env and TOKEN not in env.values()
    assert len(ray_jobs(ray_head, job_id)) == 1


async def test_a_failing_ray_job_reports_its_exit_code_and_log_tail(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path, ray_head: str
) -> None:
    async with start_adjutant(ray_env(ray_head)):
        job_id = await launch(discord_standin, '{"exit": 3, "lines": 2}')
        done = await wait_report(discord_standin, job_id, timeout=90)
        logs = await say(discord_standin, f"$logs {job_id} 50")
    assert f"Experiment {job_id} failed" in done["embeds"][0]["title"]
    assert fields(done)["Exit code"] == "3"
    assert "something went wrong: exiting with 3" in json.dumps(done["embeds"][0])
    assert "something went wrong" in logs, "$logs reads the Ray job's log"


async def test_cancel_stops_a_ray_job(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path, ray_head: str
) -> None:
    async with start_adjutant(ray_env(ray_head)):
        job_id = await launch(discord_standin, '{"sleep": 600}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=60)
        reply = await say(discord_standin, f"$cancel {job_id}")
        assert f"Stopping job `{job_id}`" in reply
        done = await wait_report(discord_standin, job_id, timeout=60)
    assert f"Experiment {job_id} cancelled" in done["embeds"][0]["title"]
    assert str(ray_jobs(ray_head, job_id)[0].status) in ("STOPPED", "JobStatus.STOPPED")


async def test_a_restart_adopts_the_running_ray_job_without_submitting_it_twice(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path, ray_head: str
) -> None:
    async with start_adjutant(ray_env(ray_head)):
        job_id = await launch(discord_standin, '{"sleep": 6}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=60)
    async with start_adjutant(ray_env(ray_head)):
        done = await wait_report(discord_standin, job_id, timeout=90)
    assert f"Experiment {job_id} succeeded" in done["embeds"][0]["title"]
    assert len(ray_jobs(ray_head, job_id)) == 1, "looked up again by its submission id, not submitted again"


async def test_a_ray_head_that_is_down_gives_a_clear_error_and_the_bot_keeps_working(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path, ray_head: str
) -> None:
    async with start_adjutant(ray_env("http://127.0.0.1:9", ADJUTANT_RAY_TIMEOUT="5")):
        job_id = await launch(discord_standin, '{"epochs": 1}')
        done = await wait_report(discord_standin, job_id, timeout=60)
        said = json.dumps(done["embeds"][0])
        assert "Ray not reachable at http://127.0.0.1:9" in said and said.count("Ray not reachable") == 1, said
        assert "hello" in (await say(discord_standin, "$hello")).lower()
    await asyncio.sleep(0)


class CountedClient:
    """Ray's own JobSubmissionClient, with each call counted."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


def test_one_list_jobs_answers_for_all_jobs_as_get_job_info_does_per_job(
    ray_head: str, out_dir: Path, tmp_path: Path
) -> None:
    """Against the real Jobs API: a job that succeeds, one that exits 3, one that runs and one Ray never had are
    followed with one list_jobs() per pass and no get_job_info; each answer equals the per-job one."""
    from adjutant.launchers.ray import RayLauncher
    from tests.test_scheduler import request

    launcher = RayLauncher(Settings.from_env(ray_env(ray_head)), "")
    store = JobStore(tmp_path / "adjutant.sqlite3")
    try:
        jobs = [
            store.add(replace(request(n), params=params, script=str(SCRIPT), backend="ray"), tmp_path / "logs")
            for n, params in enumerate(({"sleep": 0.5}, {"exit": 3}, {"sleep": 600}))
        ]
    finally:
        store.close()
    submitted = []
    for job in jobs:
        update = launcher.submit(job, {"ADJUTANT_JOB_ID": job.id, "ADJUTANT_TEST_OUT": str(out_dir)})
        submitted.append(replace(job, state=JobState.STARTING, external_id=update.external_id))
    never = replace(submitted[0], id="jnever1", external_id="jnever1")
    counted = CountedClient(launcher.client())
    launcher.client = lambda: counted  # type: ignore[method-assign]
    try:
        passes = 0
        deadline = time.monotonic() + 90
        while True:
            answers = launcher.refresh_all([*submitted, never])
            passes += 1
            ended = [answers[job.id] for job in submitted[:2]]
            started = answers[submitted[2].id]
            if all(a is not None and a.state in ENDED for a in ended) and started and started.state:
                break
            assert time.monotonic() < deadline, answers
            time.sleep(0.5)
        assert counted.calls["list_jobs"] == passes and counted.calls["get_job_info"] == 0, counted.calls
        assert [(a.state, a.exit_code) for a in ended if a] == [(JobState.SUCCEEDED, 0), (JobState.FAILED, 3)]
        assert started.state == JobState.RUNNING
        lost = answers[never.id]
        assert lost is not None and (lost.state, lost.reason) == (JobState.LOST, "Ray no longer knows job jnever1")
        for job in submitted:
            assert launcher.refresh(job) == answers[job.id], f"get_job_info says the same of {job.id}"
        alone = launcher.refresh(never)
        assert alone is not None and (alone.state, alone.reason) == (lost.state, lost.reason)
    finally:
        launcher.cancel(submitted[2])
