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


async def test_a_digest_due_while_the_bot_was_down_is_made_once_late_with_only_its_projects_jobs_and_finished_best(
    wandb_standin, tmp_path
) -> None:
    """The schedule on an injected clock (no waiting for a wall-clock minute): digests turned on at T0, the bot down
    when the moment passes, back after it: one late digest; a restart makes none again. Issue 20: the vision
    project's digest does not list mnist's jobs, and a crashed run is never the best of the period."""
    from adjutant.store import Store
    from adjutant.wandb_source import WandbSource
    from adjutant.watcher import Watcher, WatchRules
    from tests.test_watcher import add_job

    rules = WatchRules(notify=frozenset(), stall_after=dt.timedelta(minutes=30), metric="loss")
    t0 = wandb_standin.now().replace(tzinfo=dt.UTC)
    schedule = parse_schedule(f"daily {t0 + dt.timedelta(hours=2):%H:%M}")
    moment = moments(schedule, UTC, t0, t0 + dt.timedelta(days=1))[0]
    wandb_standin.create_run("old", display_name="old-best", state="finished", summary={"loss": 0.5},
                             created_at=wandb_standin.now() - dt.timedelta(days=3))  # fmt: skip
    wandb_standin.create_run("d1", display_name="good", state="finished", summary={"loss": 0.3})
    wandb_standin.create_run("d2", display_name="better", state="finished", summary={"loss": 0.2})
    wandb_standin.create_run("d3", display_name="broken", state="crashed", summary={"loss": 0.01})
    wandb_standin.create_run("v1", display_name="seeing", state="finished", summary={"loss": 0.7}, project="vision")

    def watchers(at: dt.datetime) -> list[Watcher]:
        store = Store(tmp_path / "db")
        return [
            Watcher(store, WandbSource("team", name, timeout=5), rules, timeout=5, clock=lambda: at)
            for name in ("proj", "vision")
        ]

    def digests(watcher: Watcher) -> list[dict]:
        return [i.payload for i in watcher.store.pending(watcher.project_key, 100) if i.event == "digest"]

    first = watchers(t0)  # digests turned on at T0: nothing due yet
    assert [await w.make_digests(schedule, UTC, metric="loss", goal="min") for w in first] == [0, 0]
    ran = t0 - dt.timedelta(minutes=30)
    for job_id, who, project in (("jmnist1", 41, "proj"), ("jvision", 42, "vision")):
        add_job(first[0].store, job_id, f"run-{job_id}", state="succeeded", by=who, project=project)
        with first[0].store.transaction() as db:  # started half an hour before T0, 1 GPU, for an hour
            db.execute(
                "UPDATE jobs SET requested_by=?, gpus=1, started_at=?, ended_at=? WHERE id=?",
                (f"member{who}", ran.isoformat(), (ran + dt.timedelta(hours=1)).isoformat(), job_id),
            )
    for w in first:
        await w.close()

    back = watchers(moment + dt.timedelta(minutes=30))  # the moment passed while the bot was down
    assert [await w.make_digests(schedule, UTC, metric="loss", goal="min") for w in back] == [1, 1]
    proj, vision = (digests(w)[0] for w in back)
    fields = {f["name"]: f["value"] for f in proj["fields"]}
    assert proj["title"] == "📰 Digest of team/proj (late)"
    assert fields["Runs"] == "3: 2 finished, 1 crashed"
    assert fields["🏆 New best run"] == "better (`d2`): loss 0.2, better by 0.3 than old-best", "not the crashed run"
    assert fields["💥 Crashed or failed"] == "broken (crashed)"
    assert fields["Jobs by member"] == "**member41** · 1 job(s) · 1.0 GPU-h · 1.0 job-h", "mnist's jobs only"
    assert {f["name"]: f["value"] for f in vision["fields"]}["Jobs by member"].startswith("**member42** · 1 job(s)")
    assert "member41" not in str(vision)
    for w in back:
        await w.close()

    restarted = watchers(moment + dt.timedelta(minutes=31))  # restarted right after: not again
    assert [await w.make_digests(schedule, UTC, metric="loss", goal="min") for w in restarted] == [0, 0]
    assert [len(digests(w)) for w in restarted] == [1, 1]
    for w in restarted:
        await w.close()


def test_the_best_of_the_period_is_a_finished_run() -> None:
    start, end = T - dt.timedelta(days=1), T
    runs = [run("ok", "finished", 0.4, start + dt.timedelta(hours=1)), run("boom", "crashed", 0.01, start)]
    digest = Digest("team/p", start, end, False, runs, "loss", "min", None, [], usage([], start, end))
    fields = {f["name"]: f["value"] for f in digest_embed(digest)["fields"]}
    assert fields["🏆 Best of the period"] == "ok (`ok`): loss 0.4"
    only_crashed = Digest("team/p", start, end, False, runs[1:], "loss", "min", None, [], usage([], start, end))
    assert not any("Best" in f["name"] for f in digest_embed(only_crashed)["fields"])
