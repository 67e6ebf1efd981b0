"""The scheduler service on its own: a fake launcher, a real SQLite file, no bot."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import subprocess
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adjutant.alerts import JOBS_OUTBOX
from adjutant.jobs import Job, JobRequest, JobState, JobStore, JobUpdate, iso
from adjutant.launchers import Launcher, LaunchError
from adjutant.launchers.slurm import SlurmLauncher
from adjutant.scheduler import CancelOutcome, Scheduler
from adjutant.settings import Settings
from adjutant.store import Store


class FakeLauncher(Launcher):
    """Records what the scheduler asks; the test decides what the backend says."""

    name = "fake"

    def __init__(self) -> None:
        super().__init__(Settings.from_env({}), "")
        self.submitted: list[str] = []
        self.cancelled: list[str] = []
        self.escalated: list[str] = []
        self.states: dict[str, JobUpdate] = {}
        self.gate: threading.Event | None = None  # when set, submit() blocks until the test opens it
        self.refuse: set[str] = set()

    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        if self.gate is not None:
            self.gate.wait(10)
        if job.id in self.refuse:
            raise LaunchError("the backend said no")
        self.submitted.append(job.id)
        return JobUpdate(external_id=f"ext-{job.id}", external_state="PENDING", state=JobState.RUNNING)

    def refresh(self, job: Job) -> JobUpdate | None:
        return self.states.pop(job.id, None)

    def cancel(self, job: Job) -> None:
        self.cancelled.append(job.id)

    def escalate(self, job: Job) -> None:
        self.escalated.append(job.id)


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    yield store
    store.close()


def make(
    store: JobStore, launcher: Launcher, tmp_path: Path, *, slots: int = 2, grace: float = 30, **options: Any
) -> Scheduler:
    return Scheduler(
        store,
        lambda backend: launcher,
        log_dir=tmp_path / "logs",
        max_concurrent=slots,
        cancel_grace_seconds=grace,
        environment=lambda job: {"ADJUTANT_JOB_ID": job.id},
        **options,
    )


def request(n: int = 0, **extra: Any) -> JobRequest:
    return JobRequest(
        params={"n": n},
        script="/bin/true",
        requested_by_id=1,
        requested_by="admin",
        channel_id=10,
        message_id=20,
        backend="fake",
        **extra,
    )


async def settle(scheduler: Scheduler) -> None:
    """Let woken passes run to their end."""
    for _ in range(100):
        await asyncio.sleep(0.01)
        task = scheduler._pass_task
        if task is None or task.done():
            return


async def test_enqueue_records_and_answers_without_waiting_for_the_backend(store, launcher, tmp_path) -> None:
    launcher.gate = threading.Event()  # the backend hangs
    scheduler = make(store, launcher, tmp_path)
    job = await asyncio.wait_for(scheduler.enqueue(request()), 2)
    assert job.state == JobState.QUEUED
    assert store.get(job.id) is not None
    assert await asyncio.wait_for(scheduler.jobs_ahead(job), 2) == 0  # answering does not wait either
    launcher.gate.set()
    await settle(scheduler)
    assert launcher.submitted == [job.id]
    assert store.get(job.id).state == JobState.RUNNING


async def test_slots_are_filled_in_order_and_refilled_when_a_job_ends(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path, slots=2)
    jobs = [await scheduler.enqueue(request(i)) for i in range(5)]
    await settle(scheduler)
    assert launcher.submitted == [jobs[0].id, jobs[1].id]
    assert await scheduler.jobs_ahead(jobs[4]) == 4  # 2 running + 2 queued before it
    launcher.states[jobs[0].id] = JobUpdate(state=JobState.SUCCEEDED, exit_code=0, ended_at=iso())
    await scheduler.run_pass()
    assert launcher.submitted == [jobs[0].id, jobs[1].id, jobs[2].id]
    assert store.get(jobs[0].id).exit_code == 0


async def test_a_launcher_wake_from_another_thread_fills_the_slot_at_once(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path, slots=1)
    first = await scheduler.enqueue(request(1))
    second = await scheduler.enqueue(request(2))
    await settle(scheduler)
    assert launcher.submitted == [first.id]
    launcher.states[first.id] = JobUpdate(state=JobState.FAILED, exit_code=3, ended_at=iso())
    threading.Thread(target=scheduler.launcher("fake").on_change).start()  # what a reaper thread does
    await settle(scheduler)
    await settle(scheduler)
    assert launcher.submitted == [first.id, second.id]


async def test_a_refused_submission_fails_the_job_with_the_reason(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path)
    job = await scheduler.enqueue(request())
    launcher.refuse.add(job.id)
    await settle(scheduler)
    failed = store.get(job.id)
    assert failed.state == JobState.FAILED and failed.reason == "the backend said no"


async def test_cancel_queued_running_and_escalation(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path, slots=1, grace=0.1)
    running = await scheduler.enqueue(request(1))
    queued = await scheduler.enqueue(request(2))
    await settle(scheduler)
    result = await scheduler.cancel(queued.id, "admin")
    assert result.outcome == CancelOutcome.DEQUEUED and store.get(queued.id).state == JobState.CANCELLED
    result = await scheduler.cancel(running.id, "admin")
    assert result.outcome == CancelOutcome.STOPPING and launcher.cancelled == [running.id]
    assert (await scheduler.cancel(running.id, "admin")).outcome == CancelOutcome.ALREADY_CANCELLING
    await asyncio.sleep(0.2)
    await scheduler.run_pass()
    assert launcher.escalated == [running.id]  # still running after the grace period: forced
    await scheduler.run_pass()
    assert launcher.escalated == [running.id]  # once
    assert (await scheduler.cancel("jnothere", "admin")).outcome == CancelOutcome.UNKNOWN
    launcher.states[running.id] = JobUpdate(state=JobState.CANCELLED, ended_at=iso())
    await scheduler.run_pass()
    assert (await scheduler.cancel(running.id, "admin")).outcome == CancelOutcome.ALREADY_ENDED


async def test_a_lost_job_is_recorded_and_cleaned_up(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path)
    job = await scheduler.enqueue(request())
    await settle(scheduler)
    launcher.states[job.id] = JobUpdate(state=JobState.LOST, reason="node died", ended_at=iso())
    await scheduler.run_pass()
    lost = store.get(job.id)
    assert lost.state == JobState.LOST and lost.reason == "node died"
    assert launcher.escalated == [job.id]


async def test_end_reports_wait_for_the_acknowledgement(store, launcher, tmp_path) -> None:
    """A job that ends before its acknowledgement exists is reported only after it (in its thread)."""
    scheduler = make(store, launcher, tmp_path)
    job = await scheduler.enqueue(request())
    await settle(scheduler)
    launcher.states[job.id] = JobUpdate(state=JobState.SUCCEEDED, exit_code=0, ended_at=iso())
    await scheduler.run_pass()
    assert await scheduler.reports_due() == []
    await scheduler.acknowledged(job.id, ack_id=555, thread_id=777)
    due = await scheduler.reports_due()
    assert [(j.id, j.ack_id, j.thread_id) for j in due] == [(job.id, 555, 777)]
    await scheduler.reported(job.id, 999)
    assert await scheduler.reports_due() == []
    assert store.get(job.id).report_id == 999


async def test_wait_for_change_wakes_on_an_end(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path)
    job = await scheduler.enqueue(request())
    await settle(scheduler)
    await scheduler.wait_for_change(0.01)  # the start itself was a change
    waiter = asyncio.create_task(scheduler.wait_for_change(10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    launcher.states[job.id] = JobUpdate(state=JobState.SUCCEEDED, exit_code=0, ended_at=iso())
    await scheduler.run_pass()
    await asyncio.wait_for(waiter, 1)


async def test_a_sweep_is_recorded_in_one_transaction(store, launcher, tmp_path) -> None:
    """All cells or none: a failure while recording the 3rd of 4 cells leaves no job behind."""
    scheduler = make(store, launcher, tmp_path)
    cells = [request(i, sweep_id="sweep-1", acked=True) for i in range(4)]
    cells[2] = JobRequest(**{**cells[2].__dict__, "params": {"bad": object()}})  # cannot be serialised
    with pytest.raises(TypeError):
        await scheduler.enqueue_many(cells)
    assert store.recent(10) == []
    jobs = await scheduler.enqueue_many([request(i, sweep_id="sweep-2", acked=True) for i in range(4)])
    assert len(jobs) == 4 and {j.sweep_id for j in store.recent(10)} == {"sweep-2"}
    assert all(j.acked for j in jobs)


def test_an_old_database_gets_the_new_columns(tmp_path: Path) -> None:
    """A jobs table made by the first release is migrated in place; its rows count as acknowledged."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, state TEXT NOT NULL,"
        " params TEXT NOT NULL, script TEXT NOT NULL, requested_by_id INTEGER NOT NULL, requested_by TEXT NOT NULL,"
        " channel_id INTEGER, message_id INTEGER, ack_id INTEGER, sweep_id TEXT, wandb_run_id TEXT NOT NULL,"
        " log_path TEXT NOT NULL, supervisor_pid INTEGER, pid INTEGER, pgid INTEGER, exit_code INTEGER, reason TEXT,"
        " created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT, cancel_requested_at TEXT, cancelled_by TEXT,"
        " killed_at TEXT, reported INTEGER NOT NULL DEFAULT 0, backend TEXT NOT NULL DEFAULT 'local',"
        " external_id TEXT, external_state TEXT, thread_id INTEGER)"
    )
    db.execute(
        "INSERT INTO jobs (id, state, params, script, requested_by_id, requested_by, wandb_run_id, log_path,"
        " created_at) VALUES ('jold001', 'succeeded', '{}', '/bin/true', 1, 'a', 'r', '/tmp/l', ?)",
        (iso(),),
    )
    db.commit()
    db.close()
    store = JobStore(path)
    old = store.get("jold001")
    assert old is not None and old.acked and old.report_id is None and old.state == JobState.SUCCEEDED
    store.close()


async def test_a_lost_job_is_retried_once_and_the_decision_is_made_once(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path, retries=1)
    job = await scheduler.enqueue(request())
    await settle(scheduler)
    running = await scheduler.get(job.id)
    assert running is not None and running.state == JobState.RUNNING
    launcher.states[job.id] = JobUpdate(state=JobState.LOST, reason="node died", ended_at=iso())
    await scheduler.run_pass()
    await settle(scheduler)
    again = await scheduler.get(job.id)
    assert again is not None and again.attempt == 2 and again.state == JobState.RUNNING
    assert launcher.submitted == [job.id, job.id] and launcher.escalated == [job.id]
    assert not await asyncio.to_thread(store.retry, running, "again", {}, iso_now()), "attempt 1 is decided already"
    runs = Store(tmp_path / "adjutant.sqlite3")
    assert [i.event for i in runs.pending(JOBS_OUTBOX, 10)] == ["retry"], "one note for one retry"
    runs.close()
    launcher.states[job.id] = JobUpdate(state=JobState.LOST, reason="node died again", ended_at=iso())
    await scheduler.run_pass()
    final = await scheduler.get(job.id)
    assert final is not None and final.state == JobState.LOST and final.attempt == 2, "at most ADJUTANT_RETRIES"
    await scheduler.close()


async def test_exit_codes_listed_are_retried_and_others_are_not(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path, retries=1, retry_on_exit=(137,))
    oom, bug = await scheduler.enqueue(request(1)), await scheduler.enqueue(request(2))
    await settle(scheduler)
    launcher.states[oom.id] = JobUpdate(state=JobState.FAILED, exit_code=137, ended_at=iso())
    launcher.states[bug.id] = JobUpdate(state=JobState.FAILED, exit_code=1, ended_at=iso())
    await scheduler.run_pass()
    await settle(scheduler)
    retried, failed = await scheduler.get(oom.id), await scheduler.get(bug.id)
    assert retried is not None and retried.attempt == 2 and "exit code 137" in (retried.retried_because or "")
    assert failed is not None and failed.state == JobState.FAILED and failed.attempt == 1
    for job in (oom, bug):
        await scheduler.acknowledged(job.id, ack_id=None)
    assert [j.id for j in await scheduler.reports_due()] == [bug.id], "a retried job is not reported"
    await scheduler.close()


def iso_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_a_held_sweep_starts_again_on_resume_and_is_decided_once(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path, slots=2)
    jobs = await scheduler.enqueue_many([request(i, sweep_id="sweep-abc") for i in range(5)])
    await settle(scheduler)
    for job in jobs[:2]:
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(job.log_path).write_text("epoch 1\nValueError: bad shape\n[adjutant 2026] job ended: exit code 1\n")
        launcher.states[job.id] = JobUpdate(state=JobState.FAILED, exit_code=1, ended_at=iso())
    await scheduler.run_pass()
    await settle(scheduler)
    assert len(launcher.submitted) == 2, "the three queued cells are held"
    assert (
        await asyncio.to_thread(store.hold_sweep, jobs[0], "1\nValueError: bad shape", {"description": ""}, iso_now())
        == 0
    )
    assert await scheduler.decide_sweep("sweep-abc", "resumed", "admin") == ("held", 3)
    await settle(scheduler)
    await scheduler.run_pass()
    await settle(scheduler)
    assert len(launcher.submitted) == 4, "resumed: they start into the free slots"
    assert await scheduler.decide_sweep("sweep-abc", "dropped", "admin") == ("resumed", 0)
    await scheduler.close()


async def test_a_canary_releases_its_sweep_at_its_step_and_only_once(store, launcher, tmp_path) -> None:
    scheduler = make(store, launcher, tmp_path, slots=4)
    steps: dict[str, float] = {}
    scheduler.progress_of = lambda job: steps.get(job.id)
    jobs = await scheduler.enqueue_many([request(i, sweep_id="sweep-can") for i in range(3)], canary=True)
    await settle(scheduler)
    assert launcher.submitted == [jobs[0].id], "the canary runs alone"
    steps[jobs[0].id] = 9
    await scheduler.run_pass()
    assert len(launcher.submitted) == 1, "step 9 < 10"
    steps[jobs[0].id] = 10
    await scheduler.run_pass()
    await settle(scheduler)
    assert sorted(launcher.submitted) == sorted(j.id for j in jobs), "released at step 10"
    await scheduler.run_pass()
    runs = Store(tmp_path / "adjutant.sqlite3")
    notes = [i.payload["title"] for i in runs.pending(JOBS_OUTBOX, 10)]
    runs.close()
    assert notes == [f"🐤 Sweep sweep-can: canary {jobs[0].id} reached step 10"], "told once"
    await scheduler.close()


def test_slurm_durations_memory_and_growth() -> None:
    from adjutant.launchers.slurm import grow_time, parse_memory_mb, parse_minutes, parse_scontrol

    assert [parse_minutes(t) for t in ("1", "1:30", "01:00:00", "2-00", "1-02:03", "1-00:00:30", "UNLIMITED")] == [
        1,
        1.5,
        60,
        2880,
        1563,
        1440.5,
        None,
    ]
    assert grow_time(1, None) == ("1", "2") and grow_time(60, 80) == ("60", "80") and grow_time(60, 60) is None
    # a job Slurm ended OUT_OF_MEMORY, as `scontrol show job -o` records it
    recorded = (
        "JobId=41 JobName=adjutant-j4k2mnp UserId=root(0) JobState=OUT_OF_MEMORY Reason=OutOfMemory ExitCode=0:125"
        " RunTime=00:00:07 TimeLimit=00:10:00 Partition=debug NumCPUs=1 MinMemoryNode=1536M TRES=cpu=1,mem=1536M"
    )
    fields = parse_scontrol(recorded)
    assert fields["JobState"] == "OUT_OF_MEMORY" and parse_memory_mb(fields["MinMemoryNode"]) == 1536
    assert [parse_memory_mb(t) for t in ("2G", "512", "1.5G", "junk")] == [2048, 512, 1536, None]


def test_sbatch_takes_a_remediation_last(tmp_path) -> None:
    from adjutant.launchers.slurm import SlurmLauncher

    settings = Settings.from_env({"ADJUTANT_SLURM_TIME": "1", "ADJUTANT_SLURM_ARGS": "--mem=1G"})
    store = JobStore(tmp_path / "adjutant.sqlite3")
    job = store.add(request(), tmp_path)
    store.close()
    argv = SlurmLauncher(settings, "").sbatch_argv(replace(job, overrides={"time": "2", "mem": "1536M"}))
    assert "--time=1" not in argv and argv.index("--mem=1536M") > argv.index("--mem=1G") and "--time=2" in argv


async def test_out_of_memory_on_slurm_runs_once_more_with_half_again_the_memory(store, tmp_path) -> None:
    """The test cluster cannot enforce memory (no cgroups), so Slurm's own recorded answers for an OUT_OF_MEMORY job
    stand in for it: the scheduler submits the job once more with 1.5 times the --mem, and a second OOM ends it."""
    import subprocess as sp

    from adjutant.launchers.slurm import SlurmLauncher

    recorded = {
        "job": "JobId=41 JobName=adjutant-x JobState=OUT_OF_MEMORY Reason=OutOfMemory ExitCode=0:125"
        " StartTime=2026-11-30T10:00:00 EndTime=2026-11-30T10:00:07 TimeLimit=00:10:00 Partition=debug"
        " MinMemoryNode=1536M",
        "partition": "PartitionName=debug MaxTime=INFINITE State=UP",
        # the same job in the batch's squeue -O (exit_code is the raw wait status)
        "squeue": "{id}|OUT_OF_MEMORY|OutOfMemory|125|2026-11-30T10:00:00|2026-11-30T10:00:07|cpu=1,mem=1536M,node=1|",
    }
    submitted: list[list[str]] = []

    class RecordedSlurm(SlurmLauncher):
        def _run(self, argv: list[str], env: dict[str, str] | None = None) -> sp.CompletedProcess[str]:
            if argv[0] == "sbatch":
                submitted.append(argv)
                return sp.CompletedProcess(argv, 0, f"{40 + len(submitted)}\n", "")
            if argv[0] == "squeue":
                asked = argv[argv.index("-j") + 1].split(",")
                return sp.CompletedProcess(argv, 0, "".join(recorded["squeue"].format(id=i) + "\n" for i in asked), "")
            return sp.CompletedProcess(argv, 0, recorded["partition" if "partition" in argv else "job"] + "\n", "")

    launcher = RecordedSlurm(Settings.from_env({"ADJUTANT_SLURM_ARGS": "--mem=1536M"}), "")
    scheduler = make(store, launcher, tmp_path, slots=1, retries=0)
    job = await scheduler.enqueue(replace(request(), backend="slurm"))
    await settle(scheduler)
    await scheduler.run_pass()  # attempt 1 ended OUT_OF_MEMORY: remedied
    await settle(scheduler)
    again = await scheduler.get(job.id)
    assert again is not None and again.attempt == 2 and again.overrides == {"mem": "2304M"}
    assert "--mem=2304M" in submitted[-1] and submitted[-1].index("--mem=2304M") > submitted[-1].index("--mem=1536M")
    await scheduler.run_pass()  # attempt 2 ended OUT_OF_MEMORY too: the end stands
    final = await scheduler.get(job.id)
    assert final is not None and final.state == JobState.FAILED and final.attempt == 2 and len(submitted) == 2
    runs = Store(tmp_path / "adjutant.sqlite3")
    titles = [i.payload["title"] for i in runs.pending(JOBS_OUTBOX, 10)]
    runs.close()
    assert titles == [
        f"🩹 Job {job.id}: OUT\\_OF\\_MEMORY; running again with more",  # escaped for markdown
        f"🛑 Job {job.id}: OUT\\_OF\\_MEMORY again",
    ]
    await scheduler.close()


def test_ray_messages_that_mean_the_node_died_make_a_lost_job() -> None:
    from adjutant.launchers.ray import lost_on_ray

    assert lost_on_ray("Unexpected error occurred: The actor died because its node has died. Node Id: 1a2b")
    assert lost_on_ray("Job supervisor actor died: the raylet on node 10.0.0.3 is dead")
    assert not lost_on_ray("Job entrypoint command failed with exit code 3, last available logs: ...")
    assert not lost_on_ray("Job was stopped by the user")


async def test_a_cancel_that_overtakes_a_launchers_news_wins(store, launcher, tmp_path) -> None:
    """The pass read the job before a cancel and brings "running", then "failed (stopped elsewhere)": the row says
    cancelling, so it stays cancelling, then ends cancelled."""
    scheduler = make(store, launcher, tmp_path)
    job = await scheduler.enqueue(request())
    await settle(scheduler)
    assert store.update(job.id, state=JobState.CANCELLING, cancel_requested_at=iso(), cancelled_by="admin")
    assert store.record_news(job.id, JobUpdate(state=JobState.RUNNING, started_at=iso()))
    assert (store.get(job.id) or job).state == JobState.CANCELLING
    assert store.record_news(job.id, JobUpdate(state=JobState.FAILED, reason="stopped elsewhere", ended_at=iso()))
    ended = store.get(job.id)
    assert ended is not None and ended.state == JobState.CANCELLED and ended.reason is None
    assert not store.record_news(job.id, JobUpdate(state=JobState.RUNNING)), "an ended job takes no news"
    await scheduler.close()


# --- backends asked once per pass -------------------------------------------------------------------------------------


class SimulatedSlurm(SlurmLauncher):
    """A Slurm controller in a dict, answering ``squeue``/``sacct``/``scontrol``/``sbatch`` in the formats the real
    single-node Slurm printed (tests/slurm); every call is counted, and the batches' clock is the test's."""

    def __init__(self) -> None:
        super().__init__(Settings.from_env({}), "")
        self.calls: Counter[str] = Counter()
        #: Slurm id → (state, reason, raw wait status as squeue prints it, start, end, AllocTRES)
        self.queue: dict[str, tuple[str, str, int, str, str, str]] = {}
        #: Slurm id → its line in the job completion log (sacct -c), for jobs the controller has forgotten
        self.completion_log: dict[str, str] = {}
        self.down = False
        self.now = 1000.0
        self.clock = lambda: self.now
        self._next_id = 100

    def set(self, slurm_id: str, state: str, reason: str = "None", status: int = 0, tres: str = "cpu=1,node=1") -> None:
        ended = state not in ("PENDING", "RUNNING")
        self.queue[slurm_id] = (
            state,
            reason,
            status,
            "2026-12-07T10:00:00",
            "2026-12-07T10:00:05" if ended else "N/A",
            tres,
        )

    def forget(self, slurm_id: str) -> None:
        """The controller purged the job (MinJobAge); only the completion log knows it."""
        state, _, status, start, end, tres = self.queue.pop(slurm_id)
        self.completion_log[slurm_id] = f"{slurm_id}|{state}|{status >> 8}:{status & 0x7F}|{start}|{end}|{tres}"

    def _run(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        self.calls[argv[0]] += 1
        if self.down:
            return subprocess.CompletedProcess(
                argv, 1, "", f"{argv[0]}: error: Unable to contact slurm controller (connect failure)\n"
            )
        if argv[0] == "sbatch":
            self._next_id += 1
            self.set(str(self._next_id), "PENDING")
            return subprocess.CompletedProcess(argv, 0, f"{self._next_id}\n", "")
        if argv[0] == "squeue":
            asked = argv[argv.index("-j") + 1].split(",")
            lines = [f"{key}|{'|'.join(map(str, self.queue[key]))}|\n" for key in asked if key in self.queue]
            if not lines:
                return subprocess.CompletedProcess(argv, 1, "", "slurm_load_jobs error: Invalid job id specified\n")
            return subprocess.CompletedProcess(argv, 0, "".join(lines), "")
        if argv[0] == "sacct":
            asked = argv[argv.index("-j") + 1].split(",")
            lines = [self.completion_log[key] + "\n" for key in asked if key in self.completion_log]
            return subprocess.CompletedProcess(argv, 0, "".join(lines), "")
        if argv[:3] == ["scontrol", "show", "job"]:
            key = argv[-1]
            if key not in self.queue:
                return subprocess.CompletedProcess(argv, 1, "", "slurm_load_jobs error: Invalid job id specified\n")
            state, reason, status, start, end, tres = self.queue[key]
            line = (
                f"JobId={key} JobName=adjutant-x JobState={state} Reason={reason}"
                f" ExitCode={status >> 8}:{status & 0x7F}"
                f" StartTime={start} EndTime={end} Partition=debug AllocTRES={tres}"
            )
            return subprocess.CompletedProcess(argv, 0, line + "\n", "")
        if argv[0] == "scancel":
            return subprocess.CompletedProcess(argv, 0, "", "")
        raise AssertionError(f"unexpected Slurm call {argv}")


async def slurm_jobs(store: JobStore, slurm: SimulatedSlurm, tmp_path: Path, count: int) -> tuple[Scheduler, list[Job]]:
    """``count`` jobs submitted to the simulated Slurm and running there; the counter reset."""
    scheduler = make(store, slurm, tmp_path, slots=count, retries=0)
    jobs = [await scheduler.enqueue(replace(request(i), backend="slurm")) for i in range(count)]
    await settle(scheduler)
    assert slurm.calls["sbatch"] == count
    for key in list(slurm.queue):
        slurm.set(key, "RUNNING")
    slurm.now += slurm.batch_seconds
    await scheduler.run_pass()
    assert all(store.get(job.id).state == JobState.RUNNING for job in jobs)
    slurm.calls.clear()
    return scheduler, [store.get(job.id) for job in jobs]


async def test_a_pass_asks_slurm_once_for_all_its_jobs_not_once_per_job(store, tmp_path) -> None:
    """10 active Slurm jobs: one squeue per batch (not 10 scontrol), passes within a batch's 2 s ask nothing, an end
    is seen by the next batch, and only the jobs the controller forgot go to sacct, all in one call."""
    slurm = SimulatedSlurm()
    scheduler, jobs = await slurm_jobs(store, slurm, tmp_path, 10)
    slurm.now += slurm.batch_seconds
    await scheduler.run_pass()
    assert slurm.calls == Counter({"squeue": 1}), "one squeue for 10 jobs"
    for _ in range(3):  # passes every second or sooner (a wake): answered from the batch
        slurm.now += slurm.batch_seconds / 4
        await scheduler.run_pass()
    assert slurm.calls == Counter({"squeue": 1})
    slurm.calls.clear()
    ids = [job.external_id for job in jobs]
    slurm.set(ids[0], "COMPLETED")
    slurm.set(ids[1], "FAILED", "NonZeroExitCode", 768)
    slurm.set(ids[2], "FAILED", "NonZeroExitCode", 768)
    slurm.forget(ids[2])  # purged from the controller: sacct's completion log has it
    slurm.set(ids[3], "NODE_FAIL", "None", 0)
    slurm.forget(ids[3])
    slurm.queue.pop(ids[4])  # known to neither
    slurm.now += slurm.batch_seconds
    await scheduler.run_pass()
    assert slurm.calls == Counter({"squeue": 1, "sacct": 1}), "the forgotten ones in one sacct"
    got = [store.get(job.id) for job in jobs]
    assert [(j.state, j.exit_code) for j in got[:5]] == [
        (JobState.SUCCEEDED, 0),
        (JobState.FAILED, 3),
        (JobState.FAILED, 3),
        (JobState.FAILED, 0),
        (JobState.LOST, None),
    ]
    assert got[3].reason == "Slurm says NODE_FAIL" and got[4].reason == f"Slurm no longer knows job {ids[4]}"
    assert all(j.state == JobState.RUNNING for j in got[5:])
    slurm.calls.clear()
    await scheduler.enqueue(replace(request(99), backend="slurm"))  # a new job within the batch's time
    await settle(scheduler)
    await scheduler.run_pass()
    assert slurm.calls == Counter({"sbatch": 1, "squeue": 1}), "a job the batch did not include is asked at once"
    await scheduler.close()


@pytest.mark.parametrize(
    ("state", "reason", "status", "row"),
    [  # as the single-node Slurm printed them (squeue -O exit_code, scontrol ExitCode)
        ("PENDING", "Resources", 0, JobState.STARTING),
        ("RUNNING", "None", 0, JobState.STARTING),
        ("COMPLETING", "None", 0, JobState.RUNNING),
        ("COMPLETED", "None", 0, JobState.RUNNING),
        ("FAILED", "NonZeroExitCode", 768, JobState.RUNNING),
        ("FAILED", "JobLaunchFailure", 53, JobState.RUNNING),
        ("TIMEOUT", "TimeLimit", 15, JobState.RUNNING),
        ("OUT_OF_MEMORY", "OutOfMemory", 125, JobState.RUNNING),
        ("CANCELLED", "None", 15, JobState.CANCELLING),
        ("CANCELLED", "None", 15, JobState.RUNNING),
        ("NODE_FAIL", "None", 0, JobState.RUNNING),
        ("PREEMPTED", "None", 0, JobState.RUNNING),
        ("BOOT_FAIL", "None", 0, JobState.STARTING),
        ("DEADLINE", "None", 0, JobState.RUNNING),
    ],
)
def test_the_batch_says_what_scontrol_said(store, tmp_path, state, reason, status, row) -> None:
    """Every state mapping of the per-job refresh (scontrol show job) holds for the batch (squeue), and for a job the
    controller forgot (sacct) too."""
    slurm = SimulatedSlurm()
    added = store.add(replace(request(), backend="slurm"), tmp_path)
    job = replace(added, state=row, external_id="41", external_state="RUNNING")
    slurm.set("41", state, reason, status, tres="cpu=1,mem=1G,node=1,gres/gpu=2")
    alone = slurm.refresh(job)
    assert slurm.calls == Counter({"scontrol": 1})
    batched = slurm.refresh_all([job])
    assert slurm.calls == Counter({"scontrol": 1, "squeue": 1})
    assert batched == {job.id: alone}
    if alone is not None and alone.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        slurm.forget("41")
        slurm.now += slurm.batch_seconds
        forgotten = slurm.refresh_all([job])[job.id]
        assert forgotten is not None and (forgotten.state, forgotten.exit_code) == (alone.state, alone.exit_code)
    expected = {
        ("COMPLETED", JobState.RUNNING): (JobState.SUCCEEDED, 0, None),
        ("FAILED", JobState.RUNNING): (JobState.FAILED, 3 if status == 768 else -53, None),
        ("TIMEOUT", JobState.RUNNING): (JobState.FAILED, -15, "Slurm says TIMEOUT (TimeLimit)"),
        ("OUT_OF_MEMORY", JobState.RUNNING): (JobState.FAILED, -125, "Slurm says OUT_OF_MEMORY (OutOfMemory)"),
        ("CANCELLED", JobState.CANCELLING): (JobState.CANCELLED, -15, None),
        ("CANCELLED", JobState.RUNNING): (JobState.CANCELLED, -15, None),
        ("NODE_FAIL", JobState.RUNNING): (JobState.FAILED, 0, "Slurm says NODE_FAIL"),
        ("RUNNING", JobState.STARTING): (JobState.RUNNING, None, None),
    }.get((state, row))
    if expected is not None:
        assert alone is not None and (alone.state, alone.exit_code, alone.reason) == expected
        assert alone.gpus_allocated == 2
    if state in ("PENDING", "COMPLETING"):
        assert alone is not None and alone.state is None and alone.external_state is not None


async def test_a_slurm_controller_that_does_not_answer_changes_nothing_and_is_asked_again_later(
    store, tmp_path
) -> None:
    """squeue fails: the jobs stay as they are, the status card's backend error says why (as with scontrol before);
    the passes until the next batch get the same error without asking again; once it answers, all is caught up."""
    slurm = SimulatedSlurm()
    scheduler, jobs = await slurm_jobs(store, slurm, tmp_path, 3)
    slurm.down = True
    slurm.now += slurm.batch_seconds
    await scheduler.run_pass()
    assert slurm.calls == Counter({"squeue": 1})
    error = scheduler.backend_errors["slurm"]
    assert error.startswith("Slurm controller not reachable: ") and "Unable to contact slurm controller" in error
    assert all(store.get(job.id).state == JobState.RUNNING for job in jobs)
    answered = scheduler.backend_answered["slurm"]
    await scheduler.run_pass()
    assert slurm.calls == Counter({"squeue": 1}), "not asked again within the batch's time"
    assert scheduler.backend_errors["slurm"] == error
    slurm.now += slurm.batch_seconds
    await scheduler.run_pass()
    assert slurm.calls == Counter({"squeue": 2})
    slurm.down = False
    slurm.set(jobs[0].external_id or "", "COMPLETED")
    slurm.now += slurm.batch_seconds
    await scheduler.run_pass()
    assert "slurm" not in scheduler.backend_errors and scheduler.backend_answered["slurm"] >= answered
    assert store.get(jobs[0].id).state == JobState.SUCCEEDED
    assert [store.get(job.id).state for job in jobs[1:]] == [JobState.RUNNING, JobState.RUNNING]
    await scheduler.close()


async def test_the_default_refresh_all_asks_job_by_job_and_leaves_out_what_it_cannot_check(
    store, launcher, tmp_path
) -> None:
    """A launcher without a batch (the local one) is asked job by job; a job it cannot check now is left as it is
    while the others' news is recorded; a backend that answers for none is on the status card."""
    asked: list[str] = []
    unreachable: set[str] = set()
    plain_refresh = launcher.refresh

    def refresh(job: Job) -> JobUpdate | None:
        asked.append(job.id)
        if job.id in unreachable:
            raise LaunchError("cannot reach it")
        return plain_refresh(job)

    launcher.refresh = refresh
    scheduler = make(store, launcher, tmp_path, slots=3)
    jobs = [await scheduler.enqueue(request(i)) for i in range(3)]
    await settle(scheduler)
    asked.clear()
    unreachable.add(jobs[0].id)
    for job in jobs:
        launcher.states[job.id] = JobUpdate(state=JobState.SUCCEEDED, exit_code=0, ended_at=iso())
    await scheduler.run_pass()
    assert sorted(asked) == sorted(job.id for job in jobs), "each job once"
    assert [store.get(job.id).state for job in jobs] == [JobState.RUNNING, JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert "fake" not in scheduler.backend_errors
    await scheduler.run_pass()
    assert scheduler.backend_errors["fake"] == "cannot reach it", "asked about none"
    unreachable.clear()
    await scheduler.run_pass()
    assert store.get(jobs[0].id).state == JobState.SUCCEEDED and "fake" not in scheduler.backend_errors
    await scheduler.close()


def test_memory_and_cpus_asked_at_launch_reach_sbatch(tmp_path) -> None:
    from adjutant.launchers.slurm import SlurmLauncher

    store = JobStore(tmp_path / "adjutant.sqlite3")
    job = store.add(request(overrides={"mem": "16G", "cpus": "2.5"}), tmp_path)
    store.close()
    assert job.overrides == {"mem": "16G", "cpus": "2.5"}, "recorded with the job"
    argv = SlurmLauncher(Settings.from_env({}), "").sbatch_argv(job)
    assert "--mem=16G" in argv and "--cpus-per-task=3" in argv


def test_launch_options_memory_and_cpus_are_checked() -> None:
    from adjutant.hparams import HParamsError, take_launch_options

    options, rest = take_launch_options('--memory 16g --cpus 0.5 --gpus 1 {"lr": 1}')
    assert (options.memory, options.cpus, options.gpus, rest) == ("16G", 0.5, 1, '{"lr": 1}')
    assert options.overrides() == {"mem": "16G", "cpus": "0.5"}
    for bad, why in [("--memory 16", "with a unit"), ("--memory ٣G", "with a unit"), ("--memory 1K", "between")]:
        with pytest.raises(HParamsError, match=why):
            take_launch_options(f"{bad} {{}}")
    with pytest.raises(HParamsError, match="more than 0"):
        take_launch_options("--cpus 0 {}")
