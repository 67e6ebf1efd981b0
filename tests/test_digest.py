"""Digest schedules and contents (pure)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from adjutant.digest import Digest, digest_embed, moments, parse_schedule, period_runs
from adjutant.gpus import Use, usage
from adjutant.runs import RunInfo

UTC = ZoneInfo("UTC")
T = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)  # a Monday


def test_parse_schedule() -> None:
    daily = parse_schedule("daily 09:00")
    assert (daily.every, daily.at, daily.weekday, daily.length) == ("daily", dt.time(9), None, dt.timedelta(days=1))
    weekly = parse_schedule("Weekly Friday 18:30")
    assert (weekly.weekday, weekly.at, weekly.describe()) == (4, dt.time(18, 30), "weekly fri 18:30")
    for bad, message in (("hourly", "expected"), ("daily 9am", "HH:MM"), ("weekly someday 09:00", "one of mon")):
        with pytest.raises(ValueError, match=message):
            parse_schedule(bad)


def test_moments_since_the_baseline_up_to_now() -> None:
    daily = parse_schedule("daily 09:00")
    assert moments(daily, UTC, T - dt.timedelta(hours=1), T) == []
    assert moments(daily, UTC, T - dt.timedelta(hours=4), T) == [T.replace(hour=9)]
    three_days = moments(daily, UTC, T - dt.timedelta(days=3), T)
    assert three_days == [T.replace(day=d, hour=9) for d in (28, 29, 30)]
    assert len(moments(daily, UTC, T - dt.timedelta(days=30), T)) == 7, "at most a week of catching up"
    weekly = parse_schedule("weekly mon 09:00")
    assert moments(weekly, UTC, T - dt.timedelta(days=13), T) == [T.replace(day=23, hour=9), T.replace(hour=9)]


def test_moments_follow_the_time_zone_across_a_clock_change() -> None:
    paris = ZoneInfo("Europe/Paris")
    daily = parse_schedule("daily 09:00")
    around = dt.datetime(2026, 10, 26, 12, 0, tzinfo=dt.UTC)  # Paris left summer time on Sunday 25 October
    found = moments(daily, paris, around - dt.timedelta(days=3), around)
    assert [m.hour for m in found] == [7, 8, 8], "09:00 in Paris: 07:00 UTC in summer time, 08:00 after"


def run(name: str, state: str, loss: float | None, created: dt.datetime) -> RunInfo:
    summary = {} if loss is None else {"loss": loss}
    return RunInfo(name, name, state, created_at=created, summary=summary)


def test_a_digest_tells_outcomes_a_new_best_broken_runs_and_usage() -> None:
    start, end = T - dt.timedelta(days=1), T
    runs = [
        run("a", "finished", 0.30, start + dt.timedelta(hours=1)),
        run("b", "crashed", None, start + dt.timedelta(hours=2)),
        run("c", "finished", 0.25, start + dt.timedelta(hours=3)),
        run("old", "finished", 0.5, start - dt.timedelta(hours=3)),
    ]
    inside = period_runs(runs, start, end)
    assert [r.id for r in inside] == ["a", "b", "c"]
    report = usage([Use(1, "alice", "p", 2, start + dt.timedelta(hours=1), start + dt.timedelta(hours=4))], start, end)
    digest = Digest("team/p", start, end, True, inside, "loss", "min", runs[3], ["stuck-run"], report)
    embed = digest_embed(digest)
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "📰 Digest of team/p (late)" and "posted late" in embed["description"]
    assert fields["Runs"] == "3: 2 finished, 1 crashed"
    assert fields["🏆 New best run"] == "c (`c`): loss 0.25, better by 0.25 than old"
    assert fields["💥 Crashed or failed"] == "b (crashed)"
    assert fields["⏸️ Stalled"] == "`stuck-run`"
    assert fields["Jobs by member"] == "**alice** · 1 job(s) · 6.0 GPU-h · 3.0 job-h"
    assert embed["_bars"]["labels"] == ["a", "c"] and embed["_bars"]["values"] == [0.30, 0.25]
    worse = Digest(
        "team/p", start, end, False, inside[:1], "loss", "min", run("old", "finished", 0.1, start), [], report
    )
    assert "the best so far stays old: 0.1" in str(digest_embed(worse)["fields"])
