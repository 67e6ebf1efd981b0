"""Adjutant's database: one SQLite file per state folder, one connection per process.

- :mod:`adjutant.db.schema`: every table, index and migration (numbered against ``PRAGMA user_version``);
- :mod:`adjutant.db.connection`: :class:`Database` (the connection, its lock, transactions) and
  :class:`TableFamily`, the base of the stores (``JobStore``, ``Store``, ``ApprovalStore``): thin classes of SQL
  over one shared :class:`Database`;
- :mod:`adjutant.db.models`: the job records and states (``Job``, ``JobState`` and its transitions, ``SweepHold``).

Blocking (SQLite): callers run store methods in a worker thread.
"""

from adjutant.db.connection import Database, TableFamily
from adjutant.db.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Database", "TableFamily"]
