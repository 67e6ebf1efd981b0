"""The watcher service on its own: the real wandb client against the W&B stand-in, a real SQLite file, no bot."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from adjutant.settings import RUN_EVENTS
from adjutant.store import Store
from adjutant.wandb_source import WandbSource
from adjutant.watcher import CATCH_UP, Watcher, WatchRules
from tests.standins.wandb_standin import WandbStandIn

RULES = WatchRules(notify=frozenset(RUN_EVENTS), stall_after=dt.timedelta(minutes=30), metric="loss")


def watcher_on(path: Path, rules: WatchRules = RULES) -> Watcher:
    return Watcher(Store(path), WandbSource("team", "proj", timeout=5), rules, timeout=5)


def outbox(watcher: Watcher) -> list[tuple[str, str, str | None]]:
    return [(i.run_id, i.event, i.context) for i in watcher.store.pending(watcher.project_key, 1000)]


async def test_baseline_is_silent_then_each_event_is_queued_once(wandb_standin: WandbStandIn, tmp_path) -> None:
    wandb_standin.create_run("old", state="finished")
    watcher = watcher_on(tmp_path / "db")
    assert await watcher.poll_once() == 0  # baseline: remembered, not announced
    assert outbox(watcher) == []
    wandb_standin.create_run("new", state="running")
    assert await watcher.poll_once() == 1
    assert outbox(watcher) == [("new", "started", None)]
    assert await watcher.poll_once() == 0  # nothing changed: nothing queued
    wandb_standin.update_run("new", state="crashed")
    assert await watcher.poll_once() == 1
    assert outbox(watcher)[-1] == ("new", "crashed", None)
    assert "new" not in watcher.latest
    await watcher.close()


async def test_a_restart_repeats_nothing(wandb_standin: WandbStandIn, tmp_path) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    wandb_standin.create_run("a", state="running")
    await watcher.poll_once()
    await watcher.close()
    again = watcher_on(tmp_path / "db")  # a new process on the same database
    wandb_standin.update_run("a", state="finished")  # while it was down
    assert await again.poll_once() == 1
    assert await again.poll_once() == 0
    assert outbox(again) == [("a", "started", None), ("a", "finished", CATCH_UP)]  # told "while I was offline"
    await again.close()


async def test_notify_filters_and_job_runs_leave_their_end_to_the_job(wandb_standin: WandbStandIn, tmp_path) -> None:
    rules = WatchRules(notify=frozenset({"started", "finished"}), stall_after=dt.timedelta(minutes=30), metric="loss")
    watcher = watcher_on(tmp_path / "db", rules)
    await watcher.poll_once()
    wandb_standin.create_run("plain", state="running")
    wandb_standin.create_run("jobrun", state="running")
    with watcher.store.transaction() as db:  # a job launched by Adjutant owns the run "jobrun"
        db.execute(
            "INSERT INTO jobs (id, state, params, script, requested_by_id, requested_by, wandb_run_id, log_path,"
            " created_at, thread_id) VALUES ('jabcdef', 'running', '{}', '/bin/true', 1, 'a', 'jobrun', '/tmp/l',"
            " '2026-01-01T00:00:00+00:00', 4242)"
        )
    await watcher.poll_once()
    wandb_standin.update_run("plain", state="crashed")  # not in notify
    wandb_standin.update_run("jobrun", state="finished")  # told by the job's end report
    await watcher.poll_once()
    items = watcher.store.pending(watcher.project_key, 100)
    assert sorted((i.run_id, i.event) for i in items) == [("jobrun", "started"), ("plain", "started")]
    assert next(i for i in items if i.run_id == "jobrun").thread_id == 4242  # joins the job's thread
    await watcher.close()


async def test_failures_back_off_and_recover(wandb_standin: WandbStandIn, tmp_path) -> None:
    watcher = watcher_on(tmp_path / "db")
    assert await watcher.poll(1.0) == 0
    wandb_standin.fail(1000, status=500)
    assert await watcher.poll(1.0) is None
    assert await watcher.poll(1.0) is None
    assert watcher.health.failures == 2 and watcher.health.last_error
    assert not watcher.due(0.0)  # backing off: twice the interval
    wandb_standin.clear_faults()
    watcher.health.next_attempt = 0
    assert await watcher.poll(1.0) == 0
    assert watcher.health.failures == 0 and watcher.health.last_success is not None
    await watcher.close()


async def test_a_garbled_answer_is_a_failed_poll(wandb_standin: WandbStandIn, tmp_path) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    wandb_standin.create_run("r", state="running")
    wandb_standin.garbage(1)
    assert await watcher.poll(1.0) is None
    assert outbox(watcher) == []
    assert await watcher.poll(1.0) == 1
    await watcher.close()
