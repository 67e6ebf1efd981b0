"""Personal subscriptions, Discord-free: a member asks for a direct message on a project's events, alerts, the end of
its sweeps (``sweeps``), or the end of their own jobs (``mine``). Parsing and matching are pure; the SQL helpers take an
open transaction, so a subscriber's copy is queued in the same transaction as the event itself (exactly once, across
restarts)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adjutant.alerts import AlertKind, alert_kind, enqueue_announcement
from adjutant.clock import iso_seconds
from adjutant.db.models import SWEEP_ENDED
from adjutant.settings import RUN_EVENTS

# RUN_EVENTS: the run events a member may subscribe to by name, the same ones a channel may announce
# (ADJUTANT_NOTIFY), ``resumed`` included.
#: ``alerts``: every health alert; ``sweeps``: the end of each of the project's sweeps (one message a sweep, with its
#: best trial); ``mine``: the end of the member's own jobs, and "your queue is done".
SWEEPS = "sweeps"
EVENTS = (*RUN_EVENTS, "alerts", SWEEPS, "mine")
#: What ``all`` means: every event about a project (``mine`` is about the member's own jobs, so it is asked by name).
ALL_EVENTS = (*RUN_EVENTS, "alerts", SWEEPS)
#: What ``$subscribe <project>`` means without event names. A sweep's end is in it: one message a sweep, the summary
#: of the trial runs whose own ends (``finished``, ``failed``) the default already sends one by one.
DEFAULT_EVENTS = ("finished", "crashed", "failed", "alerts", SWEEPS)
#: The outbox event of a subscriber's copy of a sweep's end.
SWEEP_END = "sweep-end"
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
            found += ALL_EVENTS
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


def sweep_subscribers(db: sqlite3.Connection, projects: Iterable[str]) -> list[Subscription]:
    """The subscriptions to ``sweeps`` of any of ``projects`` (project keys), one per member (their first)."""
    found: dict[int, Subscription] = {}
    for project in dict.fromkeys(projects):
        for subscription in of_project(db, project):
            if subscription.wants(SWEEPS):
                found.setdefault(subscription.user_id, subscription)
    return sorted(found.values(), key=lambda s: s.id)


def tell_sweep_end(
    db: sqlite3.Connection, sweep_id: str, told_at: str, copies: Iterable[tuple[Subscription, Mapping[str, Any]]]
) -> bool:
    """A sweep's end was told in its channel: mark it told (``sweeps.told_at``, the once-only marker that
    ``SweepStore.mark_told`` sets) and queue each subscriber's direct message (``dm:<user id>``, delivered by the
    Inbox), in the caller's transaction: both or neither, so a restart neither loses nor repeats a copy. A copy whose
    subscription was ended meanwhile is not queued. False, and nothing queued, when the end was told already."""
    ended = sorted(str(state) for state in SWEEP_ENDED)
    marked = db.execute(
        f"UPDATE sweeps SET told_at=? WHERE id=? AND told_at IS NULL AND state IN ({','.join('?' * len(ended))})",  # noqa: S608
        (told_at, sweep_id, *ended),
    ).rowcount
    if not marked:
        return False
    for subscription, payload in copies:
        if get(db, subscription.id) is None:
            continue
        destination = f"{DM_PREFIX}{subscription.user_id}"
        enqueue_announcement(db, destination, sweep_id, SWEEP_END, payload, None, subscription_id=subscription.id)
    return True


def remove(db: sqlite3.Connection, user_id: int, which: int | None) -> int:
    """Delete one of the member's subscriptions (``which``), or all of them (None); how many were deleted."""
    if which is None:
        return db.execute("DELETE FROM subscriptions WHERE user_id=?", (user_id,)).rowcount
    return db.execute("DELETE FROM subscriptions WHERE user_id=? AND id=?", (user_id, which)).rowcount


def _from_row(row: sqlite3.Row) -> Subscription:
    return Subscription(row["id"], row["user_id"], row["project"], tuple(json.loads(row["events"])))
