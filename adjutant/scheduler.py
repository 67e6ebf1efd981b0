"""The job scheduler: record launches, start queued jobs, follow them, cancel them, say what to report.

Discord-free. The database row is the truth (:class:`~adjutant.jobs.JobStore`); the scheduler holds
no memory that a restart would lose. Blocking work (SQLite, launchers, which run subprocesses or
talk to a cluster) runs in worker threads, never on the event loop.

The launch path never waits for a backend: :meth:`Scheduler.enqueue` records the job and returns;
the caller answers the member, then the scheduler's next pass (woken at once) starts the job. A pass
holds the scheduler's lock only while it reconciles and starts jobs; nothing in it talks to Discord.
What happened is read back by the adapters: :meth:`reports_due` lists ended jobs whose end report is
due (only once their acknowledgement exists, so a job that ends within a second is still reported in
its thread), and :meth:`wait_for_change` wakes them when something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from adjutant.alerts import compile_patterns, scan_log
from adjutant.clock import iso, utcnow
from adjutant.gpus import WEEK, Holding, Preemptible, Use, Waiting, fair_share_order, hours_within, plan, victims
from adjutant.job_render import (
    canary_released_embed,
    log_alert_embed,
    preempted_embed,
    preempting_embed,
    queue_done_embed,
    remedy_embed,
    retry_embed,
    sweep_held_embed,
)
from adjutant.jobs import (
    ACTIVE,
    ENDED,
    Job,
    JobEvent,
    JobRequest,
    JobState,
    JobStore,
    JobUpdate,
    Queued,
    last_output_line,
)
from adjutant.launchers import Launcher, LaunchError
from adjutant.render import truncate

log = logging.getLogger(__name__)

#: Backends whose jobs run on this machine and take GPU ids from ADJUTANT_GPUS.
GPU_POOL_BACKENDS = ("local", "container")
#: Backends whose submission is safe to repeat after a crash between "starting" and its record (it looks first).
RESUBMITTABLE = ("local", "ray", "container")

#: An ended job whose acknowledgement was never recorded (the bot died between recording the job and
#: answering) is reported anyway after this long.
ACK_WAIT = dt.timedelta(seconds=60)
#: At most this much of one job's log is read for alert patterns per pass (the next pass reads on).
LOG_SCAN_BYTES = 4 * 1024 * 1024


#: Slurm end states remedied once by 1.5 times the resource (the sbatch option changed).
REMEDIES = {"TIMEOUT": "time", "OUT_OF_MEMORY": "mem"}
#: Slurm states that say the node, not the script, failed: the job is retried within ADJUTANT_RETRIES.
LOST_ON_SLURM = ("NODE_FAIL", "PREEMPTED", "BOOT_FAIL")


def retry_reason(
    job: Job,
    state: JobState | None,
    exit_code: int | None,
    external_state: str | None,
    reason: str | None,
    *,
    retries: int,
    retry_on_exit: Sequence[int],
) -> str | None:
    """Why an ending job is run again (a new attempt of the same job), or None when its end stands.

    Lost jobs (their supervisor or node gone; Slurm NODE_FAIL, PREEMPTED, BOOT_FAIL) are retried; a script's own
    failure only when its exit code is listed in ADJUTANT_RETRY_ON_EXIT; never a cancelled job, never more than
    ``retries`` times (attempts that followed a preemption do not count). A preempted job is never retried: it is
    queued again by its preemption (:meth:`Scheduler._requeue_preempted`)."""
    if job.preempted_at is not None:
        return None
    if (
        job.attempt - job.preemptions > retries
        or job.state == JobState.CANCELLING
        or job.cancel_requested_at is not None
    ):
        return None
    if state == JobState.LOST:
        return f"lost ({reason or 'its backend no longer knows it'})"
    if state == JobState.FAILED and (external_state or "").split(" ")[0] in LOST_ON_SLURM:
        return f"Slurm says {external_state}"
    if state == JobState.FAILED and exit_code is not None and exit_code in retry_on_exit:
        return f"exit code {exit_code} (ADJUTANT_RETRY_ON_EXIT)"
    return None


def _will_requeue(job: Job) -> bool:
    """A preempted job's end (not cancelled meanwhile) is its next attempt, not a report."""
    return job.preempted_at is not None and job.cancel_requested_at is None


def _limit_end(job: Job, now: float) -> float | None:
    """When a running job's time limit ends it (None: no limit)."""
    if job.time_limit is None:
        return None
    started = job.started_at.timestamp() if job.started_at is not None else now
    return started + job.time_limit


class CancelOutcome(StrEnum):
    """What a cancel request did."""

    UNKNOWN = "unknown"  # no such job
    DEQUEUED = "dequeued"  # it was queued: removed, it never ran
    STOPPING = "stopping"  # the backend was asked to stop it
    NOT_YET = "not_yet"  # the backend could not be asked now; the scheduler keeps trying
    ALREADY_CANCELLING = "already_cancelling"
    ALREADY_ENDED = "already_ended"


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    job: Job | None
    detail: str = ""


class Scheduler:
    """Queue, start, follow and cancel experiment jobs on their launchers."""

    def __init__(
        self,
        store: JobStore,
        launcher_for: Callable[[str], Launcher],
        *,
        log_dir: Path,
        max_concurrent: int,
        cancel_grace_seconds: float,
        environment: Callable[[Job], Mapping[str, str]],
        log_patterns: Sequence[str] = (),
        retries: int = 0,
        retry_on_exit: Sequence[int] = (),
        canary_steps: int = 10,
        canary_minutes: float = 5.0,
        gpus: Sequence[int] | None = None,
        gpus_busy: Callable[[set[int]], set[int]] | None = None,
        fair_share: bool = False,
    ) -> None:
        self.store = store
        #: ADJUTANT_FAIR_SHARE: among equal priorities, the member with fewer GPU-hours in the last 7 days first.
        self.fair_share = fair_share
        #: The GPU ids local jobs are given (ADJUTANT_GPUS), or None: jobs are counted, not GPUs.
        self.gpus: tuple[int, ...] | None = None if gpus is None else tuple(gpus)
        #: (blocking) Which GPUs, of those Adjutant did not hand out, someone else is using now (``auto``).
        self.gpus_busy = gpus_busy
        self.canary_steps = canary_steps
        self.canary_minutes = canary_minutes
        #: A running job's progress (its W&B run's step, from what the watcher's polls saw), or None.
        self.progress_of: Callable[[Job], float | None] = lambda job: None
        self.retries = retries
        self.retry_on_exit = tuple(retry_on_exit)
        self.log_patterns = compile_patterns(log_patterns)
        self.log_dir = log_dir
        self.max_concurrent = max_concurrent
        self.cancel_grace_seconds = cancel_grace_seconds
        self._launcher_for = launcher_for
        self._launchers: dict[str, Launcher] = {}
        self._environment = environment
        self._lock = asyncio.Lock()
        #: The passes' own thread: a pass never queues behind the commands' SQLite calls in the default pool.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adjutant-scheduler")
        self._changed = asyncio.Event()
        self._pass_task: asyncio.Task[None] | None = None
        self._again = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._requeued = False
        #: When the last pass finished (time.time()), and its error if it failed: for status displays.
        self.last_pass: float | None = None
        self.last_error: str | None = None
        #: Per backend: the error of the last check that could not reach it (cleared when one does), and when it
        #: last answered (time.time()), for the status card.
        self.backend_errors: dict[str, str] = {}
        self.backend_answered: dict[str, float] = {}

    # --- launchers ------------------------------------------------------------------------------
    def launcher(self, backend: str) -> Launcher:
        """The launcher of a backend (a job keeps the backend it was launched on)."""
        if backend not in self._launchers:
            launcher = self._launcher_for(backend)
            launcher.on_change = self.wake_threadsafe
            self._launchers[backend] = launcher
        return self._launchers[backend]

    # --- recording ------------------------------------------------------------------------------
    async def enqueue(self, request: JobRequest) -> Job:
        """Record a queued job and wake the scheduler; returns at once (nothing waits for a backend)."""
        job = await asyncio.to_thread(self.store.add, request, self.log_dir)
        log.info("job %s queued by %s", job.id, request.requested_by)
        self.wake()
        return job

    async def enqueue_many(self, requests: Sequence[JobRequest], *, canary: bool = False) -> list[Job]:
        """Record several queued jobs in one transaction (a sweep: all or none), then wake the scheduler.
        ``canary``: the first runs alone until it reaches ``canary_steps`` or runs ``canary_minutes``."""
        jobs = await asyncio.to_thread(self.store.add_many, list(requests), self.log_dir, canary=canary)
        log.info("%d jobs queued: %s", len(jobs), ", ".join(j.id for j in jobs))
        self.wake()
        return jobs

    async def acknowledged(
        self, job_id: str, *, ack_id: int | None, thread_id: int | None = None, message_id: int | None = None
    ) -> None:
        """The member was answered (or answering failed for good): the end report may go out now."""
        changes: dict[str, Any] = {"acked": 1}
        if ack_id is not None:
            changes["ack_id"] = ack_id
        if thread_id is not None:
            changes["thread_id"] = thread_id
        if message_id is not None:
            changes["message_id"] = message_id
        await asyncio.to_thread(self.store.update, job_id, **changes)
        self._changed.set()

    async def sweep_acknowledged(self, sweep_id: str, thread_id: int | None = None) -> None:
        """A sweep's preview now says it was queued (its one thread opened): its jobs' end reports may go out."""
        await asyncio.to_thread(self.store.acknowledge_sweep, sweep_id, thread_id)
        self._changed.set()

    async def unannounced_sweeps(self, older_than: dt.timedelta) -> dict[str, list[Job]]:
        """Sweeps recorded more than ``older_than`` ago whose preview was never updated (the bot died between
        recording them and answering the click): sweep id → its jobs."""
        jobs = await asyncio.to_thread(self.store.unacknowledged_sweep_jobs)
        now = utcnow()
        found: dict[str, list[Job]] = {}
        for job in jobs:
            if job.sweep_id and now - job.created_at > older_than:
                found.setdefault(job.sweep_id, []).append(job)
        return found

    async def get(self, job_id: str) -> Job | None:
        return await asyncio.to_thread(self.store.get, job_id)

    async def jobs_in(self, states: Sequence[JobState], limit: int = 1000) -> list[Job]:
        return await asyncio.to_thread(self.store.where, states, limit)

    async def recent(self, limit: int = 10) -> list[Job]:
        return await asyncio.to_thread(self.store.recent, limit)

    async def jobs_ahead(self, job: Job) -> int:
        """How many jobs must end or start before ``job`` starts: 0 if a slot is free for it now."""

        def count() -> int:
            now = self.store.get(job.id)
            if now is None or now.state != JobState.QUEUED:
                return 0  # started (or ended) already: nothing is ahead of it
            queued_before = self.store.count_queued_ahead(now)
            active = [j for j in self.store.where(ACTIVE) if j.id != job.id]
            if self.gpus is not None and job.backend in GPU_POOL_BACKENDS:
                free = len(self.gpus) - len(self.gpu_holders(active))
                if queued_before == 0 and job.gpus <= free and len(active) < self.max_concurrent:
                    return 0
                return queued_before + len(active)
            if queued_before + len(active) < self.max_concurrent:
                return 0
            return queued_before + len(active)

        return await asyncio.to_thread(count)

    # --- cancelling -----------------------------------------------------------------------------
    async def cancel(self, job_id: str, by: str) -> CancelResult:
        """Cancel a queued or running job. A running one is asked to stop; the grace period then applies."""
        job = await self.get(job_id)
        if job is None:
            return CancelResult(CancelOutcome.UNKNOWN, None)
        if job.state == JobState.QUEUED:
            removed = await asyncio.to_thread(
                self.store.transition,
                job.id,
                JobEvent.CANCEL,
                among=(JobState.QUEUED,),
                ended_at=iso(),
                cancelled_by=by,
            )
            if removed:
                self._changed.set()
                return CancelResult(CancelOutcome.DEQUEUED, await self.get(job.id))
            job = await self.get(job_id)  # it started meanwhile
            assert job is not None
        if job.state in (JobState.STARTING, JobState.RUNNING):
            await asyncio.to_thread(
                self.store.transition,
                job.id,
                JobEvent.CANCEL,
                among=(JobState.STARTING, JobState.RUNNING),
                cancel_requested_at=iso(),
                cancelled_by=by,
            )
            launcher = self.launcher(job.backend)
            job = await self.get(job.id) or job  # its process group may have been recorded meanwhile
            try:
                await asyncio.to_thread(launcher.cancel, job)
            except LaunchError as error:
                return CancelResult(CancelOutcome.NOT_YET, job, str(error))
            finally:
                self.wake()
            return CancelResult(CancelOutcome.STOPPING, job)
        if job.state == JobState.CANCELLING:
            return CancelResult(CancelOutcome.ALREADY_CANCELLING, job)
        return CancelResult(CancelOutcome.ALREADY_ENDED, job)

    # --- the pass -------------------------------------------------------------------------------
    def wake(self) -> None:
        """Run a pass soon (coalesced: a pass asked for while one runs runs once more after it)."""
        if self._closed:
            return
        self._loop = asyncio.get_running_loop()
        if self._pass_task is not None and not self._pass_task.done():
            self._again = True
            return
        self._pass_task = self._loop.create_task(self._passes(), name="adjutant-scheduler-pass")

    def wake_threadsafe(self) -> None:
        """:meth:`wake` from any thread (a launcher's reaper)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.wake)

    async def _passes(self) -> None:
        while True:
            self._again = False
            try:
                await self.run_pass()
            except Exception:
                log.exception("scheduler pass failed; the next one retries")
            if not self._again or self._closed:
                return

    async def run_pass(self) -> None:
        """Reconcile active jobs with their launchers, then start queued jobs into free slots."""
        self._loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                loop = asyncio.get_running_loop()
                changed = await loop.run_in_executor(self._executor, self._reconcile)
                changed |= await loop.run_in_executor(self._executor, self._watch_canaries)
                changed |= await loop.run_in_executor(self._executor, self._hold_failing_sweeps)
                changed |= await loop.run_in_executor(self._executor, self._start_queued)
                if self.log_patterns:
                    changed |= await loop.run_in_executor(self._executor, self._scan_logs)
            except Exception as error:
                self.last_error = f"{type(error).__name__}: {error}"
                raise
            self.last_error = None
            self.last_pass = time.time()
        if changed:
            self._changed.set()

    def _requeue_unsubmitted(self) -> None:
        """(thread, first pass of a process) Jobs a previous bot process marked starting but never handed to
        its launcher (it died in between): back in the queue, in their place."""
        for job in self.store.where((JobState.STARTING,)):
            # A Ray job may have been submitted just before the crash: its submission looks Ray up first.
            # A container is looked up by its name first, so it is adopted, never started twice.
            unsubmitted = job.supervisor_pid is None and job.external_id is None and job.backend in RESUBMITTABLE
            if unsubmitted and self.store.transition(job.id, JobEvent.UNSUBMIT):
                log.info("job %s was being started when the bot stopped; queued again", job.id)

    def _reconcile(self) -> bool:
        """(thread) Ask each active job's launcher what changed; force cancels past their grace."""
        if not self._requeued:
            self._requeue_unsubmitted()
            self._requeued = True
        now = utcnow()
        changed = False
        active = self.store.where(ACTIVE)
        answers = self._refresh_all(active)
        for job in active:
            if job.id not in answers:
                continue  # its backend could not be asked now: nothing is changed (logged, and on the status card)
            launcher = self.launcher(job.backend)
            update = answers[job.id]
            if update is not None and update.state == JobState.FAILED and self._remedy(job, launcher, update, now):
                changed = True
                continue
            if update is not None and update.state in (JobState.LOST, JobState.FAILED):
                why = retry_reason(
                    job,
                    update.state,
                    update.exit_code,
                    update.external_state or job.external_state,
                    update.reason,
                    retries=self.retries,
                    retry_on_exit=self.retry_on_exit,
                )
                if why is not None:
                    if update.state == JobState.LOST:
                        launcher.escalate(job)  # leave nothing of the lost attempt behind
                    if self._retry(job, why, now):
                        changed = True
                        continue
                    # not retried (a cancel came meanwhile): the end is recorded below
            if update is not None and self.store.record_news(job.id, update):
                changed = True
                if update.state == JobState.LOST:
                    log.warning("job %s lost: %s", job.id, update.reason)
                    launcher.escalate(job)  # leave nothing of it behind
                continue
            if job.preempted_at is not None and job.state != JobState.CANCELLING:
                changed |= self._escalate_preemption(job, launcher, now)
                continue
            if self._past_limit(job, now):
                self._stop_at_limit(job, launcher)
                changed = True
                continue
            if (
                job.state == JobState.CANCELLING
                and job.cancel_requested_at is not None
                and job.killed_at is None
                and (now - job.cancel_requested_at).total_seconds() >= self.cancel_grace_seconds
            ):
                log.info("job %s still running %gs after the cancel: forcing it", job.id, self.cancel_grace_seconds)
                launcher.escalate(job)
                self.store.update(job.id, killed_at=iso())
        # Ends recorded by the job's own supervisor (local jobs) change rows without this pass.
        changed |= self._requeue_preempted()
        if self.retry_on_exit:
            for job in self.store.unreported():
                why = self._recorded_retry_reason(job)
                if why is not None:
                    changed |= self._retry(job, why, now)
        return changed or self.store.count_unreported() > 0

    def _refresh_all(self, jobs: Sequence[Job]) -> dict[str, JobUpdate | None]:
        """(thread) Ask each backend once about all its active ``jobs`` (:meth:`Launcher.refresh_all`): job id → what
        changed. The jobs of a backend that cannot be asked now are left out."""
        by_backend: dict[str, list[Job]] = {}
        for job in jobs:
            by_backend.setdefault(job.backend, []).append(job)
        answers: dict[str, JobUpdate | None] = {}
        for backend, its_jobs in by_backend.items():
            try:
                answers.update(self.launcher(backend).refresh_all(its_jobs))
            except LaunchError as error:
                log.warning("cannot check %d %s job(s): %s", len(its_jobs), backend, error)
                self.backend_errors[backend] = str(error)
                continue
            self.backend_errors.pop(backend, None)
            self.backend_answered[backend] = time.time()
        return answers

    @staticmethod
    def _past_limit(job: Job, now: dt.datetime) -> bool:
        return (
            job.state in (JobState.STARTING, JobState.RUNNING)
            and job.time_limit is not None
            and job.started_at is not None
            and (now - job.started_at).total_seconds() > job.time_limit
        )

    def _stop_at_limit(self, job: Job, launcher: Launcher) -> None:
        """(thread) A job past its time limit is cancelled (the grace period applies), and says why."""
        limit = f"{job.time_limit / 60:g} min" if job.time_limit is not None else "?"
        stopped = self.store.transition(
            job.id,
            JobEvent.CANCEL,
            among=(JobState.STARTING, JobState.RUNNING),
            cancel_requested_at=iso(),
            cancelled_by="its time limit",
            reason=f"stopped at its time limit ({limit})",
        )
        if not stopped:
            return
        log.warning("job %s reached its time limit (%s): stopping it", job.id, limit)
        try:
            launcher.cancel(self.store.get(job.id) or job)
        except LaunchError as error:
            log.warning("cannot stop job %s at its time limit yet: %s", job.id, error)

    def _remedy(self, job: Job, launcher: Launcher, update: JobUpdate, now: dt.datetime) -> bool:
        """(thread) A job that ran out of time or memory on Slurm (or of memory in a container) runs once more with 1.5
        times as much (said in its thread); a second identical failure ends it, with a note that says so. True when
        handled here."""
        slurm_state = (update.external_state or job.external_state or "").split(" ")[0]
        kind = REMEDIES.get(slurm_state)
        remedy = getattr(launcher, "remediation", None)
        if kind is None or remedy is None or job.state == JobState.CANCELLING:
            return False
        option = "--memory" if launcher.name == "container" else f"--{kind}"  # the option as its backend spells it
        backend = "Slurm" if launcher.name == "slurm" else f"the {launcher.name}"
        if kind in job.remedied:
            note = remedy_embed(job, slurm_state, option, job.overrides.get(kind, "?"), None)
            return self.store.end_with_note(job, update.columns(), note)
        try:
            grown = remedy(job, kind)
        except LaunchError as error:
            log.warning("cannot remedy job %s (%s): %s", job.id, slurm_state, error)
            return False
        if grown is None:
            return False
        old, new = grown
        note = remedy_embed(job, slurm_state, option, old, new)
        if self.store.remediate(job, kind, new, f"{backend} {slurm_state}: {option} {old} → {new}", note):
            log.warning(
                "job %s: %s %s; submitting again with %s=%s (was %s)", job.id, backend, slurm_state, option, new, old
            )
            return True
        return False

    # --- preemption -----------------------------------------------------------------------------
    def _preempt(self, active: Sequence[Job] | None = None) -> bool:
        """(thread, ADJUTANT_GPUS) The first queued GPU job cannot start for lack of GPUs and outranks running
        preemptible local jobs: choose the victims (:func:`adjutant.gpus.victims`), record the decision with both
        threads' notes and the audit (before any signal), then send each victim's process group the preemption
        signal. One preemption at a time: while a victim is still running nothing more is preempted."""
        assert self.gpus is not None
        if active is None:  # jobs started in this pass: read them again
            active = self.store.where(ACTIVE)
        if any(j.preempted_at is not None for j in active):
            return False  # its GPUs come free first
        candidates = [
            j
            for j in active
            if j.preemptible
            and j.state == JobState.RUNNING
            and j.backend == "local"
            and j.gpu_ids
            and j.cancel_requested_at is None
        ]
        if not candidates:
            return False
        launcher = self.launcher("local")
        if not launcher.preempts:
            return False
        first = next((j for j in self._in_order(self.store.queue()) if j.backend in GPU_POOL_BACKENDS and j.gpus), None)
        if first is None or first.rank <= min(c.rank for c in candidates) or first.gpus > len(self.gpus):
            return False
        head = self.store.get(first.id)
        if head is None or head.state != JobState.QUEUED:
            return False
        held = self.gpu_holders(active)
        busy = self.gpus_busy(set(held)) if self.gpus_busy is not None else set()
        free = [gpu for gpu in self.gpus if gpu not in held and gpu not in busy]
        now = utcnow()
        running = [Preemptible(j.id, len(j.gpu_ids), j.rank, (j.started_at or now).timestamp()) for j in candidates]
        chosen = victims(head.gpus - len(free), head.rank, running)
        if not chosen:
            return False
        by_id = {j.id: j for j in candidates}
        picked = [by_id[i] for i in chosen]
        grace = float(getattr(launcher, "preempt_grace_seconds", self.cancel_grace_seconds))
        signal_name = getattr(getattr(launcher, "preempt_signal", None), "name", "SIGUSR1")
        notes = [(v, "preempted", preempted_embed(v, head, grace=grace, signal_name=signal_name)) for v in picked]
        notes.append((head, "preempting", preempting_embed(head, picked)))
        audit = [
            f"{v.id} ({v.priority}, {v.requested_by}, GPUs {','.join(map(str, v.gpu_ids))}) preempted for"
            f" {head.id} ({head.priority}, {head.requested_by})"
            for v in picked
        ]
        if not self.store.preempt(picked, head, notes, audit, now):
            return False
        for victim in picked:
            log.warning(
                "job %s (%s) preempted for job %s (%s): %s, %gs grace",
                victim.id, victim.priority, head.id, head.priority, signal_name, grace,
            )  # fmt: skip
            try:
                launcher.preempt(victim)
            except (LaunchError, OSError) as error:
                log.warning("cannot signal preempted job %s yet: %s (SIGTERM follows the grace)", victim.id, error)
        return True

    def _escalate_preemption(self, job: Job, launcher: Launcher, now: dt.datetime) -> bool:
        """(thread) A preempted job still running after the grace gets SIGTERM, and SIGKILL
        ADJUTANT_CANCEL_GRACE_SECONDS later (the cancel's escalation), each once; the times are in its row."""
        assert job.preempted_at is not None
        grace = float(getattr(launcher, "preempt_grace_seconds", self.cancel_grace_seconds))
        if job.preempt_term_at is None:
            if (now - job.preempted_at).total_seconds() < grace:
                return False
            if not self.store.update(job.id, expect=ACTIVE, preempt_term_at=iso(now)):
                return False
            log.info("preempted job %s still running %gs after the signal: SIGTERM", job.id, grace)
            launcher.cancel(job)
            return True
        if job.killed_at is None and (now - job.preempt_term_at).total_seconds() >= self.cancel_grace_seconds:
            log.info("preempted job %s still running after SIGTERM: SIGKILL", job.id)
            launcher.escalate(job)
            self.store.update(job.id, killed_at=iso(now))
            return True
        return False

    def _requeue_preempted(self) -> bool:
        """(thread) Each preempted job whose end is recorded (by its supervisor, or as lost) is queued again as its
        next attempt, same W&B run, same place; once (guarded by its attempt), also after a restart."""
        requeued = False
        for job in self.store.preempted_ended():
            if job.cancel_requested_at is not None:
                continue  # cancelled during its grace: its end stands and is reported
            if self.store.requeue_preempted(job):
                log.warning(
                    "job %s: attempt %d preempted by %s; queued again as attempt %d (not a retry)",
                    job.id, job.attempt, job.preempted_by, job.attempt + 1,
                )  # fmt: skip
                requeued = True
        return requeued

    def _retry(self, job: Job, why: str, now: dt.datetime) -> bool:
        """(thread) The decision and its note, recorded together before anything is submitted again."""
        note = retry_embed(job, why, retries=self.retries)
        if self.store.retry(job, why, note, now):
            log.warning("job %s: attempt %d %s; queued again as attempt %d", job.id, job.attempt, why, job.attempt + 1)
            return True
        return False

    def _scan_logs(self) -> bool:
        """(thread) Read the new bytes of each job's log for alert patterns; record alerts with the offset."""
        now = utcnow()
        queued = 0
        for job, offset, told in self.store.logs_to_scan():
            ended = job.state in ENDED
            try:
                with open(job.log_path, "rb") as log_file:
                    log_file.seek(offset)
                    data = log_file.read(LOG_SCAN_BYTES)
                    at_end = not log_file.read(1)
            except FileNotFoundError:
                data, at_end = b"", True
            except OSError as error:
                log.warning("cannot read the log of job %s for alerts: %s", job.id, error)
                continue
            if not data and not ended:
                continue
            found, used = scan_log(data, self.log_patterns, told, final=ended and at_end)
            alerts = [(pattern, line, log_alert_embed(job, pattern, line)) for pattern, line in found]
            told |= {pattern for pattern, _ in found}
            done = ended and at_end
            queued += self.store.record_log_scan(job, offset + used, told, alerts, done=done, now=now)
        if queued:
            log.info("%d log alert(s) to announce", queued)
        return queued > 0

    def _hold_failing_sweeps(self) -> bool:
        """(thread) Two cells of a sweep failed the same way (exit code and last line of output): hold its queued
        cells, once, and ask Resume / Drop; the rest of the sweep would most likely fail the same way."""
        by_sweep: dict[str, dict[tuple[int | None, str], list[Job]]] = {}
        for job in self.store.failed_cells_of_undecided_sweeps():
            assert job.sweep_id is not None
            key = (job.exit_code, last_output_line(Path(job.log_path)))
            by_sweep.setdefault(job.sweep_id, {}).setdefault(key, []).append(job)
        held_any = False
        for groups in by_sweep.values():
            same = next(((key, jobs) for key, jobs in groups.items() if len(jobs) >= 2), None)
            if same is None:
                continue
            (code, line), jobs = same
            card = sweep_held_embed(jobs, code, line)
            held = self.store.hold_sweep(jobs[-1], f"{code}\n{line}", card, utcnow())
            if held:
                log.warning(
                    "sweep %s held: %d cells failed with exit %s and %r", jobs[0].sweep_id, len(jobs), code, line
                )
                held_any = True
        return held_any

    def _watch_canaries(self) -> bool:
        """(thread) A sweep's canary that trains (step ``canary_steps`` in W&B, or ``canary_minutes`` running, or
        done) releases the other cells; one that fails keeps them held and asks what to do."""
        now = utcnow()
        changed = False
        for canary in self.store.canary_sweeps():
            if canary.state in (JobState.FAILED, JobState.LOST, JobState.CANCELLED):
                card = sweep_held_embed([canary], canary.exit_code, last_output_line(Path(canary.log_path)))
                card["title"] = truncate(f"⏸️ Sweep {canary.sweep_id}: its canary {canary.id} {canary.state}", 256)
                changed |= self.store.canary_failed(canary, card, now)
                continue
            step = self.progress_of(canary) if canary.state == JobState.RUNNING else None
            running = (now - canary.started_at).total_seconds() / 60 if canary.started_at else 0.0
            if canary.state == JobState.SUCCEEDED:
                why = "succeeded"
            elif step is not None and step >= self.canary_steps:
                why = f"reached step {step:g}"
            elif canary.state == JobState.RUNNING and running >= self.canary_minutes:
                why = f"has run {running:.1f} min without failing"
            else:
                continue
            if self.store.release_canary(canary, canary_released_embed(canary, why)):
                log.info("sweep %s: canary %s %s; starting the other cells", canary.sweep_id, canary.id, why)
                changed = True
        return changed

    async def retry_canary(self, canary: Job) -> bool:
        """The canary card's "Retry canary": its next attempt runs alone again (False: not waiting for that)."""
        done = await asyncio.to_thread(self.store.retry_canary, canary, utcnow())
        self.wake()
        return done

    async def decide_sweep(self, sweep_id: str, decision: str, by: str) -> tuple[str, int]:
        """Resume or drop a held sweep (``resumed`` / ``dropped``): (its state before, cells changed)."""
        result = await asyncio.to_thread(self.store.decide_sweep, sweep_id, decision, by, utcnow())
        self.wake()
        return result

    def _start_queued(self) -> bool:
        """(thread) Start queued jobs, oldest first, while slots (and, with ADJUTANT_GPUS, GPUs) are free."""
        active = self.store.where(ACTIVE)
        slots = max(self.max_concurrent - len(active), 0)
        if self.gpus is None:
            started = False
            for job in self.store.startable(slots):
                if self.store.start(job.id):
                    self._submit(job)
                    started = True
            return started
        started = self._start_on_gpus(active, slots)
        return self._preempt(None if started else active) or started

    def gpu_holders(self, active: Sequence[Job]) -> dict[int, Job]:
        """GPU id → the active local job holding it."""
        return {gpu: job for job in active if job.backend in GPU_POOL_BACKENDS for gpu in job.gpu_ids}

    def _start_on_gpus(self, active: Sequence[Job], slots: int) -> bool:
        """(thread) :func:`adjutant.gpus.plan` over the queue: GPUs handed out in the same statement as the start."""
        assert self.gpus is not None
        held = self.gpu_holders(active)
        busy = self.gpus_busy(set(held)) if self.gpus_busy is not None else set()
        free = [gpu for gpu in self.gpus if gpu not in held and gpu not in busy]
        if slots == 0 or (not free and not self.store.has_startable_without_gpus()):
            return False  # a full machine: nothing to plan (the common case of a long queue)
        queue = self._in_order(self.store.queue())
        by_id = {job.id: job for job in queue}
        for job in queue:
            shrank = job.backend in GPU_POOL_BACKENDS and job.gpus > len(self.gpus)  # ADJUTANT_GPUS shrank meanwhile
            if shrank:
                reason = f"it asks for {job.gpus} GPUs; this machine gives out {len(self.gpus)} (ADJUTANT_GPUS)"
                self.store.transition(job.id, JobEvent.FAIL, among=(JobState.QUEUED,), reason=reason, ended_at=iso())
                del by_id[job.id]
        now = time.time()
        waiting = [Waiting(j.id, j.gpus if j.backend in GPU_POOL_BACKENDS else 0, j.time_limit) for j in by_id.values()]
        running = [
            Holding(len(j.gpu_ids), _limit_end(j, now)) for j in active if j.backend in GPU_POOL_BACKENDS and j.gpu_ids
        ]
        starts = plan(waiting, free, running, now, slots=slots).starts
        for job_id, gpu_ids in starts:
            if self.store.start(job_id, gpu_ids) and (starting := self.store.get(job_id)) is not None:
                self._submit(starting)  # read in full only now: the queue's rule reads light rows
        return bool(starts)

    def _in_order(self, queue: list[Queued]) -> list[Queued]:
        """(thread) The queue as it starts: priority then arrival (the store's order); with fair share, among equal
        priorities the member with fewer GPU-hours over the last 7 days first."""
        if not self.fair_share or len(queue) < 2:
            return queue
        used = self.gpu_hours_by_member()
        by_id = {job.id: job for job in queue}
        order = fair_share_order([(j.id, j.rank, used.get(j.requested_by_id, 0.0), j.seq) for j in queue])
        return [by_id[job_id] for job_id in order]

    def gpu_hours_by_member(self) -> dict[int, float]:
        """(blocking) Each member's GPU-hours over the last 7 days (running jobs up to now)."""
        now = utcnow()
        used: dict[int, float] = {}
        for job in self.store.uses(now - WEEK):
            if job.started_at is None:
                continue
            use = Use(job.requested_by_id, job.requested_by, "", job.gpus_used, job.started_at, job.ended_at)
            used[job.requested_by_id] = used.get(job.requested_by_id, 0.0) + hours_within(use, now - WEEK, now) * (
                job.gpus_used
            )
        return used

    def _submit(self, job: Job) -> None:
        """(thread) Hand a starting job to its launcher with the job's own environment."""
        launcher = self.launcher(job.backend)
        env = dict(self._environment(job))
        if self.gpus is not None and job.backend in GPU_POOL_BACKENDS:
            visible = ",".join(str(gpu) for gpu in job.gpu_ids)  # "" for a job that asked for none: it sees none
            env["CUDA_VISIBLE_DEVICES"] = visible
            env["ADJUTANT_GPUS"] = visible
        try:
            update = launcher.submit(job, env)
        except LaunchError as error:
            log.error("job %s could not start: %s", job.id, error)
            self.store.transition(job.id, JobEvent.FAIL, among=(JobState.STARTING,), reason=str(error), ended_at=iso())
            return
        if update.columns():
            self.store.update(job.id, **update.columns())
        log.info("job %s submitted to %s", job.id, launcher.name)

    # --- what to tell ---------------------------------------------------------------------------
    async def wait_for_change(self, timeout: float) -> None:  # noqa: ASYNC109 (a wait with a limit is the point)
        """Return when a pass changed something (or an acknowledgement was recorded), or after ``timeout``."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return
        self._changed.clear()

    async def reports_due(self) -> list[Job]:
        """Ended jobs not reported yet whose acknowledgement exists (or will never come)."""
        jobs = await asyncio.to_thread(self.store.unreported)
        now = utcnow()
        return [
            job
            for job in jobs
            if (job.acked or now - job.created_at > ACK_WAIT) and not self._will_retry(job) and not _will_requeue(job)
        ]

    def runs_again(self, job: Job) -> bool:
        """An ended job whose end is not final: the next pass queues it again (a retry of a recorded failure, or a
        preempted attempt's next one). A sweep's trial follows its job through it."""
        return job.state in ENDED and (self._will_retry(job) or _will_requeue(job))

    def capacity(self, backend: str, gpus: int) -> int:
        """How many jobs of ``gpus`` GPUs each on ``backend`` may run at once here (at least 1): the concurrency limit,
        and with ADJUTANT_GPUS on this machine's backends, the GPUs it hands out."""
        slots = self.max_concurrent
        if self.gpus is not None and backend in GPU_POOL_BACKENDS and gpus > 0:
            slots = min(slots, len(self.gpus) // gpus)
        return max(1, slots)

    def _will_retry(self, job: Job) -> bool:
        """A failure that the next pass turns into a new attempt is not reported."""
        return job.state == JobState.FAILED and self._recorded_retry_reason(job) is not None

    def _recorded_retry_reason(self, job: Job) -> str | None:
        """:func:`retry_reason` for an end already recorded in the job's row (by its supervisor)."""
        return retry_reason(
            job,
            JobState(job.state),
            job.exit_code,
            job.external_state,
            job.reason,
            retries=self.retries,
            retry_on_exit=self.retry_on_exit,
        )

    async def reported(self, job_id: str, report_id: int | None, embed: dict[str, Any] | None = None) -> None:
        """The end report (``embed``) was accepted (``report_id`` its message): never report this job again; the
        requester's copy and "your queue is done" are queued with it (see :meth:`JobStore.mark_reported`)."""
        job = await self.get(job_id)
        if job is None:
            return
        await asyncio.to_thread(self.store.mark_reported, job, report_id, embed or {}, queue_done_embed)

    async def close(self) -> None:
        """Stop waking; wait for a pass in flight so its bookkeeping completes."""
        self._closed = True
        task = self._pass_task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("a scheduler pass was still running at shutdown")
        for launcher in self._launchers.values():
            launcher.on_change = None
        self._executor.shutdown(wait=False)
