"""Adjutant's SQLite database (``ADJUTANT_STATE_DIR/adjutant.sqlite3``).

Synchronous by design: callers run these methods in a worker thread. One connection per
:class:`Store`, serialised by a lock; WAL mode so a crash never corrupts what was committed.

Tables:
- ``runs``: the last recorded state of each W&B run of a project (the memory behind transitions);
- ``meta``: per-project values such as the createdAt watermark;
- ``outbox``: announcements not yet delivered to Discord, in order. An announcement is written in
  the same transaction as the run state that caused it, and deleted only after Discord accepted
  it, so a restart loses nothing and repeats nothing already delivered.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adjutant._sqlite import Database
from adjutant.jobs import JOBS_SCHEMA
from adjutant.runs import RunInfo, RunMemory

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    stalled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, run_id)
);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (project, state);
CREATE TABLE IF NOT EXISTS meta (
    project TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (project, key)
);
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
);
"""

WATCHED_STATES = ("running", "pending")
#: Columns of the runs table added after the first release (older databases get them with these defaults).
RUNS_MIGRATIONS = {"step": "REAL", "step_since": "TEXT", "idle": "INTEGER NOT NULL DEFAULT 0", "nonfinite": "TEXT"}


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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Store(Database):
    """The run reporting tables. ``Store(path)`` creates the folder and tables if needed."""

    def __init__(self, path: Path) -> None:
        # The jobs table too: run events of launched jobs join the job's story.
        super().__init__(path, SCHEMA, JOBS_SCHEMA)
        self.add_missing_columns("runs", RUNS_MIGRATIONS)

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
    def memories(self, project: str, run_ids: Iterable[str]) -> dict[str, RunMemory]:
        rows = self.query_in(
            "SELECT run_id, state, stalled, step, step_since, idle, nonfinite FROM runs"
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
            )
            for r in rows
        }

    @staticmethod
    def remember(db: sqlite3.Connection, project: str, run: RunInfo, memory: RunMemory) -> None:
        db.execute(
            "INSERT INTO runs (project, run_id, name, state, stalled, created_at, updated_at, step, step_since, idle,"
            " nonfinite) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project, run_id) DO UPDATE SET "
            "name=excluded.name, state=excluded.state, stalled=excluded.stalled, updated_at=excluded.updated_at,"
            " step=excluded.step, step_since=excluded.step_since, idle=excluded.idle, nonfinite=excluded.nonfinite",
            (
                project,
                run.id,
                run.name,
                memory.state,
                int(memory.stalled),
                run.created_at.isoformat() if run.created_at else None,
                _now(),
                memory.step,
                memory.step_since.isoformat() if memory.step_since else None,
                int(memory.idle),
                json.dumps(sorted(memory.nonfinite)) if memory.nonfinite else None,
            ),
        )

    @staticmethod
    def forget_watch(db: sqlite3.Connection, project: str, run_id: str) -> None:
        """A watched run vanished from W&B (deleted): stop watching it."""
        db.execute(
            "UPDATE runs SET state='deleted', updated_at=? WHERE project=? AND run_id=?", (_now(), project, run_id)
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
    @staticmethod
    def enqueue(
        db: sqlite3.Connection,
        project: str,
        run_id: str,
        event: str,
        payload: dict[str, Any],
        context: str | None,
        reply_to: int | None = None,
        thread_id: int | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO outbox (project, run_id, event, payload, context, reply_to, thread_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (project, run_id, event, json.dumps(payload), context, reply_to, thread_id, _now()),
        )

    def job_messages(self, run_ids: Iterable[str]) -> dict[str, tuple[int | None, int | None]]:
        """For runs launched by Adjutant jobs: run id → (the job's thread id, launch message id)."""
        rows = self.query_in(
            "SELECT wandb_run_id, thread_id, message_id FROM jobs WHERE wandb_run_id IN ({marks})", run_ids
        )
        return {r["wandb_run_id"]: (r["thread_id"], r["message_id"]) for r in rows}

    def pending(self, project: str, limit: int = 100) -> list[OutboxItem]:
        rows = self.query(
            "SELECT id, run_id, event, payload, context, reply_to, thread_id FROM outbox"
            " WHERE project=? ORDER BY id LIMIT ?",
            (project, limit),
        )
        return [
            OutboxItem(
                r["id"], r["run_id"], r["event"], json.loads(r["payload"]), r["context"], r["reply_to"], r["thread_id"]
            )
            for r in rows
        ]

    def pending_count(self, project: str) -> int:
        return int(self.query("SELECT COUNT(*) FROM outbox WHERE project=?", (project,))[0][0])

    def delivered(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        with self.transaction() as db:
            db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
