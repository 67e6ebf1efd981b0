"""Experiment jobs: their records in SQLite, the environment they get, and process checks.

Blocking code (SQLite, /proc, file reads): callers run it in a thread. The table lives in the same
database file as the run reporting tables (``ADJUTANT_STATE_DIR/adjutant.sqlite3``); the job
supervisor process (:mod:`adjutant.supervisor`) writes to it too.

States (:class:`JobState`): queued → starting → running → succeeded | failed | cancelled, or lost
(the supervisor vanished without recording an end). ``cancelling`` is a running job asked to stop.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from adjutant import subscriptions
from adjutant._sqlite import Database
from adjutant.alerts import (
    ALERTS_SCHEMA,
    JOBS_OUTBOX,
    OUTBOX_MIGRATIONS,
    OUTBOX_SCHEMA,
    AlertKind,
    enqueue_announcement,
    muted,
    record_alert,
)
from adjutant.hparams import to_argument
from adjutant.subscriptions import CHANNEL_PREFIX, DM_PREFIX


class JobState(StrEnum):
    """Where a job is in its life; the value is what the ``jobs.state`` column holds."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"


#: A launcher is following these jobs.
ACTIVE: tuple[JobState, ...] = (JobState.STARTING, JobState.RUNNING, JobState.CANCELLING)
#: A retry: the next attempt, back in the queue, guarded by the attempt number (a second decision changes nothing).
RETRY_SQL = (
    "UPDATE jobs SET state='queued', attempt=attempt+1, retried_because=?, pid=NULL, pgid=NULL, supervisor_pid=NULL,"
    " external_id=NULL, external_state=NULL, exit_code=NULL, started_at=NULL, ended_at=NULL, reason=NULL,"
    " killed_at=NULL, gpu_ids=NULL"
    " WHERE id=? AND attempt=? AND reported=0 AND state IN ('starting', 'running', 'failed', 'lost')"
)
#: The terminal states: a job in one of them never changes again (except a failure that ADJUTANT_RETRY_ON_EXIT
#: retries, before its end is reported).
ENDED: tuple[JobState, ...] = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST)

JOBS_SCHEMA = """
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
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_by_run ON jobs (wandb_run_id);
CREATE TABLE IF NOT EXISTS sweep_holds (
    sweep_id TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
"""
#: Columns added after the first release; databases made before get them with these defaults
#: (``acked`` 1: an old job's acknowledgement is long gone or sent).
JOBS_MIGRATIONS = {
    "acked": "INTEGER NOT NULL DEFAULT 1",
    "report_id": "INTEGER",
    # How far the log was read for log-pattern alerts, which patterns were told, and whether it is read to its end
    # (an old job's log is not read again).
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
    # GPUs asked for, the ids handed out while it runs (local jobs with ADJUTANT_GPUS), its time limit (seconds), and
    # the GPUs its backend says it got (Slurm's AllocTRES), for usage.
    "gpus": "INTEGER NOT NULL DEFAULT 0",
    "gpu_ids": "TEXT",
    "time_limit": "REAL",
    "gpus_allocated": "INTEGER",
    # The route (a served channel, as configured: name or id) the job was launched under: every action on the job
    # follows that route's rule, wherever it is asked.
    "route": "TEXT",
}


#: Renders "your queue is done" for the jobs it covers (pure; job_render.queue_done_embed).
QueueEmbed = Callable[[list["Job"]], dict[str, Any]]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime | None = None) -> str:
    return (moment or utcnow()).isoformat(timespec="milliseconds")


def parse_iso(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def new_job_id() -> str:
    """Short, unambiguous, typeable: ``j`` + 6 characters of [a-z0-9] without look-alikes."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "j" + "".join(secrets.choice(alphabet) for _ in range(6))


def new_wandb_run_id() -> str:
    """A W&B run id the job's training script will use (through WANDB_RUN_ID)."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Job:
    """One row of the jobs table."""

    seq: int
    id: str
    state: str
    params: dict[str, Any]
    script: str
    requested_by_id: int
    requested_by: str
    channel_id: int | None
    message_id: int | None
    ack_id: int | None
    sweep_id: str | None
    wandb_run_id: str
    log_path: str
    supervisor_pid: int | None
    pid: int | None
    pgid: int | None
    exit_code: int | None
    reason: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    cancel_requested_at: dt.datetime | None
    cancelled_by: str | None
    killed_at: dt.datetime | None
    reported: bool
    backend: str
    external_id: str | None
    external_state: str | None
    thread_id: int | None
    acked: bool
    report_id: int | None
    params_text: str
    #: The W&B project (and entity) of the channel it was launched in: its run lands there.
    project: str | None = None
    entity: str | None = None
    #: Its attempt (a retry runs the same job again: same id, same W&B run) and why it was retried.
    attempt: int = 1
    retried_because: str | None = None
    #: Backend options a remediation changed (Slurm ``time``, ``mem``), and the remediations made.
    overrides: dict[str, str] = field(default_factory=dict)
    remedied: tuple[str, ...] = ()
    #: GPUs asked for; the ids it holds while active (local jobs with ADJUTANT_GPUS); its time limit in seconds.
    gpus: int = 0
    gpu_ids: tuple[int, ...] = ()
    time_limit: float | None = None
    #: GPUs its backend says it was given (Slurm), when known.
    gpus_allocated: int | None = None
    #: The route it was launched under (the configured channel, as text); None for jobs older than routes.
    route: str | None = None

    @property
    def gpus_used(self) -> int:
        """GPUs counted for usage: what the backend allocated when known, else what it asked for."""
        return self.gpus_allocated if self.gpus_allocated is not None else self.gpus

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["params_text"] = data["params"]
        data["params"] = json.loads(data["params"])
        for key in ("created_at", "started_at", "ended_at", "cancel_requested_at", "killed_at"):
            data[key] = parse_iso(data[key])
        data["reported"] = bool(data["reported"])
        data["acked"] = bool(data["acked"])
        data["state"] = JobState(data["state"])
        data["overrides"] = json.loads(data.get("overrides") or "{}")
        data["remedied"] = tuple(json.loads(data.get("remedied") or "[]"))
        data["gpu_ids"] = tuple(int(i) for i in (data.get("gpu_ids") or "").split(",") if i)
        for key in ("log_offset", "log_told", "log_done", "queue_told", "held"):  # bookkeeping, read where used
            data.pop(key, None)
        return cls(**data)

    def duration(self, now: dt.datetime | None = None) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at or now or utcnow()
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(frozen=True)
class JobUpdate:
    """What a launcher learned about a job: the fields to record (None: unchanged)."""

    state: JobState | None = None
    exit_code: int | None = None
    reason: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    supervisor_pid: int | None = None
    external_id: str | None = None
    external_state: str | None = None
    gpus_allocated: int | None = None

    def columns(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class JobRequest:
    """A launch to record: what to run, for whom, and where its story is told."""

    params: Mapping[str, Any]
    script: str
    requested_by_id: int
    requested_by: str
    channel_id: int | None
    message_id: int | None
    backend: str = "local"
    sweep_id: str | None = None
    #: True when no acknowledgement of its own will be sent.
    acked: bool = False
    #: The message that acknowledges it, when it exists already (a sweep's preview).
    ack_id: int | None = None
    #: The W&B project and entity its run must land in (the launching channel's).
    project: str | None = None
    entity: str | None = None
    #: GPUs it asks for, and its time limit in seconds (None: none).
    gpus: int = 0
    time_limit: float | None = None
    #: The route it is launched under (see Job.route).
    route: str | None = None


class JobStore(Database):
    """The jobs table, in the database file the supervisors write to as well."""

    def __init__(self, path: Path) -> None:
        # The outbox and alerts too: log-pattern alerts are recorded with the log offset that found them.
        super().__init__(path, JOBS_SCHEMA, OUTBOX_SCHEMA, ALERTS_SCHEMA)
        self.add_missing_columns("jobs", JOBS_MIGRATIONS)
        self.add_missing_columns("outbox", OUTBOX_MIGRATIONS)

    def add(self, request: JobRequest, log_dir: Path) -> Job:
        """Record a queued job (before anything is spawned)."""
        return self.add_many([request], log_dir)[0]

    def add_many(self, requests: Sequence[JobRequest], log_dir: Path, *, canary: bool = False) -> list[Job]:
        """Record queued jobs in one transaction: all of them or, after a crash, none. ``canary``: a sweep whose
        first cell runs alone; the others are held until it has shown it trains (see Scheduler)."""
        with self.transaction() as db:
            rows = self._insert(db, requests, log_dir, canary=canary)
        return [Job.from_row(row) for row in rows]

    @staticmethod
    def _insert(
        db: sqlite3.Connection, requests: Sequence[JobRequest], log_dir: Path, *, canary: bool = False
    ) -> list[sqlite3.Row]:
        """(inside a transaction) Insert queued jobs; their rows."""
        ids: list[str] = []
        for request in requests:
            for _ in range(10):
                job_id = new_job_id()
                if job_id not in ids and db.execute("SELECT 1 FROM jobs WHERE id=?", (job_id,)).fetchone() is None:
                    break
            ids.append(job_id)
            db.execute(
                "INSERT INTO jobs (id, state, params, script, requested_by_id, requested_by, channel_id,"
                " message_id, sweep_id, wandb_run_id, log_path, created_at, backend, acked, ack_id, log_done,"
                " project, entity, queue_told, gpus, time_limit, route)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 0, ?, ?, ?)",
                (
                    job_id,
                    JobState.QUEUED,
                    to_argument(request.params),
                    request.script,
                    request.requested_by_id,
                    request.requested_by,
                    request.channel_id,
                    request.message_id,
                    request.sweep_id,
                    new_wandb_run_id(),
                    str(log_dir / f"{job_id}.log"),
                    iso(),
                    request.backend,
                    int(request.acked),
                    request.ack_id,
                    request.project,
                    request.entity,
                    request.gpus,
                    request.time_limit,
                    request.route,
                ),
            )
        sweep_id = requests[0].sweep_id if requests else None
        if canary and sweep_id and len(ids) > 1:
            db.execute(
                "INSERT INTO sweep_holds (sweep_id, signature, state, decided_at) VALUES (?, '', 'canary', ?)",
                (sweep_id, iso()),
            )
            db.executemany("UPDATE jobs SET held=1 WHERE id=?", [(job_id,) for job_id in ids[1:]])
        return [db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone() for job_id in ids]

    def canary_sweeps(self) -> list[Job]:
        """The canary (first cell) of each sweep whose other cells wait for it."""
        rows = self.query(
            "SELECT * FROM jobs WHERE seq IN (SELECT MIN(seq) FROM jobs WHERE sweep_id IN"
            " (SELECT sweep_id FROM sweep_holds WHERE state='canary') GROUP BY sweep_id)"
        )
        return [Job.from_row(r) for r in rows]

    def release_canary(self, canary: Job, note: dict[str, Any]) -> int:
        """The canary trains: start the sweep's other cells (decided once, with its note). How many were waiting."""
        with self.transaction() as db:
            if not db.execute(
                "UPDATE sweep_holds SET state='released', decided_at=? WHERE sweep_id=? AND state='canary'",
                (iso(), canary.sweep_id),
            ).rowcount:
                return 0
            waiting = db.execute("UPDATE jobs SET held=0 WHERE sweep_id=? AND held=1", (canary.sweep_id,)).rowcount
            note = {**note, "description": note["description"].replace("{waiting}", str(waiting))}
            enqueue_announcement(
                db, JOBS_OUTBOX, canary.wandb_run_id, "canary", note, None, canary.message_id, canary.thread_id
            )
            return waiting

    def canary_failed(self, canary: Job, card: dict[str, Any], now: dt.datetime) -> bool:
        """The canary failed: the other cells stay held, and one card asks Launch all anyway / Drop."""
        with self.transaction() as db:
            if not db.execute(
                "UPDATE sweep_holds SET state='held', signature='canary', decided_at=?"
                " WHERE sweep_id=? AND state='canary'",
                (iso(now), canary.sweep_id),
            ).rowcount:
                return False
            waiting = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE sweep_id=? AND held=1", (canary.sweep_id,)
            ).fetchone()[0]
            alert_id = record_alert(
                db, JOBS_OUTBOX, AlertKind.CANARY_FAILED, run_id=canary.wandb_run_id, job_id=canary.id, now=now
            )
            card = {**card, "description": card["description"].replace("{held}", str(waiting))}
            enqueue_announcement(
                db,
                JOBS_OUTBOX,
                canary.wandb_run_id,
                "sweep-held",
                card,
                None,
                canary.message_id,
                canary.thread_id,
                alert_id,
            )
            return True

    def get(self, job_id: str) -> Job | None:
        rows = self.query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    def where(self, states: Sequence[JobState], limit: int = 1000) -> list[Job]:
        marks = ",".join("?" * len(states))
        sql = f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY seq LIMIT ?"  # noqa: S608 (marks only)
        return [Job.from_row(r) for r in self.query(sql, (*states, limit))]

    def recent(self, limit: int = 10) -> list[Job]:
        return [Job.from_row(r) for r in self.query("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,))]

    def unreported(self) -> list[Job]:
        rows = self.query_in("SELECT * FROM jobs WHERE reported=0 AND state IN ({marks}) ORDER BY seq", ENDED)
        return [Job.from_row(r) for r in rows]

    def acknowledge_sweep(self, sweep_id: str, thread_id: int | None = None) -> None:
        """A sweep's jobs are acknowledged (its preview or its approval says so), with the sweep's one thread."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET acked=1, thread_id=COALESCE(?, thread_id) WHERE sweep_id=?", (thread_id, sweep_id)
            )

    def unacknowledged_sweep_jobs(self) -> list[Job]:
        rows = self.query(
            "SELECT * FROM jobs WHERE acked=0 AND sweep_id IS NOT NULL AND ack_id IS NOT NULL ORDER BY seq"
        )
        return [Job.from_row(r) for r in rows]

    def logs_to_scan(self) -> list[tuple[Job, int, set[str]]]:
        """Jobs whose log is still read for alerts: (job, offset read so far, patterns already told)."""
        rows = self.query("SELECT * FROM jobs WHERE log_done=0 AND state != ? ORDER BY seq", (JobState.QUEUED,))
        return [(Job.from_row(r), r["log_offset"], set(json.loads(r["log_told"] or "[]"))) for r in rows]

    def record_log_scan(
        self,
        job: Job,
        offset: int,
        told: set[str],
        found: Sequence[tuple[str, str, dict[str, Any]]],
        *,
        done: bool,
        now: dt.datetime,
    ) -> int:
        """Record how far a job's log was read with the alerts it raised (pattern, line, embed), in one transaction:
        each is told once. Returns how many were queued (a muted run's are not)."""
        queued = 0
        with self.transaction() as db:
            for pattern, _line, embed in found:
                if muted(db, JOBS_OUTBOX, job.wandb_run_id, AlertKind.LOG, now):
                    continue
                alert_id = record_alert(db, JOBS_OUTBOX, AlertKind.LOG, run_id=job.wandb_run_id, job_id=job.id, now=now)
                enqueue_announcement(
                    db,
                    JOBS_OUTBOX,
                    job.wandb_run_id,
                    f"log:{pattern}",
                    embed,
                    None,
                    job.message_id,
                    job.thread_id,
                    alert_id,
                )
                queued += 1
            db.execute(
                "UPDATE jobs SET log_offset=?, log_told=?, log_done=? WHERE id=?",
                (offset, json.dumps(sorted(told)), int(done), job.id),
            )
        return queued

    def mark_reported(
        self, job: Job, report_id: int | None, end_embed: dict[str, Any], queue_embed: QueueEmbed
    ) -> None:
        """The end report was accepted: never report this job again. In the same transaction, the requester's
        direct message if they subscribed to ``mine``, and, when this was the last of their queued or running jobs
        and there were several, "your queue is done" (by DM for ``mine``, else a mention in the job's channel)."""
        user = job.requested_by_id
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET reported=1, report_id=? WHERE id=? AND reported=0", (report_id, job.id)
            ).rowcount
            if not changed:
                return
            mine = subscriptions.wants_mine(db, user)
            if mine:
                enqueue_announcement(db, f"{DM_PREFIX}{user}", job.wandb_run_id, "job-end", end_embed, None)
            waiting = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE requested_by_id=? AND (state IN (?, ?, ?, ?) OR reported=0)",
                (user, JobState.QUEUED, *ACTIVE),
            ).fetchone()[0]
            if waiting:
                return
            rows = db.execute(
                "SELECT * FROM jobs WHERE requested_by_id=? AND queue_told=0 ORDER BY seq", (user,)
            ).fetchall()
            done = [Job.from_row(r) for r in rows]
            db.execute("UPDATE jobs SET queue_told=1 WHERE requested_by_id=? AND queue_told=0", (user,))
            if len(done) < 2:
                return  # one job: its end report says it all
            payload = queue_embed(done)
            if mine:
                enqueue_announcement(db, f"{DM_PREFIX}{user}", job.wandb_run_id, "queue-done", payload, None)
            elif job.channel_id is not None:
                payload = {**payload, "_mention": user}
                enqueue_announcement(
                    db, f"{CHANNEL_PREFIX}{job.channel_id}", job.wandb_run_id, "queue-done", payload, None
                )

    def retry(self, job: Job, reason: str, note: dict[str, Any], now: dt.datetime) -> bool:
        """Queue ``job`` again as its next attempt instead of recording its end, with a note for its thread, in
        one transaction guarded by the attempt number: a decision made twice (a restart) changes nothing."""
        with self.transaction() as db:
            changed = db.execute(RETRY_SQL, (reason, job.id, job.attempt)).rowcount
            if changed:
                enqueue_announcement(
                    db, JOBS_OUTBOX, job.wandb_run_id, "retry", note, None, job.message_id, job.thread_id
                )
        return bool(changed)

    def startable(self, limit: int) -> list[Job]:
        """Queued jobs that may start (not held), oldest first."""
        rows = self.query("SELECT * FROM jobs WHERE state=? AND held=0 ORDER BY seq LIMIT ?", (JobState.QUEUED, limit))
        return [Job.from_row(r) for r in rows]

    def has_startable_without_gpus(self) -> bool:
        """A queued job that needs no GPU of this machine (it asked for none, or runs on Slurm or Ray)."""
        sql = "SELECT 1 FROM jobs WHERE state=? AND held=0 AND (gpus=0 OR backend!='local') LIMIT 1"
        return bool(self.query(sql, (JobState.QUEUED,)))

    def start(self, job_id: str, gpu_ids: Sequence[int] = ()) -> bool:
        """A queued job is starting, holding ``gpu_ids`` (one statement: a GPU is never handed out twice, and the
        assignment survives a restart; it is freed when the job leaves the active states)."""
        ids = ",".join(str(i) for i in gpu_ids) or None
        with self.transaction() as db:
            sql = "UPDATE jobs SET state=?, gpu_ids=? WHERE id=? AND state=?"
            return db.execute(sql, (JobState.STARTING, ids, job_id, JobState.QUEUED)).rowcount > 0

    def uses(self, since: dt.datetime, member_id: int | None = None) -> list[Job]:
        """Jobs that ran at some time after ``since`` (still running, or ended after it), for usage and quotas."""
        sql = "SELECT * FROM jobs WHERE started_at IS NOT NULL AND (ended_at IS NULL OR ended_at >= ?)"
        args: list[Any] = [iso(since)]
        if member_id is not None:
            sql += " AND requested_by_id=?"
            args.append(member_id)
        return [Job.from_row(r) for r in self.query(sql + " ORDER BY seq", args)]

    def failed_cells_of_undecided_sweeps(self) -> list[Job]:
        """Failed cells of sweeps that still have queued cells and no hold decision yet."""
        rows = self.query(
            "SELECT * FROM jobs WHERE state=? AND sweep_id IS NOT NULL"
            " AND sweep_id NOT IN (SELECT sweep_id FROM sweep_holds WHERE state != 'released')"
            " AND sweep_id IN (SELECT sweep_id FROM jobs WHERE state=?) ORDER BY seq",
            (JobState.FAILED, JobState.QUEUED),
        )
        return [Job.from_row(r) for r in rows]

    def hold_sweep(self, job: Job, signature: str, card: dict[str, Any], now: dt.datetime) -> int:
        """Hold a sweep's queued cells, with the card that asks Resume / Drop, in one transaction; decided once per
        sweep (a second decision, after a restart, changes nothing). Returns how many cells were held."""
        with self.transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO sweep_holds (sweep_id, signature, state, decided_at) VALUES (?, ?, 'held', ?)",
                (job.sweep_id, signature, iso(now)),
            ).rowcount
            if not inserted:  # a sweep whose canary was released may still be held once
                inserted = db.execute(
                    "UPDATE sweep_holds SET state='held', signature=?, decided_at=?"
                    " WHERE sweep_id=? AND state='released'",
                    (signature, iso(now), job.sweep_id),
                ).rowcount
            if not inserted:
                return 0
            held = db.execute(
                "UPDATE jobs SET held=1 WHERE sweep_id=? AND state=?", (job.sweep_id, JobState.QUEUED)
            ).rowcount
            alert_id = record_alert(
                db, JOBS_OUTBOX, AlertKind.SWEEP_HELD, run_id=job.wandb_run_id, job_id=job.id, now=now
            )
            card = {**card, "description": card["description"].replace("{held}", str(held))}
            enqueue_announcement(
                db, JOBS_OUTBOX, job.wandb_run_id, "sweep-held", card, None, job.message_id, job.thread_id, alert_id
            )
            return held

    def retry_canary(self, canary: Job, now: dt.datetime) -> bool:
        """Run a failed canary again (its next attempt) and hold the sweep behind it again, in one transaction."""
        with self.transaction() as db:
            if not db.execute(
                "UPDATE sweep_holds SET state='canary', decided_at=? WHERE sweep_id=? AND state='held'"
                " AND signature='canary'",
                (iso(now), canary.sweep_id),
            ).rowcount:
                return False
            db.execute(
                "UPDATE jobs SET state='queued', attempt=attempt+1, retried_because='Retry canary', reported=0,"
                " report_id=NULL, pid=NULL, pgid=NULL, supervisor_pid=NULL, external_id=NULL, external_state=NULL,"
                " exit_code=NULL, started_at=NULL, ended_at=NULL, reason=NULL, killed_at=NULL, cancelled_by=NULL,"
                " cancel_requested_at=NULL WHERE id=?",
                (canary.id,),
            )
            return True

    def decide_sweep(self, sweep_id: str, decision: str, by: str, now: dt.datetime) -> tuple[str, int]:
        """Resume (``resumed``) or drop (``dropped``) a held sweep: (the sweep's state before, cells changed)."""
        with self.transaction() as db:
            row = db.execute("SELECT state FROM sweep_holds WHERE sweep_id=?", (sweep_id,)).fetchone()
            if row is None or row[0] != "held":
                return (row[0] if row else "unknown"), 0
            db.execute("UPDATE sweep_holds SET state=?, decided_at=? WHERE sweep_id=?", (decision, iso(now), sweep_id))
            if decision == "resumed":
                changed = db.execute("UPDATE jobs SET held=0 WHERE sweep_id=? AND held=1", (sweep_id,)).rowcount
            else:
                changed = db.execute(
                    "UPDATE jobs SET state=?, ended_at=?, cancelled_by=?, held=0 WHERE sweep_id=? AND state=?",
                    (JobState.CANCELLED, iso(now), by, sweep_id, JobState.QUEUED),
                ).rowcount
            return "held", changed

    def remediate(self, job: Job, key: str, value: str, why: str, note: dict[str, Any]) -> bool:
        """Submit ``job`` again with one backend option changed (``key`` = ``value``), once per kind of remediation:
        the decision, the new option and the note for its thread in one transaction guarded by the attempt."""
        overrides = json.dumps({**job.overrides, key: value})
        remedied = json.dumps(sorted({*job.remedied, key}))
        with self.transaction() as db:
            changed = db.execute(RETRY_SQL, (why, job.id, job.attempt)).rowcount
            if changed:
                db.execute("UPDATE jobs SET overrides=?, remedied=? WHERE id=?", (overrides, remedied, job.id))
                enqueue_announcement(
                    db, JOBS_OUTBOX, job.wandb_run_id, "remedy", note, None, job.message_id, job.thread_id
                )
        return bool(changed)

    def end_with_note(self, job: Job, columns: dict[str, Any], note: dict[str, Any]) -> bool:
        """Record a job's end (``columns``) with a note for its thread, in one transaction."""
        values = dict(columns)
        state = values.pop("state", JobState.FAILED)
        sets = "".join(f", {k}=?" for k in values)
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state=CASE WHEN state='cancelling' THEN 'cancelled' ELSE ? END"  # noqa: S608 (our columns)
                + sets
                + " WHERE id=? AND state IN ('starting', 'running', 'cancelling')",
                (state, *values.values(), job.id),
            ).rowcount
            if changed:
                enqueue_announcement(
                    db, JOBS_OUTBOX, job.wandb_run_id, "remedy", note, None, job.message_id, job.thread_id
                )
        return bool(changed)

    def count_unreported(self) -> int:
        sql = "SELECT COUNT(*) FROM jobs WHERE reported=0 AND state IN ({marks})"
        return int(self.query_in(sql, ENDED)[0][0])

    def count(self, states: Sequence[JobState], *, before_seq: int | None = None) -> int:
        """How many jobs are in ``states`` (only those recorded before ``before_seq``, if given)."""
        sql = "SELECT COUNT(*) FROM jobs WHERE state IN ({marks})"
        args: tuple[Any, ...] = ()
        if before_seq is not None:
            sql += " AND seq < ?"
            args = (before_seq,)
        marks = ",".join("?" * len(states))
        return int(self.query(sql.format(marks=marks), (*states, *args))[0][0])

    def record_news(self, job_id: str, update: JobUpdate) -> bool:
        """A launcher's news about an active job, read from a snapshot that a cancel may have overtaken: while the row
        says ``cancelling``, "running" news keeps it cancelling, and an end other than success is ``cancelled`` (with
        the row's own reason). The row decides, in the same statement."""
        values = update.columns()
        state = values.pop("state", None)
        reason = values.pop("reason", None)
        sets = "".join(f", {k}=?" for k in values)
        sql = (
            "UPDATE jobs SET state=CASE WHEN ? IS NULL THEN state WHEN state='cancelling' THEN CASE"  # noqa: S608 (ours)
            " WHEN ? IN ('starting', 'running') THEN 'cancelling' WHEN ? IN ('failed', 'lost') THEN 'cancelled'"
            " ELSE ? END ELSE ? END,"
            " reason=CASE WHEN state='cancelling' OR ? IS NULL THEN reason ELSE ? END"
            + sets
            + " WHERE id=? AND state IN ('starting', 'running', 'cancelling')"
        )
        with self.transaction() as db:
            args = (state, state, state, state, state, reason, reason, *values.values(), job_id)
            return db.execute(sql, args).rowcount > 0

    def update(self, job_id: str, *, expect: Sequence[JobState] | None = None, **values: Any) -> bool:
        """Set columns of one job (only if its state is one of ``expect``); True if a row changed."""
        if not values:
            return False
        sets = ", ".join(f"{k}=?" for k in values)
        sql = f"UPDATE jobs SET {sets} WHERE id=?"  # noqa: S608 (column names are ours, values bound)
        args: list[Any] = [*values.values(), job_id]
        if expect:
            sql += f" AND state IN ({','.join('?' * len(expect))})"
            args += expect
        with self.transaction() as db:
            return db.execute(sql, args).rowcount > 0


def child_environment(
    environ: Mapping[str, str],
    job: Job,
    *,
    secrets_to_drop: tuple[str, ...] = (),
    entity: str | None = None,
    project: str | None = None,
) -> dict[str, str]:
    """The job's environment: the bot's, minus Discord's token and wandb's service socket, plus the job's ids.

    ``WANDB_SERVICE`` would attach the trainer to the bot's wandb-core process (its run then reports
    wrong states). Any variable whose value is one of ``secrets_to_drop`` (the token, under whatever
    name a host bot keeps it) is dropped too.
    """
    drop = {"DISCORD_TOKEN", "WANDB_SERVICE"}
    secrets_set = {s for s in secrets_to_drop if s}
    env = {k: v for k, v in environ.items() if k not in drop and v not in secrets_set and not k.startswith("_WANDB")}
    if job.project:  # the run lands in the project of the channel it was launched in
        env["WANDB_PROJECT"] = job.project
        if job.entity or entity:
            env["WANDB_ENTITY"] = job.entity or entity or ""
    if project and not env.get("WANDB_PROJECT"):  # the run lands in the project Adjutant reports on
        env["WANDB_PROJECT"] = project
    if entity and not env.get("WANDB_ENTITY"):
        env["WANDB_ENTITY"] = entity
    env["ADJUTANT_JOB_ID"] = job.id
    env["WANDB_RUN_ID"] = job.wandb_run_id
    env["WANDB_RESUME"] = "allow"
    env["WANDB_RUN_GROUP"] = job.sweep_id or f"adjutant-{job.id}"
    tags = [t for t in env.get("WANDB_TAGS", "").split(",") if t]
    env["WANDB_TAGS"] = ",".join([*tags, "adjutant", f"job-{job.id}"])
    return env


def process_alive(pid: int | None, must_contain: str = "") -> bool:
    """True if ``pid`` runs (not a zombie) and its command line contains ``must_contain`` (guards pid reuse)."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        if "\nState:\tZ" in status:
            return False
        return must_contain in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not must_contain  # without /proc the command line cannot be checked


def signal_group(pgid: int | None, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False if it no longer exists."""
    if not pgid or pgid <= 1:
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def tail_lines(path: Path, lines: int, *, max_bytes: int = 256 * 1024) -> tuple[list[str], int]:
    """The last ``lines`` lines of a (possibly huge) file, reading at most ``max_bytes`` from its end.

    Returns (lines, total size in bytes).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], 0
    with path.open("rb") as handle:
        start = max(0, size - max_bytes)
        handle.seek(start)
        data = handle.read()
    text = data.decode("utf-8", errors="replace")
    parts = text.splitlines()
    if start > 0 and parts:
        parts = parts[1:]  # the first line is probably cut
    return parts[-lines:] if lines > 0 else [], size


def read_tail_bytes(path: Path, max_bytes: int) -> tuple[bytes, int]:
    """The last ``max_bytes`` bytes of a file and its size."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - max_bytes))
        return handle.read(), size


def last_output_line(path: Path) -> str:
    """The last line the script itself wrote to its log (Adjutant's own ``[adjutant …]`` lines skipped)."""
    lines, _ = tail_lines(path, 20, max_bytes=16 * 1024)
    output = [line.strip() for line in lines if line.strip() and not line.startswith("[adjutant ")]
    return output[-1][:300] if output else ""
