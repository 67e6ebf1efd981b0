"""The domain services one Adjutant runs, built once by ``setup()`` and shared by its cogs.

Discord-free. Two cogs share a service object, never each other's attributes. The last cog to
unload closes them (each cog acquires on load and releases on unload).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from adjutant.approvals import ApprovalStore
from adjutant.clock import utcnow
from adjutant.db import Database
from adjutant.gpus import WEEK, QuotaState, UsageReport, Use, frees_at, quota_state, usage
from adjutant.jobs import Job, JobStore, child_environment
from adjutant.launchers import Launcher, make_launcher
from adjutant.launching import Launching
from adjutant.runs import GpuIdleRule, progress
from adjutant.scheduler import Scheduler
from adjutant.settings import ConfigError, Settings
from adjutant.state import StateLock, check_database
from adjutant.store import Store
from adjutant.wandb_source import WandbSource
from adjutant.watcher import Watcher, WatchRules

if TYPE_CHECKING:
    from adjutant.nvml import GpuReading
    from adjutant.sweeps.service import SweepService

log = logging.getLogger(__name__)

DATABASE_NAME = "adjutant.sqlite3"

#: The services of each bot and state folder in this process: single cogs loaded one by one into one bot
#: share them (a second bot on the same folder is refused by the folder's lock).
_shared: dict[tuple[int, Path], Services] = {}


def uses_of(jobs: list[Job]) -> list[Use]:
    """Jobs that ran, as usage: who, which project, GPUs counted (allocated when the backend said), when."""
    return [
        Use(j.requested_by_id, j.requested_by, j.project or "(default project)", j.gpus_used, j.started_at, j.ended_at)
        for j in jobs
        if j.started_at is not None
    ]


def gpu_pool(settings: Settings) -> tuple[tuple[int, ...] | None, Callable[[set[int]], set[int]] | None]:
    """(blocking) The GPU ids jobs are given, and with ``auto`` how to tell which ones others use now.

    Raises :class:`ConfigError` when ``auto`` finds no NVML or no GPU: said at startup, not at the first launch."""
    if settings.gpus is None:
        return None, None
    if settings.gpus != "auto":
        return tuple(settings.gpus), None
    from adjutant.nvml import NvmlUnavailable, busy_elsewhere, read_gpus  # only with ADJUTANT_GPUS=auto

    try:
        readings = read_gpus()
    except NvmlUnavailable as error:
        raise ConfigError(f"ADJUTANT_GPUS=auto: {error}") from None
    if not readings:
        raise ConfigError("ADJUTANT_GPUS=auto: NVML sees no GPU on this machine; list the GPU ids or unset it")

    def busy(ours: set[int]) -> set[int]:
        try:
            return busy_elsewhere(read_gpus(), ours, settings.gpu_busy_mb)
        except NvmlUnavailable as error:
            log.warning("cannot tell which GPUs others use (%s); counting them free", error)
            return set()

    return tuple(r.index for r in readings), busy


def _open_folder(
    lock: StateLock, path: Path, settings: Settings
) -> tuple[Database, tuple[tuple[int, ...] | None, Callable[[set[int]], set[int]] | None]]:
    """(blocking) Lock the state folder, check and open its database, find the GPU pool; on failure, nothing held."""
    lock.acquire()
    try:
        check_database(path)
        database = Database(path)  # migrated to the current schema
    except BaseException:
        lock.release()
        raise
    try:
        return database, gpu_pool(settings)
    except BaseException:
        database.close()
        lock.release()
        raise


@dataclass
class Services:
    """The scheduler, the watcher (when a W&B project is set) and the stores behind them."""

    settings: Settings
    jobs: JobStore
    runs: Store
    scheduler: Scheduler
    #: One watcher per W&B project of the routes, by project key (``entity/project``).
    watchers: dict[str, Watcher]
    lock: StateLock
    #: Launch requests waiting for an approver, and the audit trail.
    approvals: ApprovalStore
    #: The one connection to the state folder's database that every store uses.
    database: Database
    #: The launch doors and the actions on a job (built once, in open()).
    launching: Launching = field(init=False, repr=False)
    closed: bool = False
    _users: int = field(default=0, repr=False)

    @classmethod
    async def open(cls, settings: Settings, *, secrets: Callable[[], tuple[str, ...]] = tuple) -> Services:
        """Lock the state folder, check and open the database, build the services.

        ``secrets()`` names values no job may see (the token). Raises :class:`~adjutant.state.StateError`
        when another Adjutant holds the folder or the database cannot be used.
        """
        path = settings.state_dir / DATABASE_NAME
        lock = StateLock(settings.state_dir)
        # All the blocking steps in one hop to a thread (each hop waits for a loop turn).
        database, (gpus, gpus_busy) = await asyncio.to_thread(_open_folder, lock, path, settings)
        jobs, runs, approvals = JobStore(database), Store(database), ApprovalStore(database)

        def environment(job: Job) -> dict[str, str]:
            return child_environment(
                os.environ,
                job,
                secrets_to_drop=secrets(),
                entity=settings.entity,
                project=settings.project,
                named=settings.job_env,
            )

        def launcher_for(backend: str) -> Launcher:
            return make_launcher(backend, settings, str(path))

        scheduler = Scheduler(
            jobs,
            launcher_for,
            log_dir=settings.state_dir / "logs",
            max_concurrent=settings.max_concurrent or (len(gpus) if gpus else 1),
            gpus=gpus,
            gpus_busy=gpus_busy,
            cancel_grace_seconds=settings.cancel_grace_seconds,
            environment=environment,
            log_patterns=settings.log_alerts,
            retries=settings.retries,
            retry_on_exit=settings.retry_on_exit,
            canary_steps=settings.canary_steps,
            canary_minutes=settings.canary_minutes,
            fair_share=settings.fair_share,
        )
        watchers: dict[str, Watcher] = {}
        for route in settings.routes:
            if route.project is None or route.project_key is None:
                continue
            if route.project_key in watchers:
                watchers[route.project_key].destinations += (f"{route.project_key}>{route.channel}",)
                continue
            source = WandbSource(route.entity, route.project, timeout=settings.wandb_timeout)
            rules = WatchRules(
                notify=settings.notify,
                stall_after=dt.timedelta(minutes=settings.stall_minutes),
                metric=route.metric,
                goal=route.metric_goal,
                history_polls=settings.history_polls,
                nan_alerts=settings.nan_alerts,
                gpu_idle=None
                if settings.gpu_idle_minutes is None
                else GpuIdleRule(dt.timedelta(minutes=settings.gpu_idle_minutes), settings.gpu_idle_percent),
            )
            watchers[route.project_key] = Watcher(runs, source, rules, timeout=settings.wandb_timeout)
        services = cls(settings, jobs, runs, scheduler, watchers, lock, approvals, database)
        scheduler.progress_of = services.progress_of
        services.launching = Launching(
            settings, scheduler, approvals, quota_of=services.quota_of, watcher_of=services.watcher_of
        )
        return services

    @cached_property
    def sweeps(self) -> SweepService:
        """Sweeps that search and W&B agents pools (issue 23): their tables, trials as jobs, W&B's sweep. Built on first
        use (once), with its modules: a start that no sweep needs yet does not import them."""
        from adjutant.sweeps.service import SweepService
        from adjutant.sweeps.store import SweepStore
        from adjutant.sweeps.wandb_sweeps import WandbSweeps

        return SweepService(
            SweepStore(self.database),
            self.scheduler,
            WandbSweeps(timeout=self.settings.wandb_timeout),
            progress_of=self.progress_of,
            poll_seconds=self.settings.poll_seconds,
        )

    def gpu_readings(self) -> list[GpuReading] | None:
        """(blocking) NVML's readings with ADJUTANT_GPUS=auto, else None (also when NVML stopped answering)."""
        if self.settings.gpus != "auto":
            return None
        from adjutant.nvml import NvmlUnavailable, read_gpus

        try:
            return read_gpus()
        except NvmlUnavailable as error:
            log.warning("no GPU readings: %s", error)
            return None

    def usage(self, since: dt.datetime, until: dt.datetime, member_id: int | None = None) -> UsageReport:
        """(blocking) Jobs, job-hours and GPU-hours per member and project between ``since`` and ``until``."""
        return usage(uses_of(self.jobs.uses(since, member_id)), since, until)

    def quota_of(self, member_id: int, now: dt.datetime | None = None) -> tuple[QuotaState, dt.datetime] | None:
        """(blocking) A member's rolling 7-day GPU-hours against ADJUTANT_GPU_HOURS_PER_WEEK, and when it frees up
        (now, unless it is used up); None without a quota."""
        quota = self.settings.gpu_hours_per_week
        if quota is None:
            return None
        now = now or utcnow()
        uses = uses_of(self.jobs.uses(now - WEEK, member_id))
        state = quota_state(uses, quota, now)
        return state, frees_at(uses, quota, now) if state.exceeded else now

    def progress_of(self, job: Job) -> float | None:
        """A running job's W&B step, as its project's last poll saw it (no W&B request)."""
        watcher = self.watcher_of(job.project, job.entity)
        run = watcher.latest.get(job.wandb_run_id) if watcher is not None else None
        return None if run is None else progress(run)

    @property
    def watcher(self) -> Watcher | None:
        """The first project's watcher (the only one with the one-project variables)."""
        return next(iter(self.watchers.values()), None)

    def watcher_of(self, project: str | None, entity: str | None) -> Watcher | None:
        """The watcher of a job's project (the first project's for a job recorded before projects)."""
        if project is None:
            return self.watcher
        return self.watchers.get(f"{entity or ''}/{project}")

    @classmethod
    async def for_bot(cls, bot: object, settings: Settings, **options: Callable[[], tuple[str, ...]]) -> Services:
        """The services of ``bot`` on ``settings.state_dir``: opened by the first cog loaded, shared after."""
        key = (id(bot), settings.state_dir.resolve())
        services = _shared.get(key)
        if services is None or services.closed:
            services = await cls.open(settings, **options)
            _shared[key] = services
        return services

    def acquire(self) -> None:
        self._users += 1

    async def release(self) -> None:
        """One cog is done with the services; the last one closes them."""
        self._users -= 1
        await self.close_if_unused()

    async def close_if_unused(self) -> None:
        if self._users > 0 or self.closed:
            return
        self.closed = True
        for key, services in list(_shared.items()):
            if services is self:
                del _shared[key]
        try:
            await self.scheduler.close()
            for watcher in self.watchers.values():
                await watcher.close()
            await asyncio.to_thread(self.database.close)
        finally:
            self.lock.release()
