"""Priority classes and preemption, without a bot: the victims rule (a table), the options, the queue's order, and the
scheduler's decision, signal, escalation and re-queue against a fake local launcher and a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from adjutant.alerts import JOBS_OUTBOX
from adjutant.gpus import Preemptible, victims
from adjutant.hparams import HParamsError, take_launch_options
from adjutant.jobs import ACTIVE, Job, JobRequest, JobState, JobStore, JobUpdate, iso
from adjutant.scheduler import retry_reason
from adjutant.settings import Settings
from tests.test_scheduler import FakeLauncher, make, request, settle

# --- who is preempted: fewest jobs, then lowest priority, then most recently started ---------------------------------

LOW, NORMAL, HIGH = 0, 1, 2


def running(*jobs: tuple[str, int, int, float]) -> list[Preemptible]:
    return [Preemptible(id, gpus, priority, started) for id, gpus, priority, started in jobs]


@pytest.mark.parametrize(
    ("need", "priority", "jobs", "expected"),
    [
        # one GPU needed, two low 1-GPU jobs: the most recently started one
        (1, HIGH, running(("a", 1, LOW, 100), ("b", 1, LOW, 200)), ["b"]),
        # the lowest priority before the most recent
        (1, HIGH, running(("a", 1, LOW, 100), ("n", 1, NORMAL, 300)), ["a"]),
        # fewest jobs first: one 2-GPU job rather than two 1-GPU jobs, even if they are more recent
        (2, HIGH, running(("a", 1, LOW, 300), ("b", 1, LOW, 400), ("c", 2, LOW, 100)), ["c"]),
        # two needed, only 1-GPU jobs: the two most recent of the lowest priority
        (2, HIGH, running(("a", 1, LOW, 100), ("b", 1, LOW, 200), ("c", 1, LOW, 300)), ["c", "b"]),
        # never a job of the same or a higher priority
        (1, NORMAL, running(("n", 1, NORMAL, 100), ("h", 1, HIGH, 200)), []),
        (1, NORMAL, running(("n", 1, NORMAL, 100), ("l", 1, LOW, 50)), ["l"]),
        # not enough to free: nobody (a preemption that cannot start the job helps no one)
        (3, HIGH, running(("a", 1, LOW, 100), ("b", 1, LOW, 200)), []),
        # nothing needed: nobody
        (0, HIGH, running(("a", 1, LOW, 100)), []),
        # a job holding no GPU frees nothing
        (1, HIGH, running(("z", 0, LOW, 500), ("a", 1, LOW, 100)), ["a"]),
    ],
)
def test_victims(need: int, priority: int, jobs: list[Preemptible], expected: list[str]) -> None:
    assert victims(need, priority, jobs) == expected


def test_victims_with_many_candidates_are_still_the_fewest() -> None:
    jobs = running(*[(f"s{i}", 1, LOW, float(i)) for i in range(20)], ("big", 4, LOW, 0.0))
    assert victims(4, HIGH, jobs) == ["big"]
    assert victims(5, HIGH, jobs) == ["s19", "big"]


# --- the options -----------------------------------------------------------------------------------------------------


def test_priority_and_preemptible_options() -> None:
    options, rest = take_launch_options('--priority HIGH --gpus 1 {"lr": 1}')
    assert (options.priority, options.preemptible, options.gpus, rest) == ("high", False, 1, '{"lr": 1}')
    options, rest = take_launch_options("--priority=low --preemptible lr=1")
    assert (options.priority, options.preemptible, rest) == ("low", True, "lr=1")
    assert take_launch_options("lr=1")[0].priority is None
    with pytest.raises(HParamsError, match="--priority must be high, normal or low, not 'urgent'"):
        take_launch_options("--priority urgent lr=1")
    with pytest.raises(HParamsError, match="--priority needs a value"):
        take_launch_options("--priority")


def test_priority_settings() -> None:
    s = Settings.from_env(
        {
            "ADJUTANT_PRIORITY_ROLES": "high=Admin,ml-leads; normal=ml-team",
            "ADJUTANT_SLURM_PRIORITY_ARGS": "high=--qos=high",
        }
    )
    assert s.priority_roles == {"high": ("Admin", "ml-leads"), "normal": ("ml-team",)}
    assert s.slurm_priority_args == {"high": "--qos=high"}
    assert (s.preempt_signal, s.preempt_grace_seconds) == ("USR1", 90.0)
    for env, message in (
        ({"ADJUTANT_PRIORITY_ROLES": "urgent=Admin"}, "'urgent' is not a priority class"),
        ({"ADJUTANT_PRIORITY_ROLES": "Admin"}, "must be like"),
        ({"ADJUTANT_PREEMPT_SIGNAL": "KILL"}, "must name a signal a script can catch"),
    ):
        with pytest.raises(ValueError, match=message):
            Settings.from_env(env)


# --- the queue's order -------------------------------------------------------------------------------------------


def local(gpus: int = 1, priority: str = "normal", preemptible: bool = False, n: int = 0) -> JobRequest:
    return dataclasses.replace(request(n), backend="local", gpus=gpus, priority=priority, preemptible=preemptible)


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    yield store
    store.close()


def test_the_queue_orders_by_priority_then_arrival(store: JobStore, tmp_path: Path) -> None:
    low1 = store.add(local(priority="low"), tmp_path)
    normal1 = store.add(local(), tmp_path)
    high1 = store.add(local(priority="high"), tmp_path)
    normal2 = store.add(local(), tmp_path)
    high2 = store.add(local(priority="high"), tmp_path)
    order = [high1, high2, normal1, normal2, low1]
    assert [j.id for j in store.startable(10)] == [j.id for j in order]
    assert [store.count_queued_ahead(j) for j in order] == [0, 1, 2, 3, 4]
    assert (store.get(low1.id).priority, store.get(low1.id).preemptible) == ("low", False)


# --- the scheduler: decision before signal, escalation, re-queue ------------------------------------------------------


class FakeLocal(FakeLauncher):
    """A local launcher as the scheduler sees it: it can preempt, and remembers what each signal found in the row."""

    name = "local"
    preempts = True

    def __init__(self, store: JobStore, grace: float) -> None:
        super().__init__()
        self.settings = Settings.from_env({"ADJUTANT_PREEMPT_GRACE_SECONDS": str(grace)})
        self.store = store
        self.preempted: list[tuple[str, Any]] = []

    @property
    def preempt_grace_seconds(self) -> float:
        return self.settings.preempt_grace_seconds

    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        return dataclasses.replace(super().submit(job, env), started_at=iso())

    def preempt(self, job: Job) -> bool:
        row = self.store.get(job.id)
        assert row is not None
        self.preempted.append((job.id, row.preempted_at))  # the decision is recorded before the signal
        return True


def end(launcher: FakeLauncher, job_id: str, state: JobState = JobState.SUCCEEDED, code: int = 0) -> None:
    launcher.states[job_id] = JobUpdate(state=state, exit_code=code, ended_at=iso())


async def test_a_high_job_preempts_one_low_job_that_comes_back_as_its_next_attempt(store, tmp_path) -> None:
    launcher = FakeLocal(store, grace=0.3)
    scheduler = make(store, launcher, tmp_path, slots=2, grace=0.3, gpus=(0, 1), retries=0)
    older = await scheduler.enqueue(local(priority="low", preemptible=True, n=1))
    await settle(scheduler)
    await asyncio.sleep(0.01)  # started later
    newer = await scheduler.enqueue(local(priority="low", preemptible=True, n=2))
    await settle(scheduler)
    assert {j.id for j in store.where(ACTIVE)} == {older.id, newer.id}
    high = await scheduler.enqueue(local(priority="high", n=3))
    await settle(scheduler)
    await scheduler.run_pass()  # a second pass decides nothing more: one preemption at a time
    assert [job_id for job_id, _ in launcher.preempted] == [newer.id], "exactly one victim: the most recent"
    assert launcher.preempted[0][1] is not None
    victim = store.get(newer.id)
    assert victim.preempted_by == high.id and victim.state == JobState.RUNNING
    assert store.links([newer.wandb_run_id])[newer.wandb_run_id].over
    assert not store.links([older.wandb_run_id])[older.wandb_run_id].over
    assert store.get(high.id).state == JobState.QUEUED, "its GPU is not free yet"

    rows = store.query("SELECT event, payload FROM outbox WHERE project=? ORDER BY id", (JOBS_OUTBOX,))
    titles = {r["event"]: json.loads(r["payload"])["title"] for r in rows}
    assert titles["preempted"].startswith(f"⏏️ Job {newer.id} preempted by {high.id} (high)")
    assert titles["preempting"] == f"⏏️ Job {high.id} preempts {newer.id}"
    audit = store.query("SELECT action, target, detail FROM audit")
    assert [(a["action"], a["target"]) for a in audit] == [("preempt", newer.id)]
    assert high.id in audit[0]["detail"]

    # It ended on SIGUSR1, recorded by its supervisor as the local launcher's are (no pass has seen it yet).
    await scheduler.acknowledged(newer.id, ack_id=1)
    store.update(newer.id, state=JobState.FAILED, exit_code=-10, ended_at=iso())
    assert await scheduler.reports_due() == [], "a preemption is neither a failure nor a retry to report"
    scheduler.wake()
    await settle(scheduler)
    again = store.get(newer.id)
    assert (again.attempt, again.preemptions, again.wandb_run_id) == (2, 1, newer.wandb_run_id)
    assert again.state == JobState.QUEUED and again.preempted_at is None, "re-queued although ADJUTANT_RETRIES=0"
    assert store.get(high.id).state == JobState.RUNNING and store.get(high.id).gpu_ids == victim.gpu_ids
    assert not store.requeue_preempted(victim), "decided once"
    link = store.links([newer.wandb_run_id])[newer.wandb_run_id]
    assert link.over, "W&B's end of the preempted attempt is the preemption's echo, not news"
    assert store.get(older.id).state == JobState.RUNNING, "the other one was never touched"

    end(launcher, high.id)
    scheduler.wake()
    await settle(scheduler)
    assert store.get(newer.id).state == JobState.RUNNING, "it runs again when the GPU is free"
    assert not store.links([newer.wandb_run_id])[newer.wandb_run_id].over, "its new attempt is judged again"
    assert launcher.submitted.count(newer.id) == 2


async def test_a_job_that_is_not_preemptible_is_never_touched(store, tmp_path) -> None:
    launcher = FakeLocal(store, grace=0.3)
    scheduler = make(store, launcher, tmp_path, slots=2, gpus=(0, 1))
    await scheduler.enqueue(local(priority="low", n=1))
    await scheduler.enqueue(local(priority="low", preemptible=True, n=2))
    await settle(scheduler)
    await scheduler.enqueue(local(gpus=2, priority="high", n=3))  # the one preemptible job frees too little
    await settle(scheduler)
    await scheduler.run_pass()
    assert launcher.preempted == []
    await scheduler.enqueue(local(priority="normal", n=4))  # behind the high job: it is not the head
    await scheduler.run_pass()
    assert launcher.preempted == []


async def test_a_preempted_job_that_goes_on_gets_sigterm_then_sigkill(store, tmp_path) -> None:
    launcher = FakeLocal(store, grace=0.3)
    scheduler = make(store, launcher, tmp_path, slots=1, grace=0.3, gpus=(0,))
    low = await scheduler.enqueue(local(priority="low", preemptible=True))
    await settle(scheduler)
    await scheduler.enqueue(local(priority="high"))
    await settle(scheduler)
    signalled = time.monotonic()
    assert [j for j, _ in launcher.preempted] == [low.id]
    while not launcher.escalated and time.monotonic() - signalled < 5:
        await scheduler.run_pass()
        await asyncio.sleep(0.05)
    assert launcher.cancelled == [low.id] and launcher.escalated == [low.id]
    assert time.monotonic() - signalled >= 0.6, "the grace, then the cancel's grace"
    row = store.get(low.id)
    assert row.preempt_term_at is not None and row.killed_at is not None
    assert row.preempt_term_at - row.preempted_at >= dt.timedelta(seconds=0.3)


async def test_a_cancel_during_the_grace_ends_the_job_for_good(store, tmp_path) -> None:
    launcher = FakeLocal(store, grace=5)
    scheduler = make(store, launcher, tmp_path, slots=1, gpus=(0,))
    low = await scheduler.enqueue(local(priority="low", preemptible=True))
    await settle(scheduler)
    await scheduler.enqueue(local(priority="high"))
    await settle(scheduler)
    await scheduler.cancel(low.id, "admin")
    end(launcher, low.id, JobState.CANCELLED, -15)
    scheduler.wake()
    await settle(scheduler)
    assert store.get(low.id).state == JobState.CANCELLED and store.get(low.id).attempt == 1
    await scheduler.acknowledged(low.id, ack_id=1)
    assert [j.id for j in await scheduler.reports_due()] == [low.id], "its end is reported"


def test_preemptions_do_not_count_against_retries(store, tmp_path) -> None:
    job = store.add(local(priority="low", preemptible=True), tmp_path)
    twice = dataclasses.replace(job, attempt=3, preemptions=2)
    assert retry_reason(twice, JobState.LOST, None, None, "gone", retries=1, retry_on_exit=()) is not None
    used = dataclasses.replace(job, attempt=3, preemptions=1)
    assert retry_reason(used, JobState.LOST, None, None, "gone", retries=1, retry_on_exit=()) is None
    preempting = dataclasses.replace(job, preempted_at=dt.datetime.now(dt.UTC))
    assert retry_reason(preempting, JobState.LOST, None, None, "gone", retries=1, retry_on_exit=()) is None


# --- the launch service: role caps ------------------------------------------------------------------------------------


async def test_a_high_request_from_a_member_capped_at_normal_is_refused_with_the_reason(tmp_path) -> None:
    # Imported here: loading the extension elsewhere in the run re-imports adjutant.* (new class objects).
    from adjutant.approvals import ApprovalStore
    from adjutant.launching import Launching, Queued, Refused
    from tests.test_launching import ADMIN, BOB, ROUTES, asker

    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    config = tmp_path / "projects.toml"
    config.write_text(ROUTES)
    settings = Settings.from_env(
        {
            "ADJUTANT_CONFIG": str(config),
            "ADJUTANT_STATE_DIR": str(tmp_path / "state"),
            "ADJUTANT_PRIORITY_ROLES": "high=Admin",
            "ADJUTANT_PREEMPT_LOW": "on",
        }
    )
    jobs, approvals = JobStore(tmp_path / "adjutant.sqlite3"), ApprovalStore(tmp_path / "adjutant.sqlite3")
    scheduler = make(jobs, FakeLauncher(), tmp_path, slots=1)
    launching = Launching(settings, scheduler, approvals, quota_of=lambda member: None, watcher_of=lambda p, e: None)
    try:
        refused = await launching.experiment(asker(settings, BOB, "general"), '--priority high {"lr": 1}')
        assert isinstance(refused, Refused)
        assert refused.text == (
            "Not launched: --priority high is for the roles Admin (ADJUTANT_PRIORITY_ROLES); you may use --priority"
            " normal."
        )
        entry = launching.approvals.entries(1)[0]
        assert (entry.action, entry.actor) == ("refused", "bob") and "--priority high" in (entry.detail or "")
        admin = asker(settings, ADMIN, "bot-admin", sees=("general", "bot-admin"))
        queued = await launching.experiment(admin, '--priority high {"lr": 1}')
        assert isinstance(queued, Queued) and queued.jobs[0].priority == "high"
        low = await launching.experiment(asker(settings, BOB, "general"), '--priority low {"lr": 1}')
        assert isinstance(low, Queued) and low.jobs[0].preemptible, "ADJUTANT_PREEMPT_LOW"
        rerun = await launching.rerun(asker(settings, BOB, "general"), low.jobs[0].id, "--priority high")
        assert isinstance(rerun, Refused) and "ADJUTANT_PRIORITY_ROLES" in rerun.text
        kept = await launching.rerun(asker(settings, BOB, "general"), low.jobs[0].id, "lr=2")
        assert isinstance(kept, Queued) and (kept.jobs[0].priority, kept.jobs[0].preemptible) == ("low", True)
    finally:
        await scheduler.close()
        jobs.close()
        approvals.close()


def test_slurm_gets_the_priority_args(store, tmp_path) -> None:
    from adjutant.launchers.slurm import SlurmLauncher

    launcher = SlurmLauncher(Settings.from_env({"ADJUTANT_SLURM_PRIORITY_ARGS": "high=--qos=high;low=--nice=100"}), "")
    high = store.add(dataclasses.replace(local(priority="high"), backend="slurm"), tmp_path)
    normal = store.add(dataclasses.replace(local(), backend="slurm"), tmp_path)
    assert "--qos=high" in launcher.sbatch_argv(high)
    assert not any(a.startswith(("--qos", "--nice")) for a in launcher.sbatch_argv(normal))


# --- shown where jobs are shown ---------------------------------------------------------------------------------------


def test_the_class_is_shown_in_the_acknowledgement_jobs_and_gpus(store, tmp_path) -> None:
    from adjutant.job_render import ack_embed, jobs_embed
    from adjutant.usage_render import gpu_lines

    low = store.add(local(priority="low", preemptible=True), tmp_path)
    normal = store.add(local(), tmp_path)
    high = store.add(local(priority="high"), tmp_path)
    ack = ack_embed(low, queued_ahead=0, prefix="$")
    assert {"name": "Priority", "value": "low, preemptible", "inline": True} in ack["fields"]
    assert not any(f["name"] == "Priority" for f in ack_embed(normal, queued_ahead=0, prefix="$")["fields"])
    now = dt.datetime.now(dt.UTC)
    queued = jobs_embed([], [low, normal, high], [], now, prefix="$")["fields"][0]["value"].splitlines()
    assert [line.split("`")[1] for line in queued] == [high.id, normal.id, low.id], "in the order they start"
    assert "· high ·" in queued[0] and "· low, preemptible ·" in queued[2]
    running = dataclasses.replace(low, state=JobState.RUNNING, started_at=now, preempted_at=now, preempted_by=high.id)
    (line,) = gpu_lines([0], {0: running}, None, now)
    assert line.endswith(f"low, preemptible, being preempted for {high.id}")


# --- fair share (ADJUTANT_FAIR_SHARE) ---------------------------------------------------------------------------------


def test_fair_share_order() -> None:
    from adjutant.gpus import fair_share_order

    queue = [("a", NORMAL, 10.0, 1), ("b", NORMAL, 0.0, 2), ("c", HIGH, 50.0, 3), ("d", NORMAL, 0.0, 4)]
    assert fair_share_order(queue) == ["c", "b", "d", "a"], "priority, then fewer GPU-hours, then arrival"


async def test_fair_share_starts_the_member_who_used_less_first(store, tmp_path) -> None:
    launcher = FakeLocal(store, grace=1)
    heavy = dataclasses.replace(local(), requested_by_id=7, requested_by="heavy")
    light = dataclasses.replace(local(), requested_by_id=8, requested_by="light")
    used = store.add(heavy, tmp_path)  # heavy used 2 GPU-hours yesterday
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    store.update(
        used.id, state=JobState.SUCCEEDED, started_at=iso(yesterday), ended_at=iso(yesterday + dt.timedelta(hours=2))
    )
    first = store.add(heavy, tmp_path)
    second = store.add(light, tmp_path)
    for fair, starts in ((False, first), (True, second)):
        scheduler = make(store, launcher, tmp_path, slots=1, gpus=(0,), fair_share=fair)
        assert scheduler.gpu_hours_by_member() == {7: pytest.approx(2.0)}
        assert next(j.id for j in scheduler._in_order(store.startable(10))) == starts.id
        await scheduler.close()
    scheduler = make(store, launcher, tmp_path, slots=1, gpus=(0,), fair_share=True)
    await scheduler.run_pass()
    assert store.get(second.id).state == JobState.RUNNING and store.get(first.id).state == JobState.QUEUED
    await scheduler.close()
