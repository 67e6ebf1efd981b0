"""Digests (ADJUTANT_DIGEST): when one is due, and what it says. Pure.

A schedule (``daily 09:00``, ``weekly mon 09:00``, in ADJUTANT_TIMEZONE) has moments; each moment closes a period
(the day or week before it) whose digest is due from that moment on. The watcher records each (project, moment)
once with the digest in the outbox, in one transaction: exactly one digest per period, posted late (and marked so)
when the bot was down at the moment, never twice after a restart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adjutant.gpus import UsageReport
from adjutant.render import code_safe, fit_embed, format_number, plain, truncate
from adjutant.runs import RunInfo, RunState

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: A digest posted more than this after its moment says it is late.
LATE_AFTER = dt.timedelta(minutes=10)
#: At most this many missed periods are caught up after a long downtime (the oldest are skipped).
MAX_CATCH_UP = 7


@dataclass(frozen=True)
class Schedule:
    every: str  # "daily" or "weekly"
    at: dt.time
    weekday: int | None = None  # 0 = Monday, for weekly

    @property
    def length(self) -> dt.timedelta:
        return dt.timedelta(days=1 if self.every == "daily" else 7)

    def describe(self) -> str:
        day = f" {WEEKDAYS[self.weekday]}" if self.weekday is not None else ""
        return f"{self.every}{day} {self.at:%H:%M}"


def parse_schedule(text: str) -> Schedule:
    """``daily 09:00`` or ``weekly mon 09:00``; raises ValueError with what was expected."""
    words = text.strip().lower().split()
    if not words or words[0] not in ("daily", "weekly") or len(words) != (2 if words[0] == "daily" else 3):
        raise ValueError(f"expected 'daily HH:MM' or 'weekly mon HH:MM' (got {text!r})")
    weekday = None
    if words[0] == "weekly":
        if words[1][:3] not in WEEKDAYS:
            raise ValueError(f"the day must be one of {', '.join(WEEKDAYS)} (got {words[1]!r})")
        weekday = WEEKDAYS.index(words[1][:3])
    try:
        at = dt.datetime.strptime(words[-1], "%H:%M").time()
    except ValueError:
        raise ValueError(f"the time must be HH:MM, e.g. 09:00 (got {words[-1]!r})") from None
    return Schedule(words[0], at, weekday)


def moments(schedule: Schedule, zone: ZoneInfo, since: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """The schedule's moments after ``since`` and at or before ``until`` (UTC), oldest first, at most MAX_CATCH_UP
    (the newest)."""
    local = since.astimezone(zone)
    day = local.date() - dt.timedelta(days=1)
    found = []
    while True:
        candidate = dt.datetime.combine(day, schedule.at, tzinfo=zone).astimezone(dt.UTC)
        if candidate > until:
            break
        if candidate > since and (schedule.weekday is None or day.weekday() == schedule.weekday):
            found.append(candidate)
        day += dt.timedelta(days=1)
    return found[-MAX_CATCH_UP:]


@dataclass(frozen=True)
class Digest:
    """What one period's digest says (the embed and the chart's bars are made from it)."""

    project: str
    start: dt.datetime
    end: dt.datetime
    late: bool
    runs: Sequence[RunInfo]
    metric: str
    goal: str
    previous_best: RunInfo | None
    stalled: Sequence[str]
    usage: UsageReport


def _better(a: float, b: float, goal: str) -> bool:
    return a < b if goal == "min" else a > b


def period_runs(runs: Sequence[RunInfo], start: dt.datetime, end: dt.datetime) -> list[RunInfo]:
    return [r for r in runs if r.created_at is not None and start <= r.created_at < end]


def digest_embed(digest: Digest) -> dict[str, Any]:
    """The digest: runs by outcome, a new best with its improvement, crashed and stalled runs, jobs and GPU-hours by
    member. The best of the period is a finished run (as ``$best``'s leaders are meant to be: a crashed run's last
    value is not a result); the chart shows every run with the metric. The chart's data rides along under ``_bars``
    (rendered when it is sent)."""
    runs = list(digest.runs)
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.state] = counts.get(run.state, 0) + 1
    outcome = ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "no runs"
    fields: list[dict[str, Any]] = [{"name": "Runs", "value": f"{len(runs)}: {outcome}", "inline": False}]
    scored: list[tuple[RunInfo, float]] = []
    for run in runs:
        number = run.metric(digest.metric)
        if number is not None:
            scored.append((run, number))
    finished = [(run, number) for run, number in scored if run.state == RunState.FINISHED]
    if finished:
        best, value = (min if digest.goal == "min" else max)(finished, key=lambda rv: rv[1])
        text = f"{plain(truncate(best.name, 60))} (`{code_safe(best.id)}`): {digest.metric} {format_number(value)}"
        previous = digest.previous_best
        before = previous.metric(digest.metric) if previous is not None else None
        if previous is None or before is None:
            fields.append({"name": "🏆 Best of the period", "value": text, "inline": False})
        elif _better(value, before, digest.goal):
            text += f", better by {format_number(abs(value - before))} than {plain(truncate(previous.name, 60))}"
            fields.append({"name": "🏆 New best run", "value": text, "inline": False})
        else:
            text += f" (the best so far stays {plain(truncate(previous.name, 60))}: {format_number(before)})"
            fields.append({"name": "Best of the period", "value": text, "inline": False})
    broken = [r for r in runs if r.state in ("crashed", "failed")]
    if broken:
        listed = ", ".join(f"{plain(truncate(r.name, 40))} ({r.state})" for r in broken[:10])
        fields.append({"name": "💥 Crashed or failed", "value": truncate(listed, 1024), "inline": False})
    if digest.stalled:
        listed = ", ".join(f"`{code_safe(truncate(s, 40))}`" for s in digest.stalled[:10])
        fields.append({"name": "⏸️ Stalled", "value": truncate(listed, 1024), "inline": False})
    ranked = digest.usage.ranked()
    if ranked:
        lines = [
            f"**{plain(truncate(name, 40))}** · {t.jobs} job(s) · {t.gpu_hours:.1f} GPU-h · {t.job_hours:.1f} job-h"
            for name, t in ranked[:10]
        ]
        fields.append({"name": "Jobs by member", "value": truncate("\n".join(lines), 1024), "inline": False})
    local = f"{digest.start:%a %d %b %H:%M} to {digest.end:%a %d %b %H:%M} UTC"
    embed: dict[str, Any] = {
        "title": truncate(f"📰 Digest of {digest.project}" + (" (late)" if digest.late else ""), 256),
        "description": local + (" · posted late: the bot was down when it was due" if digest.late else ""),
        "color": 0x16A085,
        "fields": fields,
    }
    if scored:
        ordered = sorted(scored, key=lambda rv: rv[0].created_at or digest.start)
        embed["_bars"] = {
            "labels": [truncate(r.name, 30) for r, _ in ordered][-12:],
            "values": [v for _, v in ordered][-12:],
            "title": f"{digest.metric} of the period's runs",
            "unit": digest.metric,
        }
    return fit_embed(embed) | ({"_bars": embed["_bars"]} if "_bars" in embed else {})
