"""Launch requests that wait for an approver, and the audit trail of who did what (SQLite; Discord-free).

A request above ADJUTANT_APPROVAL_GPUS / ADJUTANT_APPROVAL_JOBS (or any request of a member who may only
request) is recorded with the jobs it would queue; nothing is queued until an approver approves it. The
decision and the jobs it queues are one transaction, so two approvers clicking at once queue them once, and
the card works after a restart (its buttons carry the request's id).

Blocking (SQLite): callers run these methods in a thread.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from adjutant.clock import iso, parse_iso, utcnow
from adjutant.db import TableFamily
from adjutant.db.models import Job, JobRequest
from adjutant.jobs import insert_jobs

log = logging.getLogger(__name__)


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    #: The requester took it back before anyone decided.
    WITHDRAWN = "withdrawn"
    #: No approver decided within ADJUTANT_APPROVAL_HOURS.
    EXPIRED = "expired"

    @property
    def decided(self) -> bool:
        return self != ApprovalState.PENDING


class Action(StrEnum):
    """What an audit entry records."""

    LAUNCH = "launch"
    REQUEST = "request"
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    REFUSED = "refused"
    RULE_ADDED = "rule added"
    RULE_REMOVED = "rule removed"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    MUTED = "muted"
    KEPT_RUNNING = "kept running"
    SWEEP_DECIDED = "sweep decided"
    WITHDRAW = "withdraw"
    #: A higher-priority job took a preemptible job's GPUs (its row is written with the decision).
    PREEMPT = "preempt"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Approval:
    id: int
    state: ApprovalState
    kind: str  # "experiment" or "sweep"
    requested_by_id: int
    requested_by: str
    channel_id: int | None
    card_id: int | None
    requests: list[JobRequest]
    canary: bool
    gpus: int  # GPUs per job
    cells: int
    why: str
    created_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    job_ids: tuple[str, ...]

    @property
    def gpu_cost(self) -> int:
        """GPUs the whole request would use (per job, times the jobs)."""
        return self.gpus * self.cells

    @classmethod
    def from_row(cls, row: Any) -> Approval:
        return cls(
            id=row["id"],
            state=ApprovalState(row["state"]),
            kind=row["kind"],
            requested_by_id=row["requested_by_id"],
            requested_by=row["requested_by"],
            channel_id=row["channel_id"],
            card_id=row["card_id"],
            requests=[JobRequest(**r) for r in json.loads(row["requests"])],
            canary=bool(row["canary"]),
            gpus=row["gpus"],
            cells=row["cells"],
            why=row["why"],
            created_at=parse_iso(row["created_at"]) or utcnow(),
            decided_by=row["decided_by"],
            decided_at=parse_iso(row["decided_at"]),
            job_ids=tuple(json.loads(row["job_ids"] or "[]")),
        )


@dataclass(frozen=True)
class Decision:
    """What a click on Approve / Reject did: ``approval`` as it is now, ``changed`` False when it was decided
    already (by someone else, or by a second click), and the jobs an approval queued."""

    approval: Approval
    changed: bool
    jobs: list[Job]


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: dt.datetime
    actor_id: int | None
    actor: str
    guild_id: int | None
    channel_id: int | None
    action: str
    target: str | None
    detail: str | None


def record_audit(
    db: sqlite3.Connection,
    action: Action,
    actor_id: int | None,
    actor: str,
    *,
    guild_id: int | None = None,
    channel_id: int | None = None,
    target: str | None = None,
    detail: str | None = None,
) -> None:
    """(inside the caller's transaction) One entry of the audit trail, with what it records."""
    db.execute(
        "INSERT INTO audit (at, actor_id, actor, guild_id, channel_id, action, target, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (iso(), actor_id, actor, guild_id, channel_id, action.value, target, detail),
    )


class ApprovalStore(TableFamily):
    """The approvals and audit tables (an approval's decision queues its jobs in the same transaction)."""

    # --- approvals --------------------------------------------------------------------------------
    def add(self, kind: str, requests: Sequence[JobRequest], *, gpus: int, why: str, canary: bool = False) -> Approval:
        """Record a request waiting for an approver (no job exists yet)."""
        first = requests[0]
        data = json.dumps([asdict(r) for r in requests])
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO approvals (state, kind, requested_by_id, requested_by, channel_id, requests, canary, gpus,"
                " cells, why, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ApprovalState.PENDING,
                    kind,
                    first.requested_by_id,
                    first.requested_by,
                    first.channel_id,
                    data,
                    int(canary),
                    gpus,
                    len(requests),
                    why,
                    iso(),
                ),
            )
            row = db.execute("SELECT * FROM approvals WHERE id=?", (cursor.lastrowid,)).fetchone()
        return Approval.from_row(row)

    def set_card(self, approval_id: int, card_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE approvals SET card_id=? WHERE id=?", (card_id, approval_id))

    def get(self, approval_id: int) -> Approval | None:
        rows = self.query("SELECT * FROM approvals WHERE id=?", (approval_id,))
        return Approval.from_row(rows[0]) if rows else None

    def pending(self) -> list[Approval]:
        rows = self.query("SELECT * FROM approvals WHERE state=? ORDER BY id", (ApprovalState.PENDING,))
        return [Approval.from_row(r) for r in rows]

    def decide(self, approval_id: int, approve: bool, by_id: int, by: str, log_dir: Path) -> Decision | None:
        """Approve (queue its jobs) or reject a pending request, once: the state change and the jobs in one
        transaction. None when there is no such request."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone()
            if row is None:
                return None
            approval = Approval.from_row(row)
            if approval.state != ApprovalState.PENDING:
                return Decision(approval, False, [])
            jobs = insert_jobs(db, approval.requests, log_dir, canary=approval.canary) if approve else []
            state = ApprovalState.APPROVED if approve else ApprovalState.REJECTED
            ids = [job.id for job in jobs]
            db.execute(
                "UPDATE approvals SET state=?, decided_by_id=?, decided_by=?, decided_at=?, job_ids=?, announced=0"
                " WHERE id=? AND state=?",
                (state, by_id, by, iso(), json.dumps(ids), approval_id, ApprovalState.PENDING),
            )
            row = db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone()
        return Decision(Approval.from_row(row), True, jobs)

    def withdraw(self, approval_id: int, by_id: int, by: str) -> Decision | None:
        """The requester takes a pending request back (only them; once). None when there is no such request."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone()
            if row is None:
                return None
            approval = Approval.from_row(row)
            if approval.state != ApprovalState.PENDING or approval.requested_by_id != by_id:
                return Decision(approval, False, [])
            db.execute(
                "UPDATE approvals SET state=?, decided_by_id=?, decided_by=?, decided_at=?, announced=0"
                " WHERE id=? AND state=?",
                (ApprovalState.WITHDRAWN, by_id, by, iso(), approval_id, ApprovalState.PENDING),
            )
            row = db.execute("SELECT * FROM approvals WHERE id=?", (approval_id,)).fetchone()
        return Decision(Approval.from_row(row), True, [])

    def expire(self, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[Approval]:
        """Pending requests made more than ``older_than`` ago expire (their card and requester are told after, by
        :meth:`unannounced`)."""
        cutoff = iso((now or utcnow()) - older_than)
        due = "SELECT id FROM approvals WHERE state=? AND created_at < ?"
        if not self.query(due, (ApprovalState.PENDING, cutoff)):
            return []  # the usual case: no write
        with self.transaction() as db:
            ids = [r["id"] for r in db.execute(due, (ApprovalState.PENDING, cutoff)).fetchall()]
            db.executemany(
                "UPDATE approvals SET state=?, decided_by=?, decided_at=?, announced=0 WHERE id=? AND state=?",
                [(ApprovalState.EXPIRED, "nobody (expired)", iso(now), i, ApprovalState.PENDING) for i in ids],
            )
            found = [db.execute("SELECT * FROM approvals WHERE id=?", (i,)).fetchone() for i in ids]
        return [Approval.from_row(r) for r in found]

    def unannounced(self, decided_before: dt.datetime) -> list[Approval]:
        """Decided requests whose card and requester were not told yet, decided before ``decided_before`` (a
        decision being told right now by its click is left to that click)."""
        cutoff = iso(decided_before)
        rows = self.query(
            "SELECT * FROM approvals WHERE announced=0 AND state != ? AND decided_at < ? ORDER BY id",
            (ApprovalState.PENDING, cutoff),
        )
        return [Approval.from_row(r) for r in rows]

    def mark_announced(self, approval_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE approvals SET announced=1 WHERE id=?", (approval_id,))

    def jobs_of(self, approval: Approval) -> list[Job]:
        """The jobs an approved request queued, as they are now."""
        if not approval.job_ids:
            return []
        marks = ",".join("?" * len(approval.job_ids))
        rows = self.query(f"SELECT * FROM jobs WHERE id IN ({marks}) ORDER BY seq", approval.job_ids)  # noqa: S608
        return [Job.from_row(r) for r in rows]

    # --- audit --------------------------------------------------------------------------------------
    def record(
        self,
        action: Action,
        actor_id: int | None,
        actor: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        target: str | None = None,
        detail: str | None = None,
    ) -> None:
        """One entry of the audit trail, and its log line."""
        with self.transaction() as db:
            record_audit(
                db, action, actor_id, actor, guild_id=guild_id, channel_id=channel_id, target=target, detail=detail
            )
        log.info(
            "audit: %s by %s (%s) in channel %s: %s %s",
            action.value,
            actor,
            actor_id,
            channel_id,
            target or "",
            detail or "",
        )

    def entries(self, limit: int = 20, actor_id: int | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (of one member), newest first."""
        sql = "SELECT * FROM audit"
        args: list[Any] = []
        if actor_id is not None:
            sql += " WHERE actor_id=?"
            args.append(actor_id)
        rows = self.query(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit])
        return [
            AuditEntry(
                seq=r["seq"],
                at=parse_iso(r["at"]) or utcnow(),
                actor_id=r["actor_id"],
                actor=r["actor"],
                guild_id=r["guild_id"],
                channel_id=r["channel_id"],
                action=r["action"],
                target=r["target"],
                detail=r["detail"],
            )
            for r in rows
        ]
