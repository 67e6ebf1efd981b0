"""Run health alerts, Discord-free: watch rules (``$watch val_loss > 2``, and over windows and other runs:
``avg(val_loss, 5) > 2``, ``change(loss, 10, 50) > 25%``, ``zscore(accuracy, 30) < -2``, ``plateau(val_loss, 5)``,
``diverging(loss, 3)``: parsed and evaluated here, the history they read fetched by the watcher), log patterns,
mutes, the alert records behind the alert card's buttons, and the alert policies (global and per project).

Everything here is pure except the SQL helpers, which take an open transaction: an alert is recorded in the
same transaction as the memory that caused it (a run's new state, a rule's hit, a log's new offset), so each
episode is announced exactly once, across restarts.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from adjutant.clock import iso_seconds
from adjutant.numbers import parse_decimal, parse_whole, shown
from adjutant.render import plain, truncate
from adjutant.runs import RunInfo

if TYPE_CHECKING:
    from adjutant.projects import ProjectRoute

#: The outbox "project" of alerts about Adjutant's own jobs that W&B does not know about (log patterns).
JOBS_OUTBOX = "adjutant:jobs"
#: At most this many watch rules per project (each is checked on every poll).
MAX_RULES = 50
#: How long the alert card's "Mute 1 h" button mutes a run's alerts of one kind.
MUTE_FOR = dt.timedelta(hours=1)
#: Log patterns watched when ADJUTANT_LOG_ALERTS is not set.
DEFAULT_LOG_PATTERNS = (r"CUDA out of memory", r"NCCL.*[Tt]imeout", r"Traceback \(most recent call last\)")
#: What people are shown for the default patterns (a pattern of one's own is named by a leading ``(?#name)``
#: comment, else by its literal words: see :func:`pattern_name`).
PATTERN_NAMES = {
    DEFAULT_LOG_PATTERNS[0]: "CUDA out of memory",
    DEFAULT_LOG_PATTERNS[1]: "an NCCL timeout",
    DEFAULT_LOG_PATTERNS[2]: "a Python traceback",
}


class AlertKind(StrEnum):
    """What an alert is about: the first part of an event name (``rule:3`` is a RULE alert)."""

    STALLED = "stalled"
    NO_PROGRESS = "no-progress"
    NONFINITE = "nonfinite"
    RULE = "rule"
    GPU_IDLE = "gpu-idle"
    LOG = "log"
    CRASHED = "crashed"
    FAILED = "failed"
    SWEEP_HELD = "sweep-held"
    CANARY_FAILED = "canary-failed"


def alert_kind(event: str) -> AlertKind | None:
    """The alert kind of a run event, or None when the event is news rather than an alert (started, finished)."""
    try:
        return AlertKind(event.partition(":")[0])
    except ValueError:
        return None


class Op(StrEnum):
    """The comparisons a watch rule can make."""

    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    def holds(self, value: float, threshold: float) -> bool:
        if self is Op.LT:
            return value < threshold
        if self is Op.LE:
            return value <= threshold
        if self is Op.GT:
            return value > threshold
        return value >= threshold


class RuleError(ValueError):
    """A rule that cannot be watched; the message says what is wrong, for the chat."""


class Fn(StrEnum):
    """What a rule reads of a metric besides its latest summary value (``avg(val_loss, 5)`` …)."""

    AVG = "avg"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    CHANGE = "change"
    ZSCORE = "zscore"
    PLATEAU = "plateau"
    DIVERGING = "diverging"


#: The window functions over a run's last N logged values.
WINDOWS = frozenset({Fn.AVG, Fn.MIN, Fn.MAX, Fn.LAST})
#: A window (N, or change's two windows) and a z-score's number of finished runs are within these bounds.
MIN_WINDOW, MAX_WINDOW = 2, 500
#: ``plateau(m, N)`` fires when the last N values improved on the first of them by less than this fraction of it.
PLATEAU_DELTA = 0.01
#: ``diverging(m, F)``: F is a factor above 1 and at most this.
MAX_FACTOR = 1000.0
#: Metric names read as "lower is better" by plateau and diverging when the metric is not the route's own
#: (whose goal is ADJUTANT_METRIC_GOAL / metric_goal); every other metric is "higher is better".
LOSS_WORDS = ("loss", "error", "err", "perplexity", "ppl", "mse", "mae", "rmse", "nll", "wer", "cer", "regret")


def goal_of(metric: str, route_metric: str, route_goal: str) -> str:
    """``min`` or ``max``: the route's goal for its own metric, else ``min`` for loss-like names, else ``max``."""
    if metric == route_metric:
        return route_goal
    words = re.split(r"[^a-z0-9]+", metric.lower())
    return "min" if any(word in LOSS_WORDS or word.endswith("loss") for word in words) else "max"


@dataclass(frozen=True)
class Term:
    """What a rule reads: a metric's latest summary value (``fn`` None), or a function of the run's history or of
    the project's finished runs. ``args``: N (windows, zscore, plateau), A and B (change), the factor (diverging)."""

    metric: str
    fn: Fn | None = None
    args: tuple[float, ...] = ()

    def text(self) -> str:
        """As stored in a rule's ``metric`` column: ``val_loss``, ``avg(val_loss,5)``."""
        if self.fn is None:
            return self.metric
        return f"{self.fn}({','.join([self.metric, *(f'{a:.12g}' for a in self.args)])})"

    def shown(self) -> str:
        """As people type it: ``avg(val_loss, 5)``."""
        return self.text().replace(",", ", ")

    @property
    def window(self) -> int:
        """How many of the run's last logged values the term reads (0: none, or the whole run for diverging)."""
        if self.fn in WINDOWS or self.fn is Fn.PLATEAU:
            return int(self.args[0])
        if self.fn is Fn.CHANGE:
            return int(self.args[1])
        return 0

    @property
    def needs_history(self) -> bool:
        """Does it read the run's sampled history (one request per run, every ADJUTANT_HISTORY_POLLS polls)?"""
        return self.window > 0 or self.fn is Fn.DIVERGING

    @property
    def runs_back(self) -> int:
        """How many of the project's last finished runs it compares with (zscore), else 0."""
        return int(self.args[0]) if self.fn is Fn.ZSCORE else 0

    @property
    def shape(self) -> bool:
        """plateau and diverging decide by themselves: they take no comparison."""
        return self.fn in (Fn.PLATEAU, Fn.DIVERGING)


_CALL = re.compile(r"^\s*(?P<fn>[A-Za-z_]+)\s*\((?P<args>[^()]*)\)\s*(?P<rest>.*?)\s*$", re.S)


@functools.lru_cache(maxsize=512)
def parse_term(text: str) -> Term:
    """A stored rule's ``metric`` column as a :class:`Term` (a plain metric name when it is not a known function)."""
    match = _CALL.match(text)
    if match is None or match["rest"] or match["fn"].lower() not in set(Fn):
        return Term(text)
    parts = [p.strip() for p in match["args"].split(",")]
    try:
        return Term(parts[0], Fn(match["fn"].lower()), tuple(float(p) for p in parts[1:]))
    except ValueError:
        return Term(text)


@dataclass(frozen=True)
class RuleSpec:
    """A parsed ``$watch`` rule, before it is stored. ``metric`` is what the rule reads as stored (a metric name, or
    a function of one: ``avg(val_loss,5)``; see :attr:`term`); plateau and diverging store their own comparison
    (``< 0.01``, ``> factor``)."""

    metric: str
    op: Op
    value: float
    scope: str = "all"

    @property
    def term(self) -> Term:
        return parse_term(self.metric)

    def describe(self) -> str:
        term, scope = self.term, describe_scope(self.scope)
        if term.shape:
            return f"{term.shown()} ({scope})"
        if term.fn is Fn.CHANGE:
            return f"{term.shown()} {self.op} {self.value * 100:g}% ({scope})"
        return f"{term.shown()} {self.op} {self.value:g} ({scope})"

    def applies_to(self, run: RunInfo) -> bool:
        """Does the rule's scope (``all``, ``group:<g>``, ``tag:<t>``, a run id or name) take in this run?"""
        kind, _, name = self.scope.partition(":")
        if self.scope == "all":
            return True
        if kind == "group" and name:
            return run.group == name
        if kind == "tag" and name:
            return name in run.tags
        key = name if kind == "run" and name else self.scope
        return key in (run.id, run.name)


@dataclass(frozen=True)
class WatchRule(RuleSpec):
    """A stored rule: ``id`` is what ``$unwatch`` takes."""

    id: int = 0
    author_id: int = 0
    author: str = ""


def describe_scope(scope: str) -> str:
    kind, _, name = scope.partition(":")
    if scope == "all":
        return "all runs"
    if kind in ("group", "tag") and name:
        return f"{kind} {name}"
    return f"run {name if kind == 'run' else scope}"


_RULE = re.compile(r"^\s*(?P<metric>[^\s<>=]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>\S+)(?:\s+(?P<scope>.*?))?\s*$")
_COMPARISON = re.compile(r"^\s*(?P<op><=|>=|<|>)\s*(?P<value>\S+)(?:\s+(?P<scope>.*?))?\s*$", re.S)
_BAD_CHARACTERS = re.compile(r"[\x00-\x1f\x7f`@]")
#: The arguments each function takes, for refusals.
_SIGNATURES = {
    Fn.AVG: "avg(<metric>, N)",
    Fn.MIN: "min(<metric>, N)",
    Fn.MAX: "max(<metric>, N)",
    Fn.LAST: "last(<metric>, N)",
    Fn.CHANGE: "change(<metric>, A, B)",
    Fn.ZSCORE: "zscore(<metric>, N)",
    Fn.PLATEAU: "plateau(<metric>, N)",
    Fn.DIVERGING: "diverging(<metric>, <factor>)",
}


def parse_rule(text: str) -> RuleSpec:
    """``<metric> <op> <value> [scope]``, e.g. ``val_loss > 2`` or ``gpu_util < 10 group:sweep-7``, or a function of a
    metric: ``avg(val_loss, 5) > 2``, ``change(loss, 10, 50) > 25%``, ``zscore(accuracy, 30) < -2``,
    ``plateau(val_loss, 5)``, ``diverging(loss, 3) tag:big``."""
    call = _CALL.match(text or "")
    if call is not None and (call["fn"].lower() in set(Fn) or "," in call["args"]):
        return _parse_call(call["fn"].lower(), call["args"], call["rest"])
    match = _RULE.match(text or "")
    if match is None:
        if not (text or "").strip():
            raise RuleError("give a rule: <metric> <op> <value> [run id, group:<name>, tag:<name> or all]")
        if not re.search(r"<|>", text):
            raise RuleError("the comparison must be one of <, <=, >, >= (for example `val_loss > 2`)")
        raise RuleError("a rule reads <metric> <op> <value> [scope], for example `val_loss > 2 group:sweep-7`")
    metric = match["metric"]
    _check_metric(metric)
    value = _threshold(match["value"], percent=False)
    return RuleSpec(metric, Op(match["op"]), value, _scope(match["scope"]))


def _check_metric(metric: str) -> None:
    if not metric:
        raise RuleError("name the metric, for example `avg(val_loss, 5) > 2`")
    if len(metric) > 100 or _BAD_CHARACTERS.search(metric):
        raise RuleError("the metric name must be at most 100 characters, without control characters, ` or @")
    if any(c.isspace() for c in metric):
        raise RuleError(f"the metric name {plain(repr(truncate(metric, 40)))} has a space: W&B names have none")


def _threshold(text: str, *, percent: bool) -> float:
    """The value a rule compares with (``percent``: ``25%`` → 0.25, and the % is required)."""
    number = text
    if percent:
        if not text.endswith("%"):
            raise RuleError(f"change(...) compares a relative change: give a percentage like 25%, not {shown(text)}")
        number = text[:-1]
    elif text.endswith("%"):
        raise RuleError("a percentage is for change(<metric>, A, B) only; give a plain number here")
    if number.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise RuleError("the threshold must be a finite number (NaN and Infinity are told without a rule)")
    try:
        value = parse_decimal(number, what="the threshold")  # ASCII digits only: ٣ is not 3
    except ValueError as error:
        raise RuleError(str(error)) from None
    return value / 100 if percent else value


def _scope(text: str | None) -> str:
    scope = (text or "all").strip() or "all"
    if any(c.isspace() for c in scope):
        raise RuleError("give one scope: a run id or name, group:<name>, tag:<name>, or all")
    if len(scope) > 128 or _BAD_CHARACTERS.search(scope):
        raise RuleError("the scope must be at most 128 characters, without control characters, ` or @")
    kind, colon, name = scope.partition(":")
    if colon and kind in ("group", "tag", "run") and not name:
        raise RuleError(f"say which {kind}: {kind}:<name>")
    return "all" if scope.lower() == "all" else scope


def _whole(text: str, what: str, low: int, high: int) -> int:
    try:
        return parse_whole(text, what=what, low=low, high=high)
    except ValueError as error:
        raise RuleError(str(error)) from None


def _parse_call(name: str, args_text: str, rest: str) -> RuleSpec:
    """A rule on a function of a metric (see :func:`parse_rule`)."""
    if name not in set(Fn):
        raise RuleError(f"unknown function {shown(name)}: use {', '.join(list(Fn)[:-1])} or {list(Fn)[-1]}")
    fn = Fn(name)
    usage = _SIGNATURES[fn]
    args = [a.strip() for a in args_text.split(",")]
    wanted = 3 if fn is Fn.CHANGE else 2
    if len(args) != wanted:
        raise RuleError(f"{fn} takes {wanted} arguments: {usage}")
    metric = args[0]
    _check_metric(metric)
    numbers: tuple[float, ...]
    if fn is Fn.CHANGE:
        recent = _whole(args[1], f"A in {usage}", 1, MAX_WINDOW - 1)
        longer = _whole(args[2], f"B in {usage} (more than A)", recent + 1, MAX_WINDOW)
        numbers = (recent, longer)
    elif fn is Fn.DIVERGING:
        try:
            factor = parse_decimal(args[1], what="the factor of diverging")
        except ValueError as error:
            raise RuleError(str(error)) from None
        if not 1 < factor <= MAX_FACTOR:
            raise RuleError(f"the factor of diverging must be above 1 and at most {MAX_FACTOR:g}, not {factor:g}")
        numbers = (factor,)
    else:
        numbers = (_whole(args[1], f"N in {usage}", MIN_WINDOW, MAX_WINDOW),)
    term = Term(metric, fn, numbers)
    if term.shape:
        if _COMPARISON.match(rest) is not None:
            raise RuleError(f"{fn} decides by itself: give no comparison, e.g. `{term.shown()} tag:big`")
        scope = _scope(rest)
        if fn is Fn.PLATEAU:
            return RuleSpec(term.text(), Op.LT, PLATEAU_DELTA, scope)
        return RuleSpec(term.text(), Op.GT, numbers[0], scope)
    comparison = _COMPARISON.match(rest)
    if comparison is None:
        example = f"{term.shown()} > 25%" if fn is Fn.CHANGE else f"{term.shown()} > 2"
        raise RuleError(f"compare {term.shown()} with <, <=, > or >= and a value, e.g. `{example}`")
    value = _threshold(comparison["value"], percent=fn is Fn.CHANGE)
    return RuleSpec(term.text(), Op(comparison["op"]), value, _scope(comparison["scope"]))


# --- evaluating rules ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """One evaluation of a rule on a run: the value it computed (a window's mean, a relative change, a z-score, a
    plateau's relative improvement, a divergence's ratio to the best) and whether the rule is crossed."""

    value: float
    crossed: bool


@dataclass(frozen=True)
class RunHistory:
    """What one sampled-history request read of a run: per metric, its last logged values (oldest first, exactly
    as logged, non-finite ones left out) and, for diverging, its lowest and highest value over the whole run
    (evenly sampled)."""

    tails: Mapping[str, Sequence[float]]
    extremes: Mapping[str, tuple[float, float]]


def evaluate(
    rule: RuleSpec,
    run: RunInfo,
    *,
    history: RunHistory | None = None,
    baseline: Mapping[str, Sequence[float]] | None = None,
    goal: str = "min",
) -> Reading | None:
    """The rule on the run now, or None when it cannot be told (no such metric, too few values, a rule on history
    when this poll read none, no baseline, a zero to divide by). ``baseline``: per metric, the final summary values of
    the project's last finished runs (newest first); ``goal``: ``min`` or ``max``, the metric's direction."""
    term = rule.term
    if term.fn is None:
        value = run.metric(term.metric)
        return None if value is None else Reading(value, rule.op.holds(value, rule.value))
    import statistics  # only for the rules over windows and other runs (it loads fractions and decimal)

    if term.fn is Fn.ZSCORE:
        current = run.metric(term.metric)
        values = list((baseline or {}).get(term.metric, ()))[: term.runs_back]
        if current is None or len(values) < 2:
            return None
        spread = statistics.stdev(values)
        if spread == 0:
            return None
        score = (current - statistics.fmean(values)) / spread
        return Reading(score, rule.op.holds(score, rule.value))
    if history is None:
        return None
    if term.fn is Fn.DIVERGING:
        current = run.metric(term.metric)
        extremes = history.extremes.get(term.metric)
        if current is None or extremes is None:
            return None
        low, high = min(extremes[0], current), max(extremes[1], current)
        numerator, denominator = (current, low) if goal == "min" else (high, current)
        if denominator <= 0:
            return None  # a ratio to the best means something for positive values only
        ratio = numerator / denominator
        return Reading(ratio, ratio > term.args[0])
    tail = list(history.tails.get(term.metric, ()))
    if len(tail) < term.window:
        return None
    window = tail[-term.window :]
    if term.fn is Fn.CHANGE:
        recent, longer = statistics.fmean(tail[-int(term.args[0]) :]), statistics.fmean(window)
        if longer == 0:
            return None
        change = (recent - longer) / abs(longer)
        return Reading(change, rule.op.holds(change, rule.value))
    if term.fn is Fn.PLATEAU:
        first, rest = window[0], window[1:]
        best = min(rest) if goal == "min" else max(rest)
        scale = abs(first) or max(abs(v) for v in window) or 1.0
        improvement = (first - best if goal == "min" else best - first) / scale
        return Reading(improvement, improvement < PLATEAU_DELTA)
    if term.fn is Fn.AVG:
        value = statistics.fmean(window)
    elif term.fn is Fn.MIN:
        value = min(window)
    elif term.fn is Fn.MAX:
        value = max(window)
    else:  # last(m, N) op v: each of the last N values crosses; the value shown is the one nearest to not crossing
        value = min(window) if rule.op in (Op.GT, Op.GE) else max(window)
    return Reading(value, rule.op.holds(value, rule.value))


def rule_events(
    rules: Sequence[WatchRule],
    run: RunInfo,
    hits: set[int],
    readings: Mapping[int, Reading | None] | None = None,
) -> tuple[list[str], set[int], set[int]]:
    """For one running run: (events ``rule:<id>`` that fire now, rule ids hit now, rule ids re-armed now).

    A rule fires when its reading crosses it, and again only after the reading has gone back (re-armed) and crossed
    again. ``readings``: each rule's reading on this run (:func:`evaluate`); without it, the rules on summary values
    are read here. A rule without a reading (no metric, a non-finite value, no history read this poll) changes nothing.
    """
    events: list[str] = []
    fired: set[int] = set()
    rearmed: set[int] = set()
    for rule in rules:
        if not rule.applies_to(run):
            continue
        reading = readings.get(rule.id) if readings is not None else evaluate(rule, run)
        if reading is None:
            continue
        if reading.crossed and rule.id not in hits:
            events.append(f"rule:{rule.id}")
            fired.add(rule.id)
        elif not reading.crossed and rule.id in hits:
            rearmed.add(rule.id)
    return events, fired, rearmed


# --- log patterns ------------------------------------------------------------------------------------
def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Compile ADJUTANT_LOG_ALERTS; raises ValueError naming the pattern that is not a regular expression."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
    return compiled


def scan_log(
    data: bytes, patterns: Sequence[re.Pattern[str]], already: set[str], *, final: bool = False
) -> tuple[list[tuple[str, str]], int]:
    """New log bytes → ([(pattern, first matching line)] for patterns not yet told, bytes consumed).

    Only whole lines are read (an unfinished last line waits for the next scan) unless ``final`` or the
    line has grown past 64 KiB. A pattern is reported once, whatever the number of lines matching it.
    """
    end = len(data) if final else data.rfind(b"\n") + 1
    if end == 0 and len(data) > 64 * 1024:
        end = len(data)
    found: list[tuple[str, str]] = []
    told = set(already)
    waiting = [p for p in patterns if p.pattern not in told]
    if not waiting:
        return found, end
    for line in data[:end].decode("utf-8", "replace").splitlines():
        for pattern in list(waiting):
            if pattern.search(line):
                found.append((pattern.pattern, line.strip()))
                waiting.remove(pattern)
        if not waiting:
            break
    return found, end


_NAME_COMMENT = re.compile(r"^\(\?#([^)]*)\)")
_SYNTAX_ONLY = re.compile(r"\(\?#[^)]*\)|\(\?[aiLmsux-]+\)")  # comments and inline flags, anywhere
#: The most characters of a pattern's name.
MAX_NAME = 100


def pattern_name(pattern: str) -> str:
    r"""The words people are shown for a log pattern, never its regular-expression syntax: the default patterns'
    names (:data:`PATTERN_NAMES`), else a leading ``(?#name)`` comment (``(?#a full disk)No space left on device``),
    else the pattern's literal text (``NCCL.*[Tt]imeout`` → ``NCCL timeout``, ``Killed\b|OOM`` → ``Killed or OOM``),
    else "a log pattern"."""
    if pattern in PATTERN_NAMES:
        return PATTERN_NAMES[pattern]
    named = _NAME_COMMENT.match(pattern)
    if named is not None and named[1].strip():
        return truncate_name(named[1].strip())
    words = truncate_name(_literal_words(_SYNTAX_ONLY.sub("", pattern)))
    return words if any(char.isalnum() for char in words) else "a log pattern"


def truncate_name(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def _literal_words(pattern: str) -> str:
    """The literal characters of a regular expression, its syntax dropped (a class or wildcard becomes a space; a
    class of one letter in either case, ``[Tt]``, that letter)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            following = pattern[i + 1]
            out.append(" " if following.isalnum() else following)  # \d \s \b …: not words; \( is "("
            i += 2
        elif char == "[":
            end = pattern.find("]", i + 2)
            body = pattern[i + 1 : end] if end != -1 else ""
            out.append(body[0].lower() if body.isalpha() and len(set(body.lower())) == 1 else " ")
            i = len(pattern) if end == -1 else end + 1
        elif char == "(":
            if pattern.startswith("(?P<", i):
                i = max(pattern.find(">", i), i) + 1
            elif pattern.startswith(("(?<=", "(?<!"), i):
                i += 4
            elif pattern.startswith(("(?:", "(?=", "(?!"), i):
                i += 3
            else:
                i += 1
        elif char == "{" and re.match(r"\{\d*,?\d*\}", pattern[i:]):
            i = pattern.index("}", i) + 1
        elif char == "|":
            out.append(" or ")
            i += 1
        elif char == ".":
            out.append(" ")
            i += 1
        elif char in ")^$*+?":
            i += 1
        else:
            out.append(char)
            i += 1
    return " ".join("".join(out).split())


#: A failed or lost job's end report shows the last END_TAIL_LINES lines of its log, cut to their last END_TAIL_CHARS
#: characters (:func:`adjutant.job_render.end_embed`).
END_TAIL_LINES = 15
END_TAIL_CHARS = 1000


def shown_in_tail(pattern: str, tail: Sequence[str]) -> bool:
    """Does ``pattern`` match a line of a log's tail as a failed job's end report shows it? Then its alert card would
    tell again what the end report tells."""
    try:
        compiled = re.compile(pattern)
    except re.error:
        return False
    shown = "\n".join(tail[-END_TAIL_LINES:])[-END_TAIL_CHARS:]
    return any(compiled.search(line) for line in shown.splitlines())


# --- records -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alert:
    """One alert as recorded: what the card's buttons act on."""

    id: int
    project: str
    run_id: str | None
    job_id: str | None
    kind: AlertKind
    metric: str | None
    step: float | None
    params: dict[str, Any] | None
    #: When it was recorded (None for a row that does not say).
    created_at: dt.datetime | None = None
    #: The action its policy takes (:class:`ActionState`; None: not decided yet) and when it is due.
    action_state: str | None = None
    action_at: dt.datetime | None = None
    #: Who pressed Keep running (when kept), or what the action did (when done).
    action_note: str | None = None


def record_alert(
    db: sqlite3.Connection,
    project: str,
    kind: AlertKind,
    *,
    run_id: str | None,
    job_id: str | None,
    metric: str | None = None,
    step: float | None = None,
    params: Mapping[str, Any] | None = None,
    now: dt.datetime,
) -> int:
    cursor = db.execute(
        "INSERT INTO alerts (project, run_id, job_id, kind, metric, step, params, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            project,
            run_id,
            job_id,
            str(kind),
            metric,
            step,
            None if params is None else json.dumps(dict(params), default=str),
            iso_seconds(now),
        ),
    )
    return int(cursor.lastrowid or 0)


def enqueue_announcement(
    db: sqlite3.Connection,
    project: str,
    run_id: str,
    event: str,
    payload: Mapping[str, Any],
    context: str | None,
    reply_to: int | None = None,
    thread_id: int | None = None,
    alert_id: int | None = None,
    *,
    subscription_id: int | None = None,
) -> None:
    """Queue one announcement (an embed dict) for delivery, in the caller's transaction. ``subscription_id``: the
    subscription a direct message is for."""
    db.execute(
        "INSERT INTO outbox (project, run_id, event, payload, context, reply_to, thread_id, alert_id, subscription_id,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            project,
            run_id,
            event,
            json.dumps(payload),
            context,
            reply_to,
            thread_id,
            alert_id,
            subscription_id,
            iso_seconds(),
        ),
    )


def alert_from_row(row: sqlite3.Row) -> Alert:
    return Alert(
        row["id"],
        row["project"],
        row["run_id"],
        row["job_id"],
        AlertKind(row["kind"]),
        row["metric"],
        row["step"],
        json.loads(row["params"]) if row["params"] else None,
        dt.datetime.fromisoformat(row["created_at"]) if row["created_at"] else None,
        row["action_state"],
        dt.datetime.fromisoformat(row["action_at"]) if row["action_at"] else None,
        row["action_note"],
    )


def muted(db: sqlite3.Connection, project: str, run_id: str | None, kind: AlertKind, now: dt.datetime) -> bool:
    if run_id is None:
        return False
    row = db.execute(
        "SELECT until FROM mutes WHERE project=? AND run_id=? AND kind=?", (project, run_id, str(kind))
    ).fetchone()
    return row is not None and dt.datetime.fromisoformat(row[0]) > now


def mute(db: sqlite3.Connection, alert: Alert, now: dt.datetime) -> dt.datetime:
    """Mute the alert's run for its kind of alert for an hour; returns until when."""
    until = now + MUTE_FOR
    db.execute(
        "INSERT INTO mutes (project, run_id, kind, until) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (project, run_id, kind) DO UPDATE SET until=excluded.until",
        (alert.project, alert.run_id or "", str(alert.kind), iso_seconds(until)),
    )
    return until


# --- alerts that act -----------------------------------------------------------------------------------
class ActionState(StrEnum):
    """Where an alert's action is (the ``alerts.action_state`` column)."""

    #: Nothing to do: the policy notifies only (or the alert is older than policies).
    NONE = "none"
    #: A stop policy covers it, but Adjutant did not launch the run: it cannot stop it.
    CANNOT = "cannot"
    #: The job is stopped at ``action_at`` unless Keep running is pressed first.
    PENDING = "pending"
    #: Keep running was pressed in time: this episode's action is off.
    KEPT = "kept"
    #: The deadline came: the action is being taken (a restart takes it up again; the cancel is idempotent).
    ACTING = "acting"
    #: Taken (or moot: the job had ended, the episode was over).
    DONE = "done"


#: The alert kinds a policy can act on, with the words people use for them (ADJUTANT_ALERT_POLICY's keys).
POLICY_KINDS = {
    "gpu-idle": AlertKind.GPU_IDLE,
    "gpu idle": AlertKind.GPU_IDLE,
    "gpu_idle": AlertKind.GPU_IDLE,
    "no-progress": AlertKind.NO_PROGRESS,
    "no progress": AlertKind.NO_PROGRESS,
    "no_progress": AlertKind.NO_PROGRESS,
    "nan": AlertKind.NONFINITE,
    "nonfinite": AlertKind.NONFINITE,
    "stalled": AlertKind.STALLED,
    "rule": AlertKind.RULE,
}
#: What a stop says the alert was about: "stopped: GPU idle for 30 min (policy)".
KIND_WORDS = {
    AlertKind.GPU_IDLE: "GPU idle",
    AlertKind.NO_PROGRESS: "no progress",
    AlertKind.NONFINITE: "NaN",
    AlertKind.STALLED: "no heartbeat",
    AlertKind.RULE: "watch rule",
}
_POLICY = re.compile(
    r"^(?:(?P<notify>notify)|stop(?:\s+after\s+(?P<minutes>[0-9]+(?:\.[0-9]+)?)\s*(?:m|min|minutes?)?)?)$"
)


def parse_policy(text: str) -> float | None:
    """``notify`` → None, ``stop`` → 0 (at once), ``stop after 30`` (minutes; ``30 min`` too) → 30.0."""
    match = _POLICY.match(" ".join(text.lower().split()))
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a policy: notify, stop, or stop after <minutes>")
    if match["notify"]:
        return None
    return float(match["minutes"]) if match["minutes"] else 0.0


def parse_policies(text: str) -> dict[str, float | None]:
    """``gpu-idle=stop after 30, nan=stop, no-progress=notify`` → {kind: minutes (0: at once) or None (notify)}."""
    found: dict[str, float | None] = {}
    for part in (p.strip() for p in re.split(r"[,;]", text or "")):
        if not part:
            continue
        name, eq, policy = part.partition("=")
        key = " ".join(name.lower().split())
        if not eq or key not in POLICY_KINDS:
            kinds = "gpu-idle, no-progress, nan, stalled, rule"
            raise ValueError(f"{part!r}: give <kind>=<policy>, the kind one of {kinds}")
        found[str(POLICY_KINDS[key])] = parse_policy(policy)
    return found


@dataclass(frozen=True)
class AlertPolicy:
    """ADJUTANT_ALERT_POLICY: per alert kind, minutes of grace before its job is stopped (0: at once). A kind that is
    not listed only notifies. ``projects``: per project key (``entity/project``), a projects file's own
    ``alert_policy``, whose kinds replace the global policy's for that project's alerts."""

    stops: Mapping[str, float | None]
    projects: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)

    @classmethod
    def for_routes(cls, stops: Mapping[str, float | None], routes: Iterable[ProjectRoute]) -> AlertPolicy:
        """The global policy and each route's own (``alert_policy`` in its ``[[projects]]`` table)."""
        projects: dict[str, dict[str, float | None]] = {}
        for route in routes:
            if route.project_key is not None and route.alert_policy is not None:
                projects.setdefault(route.project_key, {}).update(dict(route.alert_policy))
        return cls(stops, projects)

    def grace(self, kind: AlertKind, project: str | None = None) -> float | None:
        """Minutes until an alert of ``kind`` (about ``project``) stops its job, or None (notify only)."""
        own = self.projects.get(project or "", {})
        return own[str(kind)] if str(kind) in own else self.stops.get(str(kind))

    @staticmethod
    def describe(minutes: float) -> str:
        return "stop" if minutes == 0 else f"stop after {minutes:g} min"


def decide_action(db: sqlite3.Connection, alert: Alert, policy: AlertPolicy) -> Alert:
    """The alert's action, decided once: a stop policy on a job Adjutant launched is PENDING until the alert's creation
    plus the grace (so a bot that restarts acts at the original deadline); on a run it did not launch, CANNOT; else
    NONE. An alert decided before (by the card or the acting loop, whichever came first) keeps its decision."""
    if alert.action_state is not None:
        return alert
    minutes = policy.grace(alert.kind, alert.project)
    state, at = ActionState.NONE, None
    if minutes is not None and alert.job_id is None:
        state = ActionState.CANNOT
    elif minutes is not None:
        state, at = ActionState.PENDING, (alert.created_at or dt.datetime.now(dt.UTC)) + dt.timedelta(minutes=minutes)
    db.execute(
        "UPDATE alerts SET action_state=?, action_at=?, action_note=? WHERE id=? AND action_state IS NULL",
        (
            str(state),
            iso_seconds(at) if at else None,
            None if minutes is None else AlertPolicy.describe(minutes),
            alert.id,
        ),
    )
    row = db.execute("SELECT * FROM alerts WHERE id=?", (alert.id,)).fetchone()
    return alert_from_row(row)


def undecided(db: sqlite3.Connection, limit: int = 100) -> list[Alert]:
    rows = db.execute("SELECT * FROM alerts WHERE action_state IS NULL ORDER BY id LIMIT ?", (limit,)).fetchall()
    return [alert_from_row(row) for row in rows]


def keep_running(db: sqlite3.Connection, alert_id: int, by: str) -> bool:
    """Keep running: the pending action of this episode is off (True), unless it was not pending any more."""
    changed = db.execute(
        "UPDATE alerts SET action_state=?, action_note=? WHERE id=? AND action_state=?",
        (str(ActionState.KEPT), by, alert_id, str(ActionState.PENDING)),
    ).rowcount
    return bool(changed)


def due_actions(db: sqlite3.Connection, now: dt.datetime) -> list[Alert]:
    """Pending actions whose deadline has come, and actions a stopped bot left half-taken."""
    rows = db.execute(
        "SELECT * FROM alerts WHERE (action_state=? AND action_at<=?) OR action_state=? ORDER BY id",
        (str(ActionState.PENDING), iso_seconds(now), str(ActionState.ACTING)),
    ).fetchall()
    return [alert_from_row(row) for row in rows]


def claim_action(db: sqlite3.Connection, alert_id: int) -> bool:
    """The one compare-and-set that takes an action: PENDING → ACTING (True for exactly one caller)."""
    changed = db.execute(
        "UPDATE alerts SET action_state=? WHERE id=? AND action_state=?",
        (str(ActionState.ACTING), alert_id, str(ActionState.PENDING)),
    ).rowcount
    return bool(changed)


def finish_action(db: sqlite3.Connection, alert_id: int, note: str) -> None:
    db.execute(
        "UPDATE alerts SET action_state=?, action_note=? WHERE id=? AND action_state=?",
        (str(ActionState.DONE), note, alert_id, str(ActionState.ACTING)),
    )


def episode_over(db: sqlite3.Connection, alert: Alert) -> bool:
    """Has the alert's episode ended before its deadline (the GPUs busy again, progress again)? Then nothing is
    stopped. NaN and rules are not re-checked here (a NaN run stays broken; a rule re-arms on its own)."""
    if alert.run_id is None or alert.kind not in (AlertKind.GPU_IDLE, AlertKind.NO_PROGRESS, AlertKind.STALLED):
        return False
    row = db.execute(
        "SELECT gpu_idle, idle, stalled FROM runs WHERE project=? AND run_id=?", (alert.project, alert.run_id)
    ).fetchone()
    if row is None:
        return False
    column = {AlertKind.GPU_IDLE: "gpu_idle", AlertKind.NO_PROGRESS: "idle", AlertKind.STALLED: "stalled"}[alert.kind]
    return not row[column]
