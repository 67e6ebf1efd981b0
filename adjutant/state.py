"""The state folder: one Adjutant at a time (an exclusive lock), and a database that can be used.

Blocking (files, SQLite); callers run it in a thread. Nothing here ever rewrites or removes the
database: a problem is reported with the path and the fix, and startup stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

from adjutant.settings import ConfigError

LOCK_NAME = "adjutant.lock"


class StateError(ConfigError):
    """The state folder cannot be used now (another Adjutant holds it, or its database is damaged)."""


class StateLock:
    """An exclusive lock on a state folder for as long as this Adjutant runs (released by the OS on exit)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StateError` naming the folder and the holder's pid."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = (self.folder / LOCK_NAME).open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StateError(busy_message(self.folder, holder)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def busy_message(folder: Path, holder: str) -> str:
    return (
        f"another Adjutant (pid {holder}) is already using the state folder {folder}: two would launch every job "
        "twice and announce every run event twice. Stop the other one, or give this one a folder of its own "
        "(ADJUTANT_STATE_DIR)"
    )


def lock_holder(folder: Path) -> str | None:
    """The pid of the Adjutant holding ``folder``, or None if it is free (checked without keeping the lock)."""
    path = folder / LOCK_NAME
    if not path.exists():
        return None
    with path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def check_database(path: Path) -> None:
    """Raise :class:`StateError` (path, what is wrong, the fix) if the database exists but cannot be used."""
    if not path.exists():
        return
    fix = (
        f"Restore it from a backup, or move it aside to start fresh (mv {path} {path}.broken): Adjutant then "
        "starts with no memory of runs and jobs. Adjutant never changes or deletes this file by itself"
    )
    if not path.is_file():
        raise StateError(f"the state database {path} is not a file. {fix}")
    try:
        connection = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as error:
        raise StateError(
            f"the state database {path} cannot be opened ({error}); check its permissions. {fix}"
        ) from None
    try:
        result = connection.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as error:
        raise StateError(f"the state database {path} is damaged or not a database ({error}). {fix}") from None
    finally:
        connection.close()
    if not result or result[0] != "ok":
        raise StateError(f"the state database {path} is damaged ({result[0] if result else 'no answer'}). {fix}")
