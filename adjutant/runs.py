"""W&B runs as plain data, and the pure logic around them: lifecycle transitions, ranking, lookup.

Nothing here talks to W&B or Discord; :mod:`adjutant.wandb_source` fills :class:`RunInfo` and the
reporting cog decides what to do with the results.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from adjutant.numbers import expected, is_whole, looks_numeric, parse_whole, shown


class RunState(StrEnum):
    """The states W&B reports for a run. ``pending`` runs have not started yet (shown as waiting); ``preempting`` and
    ``preempted`` runs lost their machine and may resume (never a crash)."""

    RUNNING = "running"
    FINISHED = "finished"
    CRASHED = "crashed"
    FAILED = "failed"
    KILLED = "killed"
    PENDING = "pending"
    PREEMPTING = "preempting"
    PREEMPTED = "preempted"


STATES: tuple[RunState, ...] = tuple(RunState)
#: A run in one of these states is over.
TERMINAL: frozenset[RunState] = frozenset({RunState.FINISHED, RunState.CRASHED, RunState.FAILED, RunState.KILLED})
#: W&B's preemption states: the run is stopping, or stopped, because its machine was taken; it may come back.
PREEMPTION: frozenset[RunState] = frozenset({RunState.PREEMPTING, RunState.PREEMPTED})
#: How a state is told to people when W&B's word is not the clearest one.
STATE_WORDS: dict[str, str] = {RunState.PENDING: "waiting", RunState.PREEMPTING: "being preempted"}


def state_label(state: str) -> str:
    """A run's state as people are shown it: ``pending`` is waiting (W&B's word in brackets), others as W&B says."""
    words = STATE_WORDS.get(state)
    return f"{words} ({state})" if words else state


def parse_wandb_time(value: Any) -> dt.datetime | None:
    """W&B timestamps are UTC without a zone designator (``2026-01-07T10:00:00``); return aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().rstrip("Z")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def to_wandb_filter_time(moment: dt.datetime) -> str:
    """An ISO-8601 UTC string for ``createdAt`` filters (numbers are rejected by W&B)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RunInfo:
    """What Adjutant knows about one run. ``id`` is W&B's run id (the one in URLs); ``name`` is its display name."""

    id: str
    name: str
    state: str
    created_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    user: str | None = None
    url: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    #: The latest system metrics W&B holds for the run (``system.gpu.0.gpu`` …), from the same answer.
    system: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    group: str | None = None

    def metric(self, name: str) -> float | None:
        """A finite numeric summary value, or None."""
        return numeric(self.summary.get(name))

    def runtime_seconds(self) -> float | None:
        """W&B's ``_runtime`` when known, else heartbeat minus creation."""
        runtime = numeric(self.summary.get("_runtime"))
        if runtime is not None:
            return runtime
        if self.created_at and self.heartbeat_at:
            return max(0.0, (self.heartbeat_at - self.created_at).total_seconds())
        return None

    def step(self) -> int | None:
        step = numeric(self.summary.get("_step"))
        return None if step is None else int(step)

    def public_metrics(self) -> dict[str, float]:
        """Numeric summary metrics without W&B's own ``_`` keys."""
        out = {}
        for key, value in self.summary.items():
            if isinstance(key, str) and not key.startswith("_"):
                number = numeric(value)
                if number is not None:
                    out[key] = number
        return out

    def public_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if isinstance(k, str) and not k.startswith("_")}


def numeric(value: Any) -> float | None:
    """``value`` as a finite float, or None (W&B summaries hold anything: dicts, strings, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class RunMemory:
    """What Adjutant last recorded about a run: enough to detect the next transition."""

    state: str
    stalled: bool = False
    #: The run's progress (``_step``, else ``_runtime``) when last seen, and since when it has had that value.
    step: float | None = None
    step_since: dt.datetime | None = None
    #: True while a running run with a fresh heartbeat has made no progress for the stall time.
    idle: bool = False
    #: Metrics already announced as NaN or infinite for this run (each is told once per run).
    nonfinite: frozenset[str] = frozenset()
    #: Since when every GPU of the run has reported utilisation under the idle threshold (None: not idle).
    gpu_low_since: dt.datetime | None = None
    #: True once that has lasted the GPU idle time (one alert per episode).
    gpu_idle: bool = False


@dataclass(frozen=True)
class GpuIdleRule:
    """ADJUTANT_GPU_IDLE_MINUTES / ADJUTANT_GPU_IDLE_PERCENT."""

    after: dt.timedelta
    percent: float = 5.0


_GPU_UTILISATION = re.compile(r"^system\.gpu\.(\d+)\.gpu$")


def gpu_utilisation(run: RunInfo) -> float | None:
    """The busiest GPU's utilisation in percent from the run's latest system metrics (None: no GPU reported)."""
    values = [
        number
        for key, value in run.system.items()
        if isinstance(key, str) and _GPU_UTILISATION.match(key) and (number := numeric(value)) is not None
    ]
    return max(values) if values else None


#: How W&B writes non-finite numbers in summaries when they are not floats.
NONFINITE_TEXT = {
    "nan": "NaN",
    "infinity": "Infinity",
    "-infinity": "-Infinity",
    "inf": "Infinity",
    "-inf": "-Infinity",
}


def nonfinite_metrics(run: RunInfo) -> dict[str, str]:
    """Summary metrics whose value is NaN or ±Infinity (as a float or as W&B's text forms): name → value shown."""
    found = {}
    for key, value in run.summary.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            found[key] = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        elif isinstance(value, str) and value.strip().lower() in NONFINITE_TEXT:
            found[key] = NONFINITE_TEXT[value.strip().lower()]
    return found


def progress(run: RunInfo) -> float | None:
    """How far a run has got: its ``_step``, else its ``_runtime`` (None if W&B reports neither)."""
    for key in ("_step", "_runtime"):
        value = numeric(run.summary.get(key))
        if value is not None:
            return value
    return None


def is_stalled(run: RunInfo, now: dt.datetime, stall_after: dt.timedelta) -> bool:
    """A running run whose last heartbeat is older than ``stall_after``."""
    return run.state == "running" and run.heartbeat_at is not None and now - run.heartbeat_at > stall_after


def transitions(
    previous: RunMemory | None,
    run: RunInfo,
    now: dt.datetime,
    stall_after: dt.timedelta,
    *,
    nan_alerts: bool = True,
    gpu_idle: GpuIdleRule | None = None,
) -> tuple[list[str], RunMemory]:
    """The events between what was recorded and what W&B says now, and the memory to record.

    Events: started, finished, crashed, failed, killed, stalled (no heartbeat), resumed (heartbeat back
    after a stall, or running again after a preemption), preempted (W&B says preempting or preempted: once per
    preemption, never "crashed"), no-progress (heartbeat fresh, but ``_step`` or ``_runtime`` unchanged for
    ``stall_after``), progressing (it moves again), nonfinite:<metric> (a summary metric became NaN or
    ±Infinity; once per run and metric), gpu-idle (every GPU under ``gpu_idle.percent`` for ``gpu_idle.after``;
    once per episode). Only what the poll already returned is read. Each change of
    memory yields its events once, so recording the new memory in the same transaction as the events
    makes them exactly-once.
    """
    stalled = is_stalled(run, now, stall_after)
    events: list[str] = []
    step, step_since, idle, nonfinite = None, None, False, frozenset[str]()
    gpu_low_since, gpu_was_idle = None, False
    if run.state == "running":
        step = progress(run)
        if step is not None:
            same = previous is not None and previous.step == step and previous.step_since is not None
            step_since = previous.step_since if same and previous is not None else now
            idle = not stalled and step_since is not None and now - step_since > stall_after
        bad = nonfinite_metrics(run)
        already = previous.nonfinite if previous is not None else frozenset()
        if nan_alerts:
            events += [f"nonfinite:{name}" for name in sorted(set(bad) - already)]
        nonfinite = already | frozenset(bad)
        utilisation = gpu_utilisation(run) if gpu_idle is not None else None
        if gpu_idle is not None and utilisation is not None and utilisation < gpu_idle.percent:
            low = previous.gpu_low_since if previous is not None else None
            gpu_low_since = low or now
            gpu_was_idle = bool(previous is not None and previous.gpu_idle)
            if not gpu_was_idle and now - gpu_low_since >= gpu_idle.after:
                events.append("gpu-idle")
                gpu_was_idle = True
    memory = RunMemory(run.state, stalled, step, step_since, idle, nonfinite, gpu_low_since, gpu_was_idle)
    if previous is None or run.state != previous.state:
        was_preempted = previous is not None and previous.state in PREEMPTION
        if run.state == "running":
            events.insert(0, "resumed" if was_preempted else "started")
            if stalled:
                events.insert(1, "stalled")
        elif run.state in PREEMPTION:
            if not was_preempted:  # preempting then preempted is one preemption
                events.append("preempted")
        elif run.state in TERMINAL:
            events.append(run.state)
        return events, memory
    if run.state == "running":
        if stalled and not previous.stalled:
            events.append("stalled")
        elif previous.stalled and not stalled:
            events.append("resumed")
        if idle and not previous.idle:
            events.append("no-progress")
        elif previous.idle and not idle and step != previous.step:
            events.append("progressing")
    return events, memory


def suggestions(word: str, choices: Iterable[str], limit: int = 3) -> list[str]:
    """The closest names to ``word`` (case-insensitive), best first."""
    unique = list(dict.fromkeys(c for c in choices if c))
    lowered = {c.lower(): c for c in unique}
    import difflib  # only when a name is not found

    close = difflib.get_close_matches(word.lower(), list(lowered), n=limit, cutoff=0.5)
    found = [lowered[c] for c in close]
    if len(found) < limit:
        found += [c for c in unique if word.lower() in c.lower() and c not in found][: limit - len(found)]
    return found


@dataclass(frozen=True)
class BestQuery:
    """Parsed arguments of ``$best [metric] [min|max] [n]``."""

    metric: str
    goal: Literal["min", "max"]
    count: int


def parse_count(word: str, *, what: str = "the number of runs", low: int = 1, high: int = 25) -> int:
    """A count typed in chat (ASCII digits only, ``low`` to ``high``); :class:`ValueError` says what was typed."""
    return parse_whole(word, what=what, low=low, high=high)


def parse_best_args(
    words: Sequence[str], default_metric: str, default_goal: Literal["min", "max"], *, max_count: int = 25
) -> BestQuery:
    """Words in any order: a number is the count, ``min``/``max`` the goal, anything else the metric.

    A word that is meant as a number but is not one in ASCII digits (``²``, ``٣``, ``-1``, ``1e3``) is refused,
    not taken as a metric name."""
    metric, goal, count = default_metric, default_goal, 5
    metric_given = False
    for word in words:
        lowered = word.lower()
        if lowered in ("min", "max"):
            goal = "min" if lowered == "min" else "max"
        elif is_whole(word) or looks_numeric(word):
            count = parse_count(word, high=max_count)
        elif not metric_given:
            metric, metric_given = word, True
        else:
            raise ValueError(f"I expected one metric name, got {shown(metric, 60)} and {shown(word, 60)}")
    return BestQuery(metric, goal, count)


@dataclass(frozen=True)
class RunsQuery:
    """Parsed arguments of ``$runs [state] [n]``."""

    state: str | None
    count: int


def parse_runs_args(words: Sequence[str], *, max_count: int = 25) -> RunsQuery:
    """``[state] [n]`` in any order; a word that is neither a state nor an ASCII whole number is refused."""
    state: str | None = None
    count = 10
    for word in words:
        lowered = word.lower()
        if lowered in STATES:
            state = lowered
        elif lowered == "all":
            state = None
        elif is_whole(word):
            count = parse_count(word, high=max_count)
        else:
            number = f"the number of runs ({expected(1, max_count)} in digits 0-9)"
            raise ValueError(
                f"{shown(word)} is neither a run state ({', '.join(STATES)}, all) nor {number}"
                if looks_numeric(word)
                else f"{shown(word)} is neither a run state ({', '.join(STATES)}, all) nor a number"
            )
    return RunsQuery(state, count)


@dataclass(frozen=True)
class PlotQuery:
    """Parsed ``$plot <run> [run ...] [metric ...] [log]``."""

    runs: tuple[str, ...]
    metrics: tuple[str, ...]
    log_scale: bool


def parse_plot_words(words: Sequence[str], known: set[str], *, max_runs: int = 6, max_metrics: int = 4) -> PlotQuery:
    """Words are runs (ids or names Adjutant knows) until the first that is not; the rest are metrics.

    ``log`` (or ``--log``) anywhere asks for a log scale. When no word is a known run, the first word
    is taken as a run all the same (W&B may know it even if Adjutant has not seen it yet).
    """
    log_scale = any(w.lower() in ("log", "--log", "log=true") for w in words)
    rest = [w for w in words if w.lower() not in ("log", "--log", "log=true")]
    runs: list[str] = []
    for word in rest:
        if word in known and word not in runs:
            runs.append(word)
        else:
            break
    if not runs and rest:
        runs = [rest[0]]
    metrics = list(dict.fromkeys(rest[len(runs) :]))
    if not runs:
        raise ValueError("name at least one run")
    if len(runs) > max_runs:
        raise ValueError(f"at most {max_runs} runs in one chart")
    if len(metrics) > max_metrics:
        raise ValueError(f"at most {max_metrics} metrics in one chart")
    return PlotQuery(tuple(runs), tuple(metrics), log_scale)
