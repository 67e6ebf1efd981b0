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
from pathlib import Path

from adjutant.jobs import Job, JobStore, child_environment
from adjutant.launchers import Launcher, make_launcher
from adjutant.runs import GpuIdleRule, progress
from adjutant.scheduler import Scheduler
from adjutant.settings import Settings
from adjutant.state import StateLock, check_database
from adjutant.store import Store
from adjutant.wandb_source import WandbSource
from adjutant.watcher import Watcher, WatchRules

log = logging.getLogger(__name__)

DATABASE_NAME = "adjutant.sqlite3"

#: The services of each bot and state folder in this process: single cogs loaded one by one into one bot
#: share them (a second bot on the same folder is refused by the folder's lock).
_shared: dict[tuple[int, Path], Services] = {}


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
        await asyncio.to_thread(lock.acquire)
        try:
            await asyncio.to_thread(check_database, path)
            jobs = await asyncio.to_thread(JobStore, path)
            runs = await asyncio.to_thread(Store, path)
        except BaseException:
            lock.release()
            raise

        def environment(job: Job) -> dict[str, str]:
            return child_environment(
                os.environ, job, secrets_to_drop=secrets(), entity=settings.entity, project=settings.project
            )

        def launcher_for(backend: str) -> Launcher:
            return make_launcher(backend, settings, str(path))

        scheduler = Scheduler(
            jobs,
            launcher_for,
            log_dir=settings.state_dir / "logs",
            max_concurrent=settings.max_concurrent,
            cancel_grace_seconds=settings.cancel_grace_seconds,
            environment=environment,
            log_patterns=settings.log_alerts,
            retries=settings.retries,
            retry_on_exit=settings.retry_on_exit,
            canary_steps=settings.canary_steps,
            canary_minutes=settings.canary_minutes,
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
                nan_alerts=settings.nan_alerts,
                gpu_idle=None
                if settings.gpu_idle_minutes is None
                else GpuIdleRule(dt.timedelta(minutes=settings.gpu_idle_minutes), settings.gpu_idle_percent),
            )
            watchers[route.project_key] = Watcher(runs, source, rules, timeout=settings.wandb_timeout)
        services = cls(settings, jobs, runs, scheduler, watchers, lock)
        scheduler.progress_of = services.progress_of
        return services

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
            await asyncio.to_thread(self.jobs.close)
            await asyncio.to_thread(self.runs.close)
        finally:
            self.lock.release()
