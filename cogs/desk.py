"""The run desk: $compare, $status (and the pinned status card), the status card and digest loops, over the W&B
projects reported on (the feeds it shares with the Runs and Rules cogs)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands, tasks

from adjutant._cog import NO_PINGS
from adjutant.access import refusal
from adjutant.cogs._feeds import Feeds, ReportingCog, add_reporting_cog, send_embed
from adjutant.cogs._status_card import StatusCards
from adjutant.jobs import ACTIVE, JobState
from adjutant.render import code_safe, format_duration, plain, truncate
from adjutant.runs import RunInfo, suggestions
from adjutant.services import Services
from adjutant.settings import Settings
from adjutant.status import Part, Snapshot
from adjutant.watcher import describe_error

log = logging.getLogger(__name__)


class Desk(ReportingCog, name="Desk"):
    """Comparing runs, how reporting is doing ($status and the pinned status card), and the digests."""

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services, feeds: Feeds) -> None:
        super().__init__(bot, settings, services, feeds)
        #: The pinned status cards (they show this cog's snapshot).
        self.cards = StatusCards(bot, self.store, self._status_snapshot, self.command_prefix())

    async def cog_load(self) -> None:
        await super().cog_load()
        self.status_cards.start()
        if self.settings.digest is not None:
            self.digests.start()

    async def cog_unload(self) -> None:
        self.status_cards.cancel()
        self.digests.cancel()
        await super().cog_unload()

    # --- comparing runs ---------------------------------------------------------------------------
    @commands.hybrid_command(name="compare")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(runs="2 to 5 run ids, names or job ids, separated by spaces; metric:<name> for the chart")
    async def compare_command(self, ctx: commands.Context[Any], *, runs: str = "") -> None:
        """Compare runs side by side: $compare <run> <run> [run ...] [metric:<name>] (ids, names or job ids)."""
        from adjutant.compare import MAX_RUNS as MAX_COMPARE
        from adjutant.compare import compare, compare_embed

        feed = await self.feeds.for_command(ctx)
        if feed is None:
            return
        w, route = feed.watcher, feed.route
        usage = f"Usage: `{self.command_prefix(ctx)}compare <run> <run> [run ...] [metric:<name>]`"
        metric = route.metric
        keys: list[str] = []
        for word in runs.replace(",", " ").split():
            if word.startswith("metric:") and word[7:]:
                metric = word[7:]
            else:
                keys.append(word)
        keys = list(dict.fromkeys(keys))
        if not 2 <= len(keys) <= MAX_COMPARE or any(len(k) > 128 for k in keys):
            await self.reply(ctx, f"Give 2 to {MAX_COMPARE} runs (ids, names or job ids). {usage}")
            return
        found: list[RunInfo] = []
        async with ctx.typing():  # defers a slash command before the W&B calls
            for key in keys:
                job = await asyncio.to_thread(self.services.jobs.get, key.lower())
                ok, run = await self.ask_wandb(ctx, w, w.source.find, job.wandb_run_id if job is not None else key)
                if not ok:
                    return
                if run is None:
                    known = await w.known_names()
                    close = suggestions(key, [name for pair in known for name in pair])
                    hint = f" Did you mean {', '.join(f'`{code_safe(c)}`' for c in close)}?" if close else ""
                    what = f"job `{job.id}`'s W&B run" if job is not None else f"run `{code_safe(truncate(key, 128))}`"
                    await self.reply(ctx, f"No {what} in {plain(w.project_label)}.{hint}")
                    return
                found.append(run)
            embed = compare_embed(compare(found, metric), project=w.project_label, metric=metric)
            try:
                problem, _, png = await w.chart_of(found, (metric,), False)  # the runs found above
            except Exception as error:
                problem, png = f"no chart: W&B did not answer ({describe_error(error)})", None
        if png is None:
            embed["footer"] = {"text": truncate(problem or "no chart", 2048)}
            await send_embed(ctx, embed)
            return
        embed["image"] = {"url": "attachment://compare.png"}
        await ctx.send(
            embed=discord.Embed.from_dict(embed),
            file=discord.File(io.BytesIO(png), "compare.png"),
            allowed_mentions=NO_PINGS,
        )

    @tasks.loop(seconds=10)
    async def status_cards(self) -> None:
        """Keep the pinned status cards true (each edited at most once a minute, only when something changed)."""
        try:
            await self.cards.refresh()
        except Exception:
            log.exception("refreshing the status cards failed; retrying")

    @tasks.loop(seconds=30)
    async def digests(self) -> None:
        """Record each project's digests as they fall due (ADJUTANT_DIGEST); the deliver loop sends them."""
        from zoneinfo import ZoneInfo  # only when digests are made

        zone = ZoneInfo(self.settings.timezone)
        for feed in self.feeds.values():
            route = feed.route
            try:
                # on the watcher's clock, with this project's own jobs
                await feed.watcher.make_digests(self.settings.digest, zone, metric=route.metric, goal=route.metric_goal)
            except Exception as error:
                log.warning(
                    "digest of %s not made yet (retrying): %s", feed.watcher.project_label, describe_error(error)
                )

    @status_cards.before_loop
    @digests.before_loop
    async def _before_status_cards(self) -> None:
        await self.bot.wait_until_ready()

    async def _status_snapshot(self) -> Snapshot:
        """What the status card shows: each project's polls, the scheduler, the cluster, the queue, the GPUs."""
        parts = []
        for feed in self.feeds.values():
            health = feed.watcher.health
            error = health.last_error if health.failures else None
            parts.append(Part(f"W&B {feed.watcher.project_label}", not health.failures, health.last_success, error))
        scheduler = self.services.scheduler
        parts.append(Part("scheduler", scheduler.last_error is None, scheduler.last_pass, scheduler.last_error))
        for backend, name in (("slurm", "Slurm"), ("ray", "Ray")):
            error = scheduler.backend_errors.get(backend)
            answered = scheduler.backend_answered.get(backend)
            if error is not None or answered is not None:
                parts.append(Part(name, error is None, answered, error))
        active = await scheduler.jobs_in(ACTIVE)
        queued = await asyncio.to_thread(self.services.jobs.count, (JobState.QUEUED,))
        free = total = None
        if scheduler.gpus is not None:
            total = len(scheduler.gpus)
            free = total - len(scheduler.gpu_holders(active))
        return Snapshot(tuple(parts), queued=queued, running=len(active), gpus_free=free, gpus_total=total)

    @commands.hybrid_command(name="status", ignore_extra=False)  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(pin="pin: post a status card here, kept up to date in place")
    async def status_command(self, ctx: commands.Context[Any], pin: Literal["pin"] | None = None) -> None:
        """Show how run reporting is doing; $status pin posts a status card here that is kept up to date."""
        if pin == "pin":
            if not await self.authorized(ctx.author, ctx.channel):
                await self.reply(ctx, refusal(self.rule_for(ctx.channel), "pin the status card"))
                return
            await self.reply(ctx, await self.cards.pin(ctx.channel))
            return
        feed = await self.feeds.for_command(ctx)
        if feed is None:
            return
        w = feed.watcher
        watched = await asyncio.to_thread(self.store.watched, w.project_key)
        backlog = await asyncio.to_thread(self.store.pending_count, w.project_key)
        health = w.health
        lines = [f"Reporting on **{plain(w.project_label)}** every {self.settings.poll_seconds:g}s."]
        if health.last_success is None:
            lines.append("No successful W&B poll yet.")
        else:
            lines.append(f"Last successful poll: {format_duration(time.time() - health.last_success)} ago.")
        if health.last_error is not None and health.last_error_at is not None:
            ago = format_duration(time.time() - health.last_error_at)
            lines.append(f"Last error ({ago} ago): {code_safe(health.last_error)}")
            if health.failures:
                lines.append(f"{health.failures} failure(s) in a row; backing off.")
        lines.append(f"Watching {len(watched)} running run(s); {backlog} announcement(s) waiting.")
        if not self.feeds.polling:
            lines.append("⚠️ The poll loop is not running.")
        await self.reply(ctx, "\n".join(lines))


async def setup(bot: commands.Bot) -> None:
    """Load the run desk cog alone; it needs WANDB_PROJECT."""
    await add_reporting_cog(bot, __name__, Desk)
