"""The SQLite plumbing shared by Adjutant's stores: one connection per store, a lock, WAL, transactions.

Blocking by design: callers run store methods in a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Database:
    """A SQLite file with the given schema scripts applied. Safe to share between threads."""

    def __init__(self, path: Path, *schemas: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")  # the job supervisors write alongside the bot
            self._db.execute("PRAGMA synchronous=NORMAL")
            for schema in schemas:
                self._db.executescript(schema)

    def add_missing_columns(self, table: str, columns: dict[str, str]) -> None:
        """Bring a table made by an older release up to date: add each missing column with its declaration."""
        with self.transaction() as db:
            have = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns.items():
                if name not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def query_in(self, sql: str, values: Iterable[Any], args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """``sql`` with one ``IN ({marks})`` over ``values``, run in chunks under SQLite's variable limit."""
        items = list(values)
        rows: list[sqlite3.Row] = []
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            rows += self.query(sql.format(marks=",".join("?" * len(chunk))), (*args, *chunk))
        return rows
