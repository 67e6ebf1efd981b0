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
    return Watcher(Store(path), WandbSource("team", "proj", timeout=2), rules, timeout=2)


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


async def test_a_preempted_run_that_resumes_is_told_preempted_and_resumed_never_crashed(
    wandb_standin: WandbStandIn, tmp_path
) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    wandb_standin.create_run("p", state="running")
    await watcher.poll_once()
    for state in ("preempting", "preempted", "running"):
        wandb_standin.update_run("p", state=state)
        await watcher.poll_once()
        await watcher.poll_once()  # the same state again tells nothing
    assert [event for run_id, event, _ in outbox(watcher) if run_id == "p"] == ["started", "preempted", "resumed"]
    await watcher.close()


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


def add_job(
    store: Store, job_id: str, run_id: str, *, state: str = "running", by: int = 1, project: str = "proj"
) -> None:
    """A job launched by Adjutant whose W&B run is ``run_id``."""
    with store.transaction() as db:
        db.execute(
            "INSERT INTO jobs (id, state, params, script, requested_by_id, requested_by, wandb_run_id, log_path,"
            " created_at, thread_id, project, entity) VALUES (?, ?, '{}', '/bin/true', ?, 'a', ?, '/tmp/l',"
            " '2026-01-01T00:00:00+00:00', 4242, ?, 'team')",
            (job_id, state, by, run_id, project),
        )


def set_job_state(store: Store, job_id: str, state: str) -> None:
    with store.transaction() as db:
        db.execute("UPDATE jobs SET state=? WHERE id=?", (state, job_id))


def direct_messages(watcher: Watcher, user_id: int) -> list[tuple[str, str, int | None]]:
    return [(i.run_id, i.event, i.subscription_id) for i in watcher.store.pending(f"dm:{user_id}", 1000)]


async def test_a_run_whose_job_adjutant_ended_is_not_judged_any_more(wandb_standin: WandbStandIn, tmp_path) -> None:
    """Issue 20: after a cancel, the job's W&B run stays "running" without a heartbeat; no "stalled" follows (in the
    thread, or to subscribers), and W&B's later "crashed" is the cancel's echo: the end report told the end."""
    from adjutant import subscriptions

    rules = WatchRules(notify=frozenset(RUN_EVENTS), stall_after=dt.timedelta(minutes=5), metric="loss")
    watcher = watcher_on(tmp_path / "db", rules)
    await watcher.poll_once()
    with watcher.store.transaction() as db:
        subscriptions.add(db, 7, watcher.project_key, [*RUN_EVENTS, "alerts"])
    wandb_standin.create_run("jobrun", state="running")
    wandb_standin.create_run("plain", state="running")
    add_job(watcher.store, "jcancel", "jobrun")
    await watcher.poll_once()
    assert sorted(e for _, e, _ in direct_messages(watcher, 7)) == ["started", "started"]

    set_job_state(watcher.store, "jcancel", "cancelled")  # $cancel: the job's end report tells it
    stale = wandb_standin.now() - dt.timedelta(hours=1)
    wandb_standin.update_run("jobrun", heartbeat_at=stale)  # the killed process never told W&B
    wandb_standin.update_run("plain", heartbeat_at=stale)  # a run that really stalled: told, as before
    await watcher.poll_once()
    wandb_standin.update_run("jobrun", state="crashed")  # W&B gives up on it
    await watcher.poll_once()
    assert [(r, e) for r, e, _ in outbox(watcher)] == [
        ("jobrun", "started"),
        ("plain", "started"),
        ("plain", "stalled"),
    ]
    assert [(r, e) for r, e, _ in direct_messages(watcher, 7)][2:] == [("plain", "stalled")]
    await watcher.close()


async def test_a_job_runs_end_reaches_subscribers_once_and_the_channel_never(
    wandb_standin: WandbStandIn, tmp_path
) -> None:
    """Issue 20: a subscriber to a project's `finished` is told of every finished run, Adjutant's launched ones
    included, once; the launcher subscribed to `mine` gets the job's end report instead (not both)."""
    from adjutant import subscriptions

    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    with watcher.store.transaction() as db:
        teammate = subscriptions.add(db, 8, watcher.project_key, ["finished", "failed"])
        subscriptions.add(db, 9, watcher.project_key, ["finished"])
        subscriptions.add(db, 9, "", ["mine"])
    wandb_standin.create_run("launched", state="running")
    wandb_standin.create_run("broken", state="running")
    add_job(watcher.store, "jfinish", "launched", by=9)
    add_job(watcher.store, "jfailed", "broken", by=9)
    await watcher.poll_once()
    wandb_standin.update_run("launched", state="finished")
    await watcher.poll_once()
    set_job_state(watcher.store, "jfailed", "failed")  # the script died; W&B says so a poll later
    wandb_standin.update_run("broken", state="failed")
    await watcher.poll_once()
    assert await watcher.poll_once() == 0
    await watcher.close()
    again = watcher_on(tmp_path / "db")  # a restart tells nothing twice
    await again.poll_once()
    assert direct_messages(again, 8) == [("launched", "finished", teammate), ("broken", "failed", teammate)]
    assert direct_messages(again, 9) == [], "the launcher's `mine` sends the end report: told once"
    assert sorted((r, e) for r, e, _ in outbox(again)) == [("broken", "started"), ("launched", "started")], (
        "the channel hears the end from the job's end report only"
    )
    await again.close()
