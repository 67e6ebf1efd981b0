"""Every table of Adjutant's database (``ADJUTANT_STATE_DIR/adjutant.sqlite3``) and every migration, in one place.

The database's ``PRAGMA user_version`` says which migrations it has: migration N (``MIGRATIONS[N - 1]``) brings a
database from version N-1 to N, in the same transaction that sets the version. Releases before the numbering made
their tables with ``CREATE TABLE IF NOT EXISTS`` and added later columns when missing, and left ``user_version`` at 0:
migrations 1 and 2 do the same (idempotent), so a database made by any earlier release, whatever columns it has,
comes to the current layout without losing a row. Migrations from 3 on run exactly once and need not be idempotent.

The job supervisor (:mod:`adjutant.supervisor`, stdlib only) keeps its own SQL; tests/test_db.py runs it against
this schema.

Blocking (SQLite); pure apart from the connection it is given.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

# --- the tables as the first release of each made them (later columns: ADDED_COLUMNS) ---------------------------

#: The run memory behind transitions, per W&B project.
RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    stalled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, run_id)
)
"""
#: Per-project values (the createdAt watermark, the status cards under ``adjutant:status-cards``).
META = """
CREATE TABLE IF NOT EXISTS meta (
    project TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (project, key)
)
"""
#: Announcements not yet delivered to Discord, in order. Written in the same transaction as what caused them;
#: deleted only after Discord accepted them. ``project`` is the destination (see ARCHITECTURE.md).
OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    context TEXT,
    reply_to INTEGER,
    thread_id INTEGER,
    created_at TEXT NOT NULL
)
"""
WATCH_RULES = """
CREATE TABLE IF NOT EXISTS watch_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    metric TEXT NOT NULL,
    op TEXT NOT NULL,
    value REAL NOT NULL,
    scope TEXT NOT NULL,
    author_id INTEGER NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""
#: Which rules a run is past (fired, not yet re-armed).
RULE_HITS = """
CREATE TABLE IF NOT EXISTS rule_hits (
    rule_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (rule_id, run_id)
)
"""
#: The records behind alert cards' buttons.
ALERTS = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    run_id TEXT,
    job_id TEXT,
    kind TEXT NOT NULL,
    metric TEXT,
    step REAL,
    params TEXT,
    created_at TEXT NOT NULL
)
"""
SUBSCRIPTIONS = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    project TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""
MUTES = """
CREATE TABLE IF NOT EXISTS mutes (
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    until TEXT NOT NULL,
    PRIMARY KEY (project, run_id, kind)
)
"""
#: Experiment jobs; the job supervisor process writes here too.
JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    script TEXT NOT NULL,
    requested_by_id INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    channel_id INTEGER,
    message_id INTEGER,
    ack_id INTEGER,
    sweep_id TEXT,
    wandb_run_id TEXT NOT NULL,
    log_path TEXT NOT NULL,
    supervisor_pid INTEGER,
    pid INTEGER,
    pgid INTEGER,
    exit_code INTEGER,
    reason TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    cancel_requested_at TEXT,
    cancelled_by TEXT,
    killed_at TEXT,
    reported INTEGER NOT NULL DEFAULT 0,
    backend TEXT NOT NULL DEFAULT 'local',
    external_id TEXT,
    external_state TEXT,
    thread_id INTEGER,
    acked INTEGER NOT NULL DEFAULT 0,
    report_id INTEGER
)
"""
#: A sweep's hold decision (states: :class:`adjutant.db.models.SweepHold`), made once per sweep.
SWEEP_HOLDS = """
CREATE TABLE IF NOT EXISTS sweep_holds (
    sweep_id TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_at TEXT NOT NULL
)
"""
#: Launch requests waiting for an approver (states: :class:`adjutant.approvals.ApprovalState`).
APPROVALS = """
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    requested_by_id INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    channel_id INTEGER,
    card_id INTEGER,
    requests TEXT NOT NULL,
    canary INTEGER NOT NULL DEFAULT 0,
    gpus INTEGER NOT NULL,
    cells INTEGER NOT NULL,
    why TEXT NOT NULL,
    created_at TEXT NOT NULL,
    decided_by_id INTEGER,
    decided_by TEXT,
    decided_at TEXT,
    job_ids TEXT
)
"""
#: Who did what (launches, approvals, rules, subscriptions …).
AUDIT = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor_id INTEGER,
    actor TEXT NOT NULL,
    guild_id INTEGER,
    channel_id INTEGER,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
)
"""
INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_by_state ON runs (project, state)",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state)",
    "CREATE INDEX IF NOT EXISTS jobs_by_run ON jobs (wandb_run_id)",
    "CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor_id, seq)",
)
TABLES = (RUNS, META, OUTBOX, WATCH_RULES, RULE_HITS, ALERTS, SUBSCRIPTIONS, MUTES, JOBS, SWEEP_HOLDS, APPROVALS, AUDIT)

#: Columns added after a table's first release, with the values rows made before get (in the order added).
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    "runs": {
        "step": "REAL",
        "step_since": "TEXT",
        "idle": "INTEGER NOT NULL DEFAULT 0",
        "nonfinite": "TEXT",
        "gpu_low_since": "TEXT",
        "gpu_idle": "INTEGER NOT NULL DEFAULT 0",
    },
    # ``subscription_id``: the subscription a direct message is for (its delivery checks that the member may still
    # see the subscription's project).
    "outbox": {"alert_id": "INTEGER", "subscription_id": "INTEGER"},
    "jobs": {
        # ``acked`` 1: an old job's acknowledgement is long gone or sent.
        "acked": "INTEGER NOT NULL DEFAULT 1",
        "report_id": "INTEGER",
        # How far the log was read for log-pattern alerts, which patterns were told, and whether it is read to its
        # end (an old job's log is not read again).
        "log_offset": "INTEGER NOT NULL DEFAULT 0",
        "log_told": "TEXT",
        "log_done": "INTEGER NOT NULL DEFAULT 1",
        "project": "TEXT",
        "entity": "TEXT",
        # Whether the job was counted in a "your queue is done" message (old jobs: yes, never again).
        "queue_told": "INTEGER NOT NULL DEFAULT 1",
        # Which attempt runs now (1, then 2 after a retry …), and why the last retry happened.
        "attempt": "INTEGER NOT NULL DEFAULT 1",
        "retried_because": "TEXT",
        # A queued cell of a sweep held after two cells failed the same way (it waits for Resume or Drop).
        "held": "INTEGER NOT NULL DEFAULT 0",
        # Backend options changed for this job by a remediation (Slurm: {"time": "2", "mem": "1536M"}), and which
        # remediations were made (each at most once).
        "overrides": "TEXT",
        "remedied": "TEXT",
        # GPUs asked for, the ids handed out while it runs (local jobs with ADJUTANT_GPUS), its time limit
        # (seconds), and the GPUs its backend says it got (Slurm's AllocTRES), for usage.
        "gpus": "INTEGER NOT NULL DEFAULT 0",
        "gpu_ids": "TEXT",
        "time_limit": "REAL",
        "gpus_allocated": "INTEGER",
        # The route (a served channel, as configured: name or id) the job was launched under: every action on the
        # job follows that route's rule, wherever it is asked.
        "route": "TEXT",
    },
    # ``announced`` 0 from a decision until its card shows it and the requester was told: a restart finishes it,
    # once (1 for old rows: an old decision was told, or is long past).
    "approvals": {"announced": "INTEGER NOT NULL DEFAULT 1"},
}


def create_tables(db: sqlite3.Connection) -> None:
    """Migration 1: every table and index, unless it exists (as every release before the numbering did)."""
    for statement in (*TABLES, *INDEXES):
        db.execute(statement)


def add_missing_columns(db: sqlite3.Connection) -> None:
    """Migration 2: the columns added after each table's first release, each unless it exists (a database made by
    an earlier release has some of them, depending on the release)."""
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns.items():
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


#: Migration 3's columns of ``jobs``: priority classes and preemption.
PRIORITY_COLUMNS = {
    # ``high``, ``normal`` or ``low`` (the queue's order: priority, then arrival); 1: it may be preempted.
    "priority": "TEXT NOT NULL DEFAULT 'normal'",
    "preemptible": "INTEGER NOT NULL DEFAULT 0",
    # A preemption decided (before any signal): when, for which job; when SIGTERM followed the grace.
    "preempted_at": "TEXT",
    "preempted_by": "TEXT",
    "preempt_term_at": "TEXT",
    # How many of its attempts were started again after a preemption (they do not count against ADJUTANT_RETRIES).
    "preemptions": "INTEGER NOT NULL DEFAULT 0",
}


def add_priority_columns(db: sqlite3.Connection) -> None:
    """Migration 3: a job's priority class and preemption columns (:data:`PRIORITY_COLUMNS`)."""
    for name, declaration in PRIORITY_COLUMNS.items():
        db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")
    db.execute("CREATE INDEX jobs_preempted ON jobs (preempted_at) WHERE preempted_at IS NOT NULL")


#: The alert-action columns of ``alerts`` (ADJUTANT_ALERT_POLICY): the action decided once (``alerts.ActionState``;
#: NULL: not decided yet), when it is due, and who kept the job running (or what the action did).
ALERT_ACTION_COLUMNS = {"action_state": "TEXT", "action_at": "TEXT", "action_note": "TEXT"}


def add_alert_actions(db: sqlite3.Connection) -> None:
    """The alert-action columns (:data:`ALERT_ACTION_COLUMNS`); alerts recorded before them never act."""
    for name, declaration in ALERT_ACTION_COLUMNS.items():
        db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {declaration}")
    db.execute("UPDATE alerts SET action_state='none'")
    db.execute(
        "CREATE INDEX alerts_actions ON alerts (action_state, action_at)"
        " WHERE action_state IS NULL OR action_state IN ('pending', 'acting')"
    )


#: Sweeps that search (issue 23): one row per sweep (states: :class:`adjutant.db.models.SweepState`; kinds:
#: :class:`adjutant.db.models.SweepKind`). ``id`` ("sweep-xxxxxx") is also ``jobs.sweep_id`` of its trial or agent
#: jobs. ``config``: the parsed W&B sweep configuration (JSON); ``launch``: what each trial job runs with (JSON:
#: script, backend, gpus, time_limit, priority, preemptible, overrides); ``wandb_state``: the W&B sweep state last
#: mirrored (retried until it is the row's); ``resumed_at``: the last Resume (failures before it halt nothing);
#: ``target_trial``: the trial that reached ``metric.target``; ``exhausted_at``: since when nothing more is proposed or
#: queued (target reached, W&B's controller has nothing more: it finishes once its active trials end); ``told_at``:
#: its end was told; ``create_started_at``: its W&B sweep's creation was asked (before the answer: a creation that
#: timed out, or a bot killed before recording the id, is looked up on W&B by name before creating again).
SWEEPS = """
CREATE TABLE sweeps (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    route TEXT,
    project TEXT,
    entity TEXT,
    channel_id INTEGER,
    thread_id INTEGER,
    card_id INTEGER,
    requested_by_id INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    config TEXT,
    method TEXT,
    seed INTEGER,
    parallel INTEGER NOT NULL,
    run_cap INTEGER,
    wandb_sweep_id TEXT,
    state TEXT NOT NULL,
    note TEXT,
    launch TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    told_at TEXT,
    wandb_state TEXT,
    resumed_at TEXT,
    target_trial INTEGER,
    exhausted_at TEXT,
    create_started_at TEXT
)
"""
#: The trials of a sweep (states: :class:`adjutant.db.models.TrialState`), numbered from 1, each recorded in the same
#: transaction as its job. ``value``: the metric's final summary value (``value_read`` 1 once W&B was asked);
#: ``rung``: the hyperband rung it was stopped at; ``history``: its metric's sampled history as last read for
#: hyperband (JSON [[step, value], ...]) and ``rungs_read`` how many rungs it was judged at; ``runs_before``: for an
#: agent job, the W&B sweep's run count when it was queued (an agent that ended with no run since got nothing).
SWEEP_TRIALS = """
CREATE TABLE sweep_trials (
    sweep_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    params TEXT NOT NULL,
    wandb_run_id TEXT,
    job_id TEXT,
    state TEXT NOT NULL,
    value REAL,
    rung INTEGER,
    note TEXT,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    value_read INTEGER NOT NULL DEFAULT 0,
    history TEXT,
    rungs_read INTEGER NOT NULL DEFAULT 0,
    runs_before INTEGER,
    PRIMARY KEY (sweep_id, number)
)
"""


def add_sweeps(db: sqlite3.Connection) -> None:
    """Migration 5: the sweeps and sweep_trials tables, the W&B sweep a job's run is attached to, jobs by sweep."""
    db.execute(SWEEPS)
    db.execute(SWEEP_TRIALS)
    db.execute("CREATE INDEX sweeps_by_state ON sweeps (state)")
    db.execute("CREATE INDEX sweep_trials_by_job ON sweep_trials (job_id)")
    # A sweep's jobs (its new id's check, a card's thread given to its jobs) are found by sweep_id, not by a scan
    db.execute("CREATE INDEX jobs_by_sweep ON jobs (sweep_id) WHERE sweep_id IS NOT NULL")
    db.execute("ALTER TABLE jobs ADD COLUMN wandb_sweep_id TEXT")


#: Migration N is ``MIGRATIONS[N - 1]``; append, never edit or reorder (a database records how far it came).
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    create_tables,
    add_missing_columns,
    add_priority_columns,
    add_alert_actions,
    add_sweeps,
)
#: The version a database has once opened by this release.
SCHEMA_VERSION = len(MIGRATIONS)


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> int:
    """Bring the database to :data:`SCHEMA_VERSION` in one transaction (nothing to do: no write); the version it had.

    ``db`` is in autocommit mode (``isolation_level=None``). A database newer than this release is left as it is."""
    start = version(db)
    if start >= SCHEMA_VERSION:
        return start
    db.execute("BEGIN IMMEDIATE")
    try:
        start = version(db)  # another process may have migrated it meanwhile
        for step in range(start, SCHEMA_VERSION):
            MIGRATIONS[step](db)
        if start < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return start
