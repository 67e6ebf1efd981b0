"""Time as Adjutant writes and reads it: aware UTC datetimes, stored as ISO 8601 text (pure).

The job supervisor (:mod:`adjutant.supervisor`, stdlib only) keeps its own copy of :func:`iso`.
"""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Now, in UTC (aware)."""
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime | None = None) -> str:
    """``moment`` (default: now) as stored in the jobs, approvals and audit tables (to the millisecond)."""
    return (moment or utcnow()).isoformat(timespec="milliseconds")


def iso_seconds(moment: dt.datetime | None = None) -> str:
    """``moment`` (default: now) in UTC to the second, as stored in the runs, outbox, alerts, rules, mutes and
    subscriptions tables."""
    return (moment or utcnow()).astimezone(dt.UTC).isoformat(timespec="seconds")


def parse_iso(value: str | None) -> dt.datetime | None:
    """A stored time back as a datetime; None for no value."""
    return dt.datetime.fromisoformat(value) if value else None
