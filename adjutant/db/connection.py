"""The one SQLite connection of a process to its state folder's database, and the base of the stores.

Blocking by design: callers run store methods in a worker thread. The connection is shared between threads and
serialised by one lock; WAL, because the job supervisors write to the same file alongside the bot.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from adjutant.db.schema import migrate


class Database:
    """A SQLite file, migrated to the current schema when opened. Safe to share between threads: every store of a
    process uses one, so a unit of work that spans tables (an approval and the jobs it queues) is one transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        try:
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")  # the job supervisors write alongside the bot
                self._db.execute("PRAGMA synchronous=NORMAL")
                migrate(self._db)
        except BaseException:
            self._db.close()
            raise

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


class TableFamily:
    """A store: the SQL of a family of tables over a :class:`Database`.

    Given the process's shared database (what ``Services`` does), it uses that connection and leaves closing it to
    its owner; given a path (scripts, tests), it opens a database of its own and closes it in :meth:`close`."""

    def __init__(self, database: Database | Path) -> None:
        # A path is told apart from a Database by its type (os.PathLike), not by the Database class: loading the
        # extension re-imports adjutant's modules, so a Database may come from an earlier import of this one.
        self._owns = isinstance(database, os.PathLike)
        self.database: Database = Database(Path(database)) if isinstance(database, os.PathLike) else database

    @property
    def path(self) -> Path:
        return self.database.path

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One atomic unit of work on the shared connection (see :meth:`Database.transaction`)."""
        return self.database.transaction()

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.database.query(sql, args)

    def query_in(self, sql: str, values: Iterable[Any], args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.database.query_in(sql, values, args)

    def close(self) -> None:
        if self._owns:
            self.database.close()
