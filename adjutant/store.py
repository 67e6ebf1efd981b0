"""The run reporting tables of Adjutant's database (:mod:`adjutant.db`): the run memory, per-project meta, the
announcement outbox, watch rules and alerts, subscriptions.

Synchronous by design: callers run these methods in a worker thread. Tables (schemas: :mod:`adjutant.db.schema`):
- ``runs``: the last recorded state of each W&B run of a project (the memory behind transitions);
- ``meta``: per-project values such as the createdAt watermark, and the status cards;
- ``outbox``: announcements not yet delivered to Discord, in order. An announcement is written in
  the same transaction as the run state that caused it, and deleted only after Discord accepted
  it, so a restart loses nothing and repeats nothing already delivered.
Jobs (their links to runs, a project's jobs for digests) are read through :class:`~adjutant.jobs.JobStore` on the
same connection.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adjutant import subscriptions
from adjutant.alerts import (
    MAX_RULES,
    Alert,
    Op,
    RuleSpec,
    WatchRule,
    alert_from_row,
    enqueue_announcement,
    mute,
)
from adjutant.approvals import Action, record_audit
from adjutant.clock import iso_seconds
from adjutant.db import Database, TableFamily
from adjutant.db.models import Job, JobLink
from adjutant.jobs import JobStore
from adjutant.runs import RunInfo, RunMemory
from adjutant.subscriptions import DM_PREFIX, Subscription

__all__ = ["STATUS_CARDS", "WATCHED_STATES", "JobLink", "OutboxItem", "Store"]

WATCHED_STATES = ("running", "pending", "preempting", "preempted")  # a preempted run may resume, or end
#: The meta table's "project" under which the status cards are kept.
STATUS_CARDS = "adjutant:status-cards"


@dataclass(frozen=True)
class OutboxItem:
    """An announcement waiting for delivery."""

    id: int
    run_id: str
    event: str
    payload: dict[str, Any]
    context: str | None
    reply_to: int | None = None
    thread_id: int | None = None
    alert_id: int | None = None
    #: The subscription a direct message is for (None: not a subscriber's copy, or queued by an older release).
    subscription_id: int | None = None


class Store(TableFamily):
    """The run reporting tables (runs, meta, outbox, watch rules, alerts, mutes, subscriptions)."""

    def __init__(self, database: Database | Path) -> None:
        super().__init__(database)
        #: Jobs, on the same connection: run events of launched jobs join the job's story.
        self.jobs = JobStore(self.database)

    # --- meta -----------------------------------------------------------------------------------
    def get_meta(self, project: str, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE project=? AND key=?", (project, key))
        return str(rows[0]["value"]) if rows else None

    @staticmethod
    def set_meta(db: sqlite3.Connection, project: str, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (project, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (project, key) DO UPDATE SET value=excluded.value",
            (project, key, value),
        )

    # --- runs -----------------------------------------------------------------------------------
    def stalled_between(self, project: str, start: dt.datetime, end: dt.datetime) -> list[str]:
        """Names of runs marked stalled whose record changed between ``start`` and ``end`` (for digests)."""
        rows = self.query(
            "SELECT name FROM runs WHERE project=? AND stalled=1 AND updated_at >= ? AND updated_at < ? ORDER BY name",
            (project, start.isoformat(), end.isoformat()),
        )
        return [r["name"] for r in rows]

    # --- status cards ($status pin): one per channel, edited in place -------------------------------------------
    def status_cards(self) -> dict[int, dict[str, Any]]:
        """Channel id → its card (message id, and what and when it last showed)."""
        rows = self.query("SELECT key, value FROM meta WHERE project=?", (STATUS_CARDS,))
        return {int(r["key"]): json.loads(r["value"]) for r in rows}

    def set_status_card(self, channel_id: int, card: dict[str, Any]) -> None:
        with self.transaction() as db:
            self.set_meta(db, STATUS_CARDS, str(channel_id), json.dumps(card))

    def drop_status_card(self, channel_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM meta WHERE project=? AND key=?", (STATUS_CARDS, str(channel_id)))

    def memories(self, project: str, run_ids: Iterable[str]) -> dict[str, RunMemory]:
        rows = self.query_in(
            "SELECT run_id, state, stalled, step, step_since, idle, nonfinite, gpu_low_since, gpu_idle FROM runs"
            " WHERE project=? AND run_id IN ({marks})",
            run_ids,
            (project,),
        )
        return {
            r["run_id"]: RunMemory(
                r["state"],
                bool(r["stalled"]),
                r["step"],
                dt.datetime.fromisoformat(r["step_since"]) if r["step_since"] else None,
                bool(r["idle"]),
                frozenset(json.loads(r["nonfinite"])) if r["nonfinite"] else frozenset(),
                dt.datetime.fromisoformat(r["gpu_low_since"]) if r["gpu_low_since"] else None,
                bool(r["gpu_idle"]),
            )
            for r in rows
        }

    @staticmethod
    def remember(db: sqlite3.Connection, project: str, run: RunInfo, memory: RunMemory) -> None:
        db.execute(
            "INSERT INTO runs (project, run_id, name, state, stalled, created_at, updated_at, step, step_since, idle,"
            " nonfinite, gpu_low_since, gpu_idle) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (project, run_id) DO UPDATE SET "
            "name=excluded.name, state=excluded.state, stalled=excluded.stalled, updated_at=excluded.updated_at,"
            " step=excluded.step, step_since=excluded.step_since, idle=excluded.idle, nonfinite=excluded.nonfinite,"
            " gpu_low_since=excluded.gpu_low_since, gpu_idle=excluded.gpu_idle",
            (
                project,
                run.id,
                run.name,
                memory.state,
                int(memory.stalled),
                run.created_at.isoformat() if run.created_at else None,
                iso_seconds(),
                memory.step,
                memory.step_since.isoformat() if memory.step_since else None,
                int(memory.idle),
                json.dumps(sorted(memory.nonfinite)) if memory.nonfinite else None,
                memory.gpu_low_since.isoformat() if memory.gpu_low_since else None,
                int(memory.gpu_idle),
            ),
        )

    @staticmethod
    def forget_watch(db: sqlite3.Connection, project: str, run_id: str) -> None:
        """A watched run vanished from W&B (deleted): stop watching it."""
        db.execute(
            "UPDATE runs SET state='deleted', updated_at=? WHERE project=? AND run_id=?",
            (iso_seconds(), project, run_id),
        )

    def watched(self, project: str) -> list[str]:
        """Runs last seen running or pending: each poll asks W&B about them by id."""
        rows = self.query_in(
            "SELECT run_id FROM runs WHERE project=? AND state IN ({marks}) ORDER BY run_id", WATCHED_STATES, (project,)
        )
        return [r["run_id"] for r in rows]

    def known_names(self, project: str, limit: int = 5000) -> list[tuple[str, str]]:
        """(run id, display name) of the most recent runs Adjutant has seen, for suggestions."""
        rows = self.query(
            "SELECT run_id, name FROM runs WHERE project=? ORDER BY created_at DESC LIMIT ?", (project, limit)
        )
        return [(r["run_id"], r["name"]) for r in rows]

    def knows_run(self, project: str, run_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM runs WHERE project=? AND run_id=?", (project, run_id)))

    def count_runs(self, project: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM runs WHERE project=?", (project,))[0][0])

    # --- outbox ---------------------------------------------------------------------------------
    enqueue = staticmethod(enqueue_announcement)

    def job_messages(self, run_ids: Iterable[str]) -> dict[str, JobLink]:
        """For runs launched by Adjutant jobs: run id → the job, its thread and launch message, its state."""
        return self.jobs.links(run_ids)

    def project_jobs(self, project_key: str, since: dt.datetime) -> list[Job]:
        """Jobs launched into one W&B project (``entity/project``) that ran at some time after ``since``."""
        return self.jobs.of_project(project_key, since)

    # --- subscriptions --------------------------------------------------------------------------
    def subscription(self, subscription_id: int) -> Subscription | None:
        with self.transaction() as db:
            return subscriptions.get(db, subscription_id)

    def member_subscriptions(self, user_id: int) -> list[Subscription]:
        with self.transaction() as db:
            return subscriptions.of_user(db, user_id)

    def subscribe(self, user_id: int, project: str, events: Sequence[str]) -> int | None:
        """Store a member's subscription (its id); None when they have MAX_SUBSCRIPTIONS already."""
        with self.transaction() as db:
            return subscriptions.add(db, user_id, project, events)

    def unsubscribe(self, user_id: int, which: int | None) -> int:
        """Delete one of the member's subscriptions (``which``), or all (None); how many were deleted."""
        with self.transaction() as db:
            return subscriptions.remove(db, user_id, which)

    def end_subscriptions(self, ended: Iterable[Subscription], member: str, why: str) -> list[Subscription]:
        """Adjutant ends subscriptions (the member can no longer see the project, or left): each is deleted with the
        direct messages still waiting for it and an audit entry, in one transaction. Returns those that existed."""
        done: list[Subscription] = []
        with self.transaction() as db:
            for subscription in ended:
                if not db.execute("DELETE FROM subscriptions WHERE id=?", (subscription.id,)).rowcount:
                    continue  # ended already (the member unsubscribed, or a second delivery round)
                db.execute(
                    "DELETE FROM outbox WHERE project=? AND subscription_id=?",
                    (f"{DM_PREFIX}{subscription.user_id}", subscription.id),
                )
                record_audit(
                    db,
                    Action.UNSUBSCRIBED,
                    subscription.user_id,
                    member,
                    target=f"#{subscription.id}",
                    detail=f"ended by Adjutant: {why}",
                )
                done.append(subscription)
        return done

    # --- watch rules and alerts -----------------------------------------------------------------
    def add_rule(self, project: str, spec: RuleSpec, author_id: int, author: str) -> WatchRule | None:
        """Store a rule; None when the project already has MAX_RULES."""
        with self.transaction() as db:
            count = db.execute("SELECT COUNT(*) FROM watch_rules WHERE project=?", (project,)).fetchone()[0]
            if count >= MAX_RULES:
                return None
            cursor = db.execute(
                "INSERT INTO watch_rules (project, metric, op, value, scope, author_id, author, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (project, spec.metric, str(spec.op), spec.value, spec.scope, author_id, author, iso_seconds()),
            )
        return WatchRule(spec.metric, spec.op, spec.value, spec.scope, int(cursor.lastrowid or 0), author_id, author)

    def rules(self, project: str) -> list[WatchRule]:
        rows = self.query("SELECT * FROM watch_rules WHERE project=? ORDER BY id", (project,))
        return [
            WatchRule(r["metric"], Op(r["op"]), r["value"], r["scope"], r["id"], r["author_id"], r["author"])
            for r in rows
        ]

    def remove_rule(self, project: str, rule_id: int) -> WatchRule | None:
        """Delete a rule and its hits; the rule removed, or None if the project has no such rule."""
        found = [r for r in self.rules(project) if r.id == rule_id]
        if not found:
            return None
        with self.transaction() as db:
            db.execute("DELETE FROM watch_rules WHERE project=? AND id=?", (project, rule_id))
            db.execute("DELETE FROM rule_hits WHERE rule_id=?", (rule_id,))
        return found[0]

    def rule_hits(self, run_ids: Iterable[str]) -> dict[str, set[int]]:
        """run id → the rules it is currently past (fired, not yet re-armed)."""
        hits: dict[str, set[int]] = {}
        for r in self.query_in("SELECT rule_id, run_id FROM rule_hits WHERE run_id IN ({marks})", run_ids):
            hits.setdefault(r["run_id"], set()).add(r["rule_id"])
        return hits

    @staticmethod
    def set_rule_hits(db: sqlite3.Connection, run_id: str, fired: set[int], rearmed: set[int]) -> None:
        db.executemany("INSERT OR IGNORE INTO rule_hits (rule_id, run_id) VALUES (?, ?)", [(i, run_id) for i in fired])
        db.executemany("DELETE FROM rule_hits WHERE rule_id=? AND run_id=?", [(i, run_id) for i in rearmed])

    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def mute(self, alert: Alert, now: dt.datetime) -> dt.datetime:
        """Mute the alert's run for its kind of alert (the card's "Mute 1 h"); returns until when."""
        with self.transaction() as db:
            return mute(db, alert, now)

    def alert(self, alert_id: int) -> Alert | None:
        rows = self.query("SELECT * FROM alerts WHERE id=?", (alert_id,))
        return alert_from_row(rows[0]) if rows else None

    def pending(self, project: str, limit: int = 100) -> list[OutboxItem]:
        rows = self.query(
            "SELECT id, run_id, event, payload, context, reply_to, thread_id, alert_id, subscription_id FROM outbox"
            " WHERE project=? ORDER BY id LIMIT ?",
            (project, limit),
        )
        return [
            OutboxItem(
                r["id"],
                r["run_id"],
                r["event"],
                json.loads(r["payload"]),
                r["context"],
                r["reply_to"],
                r["thread_id"],
                r["alert_id"],
                r["subscription_id"],
            )
            for r in rows
        ]

    def pending_destinations(self, prefixes: tuple[str, ...]) -> list[str]:
        """Outbox destinations (``project`` column) starting with one of ``prefixes`` that hold announcements."""
        clauses = " OR ".join("project LIKE ?" for _ in prefixes)
        rows = self.query(
            f"SELECT DISTINCT project FROM outbox WHERE {clauses}",  # noqa: S608 (placeholders only)
            [p.replace("%", "") + "%" for p in prefixes],
        )
        return [r["project"] for r in rows]

    def pending_count(self, project: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM outbox WHERE project=?", (project,))[0][0])

    def delivered(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        with self.transaction() as db:
            db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
