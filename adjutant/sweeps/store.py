"""SweepStore: the sweeps and sweep_trials tables (issue 23), over the state folder's one database.

Blocking (SQLite): callers run it in a worker thread. A trial and its job are recorded in ONE transaction
(:meth:`SweepStore.record_trials`, with :func:`adjutant.jobs.insert_jobs` inside it): a bot killed at any moment
leaves both or neither. Every state change is a compare-and-set guarded by the states it may come from
(:meth:`SweepState.sources`, :data:`TRIAL_ACTIVE`), so a decision made twice (a restart, two ticks) changes nothing
the second time. The optimiser holds no memory: it is rebuilt from :meth:`SweepStore.trials` on every proposal.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adjutant.clock import iso, parse_iso
from adjutant.db import TableFamily
from adjutant.db.models import (
    PRIORITIES,
    TRIAL_ACTIVE,
    Job,
    JobRequest,
    SweepHold,
    SweepKind,
    SweepState,
    TrialState,
)
from adjutant.jobs import insert_jobs

__all__ = [
    "SweepKind",
    "SweepLaunch",
    "SweepRow",
    "SweepState",
    "SweepStore",
    "TrialRow",
    "TrialState",
    "new_sweep_id",
]

#: At most this many points of a trial's sampled history are kept (for hyperband's rungs).
HISTORY_POINTS = 500
#: The sweep_trials columns but ``history`` (read only for hyperband: up to 500 points a trial).
TRIAL_COLUMNS = (
    "sweep_id, number, params, wandb_run_id, job_id, state, value, rung, note, created_at, ended_at, value_read,"
    " rungs_read, runs_before"
)


def new_sweep_id() -> str:
    """``sweep-`` + 6 characters of [a-z0-9] without look-alikes (typeable, like job ids)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "sweep-" + "".join(secrets.choice(alphabet) for _ in range(6))


@dataclass(frozen=True)
class SweepLaunch:
    """What each trial (or agent) job of a sweep runs with: the sweep's launch options, decided at its preview."""

    script: str
    backend: str = "local"
    gpus: int = 0
    time_limit: float | None = None
    priority: str = "normal"
    preemptible: bool = False
    overrides: Mapping[str, str] = field(default_factory=dict)
    #: ``$agents``: the route's experiment script, the only ``program`` a W&B sweep's agents may run here (None: not
    #: known, so no agent is queued). A search sweep's trials run ``script``.
    experiment_script: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "script": self.script,
                "backend": self.backend,
                "gpus": self.gpus,
                "time_limit": self.time_limit,
                "priority": self.priority if self.priority in PRIORITIES else "normal",
                "preemptible": self.preemptible,
                "overrides": dict(self.overrides),
                "experiment_script": self.experiment_script,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SweepLaunch:
        data = json.loads(text)
        return cls(
            script=str(data["script"]),
            backend=str(data.get("backend") or "local"),
            gpus=int(data.get("gpus") or 0),
            time_limit=None if data.get("time_limit") is None else float(data["time_limit"]),
            priority=str(data.get("priority") or "normal"),
            preemptible=bool(data.get("preemptible")),
            overrides={str(k): str(v) for k, v in (data.get("overrides") or {}).items()},
            experiment_script=None if data.get("experiment_script") is None else str(data["experiment_script"]),
        )


@dataclass(frozen=True)
class SweepRow:
    """One row of the sweeps table."""

    id: str
    kind: SweepKind
    route: str | None
    project: str | None
    entity: str | None
    channel_id: int | None
    thread_id: int | None
    card_id: int | None
    requested_by_id: int
    requested_by: str
    #: The W&B sweep configuration as parsed (search), or None (agents: W&B has it).
    config: dict[str, Any] | None
    method: str | None
    seed: int | None
    parallel: int
    run_cap: int | None
    wandb_sweep_id: str | None
    state: SweepState
    note: str | None
    launch: SweepLaunch
    created_at: dt.datetime
    ended_at: dt.datetime | None
    told_at: dt.datetime | None
    #: The W&B sweep state last set (mirrored best-effort, retried until it is :attr:`SweepState.wandb_state`).
    wandb_state: str | None = None
    resumed_at: dt.datetime | None = None
    target_trial: int | None = None
    #: Since when nothing more is proposed or queued (its target reached, W&B's controller has nothing more).
    exhausted_at: dt.datetime | None = None
    #: When its W&B sweep's creation was last asked (None: never: no W&B sweep can exist without its id recorded).
    create_started_at: dt.datetime | None = None

    @property
    def wandb_path(self) -> str | None:
        """``entity/project/sweep id`` on W&B (``project/id`` without an entity), once the W&B sweep exists."""
        if self.wandb_sweep_id is None:
            return None
        return "/".join(part for part in (self.entity, self.project, self.wandb_sweep_id) if part)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> SweepRow:
        data = dict(row)
        data["kind"] = SweepKind(data["kind"])
        data["state"] = SweepState(data["state"])
        data["config"] = json.loads(data["config"]) if data.get("config") else None
        data["launch"] = SweepLaunch.from_json(data["launch"])
        for key in ("created_at", "ended_at", "told_at", "resumed_at", "exhausted_at", "create_started_at"):
            data[key] = parse_iso(data.get(key))
        return cls(**data)


@dataclass(frozen=True)
class TrialRow:
    """One row of the sweep_trials table: a trial (search) or an agent job (agents)."""

    sweep_id: str
    number: int
    params: dict[str, Any]
    wandb_run_id: str | None
    job_id: str | None
    state: TrialState
    value: float | None
    rung: int | None
    note: str | None
    created_at: dt.datetime
    ended_at: dt.datetime | None
    #: W&B was asked for its value (a done trial not yet read is still pending for the search).
    value_read: bool = False
    #: Its metric's sampled history as last read (hyperband): (step, value), steps ascending.
    history: tuple[tuple[float, float], ...] = ()
    rungs_read: int = 0
    runs_before: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> TrialRow:
        data = dict(row)
        data["params"] = json.loads(data["params"])
        data["state"] = TrialState(data["state"])
        data["value_read"] = bool(data.get("value_read"))
        data["history"] = tuple((float(s), float(v)) for s, v in json.loads(data.get("history") or "[]"))
        for key in ("created_at", "ended_at"):
            data[key] = parse_iso(data.get(key))
        return cls(**data)


class _Changed(Exception):
    """A guarded write found the rows changed meanwhile: its transaction is rolled back."""


class SweepStore(TableFamily):
    """The sweeps and sweep_trials tables (and the trial jobs recorded with them)."""

    # --- sweeps ---------------------------------------------------------------------------------
    def create(
        self,
        *,
        kind: SweepKind,
        route: str | None,
        project: str | None,
        entity: str | None,
        channel_id: int | None,
        requested_by_id: int,
        requested_by: str,
        config: Mapping[str, Any] | None,
        method: str | None,
        seed: int | None,
        parallel: int,
        run_cap: int | None,
        wandb_sweep_id: str | None,
        launch: SweepLaunch,
        now: dt.datetime,
        thread_id: int | None = None,
        card_id: int | None = None,
    ) -> SweepRow:
        """Record a sweep (RUNNING; nothing queued yet), with the scheduler's marker that the service paces it (its
        own canary and same-failure halt: the scheduler's leave its jobs alone), in one transaction."""
        with self.transaction() as db:
            for _ in range(20):
                sweep_id = new_sweep_id()
                taken = db.execute("SELECT 1 FROM sweeps WHERE id=?", (sweep_id,)).fetchone()
                taken = taken or db.execute("SELECT 1 FROM jobs WHERE sweep_id=? LIMIT 1", (sweep_id,)).fetchone()
                if taken is None:
                    break
            db.execute(
                "INSERT INTO sweeps (id, kind, route, project, entity, channel_id, thread_id, card_id, requested_by_id,"
                " requested_by, config, method, seed, parallel, run_cap, wandb_sweep_id, state, launch, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    SweepKind(kind),
                    route,
                    project,
                    entity,
                    channel_id,
                    thread_id,
                    card_id,
                    requested_by_id,
                    requested_by,
                    None if config is None else json.dumps(dict(config)),
                    method,
                    seed,
                    parallel,
                    run_cap,
                    wandb_sweep_id,
                    SweepState.RUNNING,
                    launch.to_json(),
                    iso(now),
                ),
            )
            db.execute(
                "INSERT OR REPLACE INTO sweep_holds (sweep_id, signature, state, decided_at) VALUES (?, '', ?, ?)",
                (sweep_id, SweepHold.SERVICE, iso(now)),
            )
            return SweepRow.from_row(db.execute("SELECT * FROM sweeps WHERE id=?", (sweep_id,)).fetchone())

    def get(self, sweep_id: str) -> SweepRow | None:
        rows = self.query("SELECT * FROM sweeps WHERE id=?", (sweep_id,))
        return SweepRow.from_row(rows[0]) if rows else None

    def unended(self) -> list[SweepRow]:
        """Sweeps still running, paused or stopping, oldest first."""
        rows = self.query_in(
            "SELECT * FROM sweeps WHERE state NOT IN ({marks}) ORDER BY created_at, id",
            [s for s in SweepState if s.ended],
        )
        return [SweepRow.from_row(r) for r in rows]

    def listing(self, routes: Collection[str] | None = None, limit: int = 100) -> list[SweepRow]:
        """Sweeps, newest first (only those of ``routes``, if given)."""
        if routes is None:
            rows = self.query("SELECT * FROM sweeps ORDER BY created_at DESC, id LIMIT ?", (limit,))
        else:
            rows = self.query_in("SELECT * FROM sweeps WHERE route IN ({marks})", list(routes))
            rows = sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)[:limit]
        return [SweepRow.from_row(r) for r in rows]

    def set_card(self, sweep_id: str, channel_id: int | None, card_id: int | None, thread_id: int | None) -> bool:
        """Where the sweep's card (and its one thread) is; its trial jobs tell their notes in that thread."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE sweeps SET channel_id=COALESCE(?, channel_id), card_id=COALESCE(?, card_id),"
                " thread_id=COALESCE(?, thread_id) WHERE id=?",
                (channel_id, card_id, thread_id, sweep_id),
            ).rowcount
            if thread_id is not None:
                db.execute("UPDATE jobs SET thread_id=? WHERE sweep_id=? AND thread_id IS NULL", (thread_id, sweep_id))
            return changed > 0

    def set_state(
        self,
        sweep_id: str,
        new: SweepState,
        *,
        now: dt.datetime,
        note: str | None = None,
        among: Collection[SweepState] | None = None,
        hold_queued: bool | None = None,
        **values: Any,
    ) -> bool:
        """Move a sweep to ``new`` from the states it may come from (:meth:`SweepState.sources`; only those of
        ``among``, if given), with its note and ``values``, in one compare-and-set; True if it moved. ``hold_queued``:
        hold (True) or release (False) its queued jobs in the same transaction (Pause, Resume)."""
        sources = [s for s in new.sources() if among is None or s in among]
        if not sources:
            return False
        sets = {**values}
        if note is not None:
            sets["note"] = note
        if new.ended:
            sets["ended_at"] = iso(now)
        columns = "".join(f", {k}=?" for k in sets)
        with self.transaction() as db:
            changed = db.execute(
                f"UPDATE sweeps SET state=?{columns} WHERE id=? AND state IN ({','.join('?' * len(sources))})",  # noqa: S608
                (new, *sets.values(), sweep_id, *sources),
            ).rowcount
            if changed and hold_queued is not None:
                db.execute("UPDATE jobs SET held=? WHERE sweep_id=? AND state='queued'", (int(hold_queued), sweep_id))
            return changed > 0

    def update_sweep(self, sweep_id: str, *, expect: Collection[SweepState] | None = None, **values: Any) -> bool:
        """Set columns of a sweep (only while its state is one of ``expect``, if given)."""
        if not values:
            return False
        sql = f"UPDATE sweeps SET {', '.join(f'{k}=?' for k in values)} WHERE id=?"  # noqa: S608 (our columns)
        args: list[Any] = [*values.values(), sweep_id]
        if expect is not None:
            sql += f" AND state IN ({','.join('?' * len(expect))})"
            args += list(expect)
        with self.transaction() as db:
            return db.execute(sql, args).rowcount > 0

    def set_wandb_sweep(self, sweep_id: str, wandb_sweep_id: str, wandb_state: str | None = "RUNNING") -> bool:
        """The W&B sweep was created: recorded once (a second creation, after a race, is not recorded)."""
        with self.transaction() as db:
            return (
                db.execute(
                    "UPDATE sweeps SET wandb_sweep_id=?, wandb_state=?, note=NULL"
                    " WHERE id=? AND wandb_sweep_id IS NULL",
                    (wandb_sweep_id, wandb_state, sweep_id),
                ).rowcount
                > 0
            )

    def ended_untold(self) -> list[SweepRow]:
        """Ended sweeps whose end was not told yet."""
        rows = self.query_in(
            "SELECT * FROM sweeps WHERE told_at IS NULL AND state IN ({marks}) ORDER BY ended_at, id",
            [s for s in SweepState if s.ended],
        )
        return [SweepRow.from_row(r) for r in rows]

    def mark_told(self, sweep_id: str, now: dt.datetime) -> bool:
        """Its end was told: never again (True the first time only)."""
        with self.transaction() as db:
            return (
                db.execute(
                    "UPDATE sweeps SET told_at=? WHERE id=? AND told_at IS NULL AND state IN (?, ?)",
                    (iso(now), sweep_id, *(s for s in SweepState if s.ended)),
                ).rowcount
                > 0
            )

    # --- trials ---------------------------------------------------------------------------------
    def trials(self, sweep_id: str, *, history: bool = False) -> list[TrialRow]:
        """A sweep's trials in order; their sampled ``history`` (hyperband's, up to :data:`HISTORY_POINTS` points
        each) only when asked for (else empty)."""
        columns = "*" if history else TRIAL_COLUMNS
        rows = self.query(f"SELECT {columns} FROM sweep_trials WHERE sweep_id=? ORDER BY number", (sweep_id,))  # noqa: S608
        return [TrialRow.from_row(r) for r in rows]

    def trials_with_jobs(
        self, sweep_id: str, states: Collection[TrialState] | None = None, *, history: bool = False
    ) -> list[tuple[TrialRow, Job | None]]:
        """Each trial with its job as the jobs table has it now (one query); only the jobs of trials in ``states``,
        if given (the others None)."""
        trials = self.trials(sweep_id, history=history)
        ids = [t.job_id for t in trials if t.job_id and (states is None or t.state in states)]
        jobs = {r["id"]: Job.from_row(r) for r in self.query_in("SELECT * FROM jobs WHERE id IN ({marks})", ids)}
        return [(t, jobs.get(t.job_id or "")) for t in trials]

    def record_trials(
        self,
        sweep: SweepRow,
        requests: Sequence[JobRequest],
        params: Sequence[Mapping[str, Any]],
        log_dir: Path,
        *,
        after: int,
        now: dt.datetime,
        runs_before: int | None = None,
    ) -> list[tuple[TrialRow, Job]]:
        """Record trials ``after + 1`` … with their queued jobs, in ONE transaction: the trial rows (params, W&B run
        id, job id) and the job rows together or, after a crash, neither. Guarded: the sweep must still be running
        and its last trial still ``after`` (a tick that raced another, or a restart that re-proposes, records
        nothing: an empty list)."""
        if len(requests) != len(params):
            raise ValueError("one job request per trial")
        if not requests:
            return []
        try:
            with self.transaction() as db:
                state = db.execute("SELECT state, thread_id FROM sweeps WHERE id=?", (sweep.id,)).fetchone()
                last = db.execute("SELECT MAX(number) FROM sweep_trials WHERE sweep_id=?", (sweep.id,)).fetchone()[0]
                if state is None or state[0] != SweepState.RUNNING or (last or 0) != after:
                    raise _Changed
                jobs = insert_jobs(db, requests, log_dir)
                thread_id = state[1]  # as it is now: a card's thread set since ``sweep`` was read reaches these jobs
                if thread_id is not None:
                    db.executemany("UPDATE jobs SET thread_id=? WHERE id=?", [(thread_id, job.id) for job in jobs])
                for number, (job, trial_params) in enumerate(zip(jobs, params, strict=True), start=after + 1):
                    db.execute(
                        "INSERT INTO sweep_trials (sweep_id, number, params, wandb_run_id, job_id, state, created_at,"
                        " runs_before) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            sweep.id,
                            number,
                            json.dumps(dict(trial_params), sort_keys=True),
                            job.wandb_run_id,
                            job.id,
                            TrialState.QUEUED,
                            iso(now),
                            runs_before,
                        ),
                    )
                rows = db.execute(
                    "SELECT * FROM sweep_trials WHERE sweep_id=? AND number > ? ORDER BY number", (sweep.id, after)
                ).fetchall()
                fresh = {j.id: j for j in (Job.from_row(r) for r in _jobs_of(db, [j.id for j in jobs]))}
        except _Changed:
            return []
        trials = [TrialRow.from_row(r) for r in rows]
        return [(t, fresh[t.job_id or ""]) for t in trials]

    def update_trial(
        self,
        sweep_id: str,
        number: int,
        *,
        expect: Collection[TrialState] | None = TRIAL_ACTIVE,
        **values: Any,
    ) -> bool:
        """Set columns of one trial (only while its state is one of ``expect``; None: whatever it is): the trial's
        compare-and-set. ``history`` is given as (step, value) pairs."""
        if not values:
            return False
        if "history" in values:
            points = list(values["history"])[-HISTORY_POINTS:]
            values["history"] = json.dumps([[s, v] for s, v in points])
        if "params" in values:
            values["params"] = json.dumps(dict(values["params"]), sort_keys=True)
        sql = f"UPDATE sweep_trials SET {', '.join(f'{k}=?' for k in values)} WHERE sweep_id=? AND number=?"  # noqa: S608
        args: list[Any] = [*values.values(), sweep_id, number]
        if expect is not None:
            sql += f" AND state IN ({','.join('?' * len(expect))})"
            args += list(expect)
        with self.transaction() as db:
            return db.execute(sql, args).rowcount > 0

    def end_trials(
        self, sweep_id: str, ends: Sequence[tuple[int, TrialState, dict[str, Any]]], now: dt.datetime
    ) -> int:
        """Record several trials' ends (number, state, more columns) in one transaction, each guarded by its being
        active still; how many changed."""
        changed = 0
        with self.transaction() as db:
            for number, state, values in ends:
                columns = {"state": TrialState(state), "ended_at": iso(now), **values}
                sets = ", ".join(f"{k}=?" for k in columns)
                changed += db.execute(
                    f"UPDATE sweep_trials SET {sets} WHERE sweep_id=? AND number=? AND state IN (?, ?)",  # noqa: S608
                    (*columns.values(), sweep_id, number, *TRIAL_ACTIVE),
                ).rowcount
        return changed

    def trial_of_job(self, job_id: str) -> TrialRow | None:
        rows = self.query("SELECT * FROM sweep_trials WHERE job_id=?", (job_id,))
        return TrialRow.from_row(rows[0]) if rows else None


def _jobs_of(db: sqlite3.Connection, ids: Sequence[str]) -> list[sqlite3.Row]:
    marks = ",".join("?" * len(ids))
    return db.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", list(ids)).fetchall()  # noqa: S608 (marks only)
