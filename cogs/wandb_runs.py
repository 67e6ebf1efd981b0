"""W&B run reporting: announces run lifecycle changes exactly once and answers questions about runs.

Two loops, both this cog's own:
- ``poll`` asks W&B what changed (one ``Runs`` query when nothing did), compares with what the
  database remembers, and writes the announcements to the database's outbox in the same
  transaction as the new run states;
- ``deliver`` empties the outbox into the channel, 10 embeds a message at most, at most 4 messages
  per 5 seconds, deleting each announcement only once Discord has accepted it.
Every W&B call runs in a single worker thread; every SQLite call in a thread too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import discord
from discord import app_commands
from discord.ext import commands, tasks

from adjutant import refuse_double_load, settings_for, subscriptions
from adjutant._cog import NO_PINGS, AdjutantCog, add_with_services, find_channel
from adjutant.access import refusal
from adjutant.alerts import MAX_RULES, RuleError, parse_rule
from adjutant.cogs import _alert_views
from adjutant.cogs._announcer import Announcer, Inbox, Refused
from adjutant.cogs._launch_form import edit_view
from adjutant.cogs._pager import send_pages
from adjutant.cogs._status_card import StatusCards
from adjutant.compare import MAX_RUNS as MAX_COMPARE
from adjutant.compare import compare, compare_embed
from adjutant.jobs import ACTIVE, JobState
from adjutant.projects import ProjectRoute
from adjutant.render import code_safe, format_duration, paged_embeds, plain, truncate
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
from adjutant.settings import ConfigError, Settings
from adjutant.status import Part, Snapshot
from adjutant.wandb_source import ProjectNotFound
from adjutant.watcher import Watcher, describe_error

log = logging.getLogger(__name__)

#: Announcements that carry a chart of the ranking metric when the backlog is at most CHART_BACKLOG.
CHART_EVENTS = frozenset({"finished", "crashed", "stalled"})
CHART_BACKLOG = 3


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Outlet:
    """One outbox of a project and the channel it is delivered to."""

    route: ProjectRoute
    announcer: Announcer
    after: float = 0.0  # time.monotonic() before which it is not tried again (after a refusal)
    warned_no_channel: bool = False


@dataclass
class Feed:
    """One W&B project: its watcher, the channels that watch it, and its own poll task."""

    watcher: Watcher
    outlets: list[Outlet] = field(default_factory=list)
    greeted: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def route(self) -> ProjectRoute:
        return self.outlets[0].route


class WandbRuns(AdjutantCog, name="Runs"):
    """Reports on the runs of W&B projects and answers questions about them."""

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services) -> None:
        super().__init__(bot, settings)
        assert services.watchers
        self.services = services
        self.store = services.runs
        self.feeds: dict[str, Feed] = {}
        for route in self.routes:
            if route.project_key is None:
                continue
            watcher = services.watchers[route.project_key]
            feed = self.feeds.setdefault(route.project_key, Feed(watcher))
            destination = watcher.destinations[len(feed.outlets)]
            feed.outlets.append(Outlet(route, Announcer(bot, self.store, destination, route.metric, watcher)))
        #: Direct messages to subscribers and notes for one member.
        self.inbox = Inbox(bot, self.store)
        self.cards = StatusCards(bot, self.store, self._status_snapshot, self.command_prefix())

    # --- which project ----------------------------------------------------------------------------
    def feed_of_route(self, route: ProjectRoute | None) -> Feed | None:
        return None if route is None or route.project_key is None else self.feeds.get(route.project_key)

    async def feed_for(self, ctx: commands.Context[Any], name: str | None = None) -> Feed | None:
        """The project a command is about: ``project:<name>`` (one the member can see), else the channel's own.
        Replies and returns None when there is none."""
        name = name or getattr(ctx, "adjutant_project", None)
        if not name:
            feed = self.feed_of_route(self.route_for(ctx.channel))
            if feed is None:
                await self.reply(
                    ctx, f"No W&B project is reported in this channel. Add `project:<name>`: {self.project_names()}."
                )
            return feed
        for feed in self.feeds.values():
            route = feed.route
            named = name in (route.project, route.project_label, route.project_key)
            if named and any(self._can_see(ctx.author, outlet.route) for outlet in feed.outlets):
                return feed
        await self.reply(
            ctx, f"No project `{code_safe(truncate(name, 100))}` that you can see: {self.project_names()}."
        )
        return None

    def _is_project(self, name: str) -> bool:
        return any(name in (f.route.project, f.route.project_label, f.route.project_key) for f in self.feeds.values())

    def project_names(self) -> str:
        return ", ".join(f"`{code_safe(feed.route.project or '')}`" for feed in self.feeds.values())

    def _can_see(self, member: Any, route: ProjectRoute) -> bool:
        channel = find_channel(self.bot, self.settings, route.channel)
        permissions = getattr(channel, "permissions_for", None)
        if permissions is None or not isinstance(member, discord.Member):
            return False
        return bool(permissions(member).view_channel)

    @property
    def watcher(self) -> Watcher:
        """The first project's watcher."""
        return next(iter(self.feeds.values())).watcher

    # --- lifecycle ------------------------------------------------------------------------------
    async def cog_load(self) -> None:
        self.services.acquire()
        _alert_views.register(self.bot)
        self.poll.start()
        self.deliver.start()
        self.status_cards.start()
        if self.settings.digest is not None:
            self.digests.start()

    async def cog_unload(self) -> None:
        self.status_cards.cancel()
        self.digests.cancel()
        self.poll.cancel()
        for feed in self.feeds.values():
            if feed.task is not None:
                feed.task.cancel()
        # Let a delivery in flight finish its bookkeeping, so a clean restart repeats nothing.
        for feed in self.feeds.values():
            for outlet in feed.outlets:
                outlet.announcer.stopping = True
        task = self.deliver.get_task()
        self.deliver.stop()
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
        self.deliver.cancel()
        _alert_views.unregister(self.bot, self)
        await self.services.release()

    # --- polling --------------------------------------------------------------------------------
    @tasks.loop(seconds=1)
    async def poll(self) -> None:
        """Start each project's poll when it is due, each in its own task: a slow project delays no other."""
        for feed in self.feeds.values():
            if feed.task is not None and not feed.task.done():
                continue
            if not feed.watcher.due(self.settings.poll_seconds):
                continue
            feed.task = asyncio.create_task(self._poll(feed), name=f"adjutant-poll-{feed.watcher.project_key}")

    async def _poll(self, feed: Feed) -> None:
        """Ask W&B what changed in one project; its watcher records it with its announcements."""
        if not feed.greeted:
            try:
                await self._greet(feed)
            except Exception as error:
                feed.watcher.health.failed(error, self.settings.poll_seconds)
                feed.watcher.last_poll_end = time.monotonic()
                log.warning("connect summary of %s failed: %s", feed.watcher.project_label, describe_error(error))
                return
        await feed.watcher.poll(self.settings.poll_seconds)

    @poll.before_loop
    async def _before_poll(self) -> None:
        await self.bot.wait_until_ready()

    @poll.error
    async def _poll_died(self, error: BaseException) -> None:  # type: ignore[override]
        log.critical("the W&B poll loop stopped; run reporting is off until the cog is reloaded", exc_info=error)

    async def _greet(self, feed: Feed) -> None:
        """The connect message: a summary of the project in each of its channels, once per start."""
        channels = [find_channel(self.bot, self.settings, outlet.route.channel) for outlet in feed.outlets]
        if not any(channels):
            feed.greeted = True  # nowhere to greet; don't hold back announcements for it
            return
        route = feed.route
        watcher = feed.watcher
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
        feed.greeted = True

    # --- delivery -------------------------------------------------------------------------------
    @tasks.loop(seconds=1)
    async def deliver(self) -> None:
        """Empty each outbox into its channel (rate-limited; each announcement deleted once Discord took it);
        a channel that refuses backs off alone."""
        outlets = [outlet for feed in self.feeds.values() if feed.greeted for outlet in feed.outlets]
        await asyncio.gather(*(self._deliver(outlet) for outlet in outlets), self._deliver_inbox())

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
    async def _deliver_died(self, error: BaseException) -> None:  # type: ignore[override]
        log.critical("the announcement loop stopped", exc_info=error)

    # --- commands -------------------------------------------------------------------------------
    async def _ask(self, ctx: commands.Context[Any], w: Watcher, fn: Any, *args: Any) -> tuple[bool, Any]:
        return await self.ask_wandb(ctx, w, fn, *args)

    def _interaction_feed(self, interaction: discord.Interaction) -> Feed:
        return self.feed_of_route(self.route_for(interaction.channel)) or next(iter(self.feeds.values()))

    async def _send_embed(self, ctx: commands.Context[Any], embed: dict[str, Any]) -> None:
        await ctx.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)

    # --- autocomplete (from what Adjutant already knows: no W&B call per keystroke) ---------------
    async def complete_run(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        w = self._interaction_feed(interaction).watcher
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
        feed = self._interaction_feed(interaction)
        names = sorted({feed.route.metric, *feed.watcher.metric_names})
        return [app_commands.Choice(name=n[:100], value=n[:100]) for n in names if current.lower() in n.lower()][:25]

    @commands.hybrid_command(name="runs")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(state="only runs in this state (default: all)", count="how many runs, 1 to 25 (default 10)")
    @app_commands.autocomplete(state=complete_state)
    async def runs_command(
        self, ctx: commands.Context[Any], state: str | None = None, count: int | None = None
    ) -> None:
        """List recent runs: $runs [state] [n], e.g. $runs running 5."""
        feed = await self.feed_for(ctx)
        if feed is None:
            return
        w, route = feed.watcher, feed.route
        words = [w for w in (state, None if count is None else str(count)) if w]
        try:
            query = parse_runs_args(words)
        except ValueError as error:
            await self.reply(ctx, f"{error}. Usage: `{self.command_prefix(ctx)}runs [state] [n]`")
            return
        ok, runs = await self._ask(ctx, w, w.source.recent, query.state, query.count)
        if not ok or runs is None:
            return
        pages = runs_table_pages(runs, project=w.project_label, state=query.state, metric=route.metric, now=utcnow())
        await send_pages(ctx, pages)

    @commands.hybrid_command(name="run")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(run="run id or display name")
    @app_commands.autocomplete(run=complete_run)
    async def run_command(self, ctx: commands.Context[Any], *, run: str) -> None:
        """Show one run's status card: $run <run id or name>."""
        feed = await self.feed_for(ctx)
        if feed is None:
            return
        w, route = feed.watcher, feed.route
        key = run.strip()
        if not key or len(key) > 128:
            await self.reply(ctx, "Give a run id or name of at most 128 characters.")
            return
        ok, found = await self._ask(ctx, w, w.source.find, key)
        if not ok:
            return
        if found is not None:
            card = run_card_embed(found, project=w.project_label, metric=route.metric, now=utcnow())
            launching = self.rule_for(ctx.channel).experiment_script is not None
            view = edit_view("run", found.id) if launching else None
            await ctx.send(embed=discord.Embed.from_dict(card), view=view, allowed_mentions=NO_PINGS)  # type: ignore[arg-type]
            return
        assert self.store is not None
        known = await w.known_names()
        close = suggestions(key, [name for pair in known for name in pair])
        hint = f" Did you mean {', '.join(f'`{code_safe(c)}`' for c in close)}?" if close else ""
        await self.reply(ctx, f"No run `{code_safe(truncate(key, 128))}` in {plain(w.project_label)}.{hint}")

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
        feed = await self.feed_for(ctx)
        if feed is None:
            return
        w, route = feed.watcher, feed.route
        words = [w for w in (metric, goal, None if count is None else str(count)) if w]
        try:
            query = parse_best_args(words, route.metric, route.metric_goal)
        except ValueError as error:
            await self.reply(ctx, f"{error}. Usage: `{self.command_prefix(ctx)}best [metric] [min|max] [n]`")
            return
        ok, runs = await self._ask(ctx, w, w.source.best, query.metric, query.goal, query.count)
        if not ok or runs is None:
            return
        if runs:
            embed = leaderboard_embed(runs, project=w.project_label, metric=query.metric, goal=query.goal)
            await self._send_embed(ctx, embed)
            return
        ok, names = await self._ask(ctx, w, w.source.metric_names)
        if not ok or names is None:
            return
        close = suggestions(query.metric, names)
        text = f"No run of {plain(w.project_label)} has a `{code_safe(truncate(query.metric, 100))}` metric."
        if close:
            text += f" Did you mean {', '.join(f'`{code_safe(c)}`' for c in close)}?"
        elif names:
            text += f" Metrics seen: {', '.join(f'`{code_safe(n)}`' for n in names[:20])}."
        await self.reply(ctx, text)

    # --- comparing runs ---------------------------------------------------------------------------
    @commands.hybrid_command(name="compare")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(runs="2 to 5 run ids, names or job ids, separated by spaces; metric:<name> for the chart")
    async def compare_command(self, ctx: commands.Context[Any], *, runs: str = "") -> None:
        """Compare runs side by side: $compare <run> <run> [run ...] [metric:<name>] (ids, names or job ids)."""
        feed = await self.feed_for(ctx)
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
                ok, run = await self._ask(ctx, w, w.source.find, job.wandb_run_id if job is not None else key)
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
                problem, _, png = await w.chart(tuple(r.id for r in found), (metric,), False)
            except Exception as error:
                problem, png = f"no chart: W&B did not answer ({describe_error(error)})", None
        if png is None:
            embed["footer"] = {"text": truncate(problem or "no chart", 2048)}
            await self._send_embed(ctx, embed)
            return
        embed["image"] = {"url": "attachment://compare.png"}
        await ctx.send(
            embed=discord.Embed.from_dict(embed),
            file=discord.File(io.BytesIO(png), "compare.png"),
            allowed_mentions=NO_PINGS,
        )

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
        feed = await self.feed_for(ctx)
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
        ctx: commands.Context[Any] = await commands.Context.from_interaction(interaction)  # type: ignore[type-var]
        if not self.serves(interaction.guild):
            return  # not one of Adjutant's servers: nothing is answered
        route = self.route_for(interaction.channel)
        if route is None:
            await interaction.response.send_message(f"I take commands in {self.channels_text()} only.", ephemeral=True)
            return
        feed = self.feed_of_route(route)
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

    # --- watch rules ----------------------------------------------------------------------------
    @commands.hybrid_command(name="watch")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(rule="<metric> <op> <value> [run id | group:<name> | tag:<name> | all], e.g. val_loss > 2")
    async def watch_command(self, ctx: commands.Context[Any], *, rule: str = "") -> None:
        """Alert when a running run's metric crosses a value: $watch val_loss > 2 [run id, group:g, tag:t or all]."""
        if not await self.authorized(ctx.author, ctx.channel):
            await self.reply(ctx, refusal(self.rule_for(ctx.channel), "set watch rules"))
            await self.audit("refused", ctx.author, ctx.channel, detail=truncate(ctx.message.content, 200))
            return
        feed = await self.feed_for(ctx)
        if feed is None:
            return
        w = feed.watcher
        prefix = self.command_prefix(ctx)
        try:
            spec = parse_rule(rule)
        except RuleError as error:
            await self.reply(ctx, f"Not watched: {error}. Usage: `{prefix}watch val_loss > 2 [group:sweep-7]`")
            return
        stored = await asyncio.to_thread(self.store.add_rule, w.project_key, spec, ctx.author.id, str(ctx.author))
        if stored is None:
            await self.reply(ctx, f"Not watched: {plain(w.project_label)} already has {MAX_RULES} rules.")
            return
        await self.audit("rule added", ctx.author, ctx.channel, target=f"#{stored.id}", detail=stored.describe())
        await self.reply(
            ctx,
            f"Watching `{code_safe(stored.describe())}` as rule #{stored.id}: a running run is announced once when"
            f" it crosses it, again only after going back. `{prefix}unwatch {stored.id}` removes it.",
        )

    @commands.hybrid_command(name="watches")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def watches_command(self, ctx: commands.Context[Any]) -> None:
        """List the watch rules with their ids."""
        feed = await self.feed_for(ctx)
        if feed is None:
            return
        w = feed.watcher
        rules = await asyncio.to_thread(self.store.rules, w.project_key)
        prefix = self.command_prefix(ctx)
        if not rules:
            await self.reply(ctx, f"No watch rules. Add one: `{prefix}watch val_loss > 2`.")
            return
        lines = [
            f"#{r.id} `{code_safe(truncate(r.describe(), 200))}` by {plain(truncate(r.author, 40))}" for r in rules
        ]
        title = f"Watch rules of {w.project_label}"
        await send_pages(ctx, paged_embeds({"title": truncate(title, 256), "color": 0x3498DB}, lines, per_page=15))

    @commands.hybrid_command(name="unwatch")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(rule_id="the rule's id, from $watches")
    async def unwatch_command(self, ctx: commands.Context[Any], rule_id: str) -> None:
        """Remove a watch rule: $unwatch <id>."""
        if not await self.authorized(ctx.author, ctx.channel):
            await self.reply(ctx, refusal(self.rule_for(ctx.channel), "remove watch rules"))
            await self.audit("refused", ctx.author, ctx.channel, detail=truncate(ctx.message.content, 200))
            return
        feed = await self.feed_for(ctx)
        if feed is None:
            return
        w = feed.watcher
        key = rule_id.strip().lstrip("#")
        removed = None
        if key.isdecimal() and key.isascii() and len(key) < 19:
            removed = await asyncio.to_thread(self.store.remove_rule, w.project_key, int(key))
        if removed is None:
            prefix = self.command_prefix(ctx)
            await self.reply(ctx, f"No watch rule `{code_safe(truncate(rule_id, 32))}`. `{prefix}watches` lists them.")
            return
        await self.audit("rule removed", ctx.author, ctx.channel, target=f"#{removed.id}", detail=removed.describe())
        await self.reply(ctx, f"Removed rule #{removed.id} (`{code_safe(removed.describe())}`).")

    # --- subscriptions ----------------------------------------------------------------------------
    @commands.hybrid_command(name="subscribe")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(what="[project] [events: started finished crashed failed killed stalled alerts mine all]")
    async def subscribe_command(self, ctx: commands.Context[Any], *, what: str = "") -> None:
        """Get a direct message for a project's events: $subscribe [project] [events...], or $subscribe mine."""
        words = what.split()
        prefix = self.command_prefix(ctx)
        name = getattr(ctx, "adjutant_project", None)
        if (
            words
            and words[0].lower() not in (*subscriptions.EVENTS, "all")
            and (self._is_project(words[0]) or len(words) > 1)
        ):
            name, words = words[0], words[1:]
        try:
            events = subscriptions.parse_events(words) or subscriptions.DEFAULT_EVENTS
        except ValueError as error:
            await self.reply(ctx, f"Not subscribed: {error}. Usage: `{prefix}subscribe [project] [events...]`")
            return
        project = ""
        if events != ("mine",) or name:
            feed = await self.feed_for(ctx, name)
            if feed is None:
                return
            if not any(self._can_see(ctx.author, outlet.route) for outlet in feed.outlets):
                await self.reply(ctx, "Not subscribed: you cannot see that project's channel.")
                return
            project = feed.watcher.project_key

        def store() -> int | None:
            with self.store.transaction() as db:
                return subscriptions.add(db, ctx.author.id, project, events)

        added = await asyncio.to_thread(store)
        if added is None:
            limit = subscriptions.MAX_SUBSCRIPTIONS
            await self.reply(ctx, f"Not subscribed: you have {limit} subscriptions already (`{prefix}unsubscribe`).")
            return
        await self.audit("subscribed", ctx.author, ctx.channel, target=f"#{added}", detail=", ".join(events))
        what_for = f"`{code_safe(project)}`: " if project else ""
        await self.reply(
            ctx,
            f"Subscription #{added}: I will send you a direct message for {what_for}{', '.join(events)}. Allow direct"
            f" messages from this server's members to receive them. `{prefix}unsubscribe {added}` stops it.",
        )

    @commands.hybrid_command(name="subscriptions")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def subscriptions_command(self, ctx: commands.Context[Any]) -> None:
        """List your subscriptions with their ids."""

        def load() -> list[subscriptions.Subscription]:
            with self.store.transaction() as db:
                return subscriptions.of_user(db, ctx.author.id)

        found = await asyncio.to_thread(load)
        if not found:
            await self.reply(ctx, f"You have no subscriptions. `{self.command_prefix(ctx)}subscribe` adds one.")
            return
        lines = [f"#{s.id} `{code_safe(s.project or 'your jobs')}`: {', '.join(s.events)}" for s in found]
        await self.reply(ctx, "Your subscriptions:\n" + "\n".join(lines))

    @commands.hybrid_command(name="unsubscribe")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(which="a subscription id, or all")
    async def unsubscribe_command(self, ctx: commands.Context[Any], which: str = "all") -> None:
        """Stop a subscription: $unsubscribe <id>, or $unsubscribe all."""
        key = which.strip().lstrip("#").lower()
        if key != "all" and not (key.isdecimal() and key.isascii() and len(key) < 19):
            await self.reply(ctx, f"Give a subscription id or `all` (`{self.command_prefix(ctx)}subscriptions`).")
            return

        def remove() -> int:
            with self.store.transaction() as db:
                return subscriptions.remove(db, ctx.author.id, None if key == "all" else int(key))

        removed = await asyncio.to_thread(remove)
        if not removed:
            await self.reply(ctx, f"No subscription `{code_safe(truncate(which, 20))}` of yours.")
            return
        await self.audit("unsubscribed", ctx.author, ctx.channel, target=which, detail=f"{removed} removed")
        await self.reply(ctx, f"Removed {removed} subscription(s).")

    async def alert_button(self, interaction: discord.Interaction, action: str, alert_id: int) -> None:
        """The alert card's buttons when experiment launching is not loaded: only Mute works."""
        if action == "mute":
            await self.mute_alert(interaction, self.store, alert_id)
            return
        if self.serves(interaction.guild):
            await interaction.response.send_message("Experiment launching is not loaded.", ephemeral=True)

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
        zone = ZoneInfo(self.settings.timezone)
        for feed in self.feeds.values():
            route = feed.route
            try:
                await feed.watcher.make_digests(
                    self.settings.digest,
                    zone,
                    utcnow(),
                    metric=route.metric,
                    goal=route.metric_goal,
                    usage=self.services.usage,
                )
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
        feed = await self.feed_for(ctx)
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
        if not self.poll.is_running():
            lines.append("⚠️ The poll loop is not running.")
        await self.reply(ctx, "\n".join(lines))


async def setup(bot: commands.Bot) -> None:
    """Load the W&B reporting cog alone; it needs WANDB_PROJECT."""
    refuse_double_load(bot, __name__)
    if not settings_for(bot).reporting_enabled:
        raise ConfigError("the W&B reporting cog needs WANDB_PROJECT (and usually WANDB_ENTITY) to be set")
    await add_with_services(bot, __name__, WandbRuns)
