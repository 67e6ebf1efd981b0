"""The job records and their states, apart from the stores that keep them (pure).

States (:class:`JobState`): queued → starting → running → succeeded | failed | cancelled, or lost (the
supervisor vanished without recording an end). ``cancelling`` is a running job asked to stop. Which event moves
a job from which state to which is :meth:`JobState.after`, the one table of job transitions: the stores'
compare-and-set SQL is made from it (:func:`transition_sql`).

Sweeps that search (issue 23): :class:`SweepState` and :class:`TrialState` carry their own rules (the transitions a
sweep may make, which states are ended, their words); the rows are :mod:`adjutant.sweeps.store`'s.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from adjutant.clock import parse_iso, utcnow

#: The priority classes, lowest first (``--priority``); the queue starts higher ones first.
PRIORITIES: tuple[str, ...] = ("low", "normal", "high")


def priority_rank(priority: str | None) -> int:
    """``low`` 0, ``normal`` 1, ``high`` 2 (anything else: normal)."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else 1


class JobEvent(StrEnum):
    """What happens to a job: a decision of Adjutant's, or news from its launcher (see :meth:`JobEvent.of_news`)."""

    #: The scheduler hands a queued job to its launcher.
    SUBMIT = "submit"
    #: A starting job never reached its launcher (Adjutant stopped in between): it waits in the queue again.
    UNSUBMIT = "unsubmit"
    #: The launcher says it waits to start (Slurm PENDING, Ray PENDING).
    PENDING = "pending"
    #: The launcher says it runs.
    RUN = "run"
    #: The launcher says it ended well.
    SUCCEED = "succeed"
    #: The launcher says it failed (or it could not be started).
    FAIL = "fail"
    #: The launcher no longer knows it (its supervisor vanished, the node died).
    LOSE = "lose"
    #: The launcher says it was stopped.
    STOPPED = "stopped"
    #: Someone cancels it: a queued job ends at once, a started one is asked to stop.
    CANCEL = "cancel"
    #: Its next attempt (ADJUTANT_RETRIES, a remediation): back in the queue.
    RETRY = "retry"
    #: A held sweep's queued cell is dropped.
    DROP = "drop"

    @classmethod
    def of_news(cls, state: JobState) -> JobEvent:
        """The event behind a launcher's news that a job is in ``state``."""
        return _NEWS[state]

    def moves(self) -> dict[JobState, JobState]:
        """Each state this event may happen in, and the state it leads to."""
        return {state: new for state in JobState if (new := state.after(self)) is not None}


class JobState(StrEnum):
    """Where a job is in its life; the value is what the ``jobs.state`` column holds."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def active(self) -> bool:
        """A launcher is following the job."""
        return self in ACTIVE

    @property
    def ended(self) -> bool:
        """Terminal (only a retry of a failed or lost job, before its end is reported, moves it again)."""
        return self in ENDED

    def after(self, event: JobEvent) -> JobState | None:
        """The state ``event`` leads to from this one; None when it cannot happen here (the row is left alone).

        A job being cancelled stays ``cancelling`` while its launcher says it waits or runs, and any end other than
        success is its cancellation."""
        return _TRANSITIONS.get((self, event))


#: A launcher is following these jobs.
ACTIVE: tuple[JobState, ...] = (JobState.STARTING, JobState.RUNNING, JobState.CANCELLING)
#: The terminal states: a job in one of them never changes again (except a failure that ADJUTANT_RETRY_ON_EXIT
#: retries, before its end is reported).
ENDED: tuple[JobState, ...] = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST)

_Q, _S, _R, _C = JobState.QUEUED, JobState.STARTING, JobState.RUNNING, JobState.CANCELLING
_TRANSITIONS: dict[tuple[JobState, JobEvent], JobState] = {
    (_Q, JobEvent.SUBMIT): _S,
    (_S, JobEvent.UNSUBMIT): _Q,
    **{(s, JobEvent.PENDING): (_C if s == _C else _S) for s in ACTIVE},
    **{(s, JobEvent.RUN): (_C if s == _C else _R) for s in ACTIVE},
    **{(s, JobEvent.SUCCEED): JobState.SUCCEEDED for s in ACTIVE},
    (_Q, JobEvent.FAIL): JobState.FAILED,  # it could not be started
    **{(s, JobEvent.FAIL): (JobState.CANCELLED if s == _C else JobState.FAILED) for s in ACTIVE},
    **{(s, JobEvent.LOSE): (JobState.CANCELLED if s == _C else JobState.LOST) for s in ACTIVE},
    **{(s, JobEvent.STOPPED): JobState.CANCELLED for s in ACTIVE},
    (_Q, JobEvent.CANCEL): JobState.CANCELLED,
    **{(s, JobEvent.CANCEL): _C for s in ACTIVE},
    **{(s, JobEvent.RETRY): _Q for s in (_S, _R, JobState.FAILED, JobState.LOST)},
    (_Q, JobEvent.DROP): JobState.CANCELLED,
}
_NEWS: dict[JobState, JobEvent] = {
    JobState.STARTING: JobEvent.PENDING,
    JobState.RUNNING: JobEvent.RUN,
    JobState.CANCELLING: JobEvent.CANCEL,
    JobState.SUCCEEDED: JobEvent.SUCCEED,
    JobState.FAILED: JobEvent.FAIL,
    JobState.LOST: JobEvent.LOSE,
    JobState.CANCELLED: JobEvent.STOPPED,
}


def transition_sql(
    event: JobEvent, among: tuple[JobState, ...] | None = None
) -> tuple[str, list[JobState], str, list[JobState]]:
    """The compare-and-set of ``event`` in SQL, made from :meth:`JobState.after`: the new ``state`` expression and
    its arguments, the ``state IN (…)`` guard and its arguments; for the states the event may happen in (only those
    of ``among``, if given)."""
    moves = {old: new for old, new in event.moves().items() if among is None or old in among}
    if not moves:
        raise ValueError(f"{event} cannot happen in any of {among}")
    case = "CASE state" + " WHEN ? THEN ?" * len(moves) + " END"
    guard = f"state IN ({','.join('?' * len(moves))})"
    return case, [value for pair in moves.items() for value in pair], guard, list(moves)


class SweepHold(StrEnum):
    """The ``sweep_holds.state`` of a sweep: where its hold decision stands (one row per sweep, decided once)."""

    #: Its first cell runs alone; the others wait for it to show that it trains.
    CANARY = "canary"
    #: Its queued cells wait for Resume or Drop (two cells failed the same way, or the canary failed).
    HELD = "held"
    #: The canary trained: the other cells were started.
    RELEASED = "released"
    #: Held, then resumed by someone.
    RESUMED = "resumed"
    #: Held, then dropped by someone: its queued cells were cancelled.
    DROPPED = "dropped"
    #: A sweep of the sweeps table (issue 23): its :class:`adjutant.sweeps.service.SweepService` paces its trials,
    #: holds them when two fail alike and runs its own canary; the scheduler's canary and hold leave it alone.
    SERVICE = "service"


class SweepKind(StrEnum):
    """The two kinds of sweep of the sweeps table."""

    #: Adjutant is the controller: it proposes each trial (W&B's sweep has ``controller: {type: local}``).
    SEARCH = "search"
    #: W&B's controller hands out the trials; Adjutant keeps ``parallel`` agent jobs working on the sweep.
    AGENTS = "agents"


class SweepState(StrEnum):
    """Where a sweep of the sweeps table is (``sweeps.state``). The moves it may make are :meth:`may_become`."""

    #: Trials are proposed (or agents queued) as slots free.
    RUNNING = "running"
    #: Nothing new is proposed; running trials finish, queued ones wait (held) for Resume.
    PAUSED = "paused"
    #: Stop was asked: its running and queued trials are being cancelled.
    STOPPING = "stopping"
    #: Stopped by someone (ended).
    STOPPED = "stopped"
    #: Nothing more to run: the space, the cap or the target was reached, or W&B's controller has nothing more (ended).
    FINISHED = "finished"

    @property
    def ended(self) -> bool:
        """Terminal: nothing of the sweep runs or will run again."""
        return self in SWEEP_ENDED

    @property
    def label(self) -> str:
        """The word for it in chat."""
        return _SWEEP_LABELS[self]

    @property
    def wandb_state(self) -> str:
        """The state W&B's sweep is given when this one is reached (``UpsertSweep state``)."""
        return _SWEEP_WANDB[self]

    def may_become(self, new: SweepState) -> bool:
        """Whether a sweep in this state may move to ``new`` (the stores' compare-and-set uses the same table)."""
        return new in _SWEEP_MOVES[self]

    def sources(self) -> tuple[SweepState, ...]:
        """The states from which a sweep may move to this one."""
        return tuple(state for state in SweepState if state.may_become(self))


#: The ended sweep states.
SWEEP_ENDED: tuple[SweepState, ...] = (SweepState.STOPPED, SweepState.FINISHED)
_SWEEP_MOVES: dict[SweepState, frozenset[SweepState]] = {
    SweepState.RUNNING: frozenset({SweepState.PAUSED, SweepState.STOPPING, SweepState.STOPPED, SweepState.FINISHED}),
    SweepState.PAUSED: frozenset({SweepState.RUNNING, SweepState.STOPPING, SweepState.STOPPED, SweepState.FINISHED}),
    SweepState.STOPPING: frozenset({SweepState.STOPPED}),
    SweepState.STOPPED: frozenset(),
    SweepState.FINISHED: frozenset(),
}
_SWEEP_LABELS: dict[SweepState, str] = {
    SweepState.RUNNING: "running",
    SweepState.PAUSED: "paused",
    SweepState.STOPPING: "stopping",
    SweepState.STOPPED: "stopped",
    SweepState.FINISHED: "finished",
}
#: W&B's sweep states (``wandb sweep --pause/--resume/--cancel/--stop``); a stop cancels its runs, so CANCELED.
_SWEEP_WANDB: dict[SweepState, str] = {
    SweepState.RUNNING: "RUNNING",
    SweepState.PAUSED: "PAUSED",
    SweepState.STOPPING: "CANCELED",
    SweepState.STOPPED: "CANCELED",
    SweepState.FINISHED: "FINISHED",
}


class TrialState(StrEnum):
    """Where one trial of a sweep is (``sweep_trials.state``); it follows its job until it ends."""

    #: Recorded with its job, waiting in the queue.
    QUEUED = "queued"
    #: Its job runs.
    RUNNING = "running"
    #: Its job succeeded (its value is the metric's final summary value, once read).
    DONE = "done"
    #: Its job failed or was lost.
    FAILED = "failed"
    #: Stopped while running: early (hyperband, ``rung`` set), with its sweep, or cancelled by someone.
    STOPPED = "stopped"
    #: Cancelled before it ran (the sweep stopped, or its target was reached).
    DROPPED = "dropped"

    @property
    def active(self) -> bool:
        """It holds one of the sweep's slots."""
        return self in TRIAL_ACTIVE

    @property
    def ended(self) -> bool:
        return not self.active

    @property
    def label(self) -> str:
        """The word for it in chat."""
        return "stopped early" if self == TrialState.STOPPED else self.value

    @classmethod
    def of_job(cls, state: JobState, *, started: bool) -> TrialState:
        """The trial state a job's state means (``started``: the job ever ran, which tells a cancelled trial that
        was stopped from one dropped before it ran)."""
        if state in (JobState.QUEUED, JobState.STARTING):
            return cls.QUEUED
        if state in (JobState.RUNNING, JobState.CANCELLING):
            return cls.RUNNING
        if state == JobState.SUCCEEDED:
            return cls.DONE
        if state == JobState.CANCELLED:
            return cls.STOPPED if started else cls.DROPPED
        return cls.FAILED


#: The trial states that hold a slot.
TRIAL_ACTIVE: tuple[TrialState, ...] = (TrialState.QUEUED, TrialState.RUNNING)


@dataclass(frozen=True)
class Job:
    """One row of the jobs table."""

    seq: int
    id: str
    state: str
    params: dict[str, Any]
    script: str
    requested_by_id: int
    requested_by: str
    channel_id: int | None
    message_id: int | None
    ack_id: int | None
    sweep_id: str | None
    wandb_run_id: str
    log_path: str
    supervisor_pid: int | None
    pid: int | None
    pgid: int | None
    exit_code: int | None
    reason: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    cancel_requested_at: dt.datetime | None
    cancelled_by: str | None
    killed_at: dt.datetime | None
    reported: bool
    backend: str
    external_id: str | None
    external_state: str | None
    thread_id: int | None
    acked: bool
    report_id: int | None
    params_text: str
    #: The W&B project (and entity) of the channel it was launched in: its run lands there.
    project: str | None = None
    entity: str | None = None
    #: Its attempt (a retry runs the same job again: same id, same W&B run) and why it was retried.
    attempt: int = 1
    retried_because: str | None = None
    #: Backend options a remediation changed (Slurm ``time``, ``mem``), and the remediations made.
    overrides: dict[str, str] = field(default_factory=dict)
    remedied: tuple[str, ...] = ()
    #: GPUs asked for; the ids it holds while active (local jobs with ADJUTANT_GPUS); its time limit in seconds.
    gpus: int = 0
    gpu_ids: tuple[int, ...] = ()
    time_limit: float | None = None
    #: GPUs its backend says it was given (Slurm), when known.
    gpus_allocated: int | None = None
    #: The route it was launched under (the configured channel, as text); None for jobs older than routes.
    route: str | None = None
    #: Its priority class (:data:`PRIORITIES`) and whether a higher-priority job may preempt it.
    priority: str = "normal"
    preemptible: bool = False
    #: A preemption decided (before its signal): when, for which job; when SIGTERM followed the grace. None once it
    #: is queued again.
    preempted_at: dt.datetime | None = None
    preempted_by: str | None = None
    preempt_term_at: dt.datetime | None = None
    #: Attempts started again after a preemption (not counted against ADJUTANT_RETRIES).
    preemptions: int = 0
    #: The W&B sweep its run is attached to (a sweep trial: WANDB_SWEEP_ID in its environment), or None.
    wandb_sweep_id: str | None = None

    @property
    def rank(self) -> int:
        """Its priority as a number: higher goes first (``low`` 0, ``normal`` 1, ``high`` 2)."""
        return priority_rank(self.priority)

    @property
    def gpus_used(self) -> int:
        """GPUs counted for usage: what the backend allocated when known, else what it asked for."""
        return self.gpus_allocated if self.gpus_allocated is not None else self.gpus

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["params_text"] = data["params"]
        data["params"] = json.loads(data["params"])
        for key in ("created_at", "started_at", "ended_at", "cancel_requested_at", "killed_at"):
            data[key] = parse_iso(data[key])
        for key in ("preempted_at", "preempt_term_at"):
            data[key] = parse_iso(data.get(key))
        data["preemptible"] = bool(data.get("preemptible", 0))
        data["reported"] = bool(data["reported"])
        data["acked"] = bool(data["acked"])
        data["state"] = JobState(data["state"])
        data["overrides"] = json.loads(data.get("overrides") or "{}")
        data["remedied"] = tuple(json.loads(data.get("remedied") or "[]"))
        data["gpu_ids"] = tuple(int(i) for i in (data.get("gpu_ids") or "").split(",") if i)
        for key in ("log_offset", "log_told", "log_done", "queue_told", "held"):  # bookkeeping, read where used
            data.pop(key, None)
        return cls(**data)

    def duration(self, now: dt.datetime | None = None) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at or now or utcnow()
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True)
class JobLink:
    """The Adjutant job behind a W&B run: where its story is told, where the job is now, and who launched it."""

    job_id: str
    thread_id: int | None
    message_id: int | None
    state: str | None = None
    requested_by_id: int | None = None

    @property
    def over(self) -> bool:
        """Adjutant ended the job (or is ending it: cancelling): its end report tells how it ended, and its run is no
        longer judged (a cancelled job's run can stay "running" in W&B with no heartbeat)."""
        return self.state in (*ENDED, JobState.CANCELLING)


@dataclass(frozen=True)
class JobUpdate:
    """What a launcher learned about a job: the fields to record (None: unchanged)."""

    state: JobState | None = None
    exit_code: int | None = None
    reason: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    supervisor_pid: int | None = None
    external_id: str | None = None
    external_state: str | None = None
    gpus_allocated: int | None = None

    def columns(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class JobRequest:
    """A launch to record: what to run, for whom, and where its story is told."""

    params: Mapping[str, Any]
    script: str
    requested_by_id: int
    requested_by: str
    channel_id: int | None
    message_id: int | None
    backend: str = "local"
    sweep_id: str | None = None
    #: True when no acknowledgement of its own will be sent.
    acked: bool = False
    #: The message that acknowledges it, when it exists already (a sweep's preview).
    ack_id: int | None = None
    #: The W&B project and entity its run must land in (the launching channel's).
    project: str | None = None
    entity: str | None = None
    #: GPUs it asks for, and its time limit in seconds (None: none).
    gpus: int = 0
    time_limit: float | None = None
    #: The route it is launched under (see Job.route).
    route: str | None = None
    #: Backend options asked at launch (``mem``, ``cpus``: ``--memory``/``--cpus``); see Job.overrides.
    overrides: Mapping[str, str] = field(default_factory=dict)
    #: Its priority class (:data:`PRIORITIES`) and whether it may be preempted (see Job.priority).
    priority: str = "normal"
    preemptible: bool = False
    #: The W&B sweep its run is attached to (see Job.wandb_sweep_id).
    wandb_sweep_id: str | None = None
