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
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from adjutant._cog import NO_PINGS, AdjutantCog, add_with_services, is_owner
from adjutant.access import is_admin
from adjutant.clock import utcnow
from adjutant.cogs._pager import send_pages
from adjutant.jobs import ACTIVE, JobState
from adjutant.numbers import NumberError, parse_whole
from adjutant.plots import render_bars
from adjutant.services import Services
from adjutant.settings import Settings
from adjutant.usage_render import (
    UsageQuery,
    audit_pages,
    gpu_lines,
    gpus_embed,
    matching_members,
    mentioned_id,
    parse_usage_args,
    usage_embed,
    usage_member_ambiguous,
    usage_member_unknown,
)

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
    @app_commands.describe(period="day, week (default) or month", member="only this member (a name or a mention)")
    @app_commands.choices(period=[app_commands.Choice(name=p, value=p) for p in ("day", "week", "month")])
    async def usage(self, ctx: commands.Context[Any], period: str | None = None, member: str | None = None) -> None:
        """Jobs, job-hours and GPU-hours per member and project: $usage [day|week|month] [member]."""
        prefix = self.command_prefix(ctx)
        try:
            query = parse_usage_args([word for word in (period, member) if word])
        except ValueError as error:
            await self.reply(ctx, f"{error}. Usage: `{prefix}usage [day|week|month] [member]`.")
            return
        found = await self._member(ctx, query) if query.member is not None else None
        if isinstance(found, str):
            await self.reply(ctx, found)
            return
        span = query.period
        until = utcnow()
        since = until - PERIODS[span]
        report = await asyncio.to_thread(self.services.usage, since, until, found.id if found else None)
        name = str(found) if found else None
        embed = usage_embed(report, span, member=name)
        ranked = report.ranked()
        if not ranked:
            await ctx.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)
            return
        labels = [label for label, _ in ranked] if found is None else list(report.projects)
        values = [t.gpu_hours for _, t in ranked] if found is None else [t.gpu_hours for t in report.projects.values()]
        if not any(values):  # no GPU was counted: chart job-hours instead
            values = (
                [t.job_hours for _, t in ranked] if found is None else [t.job_hours for t in report.projects.values()]
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

    async def _member(self, ctx: commands.Context[Any], query: UsageQuery) -> discord.abc.User | str:
        """The member ``query`` names in this server (a mention or an id, asked of Discord; or a name among the
        members the bot knows), or the answer saying why not."""
        assert query.member is not None
        guild = ctx.guild
        prefix = self.command_prefix(ctx)
        wanted = mentioned_id(query.member)
        if wanted is not None and guild is not None:
            found = guild.get_member(wanted)
            if found is None:
                try:
                    found = await guild.fetch_member(wanted)
                except discord.HTTPException:
                    found = None
            return found if found is not None else usage_member_unknown(query, prefix=prefix)
        people: dict[int, Any] = {m.id: m for m in ctx.message.mentions} if ctx.interaction is None else {}
        if guild is not None:
            people.update({m.id: m for m in guild.members})
        names = [(i, [m.name, getattr(m, "global_name", None), getattr(m, "nick", None)]) for i, m in people.items()]
        ids = matching_members(query.member, names)
        if not ids:
            return usage_member_unknown(query, prefix=prefix)
        if len(ids) > 1:
            return usage_member_ambiguous(query, len(ids), prefix=prefix)
        return people[ids[0]]

    @commands.hybrid_command(name="audit", ignore_extra=False)  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(count=f"how many entries, 1 to {AUDIT_MAX} (default 15)", member="only this member")
    async def audit_command(
        self, ctx: commands.Context[Any], count: str | None = None, member: discord.User | None = None
    ) -> None:
        """Who launched, cancelled, approved, rejected or was refused what: $audit [n] [@member].

        Administrators only.
        """
        if not (await is_owner(self.bot, ctx.author) or is_admin(ctx.author)):
            await self.audit("refused", ctx.author, ctx.channel, detail="audit")
            await self.reply(ctx, "Only members with the Administrator or Manage Server permission may read the audit.")
            return
        try:
            n = 15 if count is None else parse_whole(count, what="the number of entries", low=1, high=AUDIT_MAX)
        except NumberError as error:
            await self.reply(ctx, str(error))
            return
        entries = await asyncio.to_thread(self.services.approvals.entries, n, member.id if member else None)
        await send_pages(ctx, audit_pages(entries, member=str(member) if member else None))


async def setup(bot: commands.Bot) -> None:
    """Load the usage cog alone ($gpus, $usage, $audit)."""
    await add_with_services(bot, __name__, Usage)
