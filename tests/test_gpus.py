"""GPUs as the unit of work, without a bot: the queue rule, the scheduler handing out GPU ids (a fake launcher and a
real SQLite file), time limits, usage and quotas, the admission rule, approvals, NVML (the real library, which finds
no driver here, and recorded readings) and the Slurm mapping."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from adjutant.admission import Request, Verdict, admit
from adjutant.approvals import Action, ApprovalState, ApprovalStore
from adjutant.gpus import Holding, QuotaState, Use, Waiting, frees_at, hours_within, plan, quota_state, usage
from adjutant.jobs import ACTIVE, QUEUED_COLUMNS, Job, JobRequest, JobState, JobStore, JobUpdate, Queued, iso
from adjutant.nvml import GpuProcess, GpuReading, NvmlUnavailable, busy_elsewhere, read_gpus
from adjutant.settings import Settings
from adjutant.usage_render import approval_card, gpu_lines, usage_embed
from tests.test_scheduler import FakeLauncher, make, request, settle

NOW = 1_000_000.0


# --- the queue rule (pure) ------------------------------------------------------------------------


def test_jobs_start_in_order_on_the_lowest_free_ids() -> None:
    p = plan([Waiting("a", 2, None), Waiting("b", 1, None)], {3, 1, 0, 2}, [], NOW, slots=8)
    assert p.starts == [("a", (0, 1)), ("b", (2,))]


def test_strict_fifo_lets_nothing_pass_a_waiting_head() -> None:
    queue = [Waiting("big", 4, None), Waiting("small", 1, 60)]
    p = plan(queue, {0, 1}, [Holding(2, NOW + 100)], NOW, slots=8, backfill=False)
    assert p.starts == [] and p.head == "big"


def test_a_small_job_that_ends_before_the_head_can_start_goes_first() -> None:
    queue = [Waiting("big", 4, None), Waiting("short", 1, 60), Waiting("long", 1, 600), Waiting("open", 1, None)]
    p = plan(queue, {0, 1}, [Holding(2, NOW + 100)], NOW, slots=8)
    # big can start at NOW+100 (when the running pair ends); "short" (60 s) ends before that; the others would
    # still hold a GPU big needs then
    assert p.head == "big" and p.head_start == NOW + 100
    assert p.starts == [("short", (0,))]


def test_gpus_the_head_will_not_need_may_be_used_by_anyone() -> None:
    # 8 GPUs: 3 free, 5 held until NOW+100. The head needs 6: at NOW+100, 8 are free, 2 to spare.
    queue = [Waiting("head", 6, None), Waiting("x", 1, None), Waiting("y", 1, None), Waiting("z", 1, None)]
    p = plan(queue, {5, 6, 7}, [Holding(5, NOW + 100)], NOW, slots=8)
    assert [job for job, _ in p.starts] == ["x", "y"]  # two spare GPUs, then z would delay the head


def test_nothing_overtakes_when_the_heads_start_is_unknown() -> None:
    queue = [Waiting("big", 4, None), Waiting("short", 1, 1)]
    p = plan(queue, {0, 1}, [Holding(2, None)], NOW, slots=8)  # the running job has no limit
    assert p.starts == [] and p.head == "big" and p.head_start is None


def test_zero_gpu_jobs_and_slots() -> None:
    queue = [Waiting("big", 4, None), Waiting("cpu", 0, None), Waiting("cpu2", 0, None)]
    p = plan(queue, {0}, [Holding(3, None)], NOW, slots=1)
    assert p.starts == [] and p.head == "big"  # unknown start: even a CPU job waits (it cannot be shown harmless)
    p = plan([Waiting("cpu", 0, None), Waiting("cpu2", 0, None)], set(), [], NOW, slots=1)
    assert p.starts == [("cpu", ())]


def simulate(jobs: list[tuple[int, float, float]], gpus: int, *, backfill: bool) -> dict[int, float]:
    """Discrete events over :func:`plan`: jobs (gpus, runtime, limit) all queued at 0; start time of each."""
    queue = [Waiting(str(i), g, limit) for i, (g, _, limit) in enumerate(jobs)]
    running: dict[str, tuple[tuple[int, ...], float, float]] = {}  # id -> (ids, ends, limit end)
    started: dict[int, float] = {}
    now = 0.0
    free = set(range(gpus))
    while queue or running:
        holding = [Holding(len(ids), limit_end) for ids, _, limit_end in running.values()]
        for job_id, ids in plan(queue, free, holding, now, slots=100, backfill=backfill).starts:
            i = int(job_id)
            free -= set(ids)
            running[job_id] = (ids, now + jobs[i][1], now + jobs[i][2])
            started[i] = now
            queue = [w for w in queue if w.id != job_id]
        if not running:
            break
        job_id = min(running, key=lambda k: running[k][1])
        ids, now, _ = running.pop(job_id)
        free |= set(ids)
    return started


def test_a_four_gpu_job_is_not_starved_by_a_stream_of_one_gpu_jobs() -> None:
    # 4 GPUs busy with 1-GPU jobs; a 4-GPU job arrives; 40 more 1-GPU jobs follow, some short enough to fit before.
    jobs = (
        [(1, 100.0, 100.0)] * 4 + [(4, 50.0, 50.0)] + [(1, 30.0 + (i % 5) * 40, 30.0 + (i % 5) * 40) for i in range(40)]
    )
    started = simulate(jobs, 4, backfill=True)
    assert started[4] == 100.0, "the big job starts as soon as the first four end: nothing that came after delays it"
    assert all(started[i] >= 150.0 for i in range(5, 45)), "none of the stream ran in front of it (no room)"
    fifo = simulate(jobs, 4, backfill=False)
    assert fifo[4] == 100.0


def test_backfilling_uses_gpus_strict_fifo_leaves_idle() -> None:
    rng = random.Random(7)
    jobs = [(rng.choice([1, 1, 2, 4]), rng.uniform(10, 100), 0.0) for _ in range(60)]
    jobs = [(g, run, run * 1.2) for g, run, _ in jobs]
    fifo = simulate(jobs, 8, backfill=False)
    easy = simulate(jobs, 8, backfill=True)

    def makespan(started: dict[int, float]) -> float:
        return max(started[i] + jobs[i][1] for i in started)

    assert makespan(easy) < makespan(fifo)
    # and no job waits longer than under strict FIFO's reservation for the job at the head (EASY's promise) for the
    # first job that had to wait in FIFO
    first_waiting = min(i for i in fifo if fifo[i] > 0)
    assert easy[first_waiting] <= fifo[first_waiting]


# --- the scheduler hands out GPU ids ---------------------------------------------------------------


class RecordingLauncher(FakeLauncher):
    name = "local"

    def __init__(self) -> None:
        super().__init__()
        self.envs: dict[str, dict[str, str]] = {}

    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        self.envs[job.id] = env
        return super().submit(job, env)


def gpu_request(gpus: int, limit: float | None = None, n: int = 0) -> JobRequest:
    return dataclasses.replace(request(n), backend="local", gpus=gpus, time_limit=limit)


@pytest.fixture
def gpu_store(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    yield store
    store.close()


def holders(store: JobStore) -> list[tuple[str, tuple[int, ...]]]:
    return [(j.id, j.gpu_ids) for j in store.where(ACTIVE) if j.gpu_ids]


async def test_concurrent_jobs_never_share_a_gpu(gpu_store, tmp_path) -> None:
    launcher = RecordingLauncher()
    scheduler = make(gpu_store, launcher, tmp_path, slots=8, gpus=(0, 1, 2, 3, 4, 5))
    rng = random.Random(3)
    jobs = [await scheduler.enqueue(gpu_request(rng.choice([1, 2, 3]), n=i)) for i in range(30)]
    for _ in range(200):
        await settle(scheduler)
        held = holders(gpu_store)
        ids = [g for _, gs in held for g in gs]
        assert len(ids) == len(set(ids)), f"a GPU handed out twice: {held}"
        for job_id, gs in held:
            job = gpu_store.get(job_id)
            assert len(gs) == job.gpus
            expected = ",".join(map(str, gs))
            assert launcher.envs[job_id]["CUDA_VISIBLE_DEVICES"] == expected
            assert launcher.envs[job_id]["ADJUTANT_GPUS"] == expected
        running = list(gpu_store.where(ACTIVE))
        if not running and not gpu_store.where((JobState.QUEUED,)):
            break
        ending = rng.choice(running)
        launcher.states[ending.id] = JobUpdate(state=JobState.SUCCEEDED, exit_code=0, ended_at=iso())
        scheduler.wake()
    assert {gpu_store.get(j.id).state for j in jobs} == {JobState.SUCCEEDED}
    assert set(launcher.submitted) == {j.id for j in jobs}


async def test_gpus_are_freed_after_end_cancel_and_loss_and_kept_across_a_restart(gpu_store, tmp_path) -> None:
    launcher = RecordingLauncher()
    scheduler = make(gpu_store, launcher, tmp_path, slots=8, gpus=(0, 1))
    a = await scheduler.enqueue(gpu_request(1))
    b = await scheduler.enqueue(gpu_request(1))
    c = await scheduler.enqueue(gpu_request(2))
    await settle(scheduler)
    assert dict(holders(gpu_store)) == {a.id: (0,), b.id: (1,)}
    await scheduler.close()

    # a restart: a new scheduler on the same file sees the same holders and does not hand their GPUs out again
    launcher2 = RecordingLauncher()
    scheduler = make(gpu_store, launcher2, tmp_path, slots=8, gpus=(0, 1))
    await scheduler.run_pass()
    assert launcher2.submitted == [] and dict(holders(gpu_store)) == {a.id: (0,), b.id: (1,)}

    launcher2.states[a.id] = JobUpdate(state=JobState.SUCCEEDED, exit_code=0, ended_at=iso())  # end
    await scheduler.run_pass()
    assert c.id not in launcher2.submitted, "c needs two GPUs: one is free"
    await scheduler.cancel(b.id, "admin")  # cancel ...
    launcher2.states[b.id] = JobUpdate(state=JobState.CANCELLED, ended_at=iso())
    await scheduler.run_pass()
    await scheduler.run_pass()
    assert dict(holders(gpu_store)) == {c.id: (0, 1)}
    launcher2.states[c.id] = JobUpdate(state=JobState.LOST, reason="gone", ended_at=iso())  # ... and loss
    d = await scheduler.enqueue(gpu_request(2))
    await scheduler.run_pass()
    await settle(scheduler)
    assert dict(holders(gpu_store)) == {d.id: (0, 1)}
    await scheduler.close()


async def test_a_job_without_gpus_sees_none_and_a_job_asking_too_many_fails_with_the_reason(
    gpu_store, tmp_path
) -> None:
    launcher = RecordingLauncher()
    scheduler = make(gpu_store, launcher, tmp_path, slots=8, gpus=(0, 1))
    cpu = await scheduler.enqueue(gpu_request(0))
    huge = await scheduler.enqueue(gpu_request(3))  # ADJUTANT_GPUS shrank after it was queued
    await settle(scheduler)
    assert launcher.envs[cpu.id]["CUDA_VISIBLE_DEVICES"] == ""
    job = gpu_store.get(huge.id)
    assert job.state == JobState.FAILED and "asks for 3 GPUs" in job.reason and "gives out 2" in job.reason
    await scheduler.close()


async def test_others_busy_gpus_are_not_handed_out(gpu_store, tmp_path) -> None:
    launcher = RecordingLauncher()
    asked: list[set[int]] = []

    def busy(ours: set[int]) -> set[int]:
        asked.append(set(ours))
        return {0}

    scheduler = make(gpu_store, launcher, tmp_path, slots=8, gpus=(0, 1), gpus_busy=busy)
    a = await scheduler.enqueue(gpu_request(1))
    b = await scheduler.enqueue(gpu_request(1))
    await settle(scheduler)
    assert dict(holders(gpu_store)) == {a.id: (1,)} and gpu_store.get(b.id).state == JobState.QUEUED
    await scheduler.close()


async def test_a_job_past_its_time_limit_is_stopped_and_says_why(gpu_store, tmp_path) -> None:
    launcher = RecordingLauncher()
    scheduler = make(gpu_store, launcher, tmp_path, slots=8, gpus=(0,))
    job = await scheduler.enqueue(gpu_request(1, limit=60))
    await settle(scheduler)
    gpu_store.update(job.id, started_at=iso(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)))
    await scheduler.run_pass()
    assert launcher.cancelled == []
    gpu_store.update(job.id, started_at=iso(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=61)))
    await scheduler.run_pass()
    assert launcher.cancelled == [job.id]
    stopped = gpu_store.get(job.id)
    assert stopped.state == JobState.CANCELLING and stopped.reason == "stopped at its time limit (1 min)"
    launcher.states[job.id] = JobUpdate(state=JobState.FAILED, exit_code=-15, ended_at=iso())
    await scheduler.run_pass()
    ended = gpu_store.get(job.id)
    assert ended.state == JobState.CANCELLED and ended.reason == "stopped at its time limit (1 min)"
    assert ended.cancelled_by == "its time limit"
    await scheduler.close()


# --- usage and quotas (pure) --------------------------------------------------------------------------

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def use(member: int, gpus: int, start_h: float, end_h: float | None, project: str = "p") -> Use:
    end = None if end_h is None else T0 + dt.timedelta(hours=end_h)
    return Use(member, f"m{member}", project, gpus, T0 + dt.timedelta(hours=start_h), end)


def test_usage_per_member_and_project() -> None:
    uses = [use(1, 2, 0, 3), use(1, 1, 10, 11, "q"), use(2, 4, 2, None), use(3, 1, -5, -1)]
    report = usage(uses, T0, T0 + dt.timedelta(hours=12))
    assert report.members[1].jobs == 2 and report.members[1].gpu_hours == pytest.approx(7.0)
    assert report.members[2].gpu_hours == pytest.approx(40.0)  # still running: counted to the end of the window
    assert 3 not in report.members
    assert report.projects["q"].job_hours == pytest.approx(1.0)
    assert [name for name, _ in report.ranked()] == ["m2", "m1"]
    embed = usage_embed(report, "day")
    assert "m2" in embed["fields"][2]["value"] and "85%" in embed["fields"][2]["value"]


def test_hours_within_clips_to_the_window() -> None:
    assert hours_within(use(1, 1, -2, 2), T0, T0 + dt.timedelta(hours=1)) == pytest.approx(1.0)


def test_quota_warns_at_80_percent_refuses_at_100_and_says_when_it_frees_up() -> None:
    now = T0 + dt.timedelta(days=3)
    uses = [use(1, 2, 0, 4)]  # 8 GPU-hours, three days ago
    assert quota_state(uses, 10, now).warn and not quota_state(uses, 10, now).exceeded
    assert not quota_state(uses, 11, now).warn
    state = quota_state(uses, 8, now)
    assert state.exceeded
    # it frees up when the window no longer holds the whole 8 hours: a moment past T0 + 7 days
    freed = frees_at(uses, 8, now)
    assert T0 + dt.timedelta(days=7) <= freed <= T0 + dt.timedelta(days=7, minutes=2)
    assert frees_at(uses, 100, now) == now


# --- the admission rule -------------------------------------------------------------------------------


def facts(**overrides: Any) -> Request:
    base: dict[str, Any] = {"gpus": 1, "cells": 1, "may_launch": True, "may_request": False, "pool_size": 4}
    return Request(**{**base, **overrides})


@pytest.mark.parametrize(
    ("overrides", "verdict", "text"),
    [
        ({}, Verdict.LAUNCH, ""),
        ({"gpus": 5}, Verdict.REFUSED, "asks for 5 GPUs per job; this machine has 4"),
        ({"gpus": 5, "pool_size": None}, Verdict.APPROVAL, "5 GPUs per job is above 2"),
        ({"gpus": 3}, Verdict.APPROVAL, "3 GPUs per job is above 2 (ADJUTANT_APPROVAL_GPUS)"),
        ({"cells": 9}, Verdict.APPROVAL, "9 jobs is above 8 (ADJUTANT_APPROVAL_JOBS)"),
        ({"may_launch": False, "may_request": True}, Verdict.APPROVAL, "may request launches but not launch"),
        ({"may_launch": False}, Verdict.REFUSED, "not allowed"),
    ],
)
def test_admission(overrides: dict[str, Any], verdict: Verdict, text: str) -> None:
    result = admit(facts(**overrides), approval_gpus=2, approval_jobs=8)
    assert result.verdict == verdict and text in result.text and result.warning is None


def test_admission_quota() -> None:
    frees = T0 + dt.timedelta(days=1)
    over = admit(facts(quota=QuotaState(10.5, 10), quota_frees_at=frees), approval_gpus=None, approval_jobs=None)
    assert over.verdict == Verdict.REFUSED
    assert "used 10.5 of your 10 GPU-hours" in over.text and f"<t:{int(frees.timestamp())}:R>" in over.text
    near = admit(facts(quota=QuotaState(8.5, 10)), approval_gpus=None, approval_jobs=None)
    assert near.verdict == Verdict.LAUNCH and "8.5 of your 10 GPU-hours this week (85%)" in (near.warning or "")


# --- approvals: decided once, jobs queued in the same transaction -------------------------------------------


def test_two_approvers_at_once_queue_the_jobs_once(tmp_path) -> None:
    path = tmp_path / "adjutant.sqlite3"
    JobStore(path).close()
    stores = [ApprovalStore(path) for _ in range(8)]
    requests = [gpu_request(2, n=i) for i in range(3)]
    approval = stores[0].add("sweep", requests, gpus=2, why="3 jobs is above 2")
    assert approval.state == ApprovalState.PENDING and approval.gpu_cost == 6
    barrier = threading.Barrier(8)
    results: list[Any] = [None] * 8

    def click(i: int) -> None:
        barrier.wait()
        results[i] = stores[i].decide(approval.id, i % 2 == 0, 100 + i, f"approver{i}", tmp_path / "logs")

    threads = [threading.Thread(target=click, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    changed = [r for r in results if r.changed]
    assert len(changed) == 1
    jobs = JobStore(path)
    queued = jobs.where((JobState.QUEUED,))
    final = stores[0].get(approval.id)
    if final.state == ApprovalState.APPROVED:
        assert sorted(j.id for j in queued) == sorted(final.job_ids) and len(queued) == 3
        assert all(j.gpus == 2 for j in queued)
    else:
        assert queued == [] and final.job_ids == ()
    assert "Decision" in {f["name"] for f in approval_card(final)["fields"]}
    jobs.close()
    for store in stores:
        store.close()


def test_audit_entries_newest_first_and_by_member(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="adjutant.approvals")
    store = ApprovalStore(tmp_path / "adjutant.sqlite3")
    store.record(Action.LAUNCH, 1, "alice", channel_id=5, target="j1", detail='{"a": 1}')
    store.record(Action.REFUSED, 2, "bob", detail="launch")
    store.record(Action.CANCEL, 1, "alice", target="j1")
    assert [e.action for e in store.entries(10)] == ["cancel", "refused", "launch"]
    assert [e.action for e in store.entries(10, actor_id=1)] == ["cancel", "launch"]
    assert [e.action for e in store.entries(1)] == ["cancel"]
    assert "audit: refused by bob (2)" in caplog.text
    store.close()


# --- NVML -----------------------------------------------------------------------------------------------------------


def test_nvml_on_a_machine_without_a_driver_says_so() -> None:
    with pytest.raises(NvmlUnavailable, match="no NVIDIA GPU or no NVIDIA driver"):
        read_gpus()


async def test_auto_without_nvml_fails_at_startup_and_in_check(tmp_path) -> None:
    # imported here: loading the extension elsewhere in the run makes discord.py re-import adjutant's modules
    from adjutant.doctor import check_gpus
    from adjutant.services import Services
    from adjutant.settings import ConfigError, Settings

    settings = Settings.from_env({"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "ADJUTANT_GPUS": "auto"})
    with pytest.raises(ConfigError, match="ADJUTANT_GPUS=auto: NVML did not start"):
        await Services.open(settings)
    finding = check_gpus(settings)[0]
    assert not finding.ok and "no NVIDIA driver" in finding.message
    # the failed start released the state folder: an Adjutant without ADJUTANT_GPUS starts on it
    services = await Services.open(Settings.from_env({"ADJUTANT_STATE_DIR": str(tmp_path / "state")}))
    assert services.scheduler.gpus is None and services.scheduler.max_concurrent == 1
    await services.close_if_unused()


async def test_the_gpu_list_sets_one_job_per_gpu_unless_max_concurrent_says(tmp_path) -> None:
    from adjutant.services import Services

    env = {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "ADJUTANT_GPUS": "0,1,2"}
    services = await Services.open(Settings.from_env(env))
    assert (services.scheduler.gpus, services.scheduler.max_concurrent) == ((0, 1, 2), 3)
    assert services.settings.job_gpus == 1
    await services.close_if_unused()
    services = await Services.open(Settings.from_env({**env, "ADJUTANT_MAX_CONCURRENT": "2"}))
    assert services.scheduler.max_concurrent == 2
    await services.close_if_unused()


RECORDED = [
    GpuReading(0, "NVIDIA A100", 97.0, 30_000, 40_960, 71.0, (GpuProcess(4242, 29_000, 4242),)),
    GpuReading(1, "NVIDIA A100", 0.0, 2_048, 40_960, 35.0, (GpuProcess(777, 2_000, 777),)),
    GpuReading(2, "NVIDIA A100", None, 10, 40_960, None, ()),
]


def test_gpu_lines_from_recorded_readings(gpu_store) -> None:
    job = gpu_store.add(gpu_request(1), Path("/tmp"))
    job = Job(**{**job.__dict__, "started_at": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5), "pgid": 4242})
    lines = gpu_lines((0, 1, 2), {0: job}, RECORDED, dt.datetime.now(dt.UTC), adjutant_pgids={4242}, busy_mb=1024)
    assert lines[0].startswith(f"**GPU 0** · `{job.id}` by admin · 5m") and "97% · 29.3/40 GiB · 71°C" in lines[0]
    assert "not Adjutant's" not in lines[0]
    assert lines[1].startswith("**GPU 1** · busy outside Adjutant") and "not Adjutant's: pid 777 (2.0 GiB)" in lines[1]
    assert lines[2] == "**GPU 2** · free · ? · 0.0/40 GiB"
    assert busy_elsewhere(RECORDED, {0}, 1024) == {1}
    assert busy_elsewhere(RECORDED, {0}, 4096) == set()


# --- Slurm and Ray get the count ------------------------------------------------------------------------------------


def test_slurm_maps_gpus_and_time_limit(gpu_store, tmp_path) -> None:
    from adjutant.launchers.slurm import SlurmLauncher, allocated_gpus

    launcher = SlurmLauncher(Settings.from_env({"ADJUTANT_SLURM_GRES": "gpu:1", "ADJUTANT_SLURM_TIME": "10"}), "")
    job = gpu_store.add(gpu_request(2, limit=5400), tmp_path)
    argv = launcher.sbatch_argv(job)
    assert argv.index("--gres=gpu:2") > argv.index("--gres=gpu:1"), "the launch's own count comes last (it wins)"
    assert argv.index("--time=90") > argv.index("--time=10")
    plain_job = gpu_store.add(gpu_request(0), tmp_path)
    assert "--gres=gpu:1" in launcher.sbatch_argv(plain_job) and not any(
        a.startswith("--gres=gpu:0") for a in launcher.sbatch_argv(plain_job)
    )
    assert allocated_gpus("cpu=2,mem=1G,node=1,billing=2,gres/gpu=2") == 2
    assert allocated_gpus("cpu=1,mem=500M,node=1") is None


def test_a_jobs_gpus_used_prefer_what_slurm_allocated(gpu_store, tmp_path) -> None:
    job = gpu_store.add(gpu_request(1), tmp_path)
    assert gpu_store.get(job.id).gpus_used == 1
    gpu_store.update(job.id, gpus_allocated=2)
    assert gpu_store.get(job.id).gpus_used == 2


def test_usage_rows_cover_jobs_that_ran_in_the_window(gpu_store, tmp_path) -> None:
    old, recent, running, queued = (gpu_store.add(gpu_request(1, n=i), tmp_path) for i in range(4))
    now = dt.datetime.now(dt.UTC)
    gpu_store.update(old.id, started_at=iso(now - dt.timedelta(days=9)), ended_at=iso(now - dt.timedelta(days=8)))
    gpu_store.update(recent.id, started_at=iso(now - dt.timedelta(days=2)), ended_at=iso(now - dt.timedelta(days=1)))
    gpu_store.update(running.id, started_at=iso(now - dt.timedelta(hours=1)), state=JobState.RUNNING)
    assert {j.id for j in gpu_store.uses(now - dt.timedelta(days=7))} == {recent.id, running.id}
    assert queued.id not in {j.id for j in gpu_store.uses(now - dt.timedelta(days=30))}


async def test_a_pass_over_1000_queued_jobs_reads_only_the_queues_columns(gpu_store, tmp_path, monkeypatch) -> None:
    """After a job ends the pass plans the whole queue: it reads the queue's columns, and a full job only for the
    jobs it starts (a full Job a queued row made the pass ~40 ms at 1,000 queued: issue 27)."""
    launcher = RecordingLauncher()
    scheduler = make(gpu_store, launcher, tmp_path, slots=8, gpus=(0, 1))
    gpu_store.add_many([gpu_request(1 + i % 2, 3600.0, i) for i in range(1000)], tmp_path)
    await scheduler.run_pass()
    (ending, _), *_ = holders(gpu_store)
    built: list[str] = []
    from_row = Job.from_row.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Job, "from_row", classmethod(lambda cls, row: built.append(row["id"]) or from_row(cls, row)))
    statements: list[str] = []
    gpu_store.database._db.set_trace_callback(statements.append)
    launcher.states[ending] = JobUpdate(state=JobState.SUCCEEDED, exit_code=0, ended_at=iso())
    await scheduler.run_pass()
    gpu_store.database._db.set_trace_callback(None)
    monkeypatch.undo()

    started = {job_id for job_id, _ in holders(gpu_store)} - {ending}
    assert started and set(launcher.submitted) >= started, "the pass started the next job"
    still_queued = {j.id for j in gpu_store.where((JobState.QUEUED,))}
    assert len(still_queued) > 990 and not still_queued & set(built), "a queued job was read in full"
    reads = [s for s in statements if "FROM jobs WHERE state='queued' AND held=0 ORDER BY" in s]  # the queue
    assert reads and all(s.startswith(f"SELECT {QUEUED_COLUMNS} FROM jobs") for s in reads), reads
    assert all(type(j) is Queued for j in gpu_store.queue())
    await scheduler.close()
