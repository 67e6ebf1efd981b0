"""The policy's actions in SQLite (ADJUTANT_ALERT_POLICY): decided once, anchored at the alert's creation, claimed by
one compare-and-set, kept by Keep running, taken up again after a restart; no bot."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from adjutant.alerts import (
    ActionState,
    AlertKind,
    AlertPolicy,
    claim_action,
    decide_action,
    due_actions,
    episode_over,
    finish_action,
    keep_running,
    parse_policy,
    record_alert,
    undecided,
)
from adjutant.runs import RunInfo, RunMemory
from adjutant.store import Store

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
POLICY = AlertPolicy({"gpu-idle": 1.0, "nonfinite": 0.0, "no-progress": None})


def alert_in(store: Store, kind: AlertKind = AlertKind.GPU_IDLE, *, job_id: str | None = "j1") -> int:
    with store.transaction() as db:
        return record_alert(db, "team/proj", kind, run_id="r1", job_id=job_id, now=NOW)


def decided(store: Store, alert_id: int, policy: AlertPolicy = POLICY):
    alert = store.alert(alert_id)
    assert alert is not None
    with store.transaction() as db:
        return decide_action(db, alert, policy)


@pytest.mark.parametrize(("text", "minutes"), [("notify", None), ("stop", 0.0), ("stop after 30", 30.0)])
def test_parse_policy(text: str, minutes: float | None) -> None:
    assert parse_policy(text) == minutes


def test_a_stop_policy_on_a_job_is_pending_until_the_alert_plus_the_grace_decided_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    first = alert_in(store)
    with store.transaction() as db:
        assert [a.id for a in undecided(db)] == [first]
    alert = decided(store, first)
    assert (alert.action_state, alert.action_at, alert.action_note) == (
        ActionState.PENDING,
        NOW + dt.timedelta(minutes=1),
        "stop after 1 min",
    )
    again = decided(Store(tmp_path / "db"), first, AlertPolicy({"gpu-idle": 30.0}))  # restarted with other settings
    assert again.action_at == NOW + dt.timedelta(minutes=1), "decided once"
    with store.transaction() as db:
        assert undecided(db) == []
    assert decided(store, alert_in(store, AlertKind.NO_PROGRESS)).action_state == ActionState.NONE, "notify"
    assert decided(store, alert_in(store, AlertKind.RULE)).action_state == ActionState.NONE, "not listed: notify"
    assert decided(store, alert_in(store, job_id=None)).action_state == ActionState.CANNOT, "not Adjutant's job"
    nan = decided(store, alert_in(store, AlertKind.NONFINITE))
    assert (nan.action_state, nan.action_at, nan.action_note) == (ActionState.PENDING, NOW, "stop")


def test_the_deadline_is_claimed_once_and_a_restart_takes_up_a_claimed_action(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    alert_id = decided(store, alert_in(store)).id
    with store.transaction() as db:
        assert due_actions(db, NOW + dt.timedelta(seconds=59)) == []
        assert [a.id for a in due_actions(db, NOW + dt.timedelta(seconds=60))] == [alert_id]
        assert claim_action(db, alert_id) is True
        assert claim_action(db, alert_id) is False, "one compare-and-set: never twice"
    restarted = Store(tmp_path / "db")  # killed after the claim, before the cancel was recorded
    with restarted.transaction() as db:
        taken_up = due_actions(db, NOW + dt.timedelta(minutes=2))
        assert [(a.id, a.action_state) for a in taken_up] == [(alert_id, ActionState.ACTING)]
        finish_action(db, alert_id, "GPU idle for 1m 06s")
        assert due_actions(db, NOW + dt.timedelta(hours=1)) == []
        assert keep_running(db, alert_id, "admin") is False, "too late to keep"
    done = restarted.alert(alert_id)
    assert done is not None and (done.action_state, done.action_note) == (ActionState.DONE, "GPU idle for 1m 06s")


def test_keep_running_turns_the_episodes_action_off(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    alert_id = decided(store, alert_in(store)).id
    with store.transaction() as db:
        assert keep_running(db, alert_id, "admin") is True
        assert keep_running(db, alert_id, "someone else") is False
        assert due_actions(db, NOW + dt.timedelta(hours=1)) == []
        assert claim_action(db, alert_id) is False
    kept = store.alert(alert_id)
    assert kept is not None and (kept.action_state, kept.action_note) == (ActionState.KEPT, "admin")


def test_an_episode_over_before_the_deadline(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    alert = decided(store, alert_in(store))
    run = RunInfo(id="r1", name="n", state="running")
    with store.transaction() as db:
        assert episode_over(db, alert) is False, "a run Adjutant does not remember: not known to be over"
        store.remember(db, "team/proj", run, RunMemory("running", gpu_low_since=NOW, gpu_idle=True))
        assert episode_over(db, alert) is False, "still idle"
        store.remember(db, "team/proj", run, RunMemory("running"))
        assert episode_over(db, alert) is True, "its GPU is busy again"


def test_an_alert_decided_without_a_policy_is_never_stopped_by_a_later_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    alert_id = alert_in(store)
    assert decided(store, alert_id, AlertPolicy({})).action_state == ActionState.NONE
    assert decided(Store(tmp_path / "db"), alert_id).action_state == ActionState.NONE, "restarted with a policy"
    with store.transaction() as db:
        assert due_actions(db, NOW + dt.timedelta(days=1)) == []
