"""GPUs as the unit of work: which queued jobs start on which GPUs, and who used how many GPU-hours (pure).

The queue rule (:func:`plan`) is EASY backfilling, as in Slurm's backfill scheduler:

- queued jobs start in order while the GPUs they ask for are free (lowest free ids first);
- the first job that does not fit waits at the head and *reserves*: from the time limits of the running
  jobs it is known when enough GPUs will be free for it (its start time);
- a later job may start before it only if it cannot delay that start: it fits in the GPUs free now and
  either its own time limit ends before the head's start time, or it uses only GPUs the head will not need
  then. A job without a time limit never overtakes a waiting job on GPUs the head needs, and nothing
  overtakes when a running job the head waits for has no time limit (its end is unknown).

Time limits (ADJUTANT_TIME_LIMIT, ``--time``) are enforced by the scheduler, so the reservation holds.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class Waiting(NamedTuple):
    """A queued job, as the plan sees it (a tuple: a pass builds one a queued job, up to 1,000)."""

    id: str
    gpus: int
    limit: float | None  # seconds, None: no limit


@dataclass(frozen=True)
class Holding:
    """A running job's GPUs and when its time limit frees them (None: unknown)."""

    gpus: int
    ends_at: float | None  # seconds since the epoch


@dataclass
class Plan:
    """What to start now: (job id, GPU ids) in order; and the head job that waits, with its reserved start."""

    starts: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    head: str | None = None
    head_start: float | None = None


def plan(
    queue: Sequence[Waiting],
    free: Iterable[int],
    running: Sequence[Holding],
    now: float,
    *,
    slots: int,
    backfill: bool = True,
) -> Plan:
    """The starts a pass makes (see the module's rule). ``free``: GPU ids free now; ``slots``: how many more jobs may
    run at all. ``backfill`` False is strict FIFO (the head blocks everything behind it), for comparison."""
    free_ids = sorted(free)
    result = Plan()
    shadow: float | None = None  # when the head can start (math.inf: unknown)
    extra = 0  # GPUs free at the head's start that it does not need
    for job in queue:
        if slots <= 0:
            break
        fits = job.gpus <= len(free_ids)
        if result.head is None:
            if fits:
                result.starts.append((job.id, tuple(free_ids[: job.gpus])))
                free_ids = free_ids[job.gpus :]
                slots -= 1
                continue
            if not backfill:
                result.head = job.id
                break
            result.head = job.id
            shadow, extra = _reservation(job.gpus, len(free_ids), running, now)
            result.head_start = None if math.isinf(shadow) else shadow
            if math.isinf(shadow):
                break  # its start is unknown: nothing can be shown not to delay it
            continue
        assert shadow is not None
        if not fits:
            continue
        ends_in_time = job.limit is not None and now + job.limit <= shadow
        if ends_in_time or job.gpus <= extra:
            if not ends_in_time:
                extra -= job.gpus  # it may still hold these when the head starts
            result.starts.append((job.id, tuple(free_ids[: job.gpus])))
            free_ids = free_ids[job.gpus :]
            slots -= 1
    return result


def _reservation(need: int, free_now: int, running: Sequence[Holding], now: float) -> tuple[float, int]:
    """(when ``need`` GPUs are free, GPUs to spare then), from the running jobs' ends; math.inf when unknown."""
    available = free_now
    if available >= need:
        return now, available - need
    ends = sorted(running, key=lambda h: math.inf if h.ends_at is None else h.ends_at)
    for i, holding in enumerate(ends):
        if holding.ends_at is None:
            return math.inf, 0
        available += holding.gpus
        when = max(holding.ends_at, now)
        after = ends[i + 1].ends_at if i + 1 < len(ends) else None
        if available >= need and (after is None or max(after, now) > when):  # all ending at that moment counted
            return when, available - need
    return math.inf, 0


# --- preemption ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preemptible:
    """A running job that may be preempted: its GPUs, its priority (higher: more important), when it started."""

    id: str
    gpus: int
    priority: int
    started: float  # seconds since the epoch


#: Above this many candidates the victims are chosen greedily (the exact search grows combinatorially).
EXACT_VICTIMS = 16


def victims(need: int, priority: int, running: Sequence[Preemptible]) -> list[str]:
    """The running jobs to preempt so that ``need`` more GPUs are free for a job of ``priority``: only jobs of a
    strictly lower priority; the fewest jobs; among as few, the lowest priorities, then the most recently started
    (least work lost). Empty when ``need`` <= 0 or when even all of them would not free enough."""
    pool = [r for r in running if r.priority < priority and r.gpus > 0]
    if need <= 0 or sum(r.gpus for r in pool) < need:
        return []
    order = sorted(pool, key=lambda r: (r.priority, -r.started, r.id))  # the preferred victims first
    if len(order) > EXACT_VICTIMS:
        chosen, freed = [], 0
        for r in sorted(order, key=lambda r: -r.gpus):  # fewest: largest first, preference breaking ties
            chosen.append(r)
            freed += r.gpus
            if freed >= need:
                break
        return [r.id for r in sorted(chosen, key=order.index)]
    for size in range(1, len(order) + 1):
        # combinations() yields index tuples in lexicographic order: the first that frees enough is the one whose
        # victims are the most preferred.
        for combo in itertools.combinations(range(len(order)), size):
            if sum(order[i].gpus for i in combo) >= need:
                return [order[i].id for i in combo]
    return []  # unreachable: all of them free enough


def fair_share_order(queue: Sequence[tuple[str, int, float, int]]) -> list[str]:
    """Fair share (ADJUTANT_FAIR_SHARE): queued jobs as (id, priority, its member's GPU-hours over the last 7 days,
    arrival); priority first (higher first), then the member who used fewer GPU-hours, then arrival."""
    return [job_id for job_id, *_ in sorted(queue, key=lambda q: (-q[1], q[2], q[3]))]


# --- usage ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Use:
    """One job's use of the machine: who, which project, how many GPUs, from when to when (None: still running)."""

    member_id: int
    member: str
    project: str
    gpus: int
    started: dt.datetime
    ended: dt.datetime | None


@dataclass
class Tally:
    jobs: int = 0
    job_hours: float = 0.0
    gpu_hours: float = 0.0


@dataclass(frozen=True)
class UsageReport:
    since: dt.datetime
    until: dt.datetime
    members: dict[int, Tally]
    names: dict[int, str]
    projects: dict[str, Tally]

    @property
    def total(self) -> Tally:
        total = Tally()
        for tally in self.members.values():
            total.jobs += tally.jobs
            total.job_hours += tally.job_hours
            total.gpu_hours += tally.gpu_hours
        return total

    def ranked(self) -> list[tuple[str, Tally]]:
        """Members, most GPU-hours first (then job-hours)."""
        order = sorted(self.members.items(), key=lambda kv: (-kv[1].gpu_hours, -kv[1].job_hours, kv[0]))
        return [(self.names.get(member_id, str(member_id)), tally) for member_id, tally in order]


def hours_within(use: Use, since: dt.datetime, until: dt.datetime) -> float:
    """Hours of ``use`` that fall between ``since`` and ``until``."""
    start = max(use.started, since)
    end = min(use.ended or until, until)
    return max(0.0, (end - start).total_seconds() / 3600)


def usage(uses: Iterable[Use], since: dt.datetime, until: dt.datetime) -> UsageReport:
    """Jobs, job-hours and GPU-hours per member and per project between ``since`` and ``until``."""
    members: dict[int, Tally] = {}
    names: dict[int, str] = {}
    projects: dict[str, Tally] = {}
    for use in uses:
        hours = hours_within(use, since, until)
        if hours <= 0 and not (since <= use.started <= until):
            continue
        names[use.member_id] = use.member
        for tally in (members.setdefault(use.member_id, Tally()), projects.setdefault(use.project, Tally())):
            tally.jobs += 1
            tally.job_hours += hours
            tally.gpu_hours += hours * use.gpus
    return UsageReport(since, until, members, names, projects)


WEEK = dt.timedelta(days=7)


@dataclass(frozen=True)
class QuotaState:
    used: float  # GPU-hours over the last 7 days
    quota: float

    @property
    def fraction(self) -> float:
        return self.used / self.quota if self.quota > 0 else math.inf

    @property
    def warn(self) -> bool:
        return 0.8 <= self.fraction < 1.0

    @property
    def exceeded(self) -> bool:
        return self.fraction >= 1.0


def quota_state(uses: Iterable[Use], quota: float, now: dt.datetime) -> QuotaState:
    """A member's rolling 7-day GPU-hours against their quota."""
    used = sum(hours_within(u, now - WEEK, now) * u.gpus for u in uses)
    return QuotaState(used, quota)


def frees_at(uses: Sequence[Use], quota: float, now: dt.datetime) -> dt.datetime:
    """When the rolling 7-day usage falls under ``quota`` again, if the member's running jobs stopped now and
    nothing new ran (to the minute)."""
    stopped = [Use(u.member_id, u.member, u.project, u.gpus, u.started, u.ended or now) for u in uses]

    def used_at(moment: dt.datetime) -> float:
        return sum(hours_within(u, moment - WEEK, moment) * u.gpus for u in stopped)

    low, high = now, now + WEEK
    if used_at(low) < quota:
        return now
    while (high - low) > dt.timedelta(minutes=1):
        middle = low + (high - low) / 2
        if used_at(middle) < quota:
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True)
class Commitment:
    """A member's queued or running job, as the quota sees it: GPUs, time limit, when it started (None: queued)."""

    gpus: int
    limit: float | None  # seconds, None: no limit
    started: dt.datetime | None = None


def committed_gpu_hours(jobs: Iterable[Commitment], now: dt.datetime) -> float:
    """GPU-hours the member's queued and running jobs may still use, up to their time limits: a queued job its whole
    limit, a running one what is left of it. A job without a time limit adds nothing (its use so far is counted in
    :func:`quota_state`; with a quota every new GPU job gets a limit, see :mod:`adjutant.admission`)."""
    total = 0.0
    for job in jobs:
        if job.limit is None or job.gpus <= 0:
            continue
        elapsed = 0.0 if job.started is None else max(0.0, (now - job.started).total_seconds())
        total += job.gpus * max(0.0, job.limit - elapsed) / 3600
    return total
