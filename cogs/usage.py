"""Usage: ``$gpus`` (who holds which GPU), ``$usage`` (jobs, job-hours and GPU-hours by member and project) and
``$audit`` (who launched, cancelled, approved or was refused what; administrators only).

A thin adapter: the numbers come from the services (:meth:`Services.usage`, the scheduler's GPU holders, NVML
readings), the text from :mod:`adjutant.usage_render`, the chart from :mod:`adjutant.plots`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from adjutant._cog import NO_PINGS, AdjutantCog, add_with_services
from adjutant.access import is_admin
from adjutant.cogs._pager import send_pages
from adjutant.jobs import ACTIVE, JobState, utcnow
from adjutant.plots import render_bars
from adjutant.services import Services
from adjutant.settings import Settings
from adjutant.usage_render import audit_pages, gpu_lines, gpus_embed, usage_embed

log = logging.getLogger(__name__)

PERIODS = {"day": dt.timedelta(days=1), "week": dt.timedelta(days=7), "month": dt.timedelta(days=30)}
AUDIT_MAX = 200


class Usage(AdjutantCog, name="Usage"):
    """GPUs, usage by member and project, and the audit trail."""

    services: Services

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services) -> None:
        super().__init__(bot, settings)
        self.services = services

    async def cog_load(self) -> None:
        self.services.acquire()

    async def cog_unload(self) -> None:
        await self.services.release()

    @commands.hybrid_command(name="gpus")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def gpus(self, ctx: commands.Context[Any]) -> None:
        """Show each GPU: free, or the job on it (who, how long); with NVML also load, memory and temperature."""
        scheduler = self.services.scheduler
        pool = scheduler.gpus
        if pool is None:
            where = {"slurm": "Slurm", "ray": "Ray"}.get(self.settings.launcher)
            text = (
                f"Jobs run on {where}, which hands out the GPUs (--gpus N asks it for them)."
                if where
                else f"ADJUTANT_GPUS is not set: jobs are counted, not GPUs ({scheduler.max_concurrent} at once)."
            )
            await self.reply(ctx, text)
            return
        active = await scheduler.jobs_in(ACTIVE)
        queued = await scheduler.jobs_in((JobState.QUEUED,))
        readings = await asyncio.to_thread(self.services.gpu_readings)
        holders = scheduler.gpu_holders(active)
        pgids = {job.pgid for job in active if job.pgid}
        busy_mb = self.settings.gpu_busy_mb
        lines = gpu_lines(pool, holders, readings, utcnow(), adjutant_pgids=pgids, busy_mb=busy_mb)
        by_index = {r.index: r for r in readings or ()}
        free = sum(
            1 for gpu in pool if gpu not in holders and not (gpu in by_index and by_index[gpu].memory_used_mb > busy_mb)
        )
        note = None if self.settings.gpus != "auto" or readings is not None else "NVML did not answer: no readings"
        embed = gpus_embed(lines, free=free, queued=len(queued), note=note)
        await ctx.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)

    @commands.hybrid_command(name="usage", ignore_extra=False)  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(period="day, week (default) or month", member="only this member")
    async def usage(
        self,
        ctx: commands.Context[Any],
        period: Literal["day", "week", "month"] | None = None,
        member: discord.User | None = None,
    ) -> None:
        """Jobs, job-hours and GPU-hours per member and project: $usage [day|week|month] [@member]."""
        span = period or "week"
        until = utcnow()
        since = until - PERIODS[span]
        report = await asyncio.to_thread(self.services.usage, since, until, member.id if member else None)
        name = str(member) if member else None
        embed = usage_embed(report, span, member=name)
        ranked = report.ranked()
        if not ranked:
            await ctx.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)
            return
        labels = [label for label, _ in ranked] if member is None else list(report.projects)
        values = [t.gpu_hours for _, t in ranked] if member is None else [t.gpu_hours for t in report.projects.values()]
        if not any(values):  # no GPU was counted: chart job-hours instead
            values = (
                [t.job_hours for _, t in ranked] if member is None else [t.job_hours for t in report.projects.values()]
            )
            unit = "job-hours"
        else:
            unit = "GPU-hours"
        png = await asyncio.to_thread(render_bars, labels, values, title=f"{unit}, last {span}", unit=unit)
        embed["image"] = {"url": "attachment://usage.png"}
        await ctx.send(
            embed=discord.Embed.from_dict(embed),
            file=discord.File(io.BytesIO(png), filename="usage.png"),
            allowed_mentions=NO_PINGS,
        )

    @commands.hybrid_command(name="audit", ignore_extra=False)  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(count=f"how many entries, 1 to {AUDIT_MAX} (default 15)", member="only this member")
    async def audit_command(
        self, ctx: commands.Context[Any], count: int | None = None, member: discord.User | None = None
    ) -> None:
        """Who launched, cancelled, approved, rejected or was refused what: $audit [n] [@member].

        Administrators only.
        """
        try:
            owner = await self.bot.is_owner(ctx.author)
        except discord.HTTPException:
            owner = False
        if not (owner or is_admin(ctx.author)):
            await self.audit("refused", ctx.author, ctx.channel, detail="audit")
            await self.reply(ctx, "Only members with the Administrator or Manage Server permission may read the audit.")
            return
        n = 15 if count is None else count
        if not 1 <= n <= AUDIT_MAX:
            await self.reply(ctx, f"The number of entries must be between 1 and {AUDIT_MAX}.")
            return
        entries = await asyncio.to_thread(self.services.approvals.entries, n, member.id if member else None)
        await send_pages(ctx, audit_pages(entries, member=str(member) if member else None))


async def setup(bot: commands.Bot) -> None:
    """Load the usage cog alone ($gpus, $usage, $audit)."""
    await add_with_services(bot, __name__, Usage)
