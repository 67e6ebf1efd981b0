"""The database package: job transitions (the pure table and the stores' compare-and-set SQL made from it), the
schema's migrations, one connection shared by the stores, and the supervisor's own SQL against the schema."""

from __future__ import annotations

import ast
import inspect
import sqlite3
import threading
from pathlib import Path

import pytest

from adjutant import supervisor
from adjutant.approvals import ApprovalStore
from adjutant.db import SCHEMA_VERSION, Database
from adjutant.db.models import JobEvent, JobState, JobUpdate, SweepHold
from adjutant.db.schema import ADDED_COLUMNS, MIGRATIONS, version
from adjutant.jobs import JobRequest, JobStore
from adjutant.store import Store

Q, S, R, C = "queued", "starting", "running", "cancelling"
OK, FAILED, CANCELLED, LOST = "succeeded", "failed", "cancelled", "lost"
ACTIVE_STATES = (S, R, C)

#: Every (state, event) pair: the state it leads to, or None (it cannot happen there; the row is left alone).
#: Written out by hand, not computed, so a change to JobState.after must change this table too.
EXPECTED: dict[str, dict[str, str | None]] = {
    #            queued     starting   running    cancelling  succeeded failed  cancelled lost
    "submit": {Q: S, S: None, R: None, C: None, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "unsubmit": {Q: None, S: Q, R: None, C: None, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "pending": {Q: None, S: S, R: S, C: C, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "run": {Q: None, S: R, R: R, C: C, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "succeed": {Q: None, S: OK, R: OK, C: OK, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "fail": {Q: FAILED, S: FAILED, R: FAILED, C: CANCELLED, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "lose": {Q: None, S: LOST, R: LOST, C: CANCELLED, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "stopped": {Q: None, S: CANCELLED, R: CANCELLED, C: CANCELLED, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "cancel": {Q: CANCELLED, S: C, R: C, C: C, OK: None, FAILED: None, CANCELLED: None, LOST: None},
    "retry": {Q: None, S: Q, R: Q, C: None, OK: None, FAILED: Q, CANCELLED: None, LOST: Q},
    "drop": {Q: CANCELLED, S: None, R: None, C: None, OK: None, FAILED: None, CANCELLED: None, LOST: None},
}


def test_the_table_covers_every_state_and_event() -> None:
    assert set(EXPECTED) == {e.value for e in JobEvent}
    for row in EXPECTED.values():
        assert set(row) == {s.value for s in JobState}


@pytest.mark.parametrize("event", list(JobEvent))
@pytest.mark.parametrize("state", list(JobState))
def test_every_transition(state: JobState, event: JobEvent) -> None:
    assert state.after(event) == EXPECTED[event][state]


def test_an_ended_job_moves_only_by_a_retry() -> None:
    for state in JobState:
        if state.ended:
            assert {e for e in JobEvent if state.after(e) is not None} <= {JobEvent.RETRY}


def queue(store: JobStore, tmp_path: Path, count: int = 1, sweep: str | None = None) -> list[str]:
    request = JobRequest({"lr": 0.1}, "/bin/true", 1, "ada", 5, 6, sweep_id=sweep)
    return [job.id for job in store.add_many([request] * count, tmp_path / "logs")]


def put(store: JobStore, job_id: str, state: str) -> None:
    with store.transaction() as db:
        db.execute("UPDATE jobs SET state=? WHERE id=?", (state, job_id))


def state_of(store: JobStore, job_id: str) -> str:
    return str(store.query("SELECT state FROM jobs WHERE id=?", (job_id,))[0]["state"])


@pytest.mark.parametrize("state", list(JobState))
def test_the_stores_sql_follows_the_table(tmp_path: Path, state: JobState) -> None:
    """Each compare-and-set of JobStore, from each state, ends where the table says (or changes nothing)."""
    store = JobStore(tmp_path / "adjutant.sqlite3")
    news = {JobState(s) for s in (S, R, C, OK, FAILED, LOST, CANCELLED)}
    for reported in news:  # a launcher's news: only about active jobs
        [job_id] = queue(store, tmp_path)
        put(store, job_id, state)
        changed = store.record_news(job_id, JobUpdate(state=reported))
        expected = EXPECTED[JobEvent.of_news(reported)][state] if state in ACTIVE_STATES else None
        assert changed == (expected is not None)
        assert state_of(store, job_id) == (expected or state), (state, reported)
    [job_id] = queue(store, tmp_path)  # the scheduler hands it to a launcher
    put(store, job_id, state)
    assert store.start(job_id) == (EXPECTED["submit"][state] is not None)
    assert state_of(store, job_id) == (EXPECTED["submit"][state] or state)
    [job_id] = queue(store, tmp_path)  # a retry (guarded by the attempt as well)
    put(store, job_id, state)
    job = store.get(job_id)
    assert job is not None
    note = {"description": "again"}
    assert store.retry(job, "why", note, job.created_at) == (EXPECTED["retry"][state] is not None)
    assert state_of(store, job_id) == (EXPECTED["retry"][state] or state)
    [job_id] = queue(store, tmp_path)  # an end with a note: failed, or cancelled while being cancelled
    put(store, job_id, state)
    job = store.get(job_id)
    assert job is not None
    expected = EXPECTED["fail"][state] if state in ACTIVE_STATES else None
    assert store.end_with_note(job, {"state": JobState.FAILED}, note) == (expected is not None)
    assert state_of(store, job_id) == (expected or state)
    store.close()


@pytest.mark.parametrize("event", list(JobEvent))
def test_a_transition_by_event_follows_the_table(tmp_path: Path, event: JobEvent) -> None:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    for state in JobState:
        [job_id] = queue(store, tmp_path)
        put(store, job_id, state)
        expected = EXPECTED[event][state]
        assert store.transition(job_id, event, reason="why") == (expected is not None)
        row = store.query("SELECT state, reason FROM jobs WHERE id=?", (job_id,))[0]
        assert tuple(row) == ((expected, "why") if expected else (state, None)), (state, event)
    store.close()


def test_a_transition_can_be_narrowed_to_some_states(tmp_path: Path) -> None:
    """A cancel meant for a queued job (it ends at once, with ended_at) leaves a job that started meanwhile alone."""
    store = JobStore(tmp_path / "adjutant.sqlite3")
    queued, started = queue(store, tmp_path, 2)
    put(store, started, S)
    for job_id in (queued, started):
        store.transition(job_id, JobEvent.CANCEL, among=(JobState.QUEUED,), ended_at="now")
    assert [tuple(store.query("SELECT state, ended_at FROM jobs WHERE id=?", (j,))[0]) for j in (queued, started)] == [
        (CANCELLED, "now"),
        (S, None),
    ]
    with pytest.raises(ValueError, match="cannot happen"):
        store.transition(queued, JobEvent.RUN, among=(JobState.QUEUED,))
    store.close()


def test_news_without_a_state_changes_only_active_jobs(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    [job_id] = queue(store, tmp_path)
    assert not store.record_news(job_id, JobUpdate(external_state="PENDING"))
    put(store, job_id, C)
    assert store.record_news(job_id, JobUpdate(external_state="RUNNING", reason="ignored while cancelling"))
    row = store.query("SELECT state, external_state, reason FROM jobs WHERE id=?", (job_id,))[0]
    assert tuple(row) == (C, "RUNNING", None)


def test_a_dropped_sweep_cancels_only_queued_cells(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    first, second, third = queue(store, tmp_path, 3, sweep="sw")
    put(store, first, R)
    job = store.get(second)
    assert job is not None
    assert store.hold_sweep(job, "sig", {"description": "{held} held"}, job.created_at) == 2
    assert store.decide_sweep("sw", SweepHold.DROPPED, "admin", job.created_at) == (SweepHold.HELD, 2)
    assert [state_of(store, j) for j in (first, second, third)] == [R, CANCELLED, CANCELLED]
    assert store.decide_sweep("sw", SweepHold.RESUMED, "admin", job.created_at) == (SweepHold.DROPPED, 0)
    assert store.decide_sweep("nothing", SweepHold.RESUMED, "admin", job.created_at) == ("unknown", 0)
    with pytest.raises(ValueError, match="resumed or dropped"):
        store.decide_sweep("sw", SweepHold.HELD, "admin", job.created_at)
    store.close()


def columns(db: sqlite3.Connection) -> dict[str, list[tuple[str, str, int, str | None]]]:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    return {
        t: sorted((r[1], r[2], r[3], r[4]) for r in db.execute(f"PRAGMA table_info({t})"))
        for t in tables
        if t != "sqlite_sequence"
    }


def test_a_new_database_has_every_table_at_the_current_version(tmp_path: Path) -> None:
    database = Database(tmp_path / "adjutant.sqlite3")
    with database.transaction() as db:
        assert version(db) == SCHEMA_VERSION == len(MIGRATIONS)
        found = columns(db)
    assert set(found) == {
        "runs", "meta", "outbox", "watch_rules", "rule_hits", "alerts", "subscriptions", "mutes", "jobs",
        "sweep_holds", "approvals", "audit", "sweeps", "sweep_trials",
    }  # fmt: skip
    for table, added in ADDED_COLUMNS.items():
        assert set(added) <= {c[0] for c in found[table]}
    database.close()


def test_opening_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "adjutant.sqlite3"
    Database(path).close()
    before = path.read_bytes()
    again = Database(path)
    again.close()
    assert Database(path).query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert path.read_bytes() == before  # no migration wrote anything


def test_a_database_newer_than_this_release_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "adjutant.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    database = Database(path)
    assert database.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION + 1
    assert not database.query("SELECT name FROM sqlite_master WHERE name='jobs'")
    database.close()


def test_processes_opening_at_once_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "adjutant.sqlite3"
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            Database(path).close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Database(path).query("PRAGMA user_version")[0][0] == SCHEMA_VERSION


def test_the_stores_share_one_connection_and_one_transaction(tmp_path: Path) -> None:
    database = Database(tmp_path / "adjutant.sqlite3")
    jobs, runs, approvals = JobStore(database), Store(database), ApprovalStore(database)
    assert jobs.database is runs.database is runs.jobs.database is approvals.database is database
    request = JobRequest({"lr": 0.1}, "/bin/true", 1, "ada", 5, 6)
    approval = approvals.add("experiment", [request], gpus=0, why="big")
    with pytest.raises(RuntimeError), database.transaction() as db:  # a unit of work across two families
        db.execute("UPDATE approvals SET state='approved' WHERE id=?", (approval.id,))
        db.execute("INSERT INTO audit (at, actor, action) VALUES ('now', 'x', 'approve')")
        raise RuntimeError("crash half-way")
    assert approvals.get(approval.id).state == "pending"  # type: ignore[union-attr]
    assert approvals.entries() == []
    decision = approvals.decide(approval.id, True, 2, "bo", tmp_path / "logs")
    assert decision is not None and decision.changed
    assert [j.id for j in decision.jobs] == [j.id for j in jobs.recent()]  # the decision queued them, once
    for store in (jobs, runs, approvals):
        store.close()  # closing a store leaves the shared connection to its owner
    assert database.query("SELECT COUNT(*) FROM jobs")[0][0] == 1
    database.close()


async def test_services_open_one_connection_for_every_store(tmp_path: Path) -> None:
    # Imported here: loading the extension elsewhere in the run re-imports adjutant.* (new class objects).
    from adjutant.services import Services
    from adjutant.settings import Settings

    services = await Services.open(Settings.from_env({"ADJUTANT_STATE_DIR": str(tmp_path / "state")}))
    database = services.database
    assert services.jobs.database is services.runs.database is services.approvals.database is database
    assert all(watcher.store is services.runs for watcher in services.watchers.values())
    assert database.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert services.sweeps.store.database is database
    await services.close_if_unused()
    with pytest.raises(sqlite3.ProgrammingError):  # closed once, for all of them
        services.jobs.recent()


def test_subscriptions_through_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "adjutant.sqlite3")
    first = store.subscribe(7, "team/proj", ["finished", "resumed"])
    second = store.subscribe(7, "", ["mine"])
    assert first is not None and second is not None
    assert [s.events for s in store.member_subscriptions(7)] == [("finished", "resumed"), ("mine",)]
    assert store.unsubscribe(7, first) == 1
    assert store.unsubscribe(7, None) == 1
    assert store.member_subscriptions(7) == []
    store.close()


# --- the supervisor's own SQL (stdlib only: it cannot import the schema) -------------------------------------------
def supervisor_write_columns() -> set[str]:
    """Every column the supervisor writes through ``self.write(job_id, column=…)``: the keywords of its calls and
    of ``values.update(…)``, and the keys of the ``values`` dicts handed to it."""
    tree = ast.parse(inspect.getsource(supervisor))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if node.func.attr == "write" or (node.func.attr == "update" and getattr(owner, "id", "") == "values"):
                found |= {k.arg for k in node.keywords if k.arg}
        if (
            isinstance(node, ast.AnnAssign)
            and getattr(node.target, "id", "") == "values"
            and isinstance(node.value, ast.Dict)
        ):
            found |= {k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return found


def supervisor_statements() -> list[str]:
    """The SQL statements in the supervisor's source (an f-string's column list stands as ``state=?``)."""
    tree = ast.parse(inspect.getsource(supervisor))
    texts: list[str] = []
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside_fstrings |= {id(part) for part in node.values}
            texts.append("".join(str(p.value) if isinstance(p, ast.Constant) else "state=?" for p in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstrings:
            texts.append(node.value)
    return [t for t in texts if t.lstrip().upper().startswith(("SELECT ", "UPDATE ", "INSERT ", "DELETE "))]


def test_the_supervisors_sql_matches_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "adjutant.sqlite3"
    Database(path).close()
    db = sqlite3.connect(path)
    job_columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
    written = supervisor_write_columns()
    assert {"state", "ended_at", "exit_code", "reason", "started_at"} <= written
    assert written <= job_columns, written - job_columns
    statements = supervisor_statements()
    assert len(statements) >= 3
    for sql in statements:  # each one compiles against the schema (a missing table or column fails here)
        db.execute("EXPLAIN " + sql, [None] * sql.count("?"))
    db.close()


def test_the_supervisor_records_against_a_migrated_database(tmp_path: Path) -> None:
    """The supervisor's statements, run: a start refused, a start that fails to prepare, a cancel before the start,
    an end. Nothing stays pending (a statement the schema refused would)."""
    path = tmp_path / "adjutant.sqlite3"
    store = JobStore(path)
    ids = queue(store, tmp_path, 3)
    put(store, ids[1], S)
    put(store, ids[2], C)
    with store.transaction() as db:  # a log folder that cannot be made: the start fails, recorded as failed
        db.execute("UPDATE jobs SET log_path=? WHERE id=?", ("/proc/adjutant/x.log", ids[1]))
    sup = supervisor.Supervisor(str(path))
    assert "not starting" in sup.start(ids[0], {})["error"]
    assert sup.start(ids[1], {}) == {"ended": ids[1], "code": None}
    assert sup.start(ids[2], {}) == {"ended": ids[2], "code": None}
    sup.write_started(ids[0], 12345)
    assert sup.record_end(ids[0], str(tmp_path / "logs" / "x.log"), 0) == "succeeded"
    assert sup.pending == []
    sup.db.close()
    assert [state_of(store, i) for i in ids] == ["succeeded", "failed", "cancelled"]
    store.close()


async def test_watch_rules_get_the_routes_goal_and_the_history_setting(tmp_path: Path) -> None:
    """The watcher's rules read ADJUTANT_HISTORY_POLLS and the route's metric goal (plateau and diverging turn on
    it for the route's own metric)."""
    from adjutant.services import Services
    from adjutant.settings import Settings

    env = {
        "ADJUTANT_STATE_DIR": str(tmp_path / "state"),
        "WANDB_PROJECT": "proj",
        "ADJUTANT_METRIC": "accuracy",
        "ADJUTANT_METRIC_GOAL": "max",
        "ADJUTANT_HISTORY_POLLS": "3",
    }
    services = await Services.open(Settings.from_env(env))
    try:
        (watcher,) = services.watchers.values()
        assert (watcher.rules.metric, watcher.rules.goal, watcher.rules.history_polls) == ("accuracy", "max", 3)
    finally:
        await services.close_if_unused()
