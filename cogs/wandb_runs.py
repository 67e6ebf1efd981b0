"""W&B run reporting: announces run lifecycle changes exactly once and answers questions about runs.

Two loops, both this cog's own:
- ``poll`` asks W&B what changed (one ``Runs`` query when nothing did), compares with what the
  database remembers, and writes the announcements to the database's outbox in the same
  transaction as the new run states;
- ``deliver`` empties the outbox into the channel, 10 embeds a message at most, at most 4 messages
  per 5 seconds, deleting each announcement only once Discord has accepted it.
Every W&B call runs in a single worker thread; every SQLite call in a thread too. The projects (feeds) are
shared with the Rules and Desk cogs (:mod:`adjutant.cogs._feeds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands, tasks

from adjutant._cog import NO_PINGS, find_channel, member_may_see
from adjutant.alerts import AlertPolicy
from adjutant.clock import utcnow
from adjutant.cogs import _alert_views
from adjutant.cogs._announcer import Announcer, Inbox, Refused
from adjutant.cogs._feeds import Feed, Feeds, ReportingCog, add_reporting_cog, send_embed
from adjutant.cogs._launch_form import edit_view
from adjutant.cogs._pager import send_pages
from adjutant.projects import ProjectRoute
from adjutant.render import code_safe, plain, truncate
from adjutant.run_render import leaderboard_embed, run_card_embed, runs_table_pages, summary_embed
from adjutant.runs import (
    STATES,
    PlotQuery,
    RunInfo,
    parse_best_args,
    parse_plot_words,
    parse_runs_args,
    suggestions,
)
from adjutant.services import Services
from adjutant.settings import Settings
from adjutant.wandb_source import ProjectNotFound
from adjutant.watcher import describe_error

log = logging.getLogger(__name__)
#: Points of each metric's sampled history $diagnose reads (one request per metric, server-side downsampled).
DIAGNOSE_SAMPLES = 500


@dataclass
class Outlet:
    """One outbox of a project and the channel it is delivered to."""

    route: ProjectRoute
    announcer: Announcer
    after: float = 0.0  # time.monotonic() before which it is not tried again (after a refusal)
    warned_no_channel: bool = False


@dataclass
class Reporting:
    """What the poll and deliver loops keep about one project: its outlets, whether it was greeted, its poll task."""

    feed: Feed
    outlets: list[Outlet]
    greeted: bool = False
    task: asyncio.Task[None] | None = None


class Runs(ReportingCog, name="Runs"):
    """Reports on the runs of W&B projects and answers questions about them."""

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services, feeds: Feeds) -> None:
        super().__init__(bot, settings, services, feeds)
        #: Each project's reporting, by project key.
        self.projects: dict[str, Reporting] = {}
        # A card whose job a policy (global, or its project's own) stops says when.
        policy = AlertPolicy.for_routes(settings.alert_policy, settings.routes)
        for key, feed in feeds.items():
            destinations = feed.watcher.destinations
            outlets = [
                Outlet(route, Announcer(bot, self.store, destination, route.metric, feed.watcher, policy=policy))
                for route, destination in zip(feed.routes, destinations, strict=True)
            ]
            self.projects[key] = Reporting(feed, outlets)
        #: Direct messages to subscribers and notes for one member.
        self.inbox = Inbox(
            bot, self.store, may_see=lambda user_id, project: member_may_see(bot, settings, user_id, project)
        )
        #: True while the deliver loop is sending (what unloading waits for).
        self.delivering = False

    # --- autocomplete (from what Adjutant already knows: no W&B call per keystroke) ---------------
    async def complete_run(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        w = self.feeds.of_interaction(interaction).watcher
        known = await w.known_names(2000)
        text = current.lower()
        choices = []
        for run_id, name in known:
            if text in run_id.lower() or text in name.lower():
                choices.append(app_commands.Choice(name=truncate(f"{name} ({run_id})", 100), value=run_id[:100]))
            if len(choices) == 25:
                break
        return choices

    async def complete_state(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=s, value=s) for s in (*STATES, "all") if current.lower() in s]

    async def complete_metric(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        feed = self.feeds.of_interaction(interaction)
        names = sorted({feed.route.metric, *feed.watcher.metric_names})
        return [app_commands.Choice(name=n[:100], value=n[:100]) for n in names if current.lower() in n.lower()][:25]

    # --- lifecycle ------------------------------------------------------------------------------
    async def cog_load(self) -> None:
        await super().cog_load()
        _alert_views.register(self.bot)
        self.feeds.poll_loop = self.poll
        self.poll.start()
        self.deliver.start()

    async def cog_unload(self) -> None:
        self.poll.cancel()
        if self.feeds.poll_loop is self.poll:
            self.feeds.poll_loop = None
        for project in self.projects.values():
            if project.task is not None:
                project.task.cancel()
        # Let a delivery in flight finish its bookkeeping, so a clean restart repeats nothing. A loop between two
        # deliveries, or still waiting for the bot to be ready, has nothing in flight: it is cancelled at once.
        for project in self.projects.values():
            for outlet in project.outlets:
                outlet.announcer.stopping = True
        task = self.deliver.get_task()
        self.deliver.stop()
        if self.delivering and task is not None and not task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
        self.deliver.cancel()
        _alert_views.unregister(self.bot, self)
        await super().cog_unload()

    # --- polling --------------------------------------------------------------------------------
    @tasks.loop(seconds=1)
    async def poll(self) -> None:
        """Start each project's poll when it is due, each in its own task: a slow project delays no other."""
        for project in self.projects.values():
            if project.task is not None and not project.task.done():
                continue
            watcher = project.feed.watcher
            if not watcher.due(self.settings.poll_seconds):
                continue
            project.task = asyncio.create_task(self._poll(project), name=f"adjutant-poll-{watcher.project_key}")

    async def _poll(self, project: Reporting) -> None:
        """Ask W&B what changed in one project; its watcher records it with its announcements."""
        watcher = project.feed.watcher
        if not project.greeted:
            try:
                await self._greet(project)
            except Exception as error:
                watcher.health.failed(error, self.settings.poll_seconds)
                watcher.last_poll_end = time.monotonic()
                log.warning("connect summary of %s failed: %s", watcher.project_label, describe_error(error))
                return
        await watcher.poll(self.settings.poll_seconds)

    @poll.before_loop
    async def _before_poll(self) -> None:
        await self.bot.wait_until_ready()

    @poll.error
    async def _poll_died(self, error: BaseException) -> None:
        log.critical("the W&B poll loop stopped; run reporting is off until the cog is reloaded", exc_info=error)

    async def _greet(self, project: Reporting) -> None:
        """The connect message: a summary of the project in each of its channels, once per start."""
        channels = [find_channel(self.bot, self.settings, outlet.route.channel) for outlet in project.outlets]
        if not any(channels):
            project.greeted = True  # nowhere to greet; don't hold back announcements for it
            return
        route = project.feed.route
        watcher = project.feed.watcher
        try:
            snapshot = await watcher.ask(watcher.source.snapshot, route.metric, route.metric_goal)
        except ProjectNotFound:
            embed = summary_embed(
                project=watcher.project_label, counts=None, best=None, running=[], metric="", goal="", missing=True
            )
        else:
            embed = summary_embed(
                project=watcher.project_label,
                counts=snapshot.counts,
                best=snapshot.best,
                running=snapshot.running,
                metric=route.metric,
                goal=route.metric_goal,
            )
        for channel in channels:
            if channel is not None:
                await channel.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)
        project.greeted = True

    # --- delivery -------------------------------------------------------------------------------
    @tasks.loop(seconds=1)
    async def deliver(self) -> None:
        """Empty each outbox into its channel (rate-limited; each announcement deleted once Discord took it);
        a channel that refuses backs off alone."""
        outlets = [outlet for project in self.projects.values() if project.greeted for outlet in project.outlets]
        self.delivering = True
        try:
            await asyncio.gather(*(self._deliver(outlet) for outlet in outlets), self._deliver_inbox())
        finally:
            self.delivering = False

    async def _deliver_inbox(self) -> None:
        try:
            await self.inbox.deliver()
        except Exception:
            log.exception("delivering direct messages failed; retrying")

    async def _deliver(self, outlet: Outlet) -> None:
        channel = find_channel(self.bot, self.settings, outlet.route.channel)
        if channel is None:
            if not outlet.warned_no_channel:
                log.error(
                    "channel %r not found (or not writable): run announcements wait in the database until it is",
                    outlet.route.channel,
                )
                outlet.warned_no_channel = True
            return
        if time.monotonic() < outlet.after:
            return
        announcer = outlet.announcer
        try:
            await announcer.deliver_pending(channel)
        except Refused as error:
            announcer.refusals += 1
            outlet.after = time.monotonic() + min(300.0, 5.0 * 2 ** (announcer.refusals - 1))
            if announcer.refusals == 1:
                log.error("run announcements wait in the outbox: %s (retrying, backing off up to 5 min)", error)
        except Exception:
            log.exception("delivering run announcements failed; retrying")

    @deliver.before_loop
    async def _before_deliver(self) -> None:
        await self.bot.wait_until_ready()

    @deliver.error
    async def _deliver_died(self, error: BaseException) -> None:
        log.critical("the announcement loop stopped", exc_info=error)

    @commands.hybrid_command(name="runs")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(state="only runs in this state (default: all)", count="how many runs, 1 to 25 (default 10)")
    @app_commands.autocomplete(state=complete_state)
    async def runs_command(
        self, ctx: commands.Context[Any], state: str | None = None, count: int | None = None
    ) -> None:
        """List recent runs: $runs [state] [n], e.g. $runs running 5."""
        feed = await self.feeds.for_command(ctx)
        if feed is None:
            return
        w, route = feed.watcher, feed.route
        words = [w for w in (state, None if count is None else str(count)) if w]
        try:
            query = parse_runs_args(words)
        except ValueError as error:
            await self.reply(ctx, f"{error}. Usage: `{self.command_prefix(ctx)}runs [state] [n]`")
            return
        ok, runs = await self.ask_wandb(ctx, w, w.source.recent, query.state, query.count)
        if not ok or runs is None:
            return
        pages = runs_table_pages(runs, project=w.project_label, state=query.state, metric=route.metric, now=utcnow())
        await send_pages(ctx, pages)

    @commands.hybrid_command(name="run")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(run="run id or display name")
    @app_commands.autocomplete(run=complete_run)
    async def run_command(self, ctx: commands.Context[Any], *, run: str) -> None:
        """Show one run's status card: $run <run id or name>."""
        asked = await self._one_run(ctx, run)
        if asked is None:
            return
        feed, found = asked
        card = run_card_embed(found, project=feed.watcher.project_label, metric=feed.route.metric, now=utcnow())
        launching = self.rule_for(ctx.channel).experiment_script is not None
        view = edit_view("run", found.id) if launching else None
        await ctx.send(embed=discord.Embed.from_dict(card), view=view, allowed_mentions=NO_PINGS)  # type: ignore[arg-type]

    async def _one_run(self, ctx: commands.Context[Any], run: str) -> tuple[Feed, RunInfo] | None:
        """The run a command names (id or display name) in the channel's project, or None after answering why not
        (with the closest names Adjutant knows)."""
        feed = await self.feeds.for_command(ctx)
        if feed is None:
            return None
        w = feed.watcher
        key = run.strip()
        if not key or len(key) > 128:
            await self.reply(ctx, "Give a run id or name of at most 128 characters.")
            return None
        ok, found = await self.ask_wandb(ctx, w, w.source.find, key)
        if not ok:
            return None
        if found is not None:
            return feed, found
        known = await w.known_names()
        close = suggestions(key, [name for pair in known for name in pair])
        hint = f" Did you mean {', '.join(f'`{code_safe(c)}`' for c in close)}?" if close else ""
        await self.reply(ctx, f"No run `{code_safe(truncate(key, 128))}` in {plain(w.project_label)}.{hint}")
        return None

    @commands.hybrid_command(name="best")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(
        metric="summary metric to rank by (default: ADJUTANT_METRIC)",
        goal="min or max: which end is best",
        count="how many runs, 1 to 25 (default 5)",
    )
    @app_commands.autocomplete(metric=complete_metric)
    async def best_command(
        self,
        ctx: commands.Context[Any],
        metric: str | None = None,
        goal: Literal["min", "max"] | None = None,
        count: int | None = None,
    ) -> None:
        """Leaderboard by a summary metric: $best [metric] [min|max] [n]."""
        feed = await self.feeds.for_command(ctx)
        if feed is None:
            return
        w, route = feed.watcher, feed.route
        words = [w for w in (metric, goal, None if count is None else str(count)) if w]
        try:
            query = parse_best_args(words, route.metric, route.metric_goal)
        except ValueError as error:
            await self.reply(ctx, f"{error}. Usage: `{self.command_prefix(ctx)}best [metric] [min|max] [n]`")
            return
        ok, runs = await self.ask_wandb(ctx, w, w.source.best, query.metric, query.goal, query.count)
        if not ok or runs is None:
            return
        if runs:
            embed = leaderboard_embed(runs, project=w.project_label, metric=query.metric, goal=query.goal)
            await send_embed(ctx, embed)
            return
        ok, names = await self.ask_wandb(ctx, w, w.source.metric_names)
        if not ok or names is None:
            return
        close = suggestions(query.metric, names)
        text = f"No run of {plain(w.project_label)} has a `{code_safe(truncate(query.metric, 100))}` metric."
        if close:
            text += f" Did you mean {', '.join(f'`{code_safe(c)}`' for c in close)}?"
        elif names:
            text += f" Metrics seen: {', '.join(f'`{code_safe(n)}`' for n in names[:20])}."
        await self.reply(ctx, text)

    # --- plots ----------------------------------------------------------------------------------
    async def _send_plot(self, ctx: commands.Context[Any], feed: Feed, query: PlotQuery) -> None:
        w, route = feed.watcher, feed.route
        try:
            async with ctx.typing():  # defers a slash command before the W&B calls and the rendering
                problem, embed, png = await w.chart(query.runs, query.metrics or (route.metric,), query.log_scale)
        except Exception as error:
            log.warning("plot failed: %s", describe_error(error))
            await self.reply(ctx, f"W&B did not answer: {describe_error(error)}. Try again in a minute.")
            return
        if problem is not None or embed is None or png is None:
            await self.reply(ctx, problem or "Nothing to plot.")
            return
        await ctx.send(
            embed=discord.Embed.from_dict(embed),
            file=discord.File(io.BytesIO(png), "plot.png"),
            allowed_mentions=NO_PINGS,
        )

    @commands.command(name="plot")
    async def plot_command(self, ctx: commands.Context[Any], *words: str) -> None:
        """Chart metrics of runs: $plot <run> [run ...] [metric ...] [log], e.g. $plot run-a run-b loss."""
        feed = await self.feeds.for_command(ctx)
        if feed is None:
            return
        w = feed.watcher
        known = {name for pair in await w.known_names() for name in pair}
        try:
            query = parse_plot_words(words, known)
        except ValueError as error:
            await self.reply(
                ctx, f"{error}. Usage: `{self.command_prefix(ctx)}plot <run> [run ...] [metric ...] [log]`"
            )
            return
        await self._send_plot(ctx, feed, query)

    @app_commands.command(name="plot", description="Chart metrics of one or several runs")
    @app_commands.describe(
        runs="run ids or names, separated by spaces",
        metrics="metric names, separated by spaces (default: ADJUTANT_METRIC)",
        log_scale="use a logarithmic y axis",
    )
    @app_commands.autocomplete(runs=complete_run)
    async def plot_slash(
        self, interaction: discord.Interaction, runs: str, metrics: str | None = None, log_scale: bool = False
    ) -> None:
        ctx: commands.Context[Any] = await commands.Context.from_interaction(interaction)
        if not self.serves(interaction.guild):
            return  # not one of Adjutant's servers: nothing is answered
        route = self.route_for(interaction.channel)
        if route is None:
            await interaction.response.send_message(f"I take commands in {self.channels_text()} only.", ephemeral=True)
            return
        feed = self.feeds.of_route(route)
        if feed is None:
            text = f"No W&B project is reported in this channel; it is reported in {self.channels_text()}."
            await interaction.response.send_message(text, ephemeral=True)
            return
        run_keys = tuple(dict.fromkeys(runs.replace(",", " ").split()))
        metric_names = tuple(dict.fromkeys((metrics or "").replace(",", " ").split()))
        if not run_keys or len(run_keys) > 6 or len(metric_names) > 4:
            await interaction.response.send_message("Give 1 to 6 runs and at most 4 metrics.", ephemeral=True)
            return
        await self._send_plot(ctx, feed, PlotQuery(run_keys, metric_names, log_scale))

    @commands.hybrid_command(name="diagnose")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(run="run id or display name")
    @app_commands.autocomplete(run=complete_run)
    async def diagnose_command(self, ctx: commands.Context[Any], *, run: str) -> None:
        """Diagnose one run from its history: $diagnose <run id or name>."""
        # Converging, plateaued, diverging or oscillating; training against validation; NaN shares; the pace.
        from adjutant.diagnose import diagnose, diagnosis_embed, pick_metrics  # only when asked
        from adjutant.plots import render_chart

        asked = await self._one_run(ctx, run)
        if asked is None:
            return
        feed, found = asked
        w, route = feed.watcher, feed.route
        ok, keys = await self.ask_wandb(ctx, w, w.source.history_keys, found.id)
        if not ok:
            return
        metrics = pick_metrics(keys or [], route.metric)
        history: dict[str, list[tuple[float, float]]] = {}
        for metric in [*metrics, "_timestamp"]:  # one sampled-history request per key
            ok, points = await self.ask_wandb(ctx, w, w.source.history, found.id, metric, DIAGNOSE_SAMPLES)
            if not ok:
                return
            history[metric] = points or []
        stamps = history.pop("_timestamp")
        result = diagnose(history, stamps, ranking=route.metric, ranking_goal=route.metric_goal)
        embed = diagnosis_embed(found, result, project=w.project_label)
        charted = [m for m in metrics if history.get(m)][:4]
        if not charted:
            await ctx.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)
            return
        data = {f"{found.name} ({found.id})": {m: history[m] for m in charted}}
        png = await asyncio.to_thread(render_chart, data, charted, title=", ".join(charted))
        embed["image"] = {"url": "attachment://diagnosis.png"}
        await ctx.send(
            embed=discord.Embed.from_dict(embed),
            file=discord.File(io.BytesIO(png), "diagnosis.png"),
            allowed_mentions=NO_PINGS,
        )


async def setup(bot: commands.Bot) -> None:
    """Load the W&B run reporting cog alone (with Rules and Desk: ``adjutant.cogs.rules``, ``adjutant.cogs.desk``);
    it needs WANDB_PROJECT."""
    await add_reporting_cog(bot, __name__, Runs)
