"""``$diagnose <run>``: a deterministic summary of one run from its sampled history (pure; no model, no network).

- each metric's trend in its goal's direction: converging, plateaued since step N, diverging or oscillating;
- the gap between a validation metric and its training twin (``val_loss`` / ``loss``, ``val/acc`` / ``train/acc``),
  now and half-way, widening or not (overfitting);
- the fraction of NaN or ±Infinity values per key;
- steps per minute now against the run's median.

The thresholds are fixed fractions of each series' own range, so the same history always reads the same.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adjutant.render import code_safe, fit_embed, format_number, plain, truncate

Point = tuple[float, float]
Goal = Literal["min", "max"]

#: Fewer finite points than this: "too short to tell".
MIN_POINTS = 8
#: An improvement smaller than this fraction of the series' range does not count (plateau).
IMPROVEMENT = 0.01
#: A plateau must cover at least this fraction of the points.
PLATEAU_SHARE = 0.3
#: Diverging: the recent mean is this fraction of the range above the best, and still rising.
DIVERGENCE = 0.25
#: Oscillating: at least this fraction of the recent steps change direction, and they move far more than they get.
TURNS = 0.5
#: Words that make a metric one to maximise (else it is minimised, like a loss).
MAX_WORDS = ("acc", "accuracy", "auc", "f1", "precision", "recall", "score", "reward", "bleu", "iou", "map")
#: Prefixes of validation metrics and of their training twins.
VAL_PREFIXES = ("val_", "val/", "valid_", "valid/", "validation_", "validation/", "eval_", "eval/", "test_", "test/")
TRAIN_PREFIXES = ("", "train_", "train/", "training_", "training/")


@dataclass(frozen=True)
class Trend:
    """A metric's shape: ``verdict`` is converging, plateaued, diverging, oscillating or too short."""

    verdict: str
    #: Plateaued: the step of the last real improvement.
    since: float | None = None
    best: float | None = None
    best_step: float | None = None
    last: float | None = None

    def describe(self) -> str:
        if self.verdict == "too short":
            return f"too short to tell (fewer than {MIN_POINTS} finite values)"
        words = (
            f"plateaued since step {self.since:g}"
            if self.verdict == "plateaued" and self.since is not None
            else (self.verdict)
        )
        if self.best is not None and self.best_step is not None and self.last is not None:
            words += f" (best {format_number(self.best)} at step {self.best_step:g}, last {format_number(self.last)})"
        return words


def goal_of(metric: str, ranking: str | None = None, ranking_goal: Goal = "min") -> Goal:
    """The direction a metric improves in: the ranking metric's configured goal, else max for accuracy-like names."""
    if ranking is not None and metric == ranking:
        return ranking_goal
    lowered = metric.lower()
    if "loss" in lowered or "error" in lowered or "perplexity" in lowered:
        return "min"
    return "max" if any(word in lowered for word in MAX_WORDS) else "min"


def finite(points: Sequence[Point]) -> list[Point]:
    return [(step, value) for step, value in points if math.isfinite(value)]


def trend(points: Sequence[Point], goal: Goal) -> Trend:
    """The shape of one metric's history (steps ascending), judged in its goal's direction."""
    kept = sorted(finite(points))
    if len(kept) < MIN_POINTS:
        return Trend("too short")
    steps = [step for step, _ in kept]
    raw = [value for _, value in kept]
    ys = raw if goal == "min" else [-v for v in raw]  # lower is better from here on
    best_index = min(range(len(ys)), key=lambda i: (ys[i], i))
    shown = Trend("", None, raw[best_index], steps[best_index], raw[-1])
    span = max(ys) - min(ys)
    if span == 0:
        return Trend("plateaued", steps[0], shown.best, shown.best_step, shown.last)
    n = len(ys)
    window = max(2, n // 10)
    recent = statistics.fmean(ys[-window:])
    before = statistics.fmean(ys[-2 * window : -window])
    if recent - ys[best_index] > DIVERGENCE * span and recent > before:
        return Trend("diverging", None, shown.best, shown.best_step, shown.last)
    tail = ys[n // 2 :]
    diffs = [b - a for a, b in itertools.pairwise(tail) if b != a]
    turns = sum(1 for a, b in itertools.pairwise(diffs) if (a > 0) != (b > 0))
    travel = sum(abs(d) for d in diffs)
    if len(diffs) >= 4 and turns / (len(diffs) - 1) >= TURNS and travel > 4 * abs(tail[-1] - tail[0]) + 0.5 * span:
        return Trend("oscillating", None, shown.best, shown.best_step, shown.last)
    last_gain, anchor = 0, ys[0]  # the last value that improved on the one before it by a real margin
    for i in range(1, n):
        if ys[i] < anchor - IMPROVEMENT * span:
            last_gain, anchor = i, ys[i]
    if (n - 1 - last_gain) / n >= PLATEAU_SHARE:
        return Trend("plateaued", steps[last_gain], shown.best, shown.best_step, shown.last)
    return Trend("converging", None, shown.best, shown.best_step, shown.last)


@dataclass(frozen=True)
class Gap:
    """A validation metric against its training twin: ``now`` and ``half`` are val - train (last values; half-way)."""

    val: str
    train: str
    now: float
    half: float | None
    goal: Goal

    @property
    def widening(self) -> bool:
        """Validation falling behind training more than half-way through (in the goal's direction)."""
        worse_now = self.now if self.goal == "min" else -self.now
        worse_half = None if self.half is None else (self.half if self.goal == "min" else -self.half)
        return worse_now > 0 and worse_half is not None and worse_now > 1.5 * max(worse_half, 0.0) + 1e-12

    def describe(self) -> str:
        text = f"{self.val} - {self.train} = {self.now:+.4g} now"
        if self.half is not None:
            text += f", {self.half:+.4g} half-way"
        return text + ("; widening: overfitting?" if self.widening else "")


def twin(key: str, keys: Sequence[str]) -> str | None:
    """The training metric a validation metric is compared with (``val_loss`` → ``loss`` or ``train_loss``)."""
    for prefix in VAL_PREFIXES:
        if key.lower().startswith(prefix):
            rest = key[len(prefix) :]
            for train in TRAIN_PREFIXES:
                candidate = train + rest
                if candidate in keys and candidate != key:
                    return candidate
    return None


def value_at(points: Sequence[Point], step: float) -> float | None:
    """The last finite value at or before ``step``."""
    found = None
    for at, value in sorted(finite(points)):
        if at > step:
            break
        found = value
    return found


def gaps(history: Mapping[str, Sequence[Point]], goals: Mapping[str, Goal]) -> list[Gap]:
    found = []
    keys = list(history)
    for key in keys:
        train = twin(key, keys)
        val_points, train_points = finite(history[key]), finite(history.get(train or "", []))
        if train is None or not val_points or not train_points:
            continue
        last_step = min(max(s for s, _ in val_points), max(s for s, _ in train_points))
        first_step = max(min(s for s, _ in val_points), min(s for s, _ in train_points))
        val_now, train_now = value_at(val_points, last_step), value_at(train_points, last_step)
        if val_now is None or train_now is None:
            continue
        middle = (first_step + last_step) / 2
        val_half, train_half = value_at(val_points, middle), value_at(train_points, middle)
        half = None if val_half is None or train_half is None or middle <= first_step else val_half - train_half
        found.append(Gap(key, train, val_now - train_now, half, goals.get(key, "min")))
    return found


def nonfinite_share(points: Sequence[Point]) -> float:
    """The fraction of NaN or ±Infinity values among a key's logged values (0 when none were logged)."""
    return sum(1 for _, v in points if not math.isfinite(v)) / len(points) if points else 0.0


@dataclass(frozen=True)
class Pace:
    """Steps per minute over the last stretch of the history against the median of every stretch."""

    now: float
    median: float

    def describe(self) -> str:
        ratio = self.now / self.median if self.median > 0 else None
        text = f"{self.now:.3g} steps/min now, median {self.median:.3g}"
        if ratio is not None and ratio < 0.5:
            text += f" (slowed to {ratio:.0%} of its median)"
        elif ratio is not None and ratio > 2:
            text += f" ({ratio:.1f} times its median)"
        return text


def pace(timestamps: Sequence[Point]) -> Pace | None:
    """From (step, ``_timestamp`` in seconds): steps per minute between successive samples; None with fewer than 3."""
    kept = sorted(finite(timestamps))
    rates = [
        (b_step - a_step) / (b_time - a_time) * 60
        for (a_step, a_time), (b_step, b_time) in itertools.pairwise(kept)
        if b_time > a_time and b_step > a_step
    ]
    if len(rates) < 2:
        return None
    window = max(1, len(rates) // 10)
    return Pace(statistics.fmean(rates[-window:]), statistics.median(rates))


@dataclass(frozen=True)
class Diagnosis:
    trends: dict[str, Trend]
    gaps: list[Gap]
    nonfinite: dict[str, float]
    pace: Pace | None


def diagnose(
    history: Mapping[str, Sequence[Point]],
    timestamps: Sequence[Point] = (),
    *,
    ranking: str | None = None,
    ranking_goal: Goal = "min",
) -> Diagnosis:
    """Everything ``$diagnose`` says about one run: ``history`` is each metric's (step, value), NaN included."""
    goals = {key: goal_of(key, ranking, ranking_goal) for key in history}
    return Diagnosis(
        {key: trend(points, goals[key]) for key, points in history.items()},
        gaps(history, goals),
        {key: share for key, points in history.items() if (share := nonfinite_share(points)) > 0},
        pace(timestamps),
    )


def pick_metrics(keys: Sequence[str], ranking: str, limit: int = 6) -> list[str]:
    """The metrics worth a diagnosis: the ranking metric and its twins first, then losses, accuracies, the rest."""
    public = [k for k in dict.fromkeys(keys) if not k.startswith(("_", "system/", "system."))]

    def rank(key: str) -> tuple[int, str]:
        lowered = key.lower()
        if key == ranking:
            return (0, key)
        if lowered.endswith(ranking.lower()):
            return (1, key)
        if "loss" in lowered:
            return (2, key)
        if any(word in lowered for word in MAX_WORDS):
            return (3, key)
        return (4, key)

    return sorted(public, key=rank)[:limit]


def diagnosis_embed(run: Any, found: Diagnosis, *, project: str) -> dict[str, Any]:
    """The answer to ``$diagnose``: one line per metric, the gaps, NaN shares and the pace; the chart is attached."""
    lines = [f"**{plain(truncate(key, 60))}**: {trend.describe()}" for key, trend in list(found.trends.items())[:10]]
    fields: list[dict[str, Any]] = []
    if found.gaps:
        text = "\n".join(plain(truncate(g.describe(), 200)) for g in found.gaps[:5])
        fields.append({"name": "Validation against training", "value": text, "inline": False})
    if found.nonfinite:
        text = ", ".join(f"`{code_safe(truncate(k, 60))}` {share:.0%}" for k, share in sorted(found.nonfinite.items()))
        fields.append({"name": "NaN or Infinity", "value": truncate(text, 1024), "inline": False})
    if found.pace is not None:
        fields.append({"name": "Pace", "value": found.pace.describe(), "inline": False})
    embed: dict[str, Any] = {
        "title": truncate(f"🩺 Diagnosis of {plain(truncate(run.name, 150))} ({run.id})", 256),
        "description": truncate("\n".join(lines) or "No metric history yet.", 4096),
        "color": 0x9B59B6,
        "fields": fields,
        "footer": {"text": f"{project} · from the run's sampled history; thresholds are fixed fractions of each range"},
    }
    if getattr(run, "url", None):
        embed["url"] = run.url
    return fit_embed(embed)
