"""Personal subscriptions, Discord-free: a member asks for a direct message on a project's events, alerts, or the end
of their own jobs (``mine``). Parsing and matching are pure; the SQL helpers take an open transaction, so a
subscriber's copy is queued in the same transaction as the event itself (exactly once, across restarts)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adjutant.alerts import AlertKind, alert_kind
from adjutant.clock import iso_seconds
from adjutant.settings import RUN_EVENTS

# RUN_EVENTS: the run events a member may subscribe to by name, the same ones a channel may announce
# (ADJUTANT_NOTIFY), ``resumed`` included.
#: ``alerts``: every health alert; ``mine``: the end of the member's own jobs, and "your queue is done".
EVENTS = (*RUN_EVENTS, "alerts", "mine")
#: What ``$subscribe <project>`` means without event names.
DEFAULT_EVENTS = ("finished", "crashed", "failed", "alerts")
#: The outbox destination of a member's direct messages.
DM_PREFIX = "dm:"
#: The outbox destination of a note to a channel (by id), such as "your queue is done" with a mention.
CHANNEL_PREFIX = "channel:"
MAX_SUBSCRIPTIONS = 20


@dataclass(frozen=True)
class Subscription:
    id: int
    user_id: int
    project: str  # a project key, or "" for ``mine`` alone
    events: tuple[str, ...]

    def wants(self, event: str) -> bool:
        """Does a run event (``finished``, ``rule:3``, ``nonfinite:loss`` …) reach this subscriber?"""
        kind = event.partition(":")[0]
        if kind in self.events:
            return True
        alert = alert_kind(event)
        return "alerts" in self.events and alert is not None and alert not in (AlertKind.CRASHED, AlertKind.FAILED)


def parse_events(words: Sequence[str]) -> tuple[str, ...]:
    """Event names (any order, commas allowed); raises ValueError naming an unknown one."""
    found: list[str] = []
    for word in (w.strip().lower() for part in words for w in part.split(",")):
        if not word:
            continue
        if word == "all":
            found += [*RUN_EVENTS, "alerts"]
        elif word in EVENTS:
            found.append(word)
        else:
            raise ValueError(f"{word[:40]!r} is not an event; choose from {', '.join(EVENTS)} (or all)")
    return tuple(dict.fromkeys(found))


def add(db: sqlite3.Connection, user_id: int, project: str, events: Iterable[str]) -> int | None:
    """Store a subscription; None when the member already has MAX_SUBSCRIPTIONS."""
    count = db.execute("SELECT COUNT(*) FROM subscriptions WHERE user_id=?", (user_id,)).fetchone()[0]
    if count >= MAX_SUBSCRIPTIONS:
        return None
    cursor = db.execute(
        "INSERT INTO subscriptions (user_id, project, events, created_at) VALUES (?, ?, ?, ?)",
        (user_id, project, json.dumps(list(events)), iso_seconds()),
    )
    return int(cursor.lastrowid or 0)


def of_user(db: sqlite3.Connection, user_id: int) -> list[Subscription]:
    rows = db.execute("SELECT * FROM subscriptions WHERE user_id=? ORDER BY id", (user_id,)).fetchall()
    return [_from_row(r) for r in rows]


def of_project(db: sqlite3.Connection, project: str) -> list[Subscription]:
    rows = db.execute("SELECT * FROM subscriptions WHERE project=? ORDER BY id", (project,)).fetchall()
    return [_from_row(r) for r in rows]


def get(db: sqlite3.Connection, subscription_id: int) -> Subscription | None:
    row = db.execute("SELECT * FROM subscriptions WHERE id=?", (subscription_id,)).fetchone()
    return None if row is None else _from_row(row)


def wants_mine(db: sqlite3.Connection, user_id: int) -> bool:
    return any("mine" in s.events for s in of_user(db, user_id))


def remove(db: sqlite3.Connection, user_id: int, which: int | None) -> int:
    """Delete one of the member's subscriptions (``which``), or all of them (None); how many were deleted."""
    if which is None:
        return db.execute("DELETE FROM subscriptions WHERE user_id=?", (user_id,)).rowcount
    return db.execute("DELETE FROM subscriptions WHERE user_id=? AND id=?", (user_id, which)).rowcount


def _from_row(row: sqlite3.Row) -> Subscription:
    return Subscription(row["id"], row["user_id"], row["project"], tuple(json.loads(row["events"])))
