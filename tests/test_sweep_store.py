"""SweepStore on a real SQLite file: sweeps and trials recorded with their jobs in one transaction, compare-and-set
state changes, told once; and migration 5 on a database of the previous schema (version 4) loses no row."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from adjutant.db import SCHEMA_VERSION, Database
from adjutant.db import schema as db_schema
from adjutant.db.models import JobState, SweepHold, SweepKind, SweepState, TrialState
from adjutant.jobs import JobRequest, JobStore, child_environment
from adjutant.launchers import JOB_VARIABLES, SWEEP_VARIABLES, job_environment
from adjutant.sweeps.store import SweepLaunch, SweepRow, SweepStore

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SweepStore]:
    store = SweepStore(tmp_path / "adjutant.sqlite3")
    yield store
    store.close()


def make_sweep(store: SweepStore, **extra: object) -> SweepRow:
    options: dict[str, object] = {
        "kind": SweepKind.SEARCH,
        "route": "general",
        "project": "mnist",
        "entity": "team",
        "channel_id": 100,
        "requested_by_id": 7,
        "requested_by": "ada",
        "config": {"method": "random", "parameters": {"lr": {"min": 0.0, "max": 1.0}}},
        "method": "random",
        "seed": 42,
        "parallel": 2,
        "run_cap": 6,
        "wandb_sweep_id": None,
        "launch": SweepLaunch(script="/srv/train.py", gpus=1, time_limit=600.0, overrides={"mem": "4G"}),
        "now": T0,
    }
    options.update(extra)
    return store.create(**options)  # type: ignore[arg-type]


def request(sweep: SweepRow, params: dict[str, object]) -> JobRequest:
    return JobRequest(
        params=params,
        script=sweep.launch.script,
        requested_by_id=sweep.requested_by_id,
        requested_by=sweep.requested_by,
        channel_id=sweep.channel_id,
        message_id=None,
        sweep_id=sweep.id,
        wandb_sweep_id="abc12345",
        acked=True,
        project=sweep.project,
        entity=sweep.entity,
    )


def test_state_rules() -> None:
    assert SweepState.STOPPED.ended and SweepState.FINISHED.ended and not SweepState.PAUSED.ended
    assert SweepState.RUNNING.may_become(SweepState.PAUSED) and SweepState.PAUSED.may_become(SweepState.RUNNING)
    assert not SweepState.STOPPING.may_become(SweepState.RUNNING)
    assert not SweepState.FINISHED.may_become(SweepState.RUNNING)
    assert set(SweepState.STOPPED.sources()) == {SweepState.RUNNING, SweepState.PAUSED, SweepState.STOPPING}
    assert SweepState.PAUSED.wandb_state == "PAUSED" and SweepState.STOPPED.wandb_state == "CANCELED"
    assert TrialState.of_job(JobState.STARTING, started=False) == TrialState.QUEUED
    assert TrialState.of_job(JobState.CANCELLING, started=True) == TrialState.RUNNING
    assert TrialState.of_job(JobState.CANCELLED, started=True) == TrialState.STOPPED
    assert TrialState.of_job(JobState.CANCELLED, started=False) == TrialState.DROPPED
    assert TrialState.of_job(JobState.LOST, started=True) == TrialState.FAILED
    assert TrialState.STOPPED.label == "stopped early" and TrialState.QUEUED.active and TrialState.DONE.ended


def test_create_and_read(store: SweepStore) -> None:
    sweep = make_sweep(store)
    assert sweep.id.startswith("sweep-") and len(sweep.id) == 12
    assert sweep.state == SweepState.RUNNING and sweep.kind == SweepKind.SEARCH
    assert sweep.launch.gpus == 1 and sweep.launch.overrides == {"mem": "4G"} and sweep.config is not None
    assert store.get(sweep.id) == sweep
    assert [s.id for s in store.unended()] == [sweep.id]
    assert [s.id for s in store.listing({"general"})] == [sweep.id] and store.listing({"other"}) == []
    # the scheduler's canary and same-failure hold leave the service's sweeps alone
    hold = store.query("SELECT state FROM sweep_holds WHERE sweep_id=?", (sweep.id,))
    assert hold[0][0] == SweepHold.SERVICE
    assert store.set_card(sweep.id, 100, 555, 777)
    again = store.get(sweep.id)
    assert again is not None and (again.card_id, again.thread_id) == (555, 777)


def test_trials_and_jobs_in_one_transaction(store: SweepStore, tmp_path: Path) -> None:
    sweep = make_sweep(store, thread_id=777)
    params: list[dict[str, object]] = [{"lr": 0.1}, {"lr": 0.2}]
    recorded = store.record_trials(
        sweep, [request(sweep, p) for p in params], params, tmp_path / "logs", after=0, now=T0
    )
    assert [t.number for t, _ in recorded] == [1, 2]
    for (trial, job), p in zip(recorded, params, strict=True):
        assert trial.params == p and trial.job_id == job.id and trial.wandb_run_id == job.wandb_run_id
        assert trial.state == TrialState.QUEUED and job.state == JobState.QUEUED
        assert job.sweep_id == sweep.id and job.wandb_sweep_id == "abc12345" and job.thread_id == 777
        assert job.params == p
    # a second proposal made from the same view (another tick, a restart) records nothing
    assert store.record_trials(sweep, [request(sweep, {"lr": 0.3})], [{"lr": 0.3}], tmp_path, after=0, now=T0) == []
    assert len(store.trials(sweep.id)) == 2
    assert len(JobStore(store.database).where([JobState.QUEUED])) == 2


def test_a_failed_insert_leaves_neither(store: SweepStore, tmp_path: Path) -> None:
    """The trial rows come after the job rows in the transaction: a failure there rolls the jobs back too."""
    sweep = make_sweep(store)
    store.database.query("CREATE TRIGGER no_trials BEFORE INSERT ON sweep_trials BEGIN SELECT RAISE(ABORT, 'x'); END")
    with pytest.raises(sqlite3.IntegrityError):
        store.record_trials(sweep, [request(sweep, {"lr": 0.5})], [{"lr": 0.5}], tmp_path, after=0, now=T0)
    assert store.trials(sweep.id) == []
    assert store.query("SELECT COUNT(*) FROM jobs")[0][0] == 0


def test_state_changes_are_compare_and_set(store: SweepStore, tmp_path: Path) -> None:
    sweep = make_sweep(store)
    store.record_trials(sweep, [request(sweep, {"lr": 0.1})], [{"lr": 0.1}], tmp_path, after=0, now=T0)
    assert store.set_state(sweep.id, SweepState.PAUSED, now=T0, note="paused by ada", hold_queued=True)
    assert store.query("SELECT held FROM jobs")[0][0] == 1
    assert not store.set_state(sweep.id, SweepState.PAUSED, now=T0)  # already paused
    # while paused, nothing is recorded
    paused = store.get(sweep.id)
    assert paused is not None
    assert store.record_trials(paused, [request(paused, {"lr": 1})], [{"lr": 1}], tmp_path, after=1, now=T0) == []
    assert store.set_state(sweep.id, SweepState.RUNNING, now=T0, hold_queued=False, resumed_at=T0.isoformat())
    assert store.query("SELECT held FROM jobs")[0][0] == 0
    assert store.set_state(sweep.id, SweepState.STOPPING, now=T0)
    assert not store.set_state(sweep.id, SweepState.RUNNING, now=T0)
    assert not store.set_state(sweep.id, SweepState.FINISHED, now=T0)
    assert store.ended_untold() == []
    assert store.set_state(sweep.id, SweepState.STOPPED, now=T0)
    ended = store.get(sweep.id)
    assert ended is not None and ended.ended_at == T0 and ended.state == SweepState.STOPPED
    assert [s.id for s in store.ended_untold()] == [sweep.id]
    assert store.mark_told(sweep.id, T0) and not store.mark_told(sweep.id, T0)
    assert store.ended_untold() == [] and store.unended() == []


def test_trial_updates_are_guarded(store: SweepStore, tmp_path: Path) -> None:
    sweep = make_sweep(store)
    store.record_trials(sweep, [request(sweep, {"lr": 0.1})], [{"lr": 0.1}], tmp_path, after=0, now=T0)
    assert store.update_trial(sweep.id, 1, state=TrialState.RUNNING, history=[(1.0, 0.5), (2.0, 0.25)])
    assert store.end_trials(sweep.id, [(1, TrialState.DONE, {"value": 0.25, "value_read": 1})], T0) == 1
    assert store.end_trials(sweep.id, [(1, TrialState.FAILED, {})], T0) == 0  # ended once
    assert not store.update_trial(sweep.id, 1, state=TrialState.RUNNING)
    (trial,) = store.trials(sweep.id, history=True)
    assert trial.state == TrialState.DONE and trial.value == 0.25 and trial.value_read
    assert trial.history == ((1.0, 0.5), (2.0, 0.25)) and trial.ended_at == T0


def test_a_trial_recorded_right_after_set_card_gets_the_thread(store: SweepStore, tmp_path: Path) -> None:
    """The tick read the sweep before the card's thread was set: its trials' jobs still get the thread (read inside
    record_trials' transaction, not from the stale row)."""
    stale = make_sweep(store)
    assert stale.thread_id is None
    store.set_card(stale.id, 100, 555, 777)
    ((_, job),) = store.record_trials(stale, [request(stale, {"lr": 1})], [{"lr": 1}], tmp_path, after=0, now=T0)
    assert job.thread_id == 777


def test_trials_leave_the_history_out_unless_asked(store: SweepStore, tmp_path: Path) -> None:
    sweep = make_sweep(store)
    store.record_trials(sweep, [request(sweep, {"lr": 1})], [{"lr": 1}], tmp_path, after=0, now=T0)
    assert store.update_trial(sweep.id, 1, history=[(0.0, 1.0), (3.0, 0.5)], rungs_read=1)
    (light,) = store.trials(sweep.id)
    assert light.history == () and light.rungs_read == 1 and light.params == {"lr": 1}
    (full,) = store.trials(sweep.id, history=True)
    assert full.history == ((0.0, 1.0), (3.0, 0.5))
    ((paired, _),) = store.trials_with_jobs(sweep.id, history=True)
    assert paired.history == full.history and store.trials_with_jobs(sweep.id)[0][0].history == ()


def test_wandb_sweep_recorded_once(store: SweepStore) -> None:
    sweep = make_sweep(store)
    assert store.set_wandb_sweep(sweep.id, "first")
    assert not store.set_wandb_sweep(sweep.id, "second")
    row = store.get(sweep.id)
    assert row is not None and row.wandb_sweep_id == "first" and row.wandb_path == "team/mnist/first"


def test_child_environment_attaches_trials_only(store: SweepStore, tmp_path: Path) -> None:
    sweep = make_sweep(store)
    ((_, trial_job),) = store.record_trials(sweep, [request(sweep, {"lr": 1})], [{"lr": 1}], tmp_path, after=0, now=T0)
    other = JobStore(store.database).add(
        JobRequest(params={}, script="x", requested_by_id=1, requested_by="a", channel_id=None, message_id=None),
        tmp_path,
    )
    bot_env = {"PATH": "/bin", "WANDB_SWEEP_ID": "stale", "WANDB_SWEEP_PARAM_PATH": "/tmp/p.yaml"}
    env = child_environment(bot_env, trial_job)
    assert env["WANDB_SWEEP_ID"] == "abc12345" and "WANDB_SWEEP_PARAM_PATH" not in env
    assert "WANDB_SWEEP_ID" not in child_environment(bot_env, other)
    assert "WANDB_SWEEP_ID" in SWEEP_VARIABLES and "WANDB_SWEEP_ID" not in JOB_VARIABLES
    assert job_environment(env, trial_job)["WANDB_SWEEP_ID"] == "abc12345"  # Slurm, Ray, containers: by name
    assert "WANDB_SWEEP_ID" not in job_environment({**bot_env, **child_environment(bot_env, other)}, other)


def test_migration_5_keeps_an_older_database(tmp_path: Path) -> None:
    """A database of schema version 4 (every migration before this one) with jobs in it comes to the current version:
    its rows are kept, the jobs get ``wandb_sweep_id`` NULL, the sweep tables exist and opening it again changes
    nothing."""
    path = tmp_path / "old.sqlite3"
    raw = sqlite3.connect(path, isolation_level=None)
    for step in db_schema.MIGRATIONS[:4]:
        step(raw)
    raw.execute("PRAGMA user_version = 4")
    raw.execute(
        "INSERT INTO jobs (id, state, params, script, requested_by_id, requested_by, wandb_run_id, log_path,"
        " created_at, sweep_id) VALUES ('jold01', 'succeeded', '{\"lr\": 0.1}', 's.sh', 1, 'ada', 'r1', 'l', ?, 'sw1')",
        (T0.isoformat(),),
    )
    raw.execute("INSERT INTO sweep_holds VALUES ('sw1', '', 'released', ?)", (T0.isoformat(),))
    before = raw.execute("SELECT * FROM jobs").fetchall()
    raw.close()
    assert SCHEMA_VERSION >= 5
    database = Database(path)
    try:
        version = database.query("PRAGMA user_version")[0][0]
        assert version == SCHEMA_VERSION
        (job,) = JobStore(database).where([JobState.SUCCEEDED])
        assert job.id == "jold01" and job.params == {"lr": 0.1} and job.wandb_sweep_id is None
        rows = database.query("SELECT * FROM jobs")
        assert [tuple(r)[: len(before[0])] for r in rows] == before
        assert database.query("SELECT state FROM sweep_holds")[0][0] == "released"
        assert database.query("SELECT COUNT(*) FROM sweeps")[0][0] == 0
        assert database.query("SELECT COUNT(*) FROM sweep_trials")[0][0] == 0
        plan = " ".join(
            str(tuple(r)) for r in database.query("EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE sweep_id='sw1'")
        )
        assert "jobs_by_sweep" in plan  # a sweep's jobs are found by index
    finally:
        database.close()
    again = Database(path)  # already current: nothing to do
    try:
        assert again.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    finally:
        again.close()
