"""SweepService: sweeps that search, as Adjutant jobs (issue 23). Discord-free; the clock and the W&B side are given.

One :meth:`SweepService.tick` is one pass over the unended sweeps, from the tables alone (a restarted bot resumes
every sweep where it was: nothing is kept in memory that a restart would need):

- **trials follow their jobs**: queued → running → done / failed / stopped early / dropped. A job the scheduler will
  run again (a retry, a preemption's next attempt) is not an end. The metric of trials that ended is read from W&B in
  ONE request per sweep and pass (their runs' summary value of ``metric.name``), retried next pass when W&B fails.
- **search** (Adjutant is the controller): the W&B sweep is created first (``controller: {type: local}``; a failure is
  said in the sweep's note and retried next pass); then free slots (``min(parallel, what the scheduler can run)``
  minus the trials queued or running) are filled with :func:`adjutant.sweeps.search.propose`, rebuilt from the trials
  table on every proposal, and each trial is recorded with its job in ONE transaction
  (:meth:`SweepStore.record_trials`). Never all at once: bayes sees every result before its next proposal.
  The first trial is a canary: no second one until it runs (or succeeded); if it fails, the sweep is paused with a
  note. Two trials failing alike (exit code and last line of output) pause it too. Hyperband reads a running trial's
  sampled history once per rung step it reaches and stops it through the scheduler's cancel ("stopped early
  (hyperband, rung N)"). ``metric.target`` reached: queued trials dropped, nothing more proposed, finished once the
  running ones end. Finished when nothing is active and nothing more can be proposed.
- **agents** (W&B's controller): ``parallel`` agent jobs (``agent_job.py``, argv ``{"sweep": "e/p/id"}``) are kept
  queued or running while W&B's sweep is RUNNING, its runs are fewer than it expects, and no agent ended without a new
  run since it was queued (the controller had nothing for it).
- Pause holds the queued trials and proposes nothing; Resume releases them; Stop cancels running and queued ones.
  The doors only record the move (one compare-and-set, no lock, no W&B call) and wake the scheduler; the next pass
  (the cog's loop: within a second) cancels a Stop's trials and mirrors the state to the W&B sweep, best effort.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import logging
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from adjutant.clock import iso, utcnow
from adjutant.db.models import TRIAL_ACTIVE, Job, JobRequest, JobState, SweepKind, SweepState, TrialState
from adjutant.jobs import last_output_line
from adjutant.scheduler import Scheduler
from adjutant.sweeps import search
from adjutant.sweeps.config import SweepConfig, SweepConfigError, validate_sweep_config
from adjutant.sweeps.store import SweepLaunch, SweepRow, SweepStore, TrialRow
from adjutant.sweeps.wandb_sweeps import RunReading, WandbSweepInfo, split_path

__all__ = [
    "AGENT_SCRIPT",
    "SweepKind",
    "SweepLaunch",
    "SweepRefused",
    "SweepRow",
    "SweepService",
    "SweepState",
    "SweepView",
    "SweepsBackend",
    "TrialRow",
    "TrialState",
    "TrialView",
    "agents_refusal",
]

log = logging.getLogger(__name__)

#: The script of an agent job (``wandb agent --count 1``), shipped in the package.
AGENT_SCRIPT = Path(__file__).resolve().parent / "agent_job.py"
#: What an agent job runs: the packaged agent on the bot's own interpreter. A job's script is run by path (the
#: supervisor, sbatch), and the packaged module is neither executable nor tied to an interpreter, so the service
#: writes this launcher (once, in the state folder) and queues it. It names the bot's interpreter (it has wandb;
#: agent_job.py is standard library only, but W&B's agent is ``python -m wandb``) and the package's path on this
#: machine: agents run on the local backend only (a container or a Slurm node has neither), and the service refuses
#: an agents pool whose route launches elsewhere (:data:`AGENT_BACKEND`).
AGENT_LAUNCHER = """#!{python}
# Written by Adjutant: an $agents job runs adjutant/sweeps/agent_job.py on the bot's interpreter.
import os
import sys

os.execv({python!r}, [{python!r}, {agent!r}, *sys.argv[1:]])
"""
#: ``cancelled_by`` of the jobs the service cancels, by why: the trial's note is made from it.
BY_HYPERBAND = "hyperband"
BY_STOP = "the sweep's stop"
BY_TARGET = "the sweep's target"
BY_POOL = "the agents' end"
#: The only backend an agents pool runs on (see :data:`AGENT_LAUNCHER`).
AGENT_BACKEND = "local"
#: How many times a W&B state change that failed is tried again (one try per pass).
MIRROR_TRIES = 3
#: The one argument macro an agent's ``command`` may end with (W&B's forms of the trial's parameters).
ARGS_MACROS = ("${args}", "${args_json}", "${args_no_hyphens}", "${args_no_boolean_flags}")
#: The note of an agents sweep that was not run (its W&B sweep's program or command, or its backend): never mirrored
#: to the team's W&B sweep (refusing here is not pausing their sweep).
REFUSED = "paused, not run: "


class SweepsBackend(Protocol):
    """The W&B side of the service (blocking; :class:`adjutant.sweeps.wandb_sweeps.WandbSweeps`)."""

    def create(self, entity: str | None, project: str | None, config: Mapping[str, Any]) -> str: ...

    def find(self, entity: str | None, project: str | None, marker: str) -> str | None: ...

    def set_state(self, entity: str | None, project: str | None, sweep_id: str, state: str) -> None: ...

    def runs(
        self, entity: str | None, project: str | None, run_ids: Sequence[str], metric: str | None
    ) -> dict[str, RunReading]: ...

    def history(
        self, entity: str | None, project: str | None, run_id: str, metric: str, samples: int = 500
    ) -> list[tuple[float, float]]: ...

    def sweep(self, path: str) -> WandbSweepInfo: ...

    def in_flight(self, path: str) -> int: ...


class WandbLater(RuntimeError):
    """A W&B call not made now: the sweep's last calls failed (see :meth:`SweepService._call`)."""


class SweepRefused(ValueError):
    """A Pause, Resume or Stop the sweep's state does not allow (or an unknown sweep); ``str()`` is for the chat."""


@dataclass(frozen=True)
class TrialView:
    """A trial as the card shows it: its row and what its job says now."""

    sweep_id: str
    number: int
    params: Mapping[str, Any]
    state: str
    value: float | None
    rung: int | None
    note: str | None
    wandb_run_id: str | None
    job_id: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    job_state: str | None
    exit_code: int | None

    @property
    def label(self) -> str:
        return TrialState(self.state).label


@dataclass(frozen=True)
class SweepView:
    """A sweep for its card: the row, its trials (with their jobs' states), counts by trial state, the best trial."""

    sweep: SweepRow
    trials: list[TrialView]
    counts: dict[str, int]
    best: TrialView | None
    config: SweepConfig | None

    @property
    def active(self) -> int:
        return sum(self.counts.get(state, 0) for state in TRIAL_ACTIVE)


def _config_of(sweep: SweepRow, cache: dict[str, SweepConfig | None] | None = None) -> SweepConfig | None:
    """A search sweep's configuration, validated once (it never changes) when ``cache`` is given."""
    if sweep.kind != SweepKind.SEARCH or sweep.config is None:
        return None
    if cache is not None and sweep.id in cache:
        return cache[sweep.id]
    try:
        config: SweepConfig | None = validate_sweep_config(sweep.config)
    except SweepConfigError:
        log.exception("sweep %s: its recorded configuration no longer validates", sweep.id)
        config = None
    if cache is not None:
        cache[sweep.id] = config
    return config


def search_trials(trials: Sequence[TrialRow]) -> list[search.Trial]:
    """The trials as the search reads them. A done trial whose value was not read yet is still pending; done without
    a value (the metric never logged) counts as failed."""
    out = []
    for t in trials:
        if t.state in TRIAL_ACTIVE or (t.state == TrialState.DONE and not t.value_read):
            state = search.PENDING
        elif t.state == TrialState.DONE:
            state = search.DONE if t.value is not None else search.FAILED
        else:
            state = t.state.value
        out.append(search.Trial(t.number, t.params, t.value, state))
    return out


def agent_launcher(folder: Path, agent: Path = AGENT_SCRIPT, python: str = sys.executable) -> Path:
    """(blocking) The executable ``folder/agent_job.py`` that runs ``agent`` on ``python`` (:data:`AGENT_LAUNCHER`),
    written unless it is there already as it should be."""
    path = folder / "agent_job.py"
    text = AGENT_LAUNCHER.format(python=python, agent=str(agent))
    if not (path.is_file() and path.read_text() == text and os.access(path, os.X_OK)):
        folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.chmod(0o755)
        temporary.replace(path)
    return path


def wandb_body(raw: Mapping[str, Any], sweep_id: str) -> dict[str, Any]:
    """The configuration W&B's sweep is created with: the team's, named after the Adjutant sweep when it has no name
    (else its description carries the id), so a creation whose answer was lost is found again by that id."""
    body = dict(raw)
    if not (isinstance(body.get("name"), str) and body["name"].strip()):
        body["name"] = sweep_id
    else:
        description = body.get("description")
        marker = f"Adjutant {sweep_id}"
        if not isinstance(description, str) or not description.strip():
            body["description"] = marker
        elif sweep_id not in description:
            body["description"] = f"{description} ({marker})"
    return body


def _shown(text: str, limit: int = 80) -> str:
    """Text from W&B (the sweep's creator wrote it) shown in a note: one line, no backticks, cut."""
    flat = " ".join(str(text).replace("`", "'").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def agents_refusal(config: Mapping[str, Any] | None, experiment_script: str | None) -> tuple[str | None, str | None]:
    """(pure; reads no file but resolves paths) Whether W&B's agents may run this W&B sweep here: (why not, None), or
    (None, the folder its agents must run in: the experiment script's, when its ``program`` is relative, else None).

    An agent runs whatever ``program`` and ``command`` the sweep's creator wrote, with the team's GPUs and W&B key:
    only the route's own experiment script (``program``, absolute or relative to the script's folder) run the
    standard way (``command`` absent, or ``${env}`` (optional), ``${interpreter}``, ``${program}`` and one of
    :data:`ARGS_MACROS`, nothing else) is run."""
    if not experiment_script:
        return "this channel has no experiment script to check the W&B sweep's program against", None
    script = Path(experiment_script)
    if config is None:
        return "W&B's sweep configuration could not be read", None
    program = config.get("program")
    if not isinstance(program, str) or not program.strip():
        return f"W&B's sweep names no program; it must be this channel's experiment script `{script.name}`", None
    relative = not os.path.isabs(program)
    resolved = script.parent / program if relative else Path(program)
    if os.path.realpath(resolved) != os.path.realpath(script):
        return (
            f"W&B's sweep runs `{_shown(program)}`, not this channel's experiment script `{script.name}`",
            None,
        )
    command = config.get("command")
    if command is not None:
        words = list(command) if isinstance(command, list) else None
        if words and words[0] == "${env}":
            words = words[1:]
        if (
            words is None
            or len(words) != 3
            or words[:2] != ["${interpreter}", "${program}"]
            or words[2] not in ARGS_MACROS
        ):
            return (
                "W&B's sweep has its own command; only the standard one runs here:"
                " `${env} ${interpreter} ${program} ${args_json}` (or ${args})",
                None,
            )
    return None, str(script.parent) if relative else None


def _failure_of(job: Job) -> tuple[int | None, str]:
    """(blocking: reads its log) What a failed job's failure looks like: its exit code and last line of output."""
    line = last_output_line(Path(job.log_path)) if job.log_path else ""
    return job.exit_code, line or (job.reason or "")


class SweepService:
    """Sweeps as Adjutant jobs: search (Adjutant proposes) or agents (W&B's controller). See the module's text."""

    def __init__(
        self,
        store: SweepStore,
        scheduler: Scheduler,
        wandb: SweepsBackend,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        progress_of: Callable[[Job], float | None] | None = None,
        poll_seconds: float = 30.0,
        step_seconds: float = 2.0,
        agent_script: Path | None = None,
        history_samples: int = 500,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.wandb = wandb
        self.clock = clock
        #: Seconds for intervals (W&B reads' pacing); memory only.
        self.monotonic = monotonic
        #: A running trial's step as the watcher's last poll saw it (no W&B request), or None.
        self.progress_of = progress_of or (lambda job: None)
        #: At most this often per sweep, W&B is asked about running trials (hyperband) or an agents sweep's state
        #: when nothing else asks for it.
        self.poll_seconds = poll_seconds
        #: What an agent job runs (None: :func:`agent_launcher` in the state folder, written on first use).
        self.agent_script = agent_script
        #: Hyperband: running trials' steps (when the watcher has not seen them past their next rung) are read at most
        #: this often per sweep, and a trial's history at most this often.
        self.step_seconds = step_seconds
        self._steps_due: dict[str, float] = {}
        self._step_seen: dict[tuple[str, int], tuple[float, float]] = {}
        self._history_read: dict[tuple[str, int], float] = {}
        self.history_samples = history_samples
        self._lock = asyncio.Lock()
        #: Parsed configurations by sweep id (a sweep's never changes).
        self._configs: dict[str, SweepConfig | None] = {}
        #: A sweep's trials (without their history) as read in this pass; dropped when the service changes them.
        self._pass_trials: dict[str, builtins.list[TrialRow]] = {}
        self._wandb_lock = asyncio.Lock()
        #: Per sweep: when W&B was last read for it (self.monotonic(); memory only: a restart reads sooner).
        self._polled: dict[str, float] = {}
        self._mirror_failures: dict[str, int] = {}
        #: Per sweep: W&B failures in a row, and when its next call may be made.
        self._backoff: dict[str, tuple[int, float]] = {}
        #: W&B requests made, by kind (for the benchmark and the tests' figures).
        self.requests: dict[str, int] = {}

    # --- the doors ------------------------------------------------------------------------------
    async def create(
        self,
        *,
        kind: str,
        config: SweepConfig | None,
        wandb_sweep: str | None,
        route: str | None,
        project: str | None,
        entity: str | None,
        channel_id: int | None,
        requested_by_id: int,
        requested_by: str,
        parallel: int,
        seed: int | None,
        launch: SweepLaunch,
        thread_id: int | None = None,
        card_id: int | None = None,
        max_jobs: int | None = None,
    ) -> SweepRow:
        """Record a sweep (RUNNING); nothing is queued yet: the next :meth:`tick` creates the W&B sweep (search) and
        proposes the first trial (or queues the agents). ``seed`` None: one is drawn (and shown, and kept).
        ``max_jobs``: an agents pool's agent jobs in all (what its admission counted); None: no limit."""
        kind = SweepKind(kind)
        wandb_id = None
        if kind == SweepKind.SEARCH:
            if config is None:
                raise ValueError("a search sweep needs its configuration")
            if seed is None:
                seed = random.SystemRandom().randrange(1, 2**31)
        else:
            if not wandb_sweep:
                raise ValueError("an agents sweep needs the W&B sweep (entity/project/id)")
            path_entity, path_project, wandb_id = split_path(wandb_sweep)
            entity, project = path_entity or entity, path_project or project
        return await asyncio.to_thread(
            self.store.create,
            kind=kind,
            route=route,
            project=project,
            entity=entity,
            channel_id=channel_id,
            requested_by_id=requested_by_id,
            requested_by=requested_by,
            config=None if config is None else dict(config.raw),
            method=config.method if config is not None else None,
            seed=seed,
            parallel=max(1, parallel),
            run_cap=config.trial_count() if config is not None else max_jobs,
            wandb_sweep_id=wandb_id,
            launch=launch,
            now=self.clock(),
            thread_id=thread_id,
            card_id=card_id,
        )

    async def set_card(self, sweep_id: str, channel_id: int | None, card_id: int | None, thread_id: int | None) -> None:
        """Where the sweep's card and its thread are (its trial jobs' notes go to that thread)."""
        await asyncio.to_thread(self.store.set_card, sweep_id, channel_id, card_id, thread_id)

    async def pause(self, sweep_id: str, by: str | None = None) -> SweepRow:
        """Propose nothing more; running trials finish, queued ones wait (held) for Resume."""
        sweep = await self._get(sweep_id)
        if sweep.state != SweepState.RUNNING:
            raise SweepRefused(f"Sweep `{sweep.id}` is {sweep.state.label}: only a running sweep can be paused.")
        note = f"paused by {by}" if by else "paused"
        moved = await asyncio.to_thread(
            self.store.set_state, sweep.id, SweepState.PAUSED, now=self.clock(), note=note, hold_queued=True
        )
        return await self._after_move(sweep, moved, SweepState.PAUSED)

    async def resume(self, sweep_id: str, by: str | None = None) -> SweepRow:
        """Propose again; queued trials may start. Failures before now halt nothing any more."""
        sweep = await self._get(sweep_id)
        if sweep.state != SweepState.PAUSED:
            raise SweepRefused(f"Sweep `{sweep.id}` is {sweep.state.label}: only a paused sweep can be resumed.")
        note = f"resumed by {by}" if by else "resumed"
        now = self.clock()
        moved = await asyncio.to_thread(
            self.store.set_state,
            sweep.id,
            SweepState.RUNNING,
            now=now,
            note=note,
            hold_queued=False,
            resumed_at=iso(now),
        )
        return await self._after_move(sweep, moved, SweepState.RUNNING)

    async def stop(self, sweep_id: str, by: str | None = None) -> SweepRow:
        """Stop: recorded now (STOPPING); the next pass cancels its running and queued trials; it is stopped once none
        is active."""
        sweep = await self._get(sweep_id)
        if sweep.state not in (SweepState.RUNNING, SweepState.PAUSED):
            raise SweepRefused(f"Sweep `{sweep.id}` is {sweep.state.label} already.")
        note = f"stopped by {by}" if by else "stopped"
        moved = await asyncio.to_thread(
            self.store.set_state, sweep.id, SweepState.STOPPING, now=self.clock(), note=note
        )
        return await self._after_move(sweep, moved, SweepState.STOPPING)

    async def view(self, sweep_id: str) -> SweepView | None:
        """A sweep for its card: its row, trials (with their jobs), counts, the best trial; None if unknown."""
        return await asyncio.to_thread(self._view, sweep_id)

    async def list(self, route_ids: Collection[str] | None = None) -> builtins.list[SweepRow]:
        """Sweeps newest first (those started under ``route_ids``, if given)."""
        return await asyncio.to_thread(self.store.listing, route_ids)

    async def ended_untold(self) -> builtins.list[SweepView]:
        """Ended sweeps whose end was not told yet (tell, then :meth:`mark_told`)."""

        def views() -> builtins.list[SweepView]:
            return [view for row in self.store.ended_untold() if (view := self._view(row.id)) is not None]

        return await asyncio.to_thread(views)

    async def mark_told(self, sweep_id: str) -> bool:
        """Its end was told: never again (True the first time)."""
        return await asyncio.to_thread(self.store.mark_told, sweep_id, self.clock())

    # --- the pass -------------------------------------------------------------------------------
    async def tick(self) -> builtins.list[str]:
        """One pass over the unended sweeps; the ids of sweeps whose card changed."""
        changed: builtins.list[str] = []
        async with self._lock:
            for sweep in await asyncio.to_thread(self.store.unended):
                try:
                    if await self._tick_one(sweep):
                        changed.append(sweep.id)
                except Exception:
                    log.exception("sweep %s: its pass failed; the next one retries", sweep.id)
            for sweep in await asyncio.to_thread(self._mirror_due):
                await self._mirror(sweep)
        return changed

    async def _tick_one(self, sweep: SweepRow) -> bool:
        self._pass_trials.pop(sweep.id, None)  # read afresh once per pass (and after each change of its trials)
        config = _config_of(sweep, self._configs)
        changed = await self._follow_jobs(sweep, config)
        sweep = await self._get(sweep.id)
        if sweep.kind == SweepKind.SEARCH and config is not None:
            changed |= await self._hyperband(sweep, config)
        changed |= await self._halt_on_failures(sweep)
        sweep = await self._get(sweep.id)
        if sweep.state == SweepState.STOPPING:
            return await self._wind_down(sweep) or changed
        if sweep.state != SweepState.RUNNING:
            return changed
        if sweep.kind == SweepKind.SEARCH:
            if config is None:
                return changed
            return await self._search(sweep, config) or changed
        return await self._agents(sweep) or changed

    # --- trials follow their jobs ---------------------------------------------------------------
    async def _follow_jobs(self, sweep: SweepRow, config: SweepConfig | None) -> bool:
        """Trials take their jobs' states; the metric of those that ended is read in one W&B request."""
        pairs = await asyncio.to_thread(self.store.trials_with_jobs, sweep.id, TRIAL_ACTIVE)
        now = self.clock()
        changed = False
        ends: builtins.list[tuple[TrialRow, TrialState, dict[str, Any]]] = []
        for trial, job in pairs:
            if trial.state not in TRIAL_ACTIVE or job is None:
                continue
            started = job.started_at is not None or trial.state == TrialState.RUNNING
            state = TrialState.of_job(JobState(job.state), started=started)
            if state.ended and self.scheduler.runs_again(job):
                state = TrialState.QUEUED
            if state == trial.state:
                continue
            if state.active:
                changed |= await self._trials_changed(
                    sweep.id, self.store.update_trial, sweep.id, trial.number, state=state
                )
                continue
            values = await asyncio.to_thread(self._end_columns, trial, job, state)
            if sweep.kind == SweepKind.AGENTS or config is None or config.metric is None:
                values["value_read"] = 1  # no metric to read (an agent's trial is W&B's run, not this row)
            ends.append((trial, state, values))
        if ends:
            changed |= bool(
                await self._trials_changed(
                    sweep.id, self.store.end_trials, sweep.id, [(t.number, s, v) for t, s, v in ends], now
                )
            )
            for trial, state, _ in ends:
                log.info("sweep %s: trial %d %s", sweep.id, trial.number, state.label)
        if sweep.kind == SweepKind.SEARCH and config is not None and config.metric is not None:
            changed |= await self._read_values(sweep, config.metric.name)
        return changed

    @staticmethod
    def _end_columns(trial: TrialRow, job: Job, state: TrialState) -> dict[str, Any]:
        """(blocking) The note of a trial that ended (and no value to read when its run never reported)."""
        values: dict[str, Any] = {}
        if state in (TrialState.FAILED,):
            code, line = _failure_of(job)
            what = "lost" if job.state == JobState.LOST else f"exit {code}" if code is not None else "failed"
            values["note"] = f"{what}: {line}"[:300] if line else what
            values["value_read"] = 1
        elif state == TrialState.STOPPED:
            if job.cancelled_by == BY_HYPERBAND or trial.rung is not None:
                values["note"] = trial.note or f"stopped early (hyperband, rung {trial.rung})"
            elif job.cancelled_by in (BY_STOP, BY_TARGET, BY_POOL):
                values["note"] = f"stopped by {job.cancelled_by}"
            else:
                values["note"] = f"cancelled by {job.cancelled_by or 'someone'}"
        elif state == TrialState.DROPPED:
            values["note"] = f"dropped by {job.cancelled_by}" if job.cancelled_by else "dropped"
            values["value_read"] = 1
        return values

    async def _read_values(self, sweep: SweepRow, metric: str) -> bool:
        """The metric of trials that ended (done or stopped) and were not read yet: one W&B request for all."""
        trials = await self._trials(sweep.id)
        unread = [t for t in trials if t.state in (TrialState.DONE, TrialState.STOPPED) and not t.value_read]
        ids = [t.wandb_run_id for t in unread if t.wandb_run_id]
        if not unread:
            return False
        try:
            readings = await self._call(
                "runs", self.wandb.runs, sweep.entity, sweep.project, ids, metric, sweep_id=sweep.id
            )
        except WandbLater:
            return False
        except Exception as error:
            log.warning("sweep %s: cannot read %d trial value(s) from W&B yet: %s", sweep.id, len(ids), error)
            await asyncio.to_thread(
                self.store.update_sweep, sweep.id, note=f"W&B could not be read ({said(error)}); retrying"
            )
            return False
        changed = False
        for trial in unread:
            reading = readings.get(trial.wandb_run_id or "")
            value = reading.value if reading is not None else None
            values: dict[str, Any] = {"value": value, "value_read": 1}
            if reading is None:
                values["note"] = trial.note or "its run never reached W&B"
            elif value is None:
                values["note"] = trial.note or f"its run logged no {metric}"
            changed |= await self._trials_changed(
                sweep.id, self.store.update_trial, sweep.id, trial.number, expect=None, **values
            )
        return changed

    # --- halts ----------------------------------------------------------------------------------
    async def _halt_on_failures(self, sweep: SweepRow) -> bool:
        """The canary (the first trial) failed, or two trials failed alike since the last Resume: pause, with why."""
        if sweep.state != SweepState.RUNNING:
            return False
        trials = await self._trials(sweep.id)
        since = sweep.resumed_at
        # A failed trial's note is its failure (exit code and last line of output, or lost): recorded once, at its end.
        failed = [
            t for t in trials if t.state == TrialState.FAILED and (since is None or (t.ended_at or since) > since)
        ]
        if not failed:
            return False
        first = next((t for t in failed if t.number == 1), None)
        what = "agent job" if sweep.kind == SweepKind.AGENTS else "trial"
        note = None
        if first is not None and sweep.kind == SweepKind.SEARCH:
            note = f"paused: its first trial failed ({first.note}); Resume runs the next ones anyway"
        else:
            groups: dict[str, builtins.list[int]] = {}
            for trial in failed:
                groups.setdefault(trial.note or "failed", []).append(trial.number)
            same = next(((key, numbers) for key, numbers in groups.items() if len(numbers) >= 2), None)
            if same is not None:
                shown, numbers = same
                note = f"paused: {what}s {numbers[0]} and {numbers[1]} failed alike ({shown[:200]})"
        if note is None:
            return False
        return await self._halt(sweep, note)

    # --- hyperband ------------------------------------------------------------------------------
    async def _hyperband(self, sweep: SweepRow, config: SweepConfig) -> bool:
        """Running trials past a rung step they were not judged at: their sampled history (one request each), then
        :func:`search.hyperband_stops`; a stopped one is cancelled (its rung and note recorded first)."""
        band, metric = config.early_terminate, config.metric
        if band is None or metric is None:
            return False
        pairs = await asyncio.to_thread(self.store.trials_with_jobs, sweep.id, (TrialState.RUNNING,), history=True)
        changed = False
        for trial, job in pairs:  # decided before a restart, not cancelled yet
            stopped = trial.state == TrialState.RUNNING and trial.rung is not None and job is not None
            if stopped and job is not None and job.state in (JobState.STARTING, JobState.RUNNING):
                await self.scheduler.cancel(job.id, BY_HYPERBAND)
                changed = True
        running = [
            (t, j)
            for t, j in pairs
            if t.state == TrialState.RUNNING and t.rung is None and j is not None and j.state == JobState.RUNNING
        ]
        if not running:
            return changed
        now = self.monotonic()
        rungs = {t.number: band.next_rung(t.history[-1][0] if t.history else -1.0) for t, _ in running}
        steps = {t.number: self.progress_of(j) for t, j in running}
        unsure = [t for t, _ in running if (rung := rungs[t.number]) is not None and (steps[t.number] or -1.0) < rung]
        if unsure and now >= self._steps_due.get(sweep.id, 0.0):
            # Steps the watcher has not seen (or not yet past the next rung): one request for all running trials, the
            # next one paced by each trial's speed towards its next rung (between step_seconds and poll_seconds).
            ids = [t.wandb_run_id for t, _ in running if t.wandb_run_id]
            try:
                readings = await self._call(
                    "runs", self.wandb.runs, sweep.entity, sweep.project, ids, metric.name, sweep_id=sweep.id
                )
            except WandbLater:
                readings = {}
            except Exception as error:
                log.warning("sweep %s: cannot read running trials' steps: %s", sweep.id, error)
                readings = {}
            waits = [self.poll_seconds]
            for trial, _ in running:
                reading = readings.get(trial.wandb_run_id or "")
                step = reading.step if reading is not None else None
                if step is not None and (steps[trial.number] is None or step > (steps[trial.number] or 0.0)):
                    steps[trial.number] = step
                waits.append(self._pace(sweep.id, trial.number, steps[trial.number], rungs[trial.number], now))
            self._steps_due[sweep.id] = now + max(self.step_seconds, min(waits))
        judged: dict[int, builtins.list[tuple[float, float]]] = {}
        for trial, _ in running:
            step = steps.get(trial.number)
            rung = rungs[trial.number]
            if step is None or rung is None or step < rung:
                continue
            if now - self._history_read.get((sweep.id, trial.number), -math.inf) < self.step_seconds:
                continue  # its history lagged its step a moment ago: not again at once
            self._history_read[(sweep.id, trial.number)] = now
            try:
                history = await self._call(
                    "history",
                    self.wandb.history,
                    sweep.entity,
                    sweep.project,
                    trial.wandb_run_id or "",
                    metric.name,
                    self.history_samples,
                    sweep_id=sweep.id,
                )
            except WandbLater:
                continue
            except Exception as error:
                log.warning("sweep %s: cannot read trial %d's history: %s", sweep.id, trial.number, error)
                continue
            judged[trial.number] = history
            await self._trials_changed(
                sweep.id,
                self.store.update_trial,
                sweep.id,
                trial.number,
                history=history,
                rungs_read=len(band.rung_steps(history[-1][0])) if history else 0,
            )
        if not judged:
            return changed
        others = {
            t.number: [(int(s), v) for s, v in t.history]
            for t, _ in pairs
            if t.number not in judged and t.history and t.state != TrialState.DROPPED
        }
        stops = search.hyperband_stops(config, {n: [(int(s), v) for s, v in h] for n, h in judged.items()}, others)
        for number, index in sorted(stops.items()):
            trial, job = next((t, j) for t, j in running if t.number == number)
            note = f"stopped early (hyperband, rung {index})"
            if await self._trials_changed(sweep.id, self.store.update_trial, sweep.id, number, rung=index, note=note):
                log.info("sweep %s: trial %d %s", sweep.id, number, note)
                await self.scheduler.cancel(job.id, BY_HYPERBAND)
                changed = True
        return changed

    def _pace(self, sweep_id: str, number: int, step: float | None, rung: float | None, now: float) -> float:
        """Seconds until a running trial may reach its next rung, from its speed between two readings (the poll
        interval when it is not known or not moving)."""
        before = self._step_seen.get((sweep_id, number))
        if step is not None:
            self._step_seen[(sweep_id, number)] = (now, step)
        if step is None:
            return self.step_seconds  # not logging yet: look again soon
        if rung is None or before is None or step <= before[1] or now <= before[0]:
            return self.poll_seconds if rung is None else min(self.poll_seconds, self.step_seconds * 5)
        rate = (step - before[1]) / (now - before[0])
        return max(0.0, (rung - step) / rate)

    # --- search ---------------------------------------------------------------------------------
    async def _search(self, sweep: SweepRow, config: SweepConfig) -> bool:
        changed = False
        if sweep.wandb_sweep_id is None:
            # Asked before and not recorded (a timeout after W&B made it, a bot killed before recording its id): W&B
            # may have it already. It carries the Adjutant id (wandb_body): looked up once before asking again.
            adopted = False
            try:
                wandb_id = None
                if sweep.create_started_at is not None:
                    wandb_id = await self._call(
                        "find", self.wandb.find, sweep.entity, sweep.project, sweep.id, sweep_id=sweep.id, resets=False
                    )
                    adopted = wandb_id is not None
                if wandb_id is None:
                    await asyncio.to_thread(self.store.update_sweep, sweep.id, create_started_at=iso(self.clock()))
                    body = wandb_body(config.raw, sweep.id)
                    wandb_id = await self._call(
                        "create", self.wandb.create, sweep.entity, sweep.project, body, sweep_id=sweep.id
                    )
            except WandbLater:
                return False
            except Exception as error:
                note = f"the W&B sweep could not be created yet ({said(error)}); retrying"
                log.warning("sweep %s: %s: %s", sweep.id, note, error)
                if sweep.note != note:
                    await asyncio.to_thread(self.store.update_sweep, sweep.id, note=note)
                    return True
                return False
            await asyncio.to_thread(self.store.set_wandb_sweep, sweep.id, wandb_id)
            how = "found (its creation's answer was lost)" if adopted else "created"
            log.info("sweep %s: W&B sweep %s/%s/%s %s", sweep.id, sweep.entity, sweep.project, wandb_id, how)
            sweep = await self._get(sweep.id)
            changed = True
        trials = await self._trials(sweep.id)
        searched = search_trials(trials)
        active = [t for t in trials if t.state in TRIAL_ACTIVE]
        if sweep.target_trial is None and (reached := search.target_reached(config, searched)) is not None:
            value = float(reached.value if reached.value is not None else math.nan)
            name = config.metric.name if config.metric is not None else "?"
            note = f"target reached by trial {reached.number} ({name} = {value:g})"
            done = await asyncio.to_thread(
                self.store.update_sweep,
                sweep.id,
                expect=(SweepState.RUNNING,),
                target_trial=reached.number,
                exhausted_at=iso(self.clock()),
                note=note,
            )
            if done:
                log.info("sweep %s: %s", sweep.id, note)
                sweep = await self._get(sweep.id)
                changed = True
        if sweep.exhausted_at is not None:
            await self._drop_queued(sweep, BY_TARGET)
            return await self._finish_when_idle(sweep, sweep.note or "finished") or changed
        # An ended trial whose value is not read yet still takes its slot: while W&B cannot be read, nothing more is
        # proposed than the slots allow (its result may change the next proposal anyway).
        unread_ended = [t for t in trials if t.state in (TrialState.DONE, TrialState.STOPPED) and not t.value_read]
        free = min(sweep.parallel, self._capacity(sweep)) - len(active) - len(unread_ended)
        first = trials[0] if trials else None
        if first is None:
            free = min(free, 1)  # the canary: the first trial alone
        elif first.state == TrialState.QUEUED:
            free = 0  # nothing more until the first trial runs
        if free > 0:
            proposals = await asyncio.to_thread(search.propose, config, searched, sweep.seed or 0, free)
            if proposals:
                return await self._record(sweep, proposals) or changed
        if active or unread_ended or search.more_to_propose(config, searched):
            return changed
        succeeded = sum(1 for t in trials if t.state == TrialState.DONE)
        why = "its grid is done" if config.method == "grid" else f"its {len(trials)} trials ran"
        return await self._finish_when_idle(sweep, f"finished: {why} ({succeeded} done)") or changed

    async def _record(
        self, sweep: SweepRow, proposals: Sequence[Mapping[str, Any]], runs_before: int | None = None
    ) -> bool:
        """Record trials (or agents) with their jobs in one transaction, then wake the scheduler."""
        trials = await self._trials(sweep.id)
        after = trials[-1].number if trials else 0
        if sweep.kind == SweepKind.AGENTS and self.agent_script is None:
            self.agent_script = await asyncio.to_thread(agent_launcher, self.scheduler.log_dir.parent / "sweeps")
        requests = [self._request(sweep, params) for params in proposals]
        recorded = await self._trials_changed(
            sweep.id,
            self.store.record_trials,
            sweep,
            requests,
            [self._trial_params(sweep, params) for params in proposals],
            self.scheduler.log_dir,
            after=after,
            now=self.clock(),
            runs_before=runs_before,
        )
        if recorded:
            self.scheduler.wake()
            log.info(
                "sweep %s: trial(s) %s queued as %s",
                sweep.id,
                ", ".join(str(t.number) for t, _ in recorded),
                ", ".join(j.id for _, j in recorded),
            )
        return bool(recorded)

    @staticmethod
    def _trial_params(sweep: SweepRow, params: Mapping[str, Any]) -> Mapping[str, Any]:
        return params if sweep.kind == SweepKind.SEARCH else {}

    def _request(self, sweep: SweepRow, params: Mapping[str, Any]) -> JobRequest:
        launch = sweep.launch
        return JobRequest(
            params=params,
            script=launch.script if sweep.kind == SweepKind.SEARCH else str(self.agent_script or AGENT_SCRIPT),
            requested_by_id=sweep.requested_by_id,
            requested_by=sweep.requested_by,
            channel_id=sweep.channel_id,
            message_id=None,
            backend=launch.backend,
            sweep_id=sweep.id,
            wandb_sweep_id=sweep.wandb_sweep_id,
            acked=True,
            project=sweep.project,
            entity=sweep.entity,
            gpus=launch.gpus,
            time_limit=launch.time_limit,
            route=sweep.route,
            overrides=dict(launch.overrides),
            priority=launch.priority,
            preemptible=launch.preemptible,
        )

    def _capacity(self, sweep: SweepRow) -> int:
        return self.scheduler.capacity(sweep.launch.backend, sweep.launch.gpus)

    # --- agents ---------------------------------------------------------------------------------
    async def _agents(self, sweep: SweepRow) -> bool:
        """Keep ``parallel`` agent jobs queued or running while W&B's sweep has trials for them."""
        if sweep.launch.backend != AGENT_BACKEND:
            return await self._refuse(
                sweep,
                f"W&B's agents run on this machine only, and this channel launches on {_shown(sweep.launch.backend)}",
            )
        trials = await self._trials(sweep.id)
        active = [t for t in trials if t.state in TRIAL_ACTIVE]
        free = min(sweep.parallel, self._capacity(sweep)) - len(active)
        if sweep.exhausted_at is not None:
            await self._drop_queued(sweep, BY_POOL)
            return await self._finish_when_idle(sweep, sweep.note or "finished")
        if sweep.run_cap is not None and len(trials) >= sweep.run_cap:  # every agent job its admission counted
            return await self._finish_when_idle(sweep, f"finished: its {sweep.run_cap} agent jobs have run")
        if free <= 0 and not self._due(sweep.id):
            return False  # a full pool: W&B's sweep is looked at every poll_seconds only (it may have ended)
        path = sweep.wandb_path or ""
        try:
            info = await self._call("sweep", self.wandb.sweep, path, sweep_id=sweep.id)
        except WandbLater:
            return False
        except Exception as error:
            note = f"W&B's sweep {path} could not be read ({said(error)}); retrying"
            log.warning("sweep %s: cannot read W&B's sweep %s: %s", sweep.id, path, error)
            if sweep.note != note:
                await asyncio.to_thread(self.store.update_sweep, sweep.id, note=note)
                return True
            return False
        self._polled[sweep.id] = self.monotonic()
        why = None
        if info.state != "RUNNING":
            why = f"W&B's sweep is {info.state.lower() or 'gone'}"
        elif info.expected is not None and info.run_count >= info.expected:
            why = f"W&B's sweep has all its {info.expected} runs"
        # An agent that ended with no run created since it was queued got nothing from W&B's controller (its own run
        # would be younger than its queueing): not a trial done, and the controller has nothing more.
        empty = [
            t
            for t in trials
            if t.state == TrialState.DONE and t.runs_before is not None and info.run_count <= t.runs_before
        ]
        for trial in empty:
            await self._trials_changed(
                sweep.id,
                self.store.update_trial,
                sweep.id,
                trial.number,
                expect=(TrialState.DONE,),
                state=TrialState.DROPPED,
                note="W&B's controller had no trial for it",
            )
        if why is None and empty:
            why = f"W&B's controller had nothing more (agent {empty[0].number} ended without a run)"
        if why is not None:
            note = f"finished: {why}"
            moved = await asyncio.to_thread(
                self.store.update_sweep,
                sweep.id,
                expect=(SweepState.RUNNING,),
                exhausted_at=iso(self.clock()),
                note=note,
            )
            if moved:
                log.info("sweep %s: %s", sweep.id, note)
            sweep = await self._get(sweep.id)
            await self._drop_queued(sweep, BY_POOL)
            await self._finish_when_idle(sweep, note)
            return moved
        if free > 0 and info.expected is not None:
            # No more agents than trials left: those queued or running without a run yet will each take one.
            waiting = len(active)
            if waiting:
                try:
                    waiting -= await self._call("in_flight", self.wandb.in_flight, path, sweep_id=sweep.id)
                except WandbLater:
                    return False
                except Exception as error:
                    log.warning("sweep %s: cannot read W&B's runs in flight: %s", sweep.id, error)
                    return False
            free = min(free, info.expected - info.run_count - max(0, waiting))
        if free <= 0:
            return False
        if sweep.run_cap is not None:
            free = min(free, sweep.run_cap - len(trials))
        refusal, folder = agents_refusal(info.config, sweep.launch.experiment_script)
        if refusal is not None:
            return await self._refuse(sweep, refusal)
        spec = {"sweep": path} if folder is None else {"sweep": path, "dir": folder}
        return await self._record(sweep, [spec] * free, runs_before=info.run_count)

    async def _refuse(self, sweep: SweepRow, why: str) -> bool:
        """An agents sweep not run: paused (its queued agents held), the note says why; W&B's sweep is left as is."""
        return await self._halt(sweep, REFUSED + why)

    async def _halt(self, sweep: SweepRow, note: str) -> bool:
        """The service pauses a running sweep by itself (its queued trials held), saying why; once."""
        moved = await asyncio.to_thread(
            self.store.set_state,
            sweep.id,
            SweepState.PAUSED,
            now=self.clock(),
            note=note,
            among=(SweepState.RUNNING,),
            hold_queued=True,
        )
        if moved:
            log.warning("sweep %s %s", sweep.id, note)
        return moved

    # --- ending ---------------------------------------------------------------------------------
    async def _drop_queued(self, sweep: SweepRow, by: str) -> None:
        trials = await asyncio.to_thread(self.store.trials_with_jobs, sweep.id, (TrialState.QUEUED,))
        for trial, job in trials:
            if trial.state == TrialState.QUEUED and job is not None and job.state == JobState.QUEUED:
                await self.scheduler.cancel(job.id, by)

    async def _wind_down(self, sweep: SweepRow) -> bool:
        """A stopping sweep: cancel every active trial's job (once each: the scheduler says what it did); stopped
        once none is active."""
        changed = False
        for trial, job in await asyncio.to_thread(self.store.trials_with_jobs, sweep.id, TRIAL_ACTIVE):
            if trial.state not in TRIAL_ACTIVE or job is None:
                continue
            if job.state in (JobState.QUEUED, JobState.STARTING, JobState.RUNNING):
                await self.scheduler.cancel(job.id, BY_STOP)
                changed = True
        changed |= await self._follow_jobs(sweep, _config_of(sweep, self._configs))
        trials = await self._trials(sweep.id)
        if any(t.state in TRIAL_ACTIVE for t in trials):
            return changed
        moved = await asyncio.to_thread(
            self.store.set_state, sweep.id, SweepState.STOPPED, now=self.clock(), among=(SweepState.STOPPING,)
        )
        if moved:
            log.info("sweep %s stopped", sweep.id)
        return moved or changed

    async def _finish_when_idle(self, sweep: SweepRow, note: str) -> bool:
        trials = await self._trials(sweep.id)
        if any(t.state in TRIAL_ACTIVE for t in trials):
            return False
        moved = await asyncio.to_thread(
            self.store.set_state,
            sweep.id,
            SweepState.FINISHED,
            now=self.clock(),
            note=note,
            among=(SweepState.RUNNING,),
        )
        if moved:
            log.info("sweep %s %s", sweep.id, note)
            await self._mirror(await self._get(sweep.id))
        return moved

    # --- W&B's sweep state ----------------------------------------------------------------------
    def _wanted(self, sweep: SweepRow) -> str | None:
        """The W&B state the sweep's should be (None: leave it: no W&B sweep, or an agents pool that ended by
        itself: the team's sweep is not Adjutant's to finish)."""
        if sweep.wandb_sweep_id is None:
            return None
        if sweep.kind == SweepKind.AGENTS and sweep.state == SweepState.FINISHED:
            return None
        if sweep.kind == SweepKind.AGENTS and sweep.wandb_state is None and sweep.state == SweepState.RUNNING:
            return None
        if sweep.kind == SweepKind.AGENTS and (sweep.note or "").startswith(REFUSED):
            return None  # not run here: the team's sweep is theirs
        return sweep.state.wandb_state

    def _mirror_due(self) -> builtins.list[SweepRow]:
        """(blocking) Sweeps whose W&B state lags theirs (tried at most :data:`MIRROR_TRIES` times per process)."""
        rows = self.store.query(
            "SELECT * FROM sweeps WHERE wandb_sweep_id IS NOT NULL AND (ended_at IS NULL OR ended_at >= ?)",
            (iso(self.clock() - dt.timedelta(days=1)),),
        )
        due = []
        for row in rows:
            sweep = SweepRow.from_row(row)
            wanted = self._wanted(sweep)
            tries = self._mirror_failures.get(sweep.id, 0)
            if wanted is not None and wanted != sweep.wandb_state and tries < MIRROR_TRIES:
                due.append(sweep)
        return due

    async def _mirror(self, sweep: SweepRow) -> None:
        """Best effort: set W&B's sweep state to the sweep's (recorded when W&B took it)."""
        wanted = self._wanted(sweep)
        if wanted is None or wanted == sweep.wandb_state or sweep.wandb_sweep_id is None:
            return
        try:
            await self._call(
                "set_state",
                self.wandb.set_state,
                sweep.entity,
                sweep.project,
                sweep.wandb_sweep_id,
                wanted,
                sweep_id=sweep.id,
            )
        except WandbLater:
            return
        except Exception as error:
            self._mirror_failures[sweep.id] = self._mirror_failures.get(sweep.id, 0) + 1
            log.warning("sweep %s: W&B's sweep state not set to %s: %s", sweep.id, wanted, error)
            return
        self._mirror_failures.pop(sweep.id, None)
        await asyncio.to_thread(self.store.update_sweep, sweep.id, wandb_state=wanted)

    # --- helpers --------------------------------------------------------------------------------
    async def _after_move(self, sweep: SweepRow, moved: bool, new: SweepState) -> SweepRow:
        """A door's compare-and-set is done: the row at once. Nothing here waits for W&B, a backend or a pass in
        progress (no lock): the next :meth:`tick` re-reads the state and does the rest (W&B's sweep state mirrored,
        a Stop's trials cancelled); the scheduler is woken so released or cancelled jobs move now."""
        if not moved:
            now = await self._get(sweep.id)
            raise SweepRefused(f"Sweep `{sweep.id}` is {now.state.label} now: it was not {new.label}.")
        self._mirror_failures.pop(sweep.id, None)  # a new wish: W&B is asked again, whatever the last tries gave
        self.scheduler.wake()
        return await self._get(sweep.id)

    async def _trials(self, sweep_id: str) -> builtins.list[TrialRow]:
        """A sweep's trials (no history), read at most once per pass unless the service changed them since."""
        if sweep_id not in self._pass_trials:
            self._pass_trials[sweep_id] = await asyncio.to_thread(self.store.trials, sweep_id)
        return self._pass_trials[sweep_id]

    async def _trials_changed(self, sweep_id: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A store call that changes a sweep's trials (in a worker thread): their read of this pass is dropped."""
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        finally:
            self._pass_trials.pop(sweep_id, None)

    async def _get(self, sweep_id: str) -> SweepRow:
        row = await asyncio.to_thread(self.store.get, sweep_id)
        if row is None:
            raise SweepRefused(f"No sweep `{sweep_id[:40]}`.")
        return row

    def _due(self, sweep_id: str) -> bool:
        """W&B may be asked about this sweep again (at most every :attr:`poll_seconds`)."""
        return self.monotonic() - self._polled.get(sweep_id, -math.inf) >= self.poll_seconds

    async def _call(
        self, kind: str, function: Callable[..., Any], *args: Any, sweep_id: str, resets: bool = True
    ) -> Any:
        """One W&B call for a sweep in a worker thread, counted. After a failure the sweep's calls wait (raising
        :class:`WandbLater`): step_seconds, doubling with each failure in a row, at most poll_seconds. A call made
        with ``resets`` False does not end the failures in a row when it succeeds (a look-up before a retry)."""
        failures, after = self._backoff.get(sweep_id, (0, 0.0))
        if self.monotonic() < after:
            raise WandbLater(f"W&B failed {failures} time(s) in a row; next try in {after - self.monotonic():.0f} s")
        self.requests[kind] = self.requests.get(kind, 0) + 1
        try:
            async with self._wandb_lock:  # one W&B call at a time: the wandb.Api objects are shared
                result = await asyncio.to_thread(function, *args)
        except Exception:
            delay = min(self.poll_seconds, self.step_seconds * 2**failures)
            self._backoff[sweep_id] = (failures + 1, self.monotonic() + delay)
            raise
        if resets:
            self._backoff.pop(sweep_id, None)
        return result

    def _view(self, sweep_id: str) -> SweepView | None:
        """(blocking) See :meth:`view`."""
        sweep = self.store.get(sweep_id)
        if sweep is None:
            return None
        pairs = self.store.trials_with_jobs(sweep_id)
        trials = [
            TrialView(
                sweep_id=t.sweep_id,
                number=t.number,
                params=t.params,
                state=t.state.value,
                value=t.value,
                rung=t.rung,
                note=t.note,
                wandb_run_id=t.wandb_run_id,
                job_id=t.job_id,
                created_at=t.created_at,
                started_at=job.started_at if job is not None else None,
                ended_at=t.ended_at,
                job_state=str(job.state) if job is not None else None,
                exit_code=job.exit_code if job is not None else None,
            )
            for t, job in pairs
        ]
        counts = {state.value: 0 for state in TrialState}
        for trial in trials:
            counts[trial.state] = counts.get(trial.state, 0) + 1
        config = _config_of(sweep, self._configs)
        best = None
        if config is not None:
            found = search.best_trial(config, search_trials([t for t, _ in pairs]))
            best = next((t for t in trials if found is not None and t.number == found.number), None)
        return SweepView(sweep, trials, counts, best, config)


def said(error: BaseException) -> str:
    """A W&B failure as a short sentence for a note the chat shows: its kind and HTTP status at most, never its text
    (which can carry URLs, keys' hints or a server's page); the callers log the text itself."""
    names = " ".join(cls.__name__ for cls in type(error).__mro__)
    if isinstance(error, TimeoutError) or "Timeout" in names:
        return "W&B did not answer in time"
    status = getattr(getattr(error, "response", None), "status_code", None)
    if not isinstance(status, int):
        found = re.search(r"\b([45]\d\d)\b", str(error))
        status = int(found.group(1)) if found else None
    if status in (401, 403):
        return f"W&B refused the bot's key (HTTP {status})"
    if status == 404 or "could not find" in str(error).lower():
        return "W&B does not know it" + (f" (HTTP {status})" if status else "")
    if status is not None and status >= 500:
        return f"W&B had a server error (HTTP {status})"
    if status is not None:
        return f"W&B answered HTTP {status}"
    if isinstance(error, ConnectionError | OSError) or "Connection" in names:
        return "W&B could not be reached"
    return "W&B answered with an error"
