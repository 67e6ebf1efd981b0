"""Experiment jobs: the jobs table's store, the environment jobs get, and process checks.

Blocking code (SQLite, /proc, file reads): callers run it in a thread. The table lives in the state folder's one
database (:mod:`adjutant.db`); the job supervisor process (:mod:`adjutant.supervisor`) writes to it too. The
records and their states (``Job``, ``JobState`` and its transitions, ``SweepHold``) are :mod:`adjutant.db.models`,
re-exported here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from adjutant import subscriptions
from adjutant.alerts import JOBS_OUTBOX, AlertKind, enqueue_announcement, muted, record_alert
from adjutant.clock import iso, parse_iso, utcnow
from adjutant.db import TableFamily
from adjutant.db.models import (
    ACTIVE,
    ENDED,
    PRIORITIES,
    Job,
    JobEvent,
    JobLink,
    JobRequest,
    JobState,
    JobUpdate,
    SweepHold,
    priority_rank,
    transition_sql,
)
from adjutant.hparams import to_argument
from adjutant.subscriptions import CHANNEL_PREFIX, DM_PREFIX

__all__ = [
    # the models and time helpers, re-exported: code imports them from here
    "ACTIVE",
    "CANARY_SIGNATURE",
    "ENDED",
    "PRIORITIES",
    "Job",
    "JobEvent",
    "JobLink",
    "JobRequest",
    "JobState",
    "JobStore",
    "JobUpdate",
    "QueueEmbed",
    "Queued",
    "SweepHold",
    "child_environment",
    "insert_jobs",
    "iso",
    "last_output_line",
    "new_job_id",
    "new_wandb_run_id",
    "parse_iso",
    "priority_rank",
    "process_alive",
    "read_tail_bytes",
    "signal_group",
    "tail_lines",
    "utcnow",
]

#: The ``sweep_holds.signature`` of a sweep held because its canary failed (else: the failure both cells shared).
CANARY_SIGNATURE = "canary"
#: The columns a retry clears: the next attempt starts from the queue like a new job (same id, same W&B run).
RETRY_CLEARS = (
    "pid=NULL, pgid=NULL, supervisor_pid=NULL, external_id=NULL, external_state=NULL, exit_code=NULL,"
    " started_at=NULL, ended_at=NULL, reason=NULL, killed_at=NULL"
)

#: The queue's order: priority (high, normal, low), then arrival (a preempted job keeps its ``seq``, so its place).
QUEUE_ORDER = "CASE priority WHEN 'high' THEN 0 WHEN 'low' THEN 2 ELSE 1 END, seq"
#: The columns a preemption's re-queue clears (with :data:`RETRY_CLEARS`).
PREEMPT_CLEARS = "preempted_at=NULL, preempted_by=NULL, preempt_term_at=NULL"

#: Renders "your queue is done" for the jobs it covers (pure; job_render.queue_done_embed).
QueueEmbed = Callable[[list["Job"]], dict[str, Any]]


class Queued(NamedTuple):
    """A queued job as the queue's rule reads it (:meth:`JobStore.queue`): only the columns the rule needs."""

    seq: int
    id: str
    backend: str
    gpus: int
    time_limit: float | None
    priority: str
    requested_by_id: int

    @property
    def rank(self) -> int:
        """Its priority as a number: higher goes first (see :attr:`Job.rank`)."""
        return priority_rank(self.priority)


#: The columns of :class:`Queued`, in its order.
QUEUED_COLUMNS = ", ".join(Queued._fields)


def new_job_id() -> str:
    """Short, unambiguous, typeable: ``j`` + 6 characters of [a-z0-9] without look-alikes."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "j" + "".join(secrets.choice(alphabet) for _ in range(6))


def new_wandb_run_id() -> str:
    """A W&B run id the job's training script will use (through WANDB_RUN_ID)."""
    return secrets.token_hex(4)


def insert_jobs(
    db: sqlite3.Connection, requests: Sequence[JobRequest], log_dir: Path, *, canary: bool = False
) -> list[Job]:
    """(inside the caller's transaction: its unit of work) Record queued jobs; ``canary``: a sweep whose first cell
    runs alone, the others held until it has shown it trains. Used by :meth:`JobStore.add_many` and by an approval's
    decision (:meth:`adjutant.approvals.ApprovalStore.decide`), which queues its jobs in the same transaction."""
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
            " project, entity, queue_told, gpus, time_limit, route, overrides, priority, preemptible, wandb_sweep_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
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
                json.dumps(dict(request.overrides)) if request.overrides else None,
                request.priority if request.priority in PRIORITIES else "normal",
                int(request.preemptible),
                request.wandb_sweep_id,
            ),
        )
    sweep_id = requests[0].sweep_id if requests else None
    if canary and sweep_id and len(ids) > 1:
        db.execute(
            "INSERT INTO sweep_holds (sweep_id, signature, state, decided_at) VALUES (?, '', ?, ?)",
            (sweep_id, SweepHold.CANARY, iso()),
        )
        db.executemany("UPDATE jobs SET held=1 WHERE id=?", [(job_id,) for job_id in ids[1:]])
    return [Job.from_row(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()) for job_id in ids]


def _retry(db: sqlite3.Connection, job: Job, why: str) -> bool:
    """(inside a transaction) Queue ``job`` again as its next attempt, guarded by the attempt number (a second
    decision changes nothing) and by :data:`JobEvent.RETRY`'s states; its end must not be reported yet."""
    case, moves, guard, sources = transition_sql(JobEvent.RETRY)
    sql = (
        f"UPDATE jobs SET state={case}, attempt=attempt+1, retried_because=?, {RETRY_CLEARS}, gpu_ids=NULL"  # noqa: S608
        f" WHERE id=? AND attempt=? AND reported=0 AND {guard}"
    )
    return db.execute(sql, (*moves, why, job.id, job.attempt, *sources)).rowcount > 0


class _Undecided(Exception):
    """A preemption decision's guard did not hold: its transaction is rolled back."""


class JobStore(TableFamily):
    """The jobs and sweep_holds tables (with the outbox and alert rows a job's decisions queue)."""

    def add(self, request: JobRequest, log_dir: Path) -> Job:
        """Record a queued job (before anything is spawned)."""
        return self.add_many([request], log_dir)[0]

    def add_many(self, requests: Sequence[JobRequest], log_dir: Path, *, canary: bool = False) -> list[Job]:
        """Record queued jobs in one transaction: all of them or, after a crash, none. ``canary``: a sweep whose
        first cell runs alone; the others are held until it has shown it trains (see Scheduler)."""
        with self.transaction() as db:
            return insert_jobs(db, requests, log_dir, canary=canary)

    def canary_sweeps(self) -> list[Job]:
        """The canary (first cell) of each sweep whose other cells wait for it."""
        rows = self.query(
            "SELECT * FROM jobs WHERE seq IN (SELECT MIN(seq) FROM jobs WHERE sweep_id IN"
            " (SELECT sweep_id FROM sweep_holds WHERE state=?) GROUP BY sweep_id)",
            (SweepHold.CANARY,),
        )
        return [Job.from_row(r) for r in rows]

    def release_canary(self, canary: Job, note: dict[str, Any]) -> int:
        """The canary trains: start the sweep's other cells (decided once, with its note). How many were waiting."""
        with self.transaction() as db:
            if not db.execute(
                "UPDATE sweep_holds SET state=?, decided_at=? WHERE sweep_id=? AND state=?",
                (SweepHold.RELEASED, iso(), canary.sweep_id, SweepHold.CANARY),
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
                "UPDATE sweep_holds SET state=?, signature=?, decided_at=? WHERE sweep_id=? AND state=?",
                (SweepHold.HELD, CANARY_SIGNATURE, iso(now), canary.sweep_id, SweepHold.CANARY),
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

    def links(self, run_ids: Iterable[str]) -> dict[str, JobLink]:
        """For runs launched by Adjutant jobs: run id → the job, its thread and launch message, its state."""
        # A preempted attempt is Adjutant's to end, like a cancel: while its preemption is under way, and while the job
        # waits in the queue for its next attempt, what W&B says of its run (finished, crashed, killed) is the
        # preemption's echo, not news (the next attempt's run is judged again once it runs).
        rows = self.query_in(
            "SELECT wandb_run_id, id, thread_id, message_id, requested_by_id, CASE"
            " WHEN preempted_at IS NOT NULL AND state IN ('starting', 'running') THEN 'cancelling'"
            " WHEN state='queued' AND preemptions > 0 AND retried_because LIKE 'preempted by %' THEN 'cancelling'"
            " ELSE state END AS state FROM jobs WHERE wandb_run_id IN ({marks})",
            run_ids,
        )
        return {
            r["wandb_run_id"]: JobLink(r["id"], r["thread_id"], r["message_id"], r["state"], r["requested_by_id"])
            for r in rows
        }

    def of_project(self, project_key: str, since: dt.datetime) -> list[Job]:
        """Jobs launched into one W&B project (``entity/project``) that ran at some time after ``since``: still
        running, or ended after it (a project's digest counts only its own jobs)."""
        entity, _, project = project_key.partition("/")
        rows = self.query(
            "SELECT * FROM jobs WHERE started_at IS NOT NULL AND (ended_at IS NULL OR ended_at >= ?)"
            " AND project=? AND COALESCE(entity, '')=? ORDER BY seq",
            (iso(since), project, entity),
        )
        return [Job.from_row(r) for r in rows]

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
            changed = _retry(db, job, reason)
            if changed:
                enqueue_announcement(
                    db, JOBS_OUTBOX, job.wandb_run_id, "retry", note, None, job.message_id, job.thread_id
                )
        return changed

    def startable(self, limit: int) -> list[Job]:
        """Queued jobs that may start (not held), in the queue's order: priority, then arrival."""
        sql = f"SELECT * FROM jobs WHERE state=? AND held=0 ORDER BY {QUEUE_ORDER} LIMIT ?"  # noqa: S608 (constant)
        rows = self.query(sql, (JobState.QUEUED, limit))
        return [Job.from_row(r) for r in rows]

    def queue(self, limit: int = 1000) -> list[Queued]:
        """:meth:`startable` as the queue's rule reads it (GPUs, fair share, preemption), a light record a row: a pass
        after each job end reads the whole queue, and a full :class:`Job` a row took ~40 ms at 1,000 queued."""
        sql = f"SELECT {QUEUED_COLUMNS} FROM jobs WHERE state=? AND held=0 ORDER BY {QUEUE_ORDER} LIMIT ?"  # noqa: S608
        return [Queued(*row) for row in self.query(sql, (JobState.QUEUED, limit))]

    def count_queued_ahead(self, job: Job) -> int:
        """Queued jobs ahead of ``job`` in the queue's order (a higher priority, or the same and earlier)."""
        rank = priority_rank(job.priority)
        sql = (
            "SELECT COUNT(*) FROM jobs WHERE state=? AND id != ? AND"
            " (CASE priority WHEN 'high' THEN 2 WHEN 'low' THEN 0 ELSE 1 END > ?"
            " OR (CASE priority WHEN 'high' THEN 2 WHEN 'low' THEN 0 ELSE 1 END = ? AND seq < ?))"
        )
        return int(self.query(sql, (JobState.QUEUED, job.id, rank, rank, job.seq))[0][0])

    def preempt(
        self,
        victims: Sequence[Job],
        by: Job,
        notes: Sequence[tuple[Job, str, dict[str, Any]]],
        audit: Sequence[str],
        now: dt.datetime,
    ) -> bool:
        """Decide to preempt ``victims`` (running, preemptible) for ``by``, BEFORE any signal: the decisions, the
        notes for the threads (job, event, embed) and the audit entries (one per victim) in one transaction, guarded
        by each victim's attempt and by no earlier decision: all of it or, when one of them changed meanwhile (it
        ended, was cancelled, or a restarted bot decided first), nothing."""
        try:
            with self.transaction() as db:
                for victim, detail in zip(victims, audit, strict=True):
                    changed = db.execute(
                        "UPDATE jobs SET preempted_at=?, preempted_by=? WHERE id=? AND attempt=? AND preemptible=1"
                        " AND preempted_at IS NULL AND cancel_requested_at IS NULL AND state IN (?, ?)",
                        (iso(now), by.id, victim.id, victim.attempt, JobState.STARTING, JobState.RUNNING),
                    ).rowcount
                    if not changed:
                        raise _Undecided
                    db.execute(
                        "INSERT INTO audit (at, actor_id, actor, channel_id, action, target, detail)"
                        " VALUES (?, NULL, 'Adjutant', ?, 'preempt', ?, ?)",
                        (iso(now), victim.channel_id, victim.id, detail),
                    )
                for job, event, embed in notes:
                    enqueue_announcement(
                        db, JOBS_OUTBOX, job.wandb_run_id, event, embed, None, job.message_id, job.thread_id
                    )
        except _Undecided:
            return False
        return True

    def preempted_ended(self) -> list[Job]:
        """Preempted jobs whose end is recorded and not yet turned into their next attempt."""
        rows = self.query_in(
            "SELECT * FROM jobs WHERE preempted_at IS NOT NULL AND reported=0 AND state IN ({marks}) ORDER BY seq",
            ENDED,
        )
        return [Job.from_row(r) for r in rows]

    def requeue_preempted(self, job: Job) -> bool:
        """A preempted job ended (whatever its exit): queued again as its next attempt, same id, same W&B run, same
        place (``seq``); not a retry (``preemptions`` counts it). Guarded by its attempt, its decision and no cancel:
        done once, also by a bot restarted between the signal and this."""
        with self.transaction() as db:
            return (
                db.execute(
                    "UPDATE jobs SET state=?, attempt=attempt+1, preemptions=preemptions+1,"  # noqa: S608 (constants)
                    f" retried_because=?, {RETRY_CLEARS}, {PREEMPT_CLEARS}, gpu_ids=NULL, cancelled_by=NULL"
                    " WHERE id=? AND attempt=? AND reported=0 AND preempted_at IS NOT NULL"
                    " AND cancel_requested_at IS NULL AND state IN (?, ?, ?)",
                    (
                        JobState.QUEUED,
                        f"preempted by {job.preempted_by or 'a higher-priority job'}",
                        job.id,
                        job.attempt,
                        JobState.SUCCEEDED,
                        JobState.FAILED,
                        JobState.LOST,
                    ),
                ).rowcount
                > 0
            )

    def has_startable_without_gpus(self) -> bool:
        """A queued job that needs no GPU of this machine (it asked for none, or runs on Slurm or Ray)."""
        sql = (
            "SELECT 1 FROM jobs WHERE state=? AND held=0 AND (gpus=0 OR backend NOT IN ('local', 'container')) LIMIT 1"
        )
        return bool(self.query(sql, (JobState.QUEUED,)))

    def start(self, job_id: str, gpu_ids: Sequence[int] = ()) -> bool:
        """A queued job is starting, holding ``gpu_ids`` (one statement: a GPU is never handed out twice, and the
        assignment survives a restart; it is freed when the job leaves the active states)."""
        ids = ",".join(str(i) for i in gpu_ids) or None
        case, moves, guard, sources = transition_sql(JobEvent.SUBMIT)
        with self.transaction() as db:
            sql = f"UPDATE jobs SET state={case}, gpu_ids=? WHERE id=? AND {guard}"  # noqa: S608 (placeholders only)
            return db.execute(sql, (*moves, ids, job_id, *sources)).rowcount > 0

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
            " AND sweep_id NOT IN (SELECT sweep_id FROM sweep_holds WHERE state != ?)"
            " AND sweep_id IN (SELECT sweep_id FROM jobs WHERE state=?) ORDER BY seq",
            (JobState.FAILED, SweepHold.RELEASED, JobState.QUEUED),
        )
        return [Job.from_row(r) for r in rows]

    def hold_sweep(self, job: Job, signature: str, card: dict[str, Any], now: dt.datetime) -> int:
        """Hold a sweep's queued cells, with the card that asks Resume / Drop, in one transaction; decided once per
        sweep (a second decision, after a restart, changes nothing). Returns how many cells were held."""
        with self.transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO sweep_holds (sweep_id, signature, state, decided_at) VALUES (?, ?, ?, ?)",
                (job.sweep_id, signature, SweepHold.HELD, iso(now)),
            ).rowcount
            if not inserted:  # a sweep whose canary was released may still be held once
                inserted = db.execute(
                    "UPDATE sweep_holds SET state=?, signature=?, decided_at=? WHERE sweep_id=? AND state=?",
                    (SweepHold.HELD, signature, iso(now), job.sweep_id, SweepHold.RELEASED),
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
                "UPDATE sweep_holds SET state=?, decided_at=? WHERE sweep_id=? AND state=? AND signature=?",
                (SweepHold.CANARY, iso(now), canary.sweep_id, SweepHold.HELD, CANARY_SIGNATURE),
            ).rowcount:
                return False
            # Whatever its end (failed, lost, cancelled): the hold, decided once above, guards it.
            db.execute(
                "UPDATE jobs SET state=?, attempt=attempt+1, retried_because='Retry canary', reported=0,"  # noqa: S608
                f" report_id=NULL, {RETRY_CLEARS}, cancelled_by=NULL, cancel_requested_at=NULL WHERE id=?",
                (JobState.QUEUED, canary.id),
            )
            return True

    def decide_sweep(self, sweep_id: str, decision: str, by: str, now: dt.datetime) -> tuple[str, int]:
        """Resume (:data:`SweepHold.RESUMED`) or drop (:data:`SweepHold.DROPPED`) a held sweep: (the sweep's hold
        before, ``unknown`` if it has none; cells changed)."""
        decision = SweepHold(decision)
        if decision not in (SweepHold.RESUMED, SweepHold.DROPPED):
            raise ValueError(f"a held sweep is resumed or dropped, not {decision}")
        with self.transaction() as db:
            row = db.execute("SELECT state FROM sweep_holds WHERE sweep_id=?", (sweep_id,)).fetchone()
            before = SweepHold(row[0]) if row else None
            if before != SweepHold.HELD:
                return before or "unknown", 0
            db.execute("UPDATE sweep_holds SET state=?, decided_at=? WHERE sweep_id=?", (decision, iso(now), sweep_id))
            if decision == SweepHold.RESUMED:
                changed = db.execute("UPDATE jobs SET held=0 WHERE sweep_id=? AND held=1", (sweep_id,)).rowcount
            else:
                case, moves, guard, sources = transition_sql(JobEvent.DROP)
                changed = db.execute(
                    f"UPDATE jobs SET state={case}, ended_at=?, cancelled_by=?, held=0"  # noqa: S608 (placeholders)
                    f" WHERE sweep_id=? AND {guard}",
                    (*moves, iso(now), by, sweep_id, *sources),
                ).rowcount
            return before, changed

    def remediate(self, job: Job, key: str, value: str, why: str, note: dict[str, Any]) -> bool:
        """Submit ``job`` again with one backend option changed (``key`` = ``value``), once per kind of remediation:
        the decision, the new option and the note for its thread in one transaction guarded by the attempt."""
        overrides = json.dumps({**job.overrides, key: value})
        remedied = json.dumps(sorted({*job.remedied, key}))
        with self.transaction() as db:
            changed = _retry(db, job, why)
            if changed:
                db.execute("UPDATE jobs SET overrides=?, remedied=? WHERE id=?", (overrides, remedied, job.id))
                enqueue_announcement(
                    db, JOBS_OUTBOX, job.wandb_run_id, "remedy", note, None, job.message_id, job.thread_id
                )
        return changed

    def end_with_note(self, job: Job, columns: dict[str, Any], note: dict[str, Any]) -> bool:
        """Record an active job's end (``columns``, its ``state`` by default failed: a job being cancelled ends
        cancelled) with a note for its thread, in one transaction."""
        values = dict(columns)
        event = JobEvent.of_news(JobState(values.pop("state", JobState.FAILED)))
        case, moves, guard, sources = transition_sql(event, among=ACTIVE)
        sets = "".join(f", {k}=?" for k in values)
        with self.transaction() as db:
            changed = db.execute(
                f"UPDATE jobs SET state={case}{sets} WHERE id=? AND {guard}",  # noqa: S608 (our columns)
                (*moves, *values.values(), job.id, *sources),
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
        the row's own reason). The row decides, in the same statement (the moves of :meth:`JobState.after`)."""
        values = update.columns()
        state = values.pop("state", None)
        reason = values.pop("reason", None)
        if state is None:
            moves: list[JobState] = []
            case, guard, sources = "state", f"state IN ({','.join('?' * len(ACTIVE))})", list(ACTIVE)
        else:
            case, moves, guard, sources = transition_sql(JobEvent.of_news(state), among=ACTIVE)
        sets = "".join(f", {k}=?" for k in values)
        sql = (
            f"UPDATE jobs SET state={case},"  # noqa: S608 (our columns, values bound)
            " reason=CASE WHEN state='cancelling' OR ? IS NULL THEN reason ELSE ? END"
            + sets
            + f" WHERE id=? AND {guard}"
        )
        with self.transaction() as db:
            args = (*moves, reason, reason, *values.values(), job_id, *sources)
            return db.execute(sql, args).rowcount > 0

    def transition(
        self, job_id: str, event: JobEvent, *, among: tuple[JobState, ...] | None = None, **values: Any
    ) -> bool:
        """Move one job by ``event`` (:meth:`JobState.after`: from the states it may happen in, or only those of
        ``among``, to where it leads), setting ``values`` with it, in one compare-and-set statement; True if the row
        changed."""
        case, moves, guard, sources = transition_sql(event, among)
        sets = "".join(f", {k}=?" for k in values)
        sql = f"UPDATE jobs SET state={case}{sets} WHERE id=? AND {guard}"  # noqa: S608 (our columns, values bound)
        with self.transaction() as db:
            return db.execute(sql, (*moves, *values.values(), job_id, *sources)).rowcount > 0

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
    named: tuple[str, ...] = (),
) -> dict[str, str]:
    """The job's environment: the bot's, minus Discord's token and wandb's service socket, plus the job's ids.
    An ``$agents`` job gets only the jobs' allow-list (:func:`adjutant.launchers.job_environment`, with the variables
    ``named`` in ADJUTANT_JOB_ENV) and PATH, HOME, LANG and WANDB_API_KEY.

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
    # A sweep's trial: its run is attached to the W&B sweep (wandb.init reads it); no other job's run is, whatever
    # the bot's own environment says.
    env.pop("WANDB_SWEEP_PARAM_PATH", None)
    env.pop("WANDB_SWEEP_ID", None)
    if job.wandb_sweep_id:
        env["WANDB_SWEEP_ID"] = job.wandb_sweep_id
    tags = [t for t in env.get("WANDB_TAGS", "").split(",") if t]
    env["WANDB_TAGS"] = ",".join([*tags, "adjutant", f"job-{job.id}"])
    if job.sweep_id and Path(job.script).name == "agent_job.py":
        # An $agents job runs what a W&B sweep's creator wrote (its program, checked by the sweep service; the
        # trainer it starts is theirs): even here it gets only what a job on another machine gets, and what W&B's
        # agent needs to run and reach W&B (PATH, HOME, LANG, the W&B key), not the bot's environment.
        from adjutant.launchers import job_environment

        env = job_environment(env, job, ("PATH", "HOME", "LANG", "WANDB_API_KEY", *named))
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
