"""Sweeps: the live card of each sweep (one message, edited in place, even after a restart), its Pause / Resume /
Stop buttons, ``$agents``, ``$sweeps`` and ``$results``, and the end of a sweep told once: to its requester in the
card's channel, and by direct message to the members subscribed to its project's ``sweeps`` who can see that channel
(queued in the outbox in the transaction that marks the end told; the Inbox delivers them, as it does run events).

A thin adapter over :class:`adjutant.sweeps.service.SweepService` (``services.sweeps``: the sweeps, their trials and
their jobs; Discord-free) and :class:`adjutant.launching.Launching` (who may start or control a sweep, and what a
member may see). ``$sweep`` itself is the Experiments cog's command: with a W&B sweep configuration it hands the
checked plan to :meth:`Sweeps.preview`. The ``watch`` loop drives the service (``tick``: trials proposed as slots
free, metrics read, early stops) and edits the cards that changed, at most one edit per card every
:data:`EDIT_SECONDS`; rendering is :mod:`adjutant.sweeps.render` (pure; the chart in a worker thread).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self

import discord
from discord import app_commands
from discord.ext import commands, tasks

from adjutant import subscriptions
from adjutant._cog import NO_PINGS, AdjutantCog, add_with_services, asker_of, can_see, checked_route
from adjutant.access import refusal
from adjutant.clock import iso, utcnow
from adjutant.cogs._job_views import SweepConfirm
from adjutant.cogs._pager import send_pages
from adjutant.launching import Asker, Launching, Refused, SearchPlan
from adjutant.projects import ProjectRoute
from adjutant.render import code_safe, paged_embeds, plain, truncate
from adjutant.services import Services
from adjutant.settings import Settings
from adjutant.subscriptions import Subscription
from adjutant.sweeps import render

if TYPE_CHECKING:
    from adjutant.sweeps.service import SweepService, SweepView

log = logging.getLogger(__name__)

#: At most one edit of a card every this many seconds (like a job's status: Discord's per-message rate).
EDIT_SECONDS = 3.0
#: How often the service is ticked (trials proposed as slots free, values read) and the cards looked at.
TICK_SECONDS = 1.0
#: The largest configuration file ``$sweep`` reads.
CONFIG_FILE_LIMIT = 64 * 1024
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
#: How many sweeps ``$sweeps`` shows with their progress (each one is a read of its trials).
LISTED = 15


async def read_config_file(attachment: discord.Attachment) -> str | Refused:
    """The text of an attached sweep configuration (.yaml, .yml or .json, at most 64 KB), or why not."""
    name = attachment.filename or ""
    if not name.lower().endswith(CONFIG_SUFFIXES):
        return Refused(f"Not queued: attach the sweep configuration as .yaml, .yml or .json, not `{code_safe(name)}`.")
    if attachment.size > CONFIG_FILE_LIMIT:
        return Refused(
            f"Not queued: `{code_safe(truncate(name, 80))}` is {attachment.size:,} bytes; a sweep configuration may"
            f" have at most {CONFIG_FILE_LIMIT // 1024} KB."
        )
    try:
        data = await asyncio.wait_for(attachment.read(), 20)
    except (discord.HTTPException, TimeoutError) as error:
        log.warning("could not read the attachment %s: %s", name, error)
        return Refused("Not queued: Discord did not give me the attached file; try again.")
    if len(data) > CONFIG_FILE_LIMIT:
        return Refused(f"Not queued: a sweep configuration may have at most {CONFIG_FILE_LIMIT // 1024} KB.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Refused(f"Not queued: `{code_safe(truncate(name, 80))}` is not UTF-8 text.")


class SweepButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"adjutant:sweep:(?P<action>pause|resume|stop):(?P<sweep>sweep-[a-z0-9]{1,40})",
):
    """Pause / Resume / Stop under a sweep's card; the custom id carries the sweep, so it works after a restart."""

    def __init__(
        self, action: str, sweep_id: str, label: str = "", style: str = "secondary", disabled: bool = False
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label or action.title(),
                style=getattr(discord.ButtonStyle, style),
                custom_id=render.custom_id(action, sweep_id),
                disabled=disabled,
            )
        )
        self.action = action
        self.sweep_id = sweep_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["action"], match["sweep"])

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog("Sweeps")  # type: ignore[attr-defined]
        if not isinstance(cog, Sweeps):
            await interaction.response.send_message("Sweeps are not loaded.", ephemeral=True)
            return
        await cog.control(interaction, self.action, self.sweep_id)


def card_view(sweep_id: str, state: str) -> discord.ui.View | None:
    """The card's buttons for a sweep in ``state`` (none once it ended)."""
    found = render.buttons(state)
    if not found:
        return None
    view = discord.ui.View(timeout=None)
    for action, label, style, disabled in found:
        view.add_item(SweepButton(action, sweep_id, label, style, disabled))
    return view


class Sweeps(AdjutantCog, name="Sweeps"):
    """W&B sweeps on the team's queue: live cards, Pause / Resume / Stop, $agents, $sweeps, $results."""

    services: Services

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services) -> None:
        super().__init__(bot, settings, services)
        self.launching: Launching = services.launching
        #: Sweeps whose card waits for an edit, and when each card was last edited (monotonic).
        self._dirty: set[str] = set()
        self._edited: dict[str, float] = {}
        #: Sweeps whose card is being posted now: the loop neither posts nor edits them meanwhile (a Confirm and
        #: the loop's first pass would otherwise post two cards).
        self._posting: set[str] = set()
        #: The last chart of each card: the trial values it shows, and whether the card has it.
        self._charts: dict[str, tuple[Any, bytes | None]] = {}
        #: Cards Discord no longer has (deleted): not edited again (a card is never re-posted).
        self._gone: set[str] = set()
        #: The first pass brings every card of an unended sweep up to date (a restart may have missed a change).
        self._caught_up = False
        if not any(route.launch_roles or route.launch_users for route in settings.routes):
            command: Any = self.agents
            if command.app_command is not None:
                command.app_command.default_permissions = discord.Permissions(manage_guild=True)

    @property
    def sweeps(self) -> SweepService:
        """The sweep service (built on its first use: not at start, where nothing needs it yet)."""
        return self.services.sweeps

    # --- lifecycle ------------------------------------------------------------------------------
    async def cog_load(self) -> None:
        self.services.acquire()
        self.bot.add_dynamic_items(SweepButton)
        self.watch.change_interval(seconds=TICK_SECONDS)
        self.watch.start()

    async def cog_unload(self) -> None:
        self.watch.cancel()
        self.bot.remove_dynamic_items(SweepButton)
        await self.services.release()

    async def asker(self, origin: commands.Context[Any] | discord.Interaction) -> Asker:
        route = checked_route(origin) if isinstance(origin, commands.Context) else None
        return await asker_of(self.bot, self.settings, origin, route or self.rule_for(origin.channel))

    # --- starting -------------------------------------------------------------------------------
    async def preview(self, ctx: commands.Context[Any], plan: SearchPlan) -> None:
        """``$sweep`` with a W&B configuration: the preview with Queue them / Never mind (only the requester, while
        they may still launch); Confirm records the sweep and posts its card."""
        started: list[str] = []

        async def may_launch_now(interaction: discord.Interaction) -> bool:
            clicker = await self.asker(interaction)
            if self.launching.may_launch(clicker, plan.route):
                return True
            refused = await self.launching.refuse(clicker, "sweep confirmation", refusal(plan.route))
            await interaction.response.send_message(refused.text, ephemeral=True)
            return False

        async def start(interaction: discord.Interaction) -> str:
            outcome = await self.launching.start_sweep(plan, await self.asker(interaction), self.sweeps)
            if isinstance(outcome, Refused):
                return outcome.text
            started.append(outcome.id)
            return f"Sweep `{outcome.id}` started: its card follows."

        async def post(interaction: discord.Interaction, text: str) -> None:
            if started and interaction.channel is not None:
                await self.post_card(started[0], interaction.channel, reference=interaction.message)

        view = SweepConfirm(ctx.author.id, may_launch_now, start, post)
        view.message = await ctx.reply(
            plan.warning, embed=discord.Embed.from_dict(self.preview_embed(plan)), view=view,
            allowed_mentions=NO_PINGS, mention_author=False,
        )  # fmt: skip

    @staticmethod
    def preview_embed(plan: SearchPlan) -> dict[str, Any]:
        config = plan.config
        early = None
        if config is not None and config.early_terminate is not None:
            band = config.early_terminate
            early = f"hyperband, min_iter {band.min_iter}, eta {band.eta}"
        metric = None
        if config is not None and config.metric is not None:
            metric = render.Goal(config.metric.name, config.metric.goal != "maximize")
        return render.preview(
            kind=plan.kind, method=plan.method, space=config.describe() if config is not None else [],
            trials=plan.trials, capped_by=plan.capped_by, parallel=plan.parallel, seed=plan.seed, gpus=plan.gpus,
            time_limit=plan.time_limit, gpu_hours=plan.gpu_hours, where=plan.where, metric=metric,
            early_terminate=early,
        )  # fmt: skip

    @commands.hybrid_command(name="agents")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(
        sweep="the W&B sweep: its id (from wandb sweep) or entity/project/id",
        options="how many agents, then --gpus N --time 2h (e.g. 2 --gpus 1)",
    )
    async def agents(self, ctx: commands.Context[Any], sweep: str, *, options: str = "") -> None:
        """Run W&B agents for a sweep on the team's queue: $agents <sweep id> [n] [--gpus N] [--time T].

        Each agent is one job that takes one trial from W&B's controller; n of them work until it has no more.
        """
        asker = await self.asker(ctx)
        outcome = await self.launching.agents(asker, sweep, options)
        if isinstance(outcome, Refused):
            await self.reply(ctx, outcome.text, ephemeral=True)
            return
        started = await self.launching.start_sweep(outcome, asker, self.sweeps)
        if isinstance(started, Refused):
            await self.reply(ctx, started.text, ephemeral=True)
            return
        note = f"Agents for `{code_safe(outcome.where)}` started as sweep `{started.id}`."
        if outcome.warning:
            note += "\n" + outcome.warning
        reply = await self.reply(ctx, note)
        if ctx.channel is not None:
            await self.post_card(started.id, ctx.channel, reference=reply)

    # --- the card -------------------------------------------------------------------------------
    async def _card(self, sweep_id: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """What the card says now: embed, buttons and (when its values changed, or ``fresh``) the chart."""
        view = await self.sweeps.view(sweep_id)
        if view is None:
            return None
        sweep, trials = view.sweep, view.trials
        goal = render.goal_of(sweep.config)
        key = tuple((t.number, t.value) for t in trials if t.value is not None)
        known = self._charts.get(sweep_id)
        files: list[discord.File] | None = None
        chart = known[1] if known is not None else None
        if fresh or known is None or known[0] != key:
            chart = await asyncio.to_thread(render.chart_png, trials, goal) if key else None
            self._charts[sweep_id] = (key, chart)
            files = [discord.File(io.BytesIO(chart), filename=render.CHART_NAME)] if chart is not None else []
        embed = render.card(
            sweep, trials, goal=goal, base_url=os.environ.get("WANDB_BASE_URL"), chart=chart is not None,
            prefix=self.command_prefix(),
        )  # fmt: skip
        payload: dict[str, Any] = {"embed": discord.Embed.from_dict(embed), "view": card_view(sweep.id, sweep.state)}
        if files is not None:
            payload["attachments" if not fresh else "files"] = files
        return {"payload": payload, "sweep": sweep}

    async def post_card(self, sweep_id: str, channel: Any, *, reference: discord.Message | None = None) -> None:
        """Post a sweep's card (once: one post at a time per sweep, its id recorded, and a nonce Discord enforces, so
        a post repeated after a lost answer or a restart within minutes gives the same message), with a thread for
        its trials' stories."""
        if sweep_id in self._posting:
            return
        self._posting.add(sweep_id)
        try:
            card = await self._card(sweep_id, fresh=True)
            if card is None or card["sweep"].card_id:
                return  # unknown, or its card is posted already (it is edited, never posted again)
            payload = card["payload"]
            if payload.get("view") is None:
                payload.pop("view")
            try:
                message = await channel.send(
                    **payload, reference=reference, allowed_mentions=NO_PINGS, nonce=f"card-{sweep_id}"[:25]
                )
            except discord.HTTPException as error:
                log.warning("could not post the card of %s: %s", sweep_id, error)
                return
            thread = message.thread
            if thread is None:
                try:
                    thread = await message.create_thread(name=f"sweep {sweep_id}", auto_archive_duration=1440)
                except discord.HTTPException as error:
                    log.info("no thread for sweep %s (%s)", sweep_id, error)
            thread_id = thread.id if thread is not None else None
            await self.sweeps.set_card(sweep_id, message.channel.id, message.id, thread_id)
            self._edited[sweep_id] = time.monotonic()
        finally:
            self._posting.discard(sweep_id)

    async def _edit_card(self, sweep_id: str) -> None:
        card = await self._card(sweep_id)
        if card is None:
            return
        sweep = card["sweep"]
        channel = self.bot.get_channel(sweep.channel_id) if sweep.channel_id else None
        if channel is None or not hasattr(channel, "get_partial_message"):
            return
        if not sweep.card_id:  # recorded, but the bot stopped before its card was posted: post it now
            await self.post_card(sweep_id, channel)
            return
        payload = card["payload"]
        try:
            await channel.get_partial_message(sweep.card_id).edit(**payload)
        except discord.NotFound:
            log.warning("the card of sweep %s is gone; it is not edited any more", sweep_id)
            self._gone.add(sweep_id)
        except discord.HTTPException as error:
            log.warning("could not edit the card of sweep %s: %s; retrying", sweep_id, error)
            self._charts.pop(sweep_id, None)
            self._dirty.add(sweep_id)
        self._edited[sweep_id] = time.monotonic()

    async def _edit_due(self) -> None:
        now = time.monotonic()
        for sweep_id in sorted(self._dirty):
            if sweep_id in self._gone:
                self._dirty.discard(sweep_id)
                continue
            if sweep_id in self._posting:
                continue  # its card is being posted: edited once it is
            if now - self._edited.get(sweep_id, 0.0) < EDIT_SECONDS:
                continue
            self._dirty.discard(sweep_id)
            await self._edit_card(sweep_id)

    # --- Pause / Resume / Stop ------------------------------------------------------------------
    async def control(self, interaction: discord.Interaction, action: str, sweep_id: str) -> None:
        """A card's button: launch rights under the sweep's own route, checked at the click; audited."""
        if not self.serves(interaction.guild):
            return
        asker = await self.asker(interaction)
        view = await self.sweeps.view(sweep_id)
        if view is None:
            await interaction.response.send_message("That sweep is no longer known.", ephemeral=True)
            return
        sweep = view.sweep
        route = self.launching.sweep_route(sweep.route, sweep.channel_id)
        verb = {"pause": "pause", "resume": "resume", "stop": "stop"}[action]
        refused = await self.launching.may_control_sweep(asker, route, f"{verb} sweeps", sweep_id)
        if refused is not None:
            await interaction.response.send_message(refused.text, ephemeral=True)
            return
        actions: dict[str, Callable[..., Awaitable[Any]]] = {
            "pause": self.sweeps.pause,
            "resume": self.sweeps.resume,
            "stop": self.sweeps.stop,
        }
        try:
            await actions[action](sweep_id, by=asker.name)
        except ValueError as error:  # the service's refusal (SweepRefused) of a move the sweep's state does not allow
            from adjutant.sweeps.service import SweepRefused

            if not isinstance(error, SweepRefused):
                raise
            await interaction.response.send_message(str(error), ephemeral=True)
            return
        await self.launching.audit("sweep decided", asker, target=sweep_id, detail=action)
        said = {
            "pause": "paused: running trials finish, no new one starts until Resume",
            "resume": "resumed",
            "stop": "stopped: its running and queued trials are cancelled",
        }[action]
        await interaction.response.send_message(
            f"Sweep `{sweep_id}` {said} (by {plain(truncate(asker.name, 64))}).", allowed_mentions=NO_PINGS
        )
        self._dirty.add(sweep_id)

    # --- looking at sweeps ----------------------------------------------------------------------
    @commands.hybrid_command(name="sweeps", aliases=["results"])  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(sweep="a sweep's id: its card and a CSV of every trial (default: list the sweeps)")
    async def sweeps_command(self, ctx: commands.Context[Any], sweep: str = "") -> None:
        """List the sweeps you can see; $results <sweep>: its card and a CSV of every trial, best first.

        $sweeps <sweep> does the same as $results <sweep> (one slash command, /sweeps, for both).
        """
        asker = await self.asker(ctx)
        if sweep.strip():
            await self._results(ctx, asker, sweep)
            return
        if ctx.invoked_with == "results":
            await self.reply(ctx, f"Which sweep? `{self.command_prefix(ctx)}results <sweep id>`; `$sweeps` lists them.")
            return
        visible = [route for route in self.routes if self.launching.sees_route(asker, route)]
        rows = await self.sweeps.list([str(route.channel) for route in visible])
        if not rows:
            await self.reply(ctx, f"No sweeps yet. `{self.command_prefix(ctx)}sweep` starts one.")
            return
        lines = []
        for number, row in enumerate(rows):
            view = await self.sweeps.view(row.id) if number < LISTED else None
            trials = view.trials if view is not None else None
            where = f"<#{row.channel_id}>" if row.channel_id else ""
            lines.append(render.list_line(row, trials, render.goal_of(row.config), where))
        head = {"title": f"Sweeps ({len(rows)})", "color": 0x3498DB}
        await send_pages(ctx, paged_embeds(head, lines, per_page=15))

    async def _results(self, ctx: commands.Context[Any], asker: Asker, sweep: str) -> None:
        """A sweep's card (not live: no buttons) with the CSV of every trial and the chart."""
        key = sweep.strip().strip("`").lower()
        view = await self.sweeps.view(key) if re.fullmatch(r"sweep-[a-z0-9]{1,40}", key) else None
        if view is not None:
            route = self.launching.sweep_route(view.sweep.route, view.sweep.channel_id)
            if not self.launching.sees_route(asker, route):
                view = None
        if view is None:
            shown = code_safe(truncate(sweep, 48))
            await self.reply(ctx, f"No sweep `{shown}`. `{self.command_prefix(ctx)}sweeps` lists them.")
            return
        row, trials = view.sweep, view.trials
        goal = render.goal_of(row.config)
        async with ctx.typing():
            chart = await asyncio.to_thread(render.chart_png, trials, goal)
        runtimes = {t.number: render.runtime(t.started_at, t.ended_at) for t in trials}
        files = [discord.File(io.BytesIO(render.csv_bytes(trials, goal, runtimes)), filename=f"{row.id}.csv")]
        if chart is not None:
            files.append(discord.File(io.BytesIO(chart), filename=render.CHART_NAME))
        embed = render.card(
            row, trials, goal=goal, base_url=os.environ.get("WANDB_BASE_URL"), chart=chart is not None,
            prefix=self.command_prefix(ctx),
        )  # fmt: skip
        await ctx.send(embed=discord.Embed.from_dict(embed), files=files, allowed_mentions=NO_PINGS)

    # --- the loop -------------------------------------------------------------------------------
    @tasks.loop(seconds=TICK_SECONDS)
    async def watch(self) -> None:
        """One pass of the sweep service, then the cards that changed, then the ends to tell."""
        try:
            if not self._caught_up:
                rows = await self.sweeps.list(None)
                self._dirty.update(row.id for row in rows if str(row.state) not in render.ENDED_STATES)
                self._caught_up = True
            changed = await self.sweeps.tick()
            self._dirty.update(changed)
        except Exception:
            log.exception("the sweeps' pass failed; retrying")
        try:
            await self._edit_due()
            await self._tell_ended()
        except Exception:
            log.exception("updating the sweep cards failed; retrying")

    async def _tell_ended(self) -> None:
        """Each ended sweep, once: its requester (mentioned, nobody else) in the card's channel, with the best trial,
        then its project's ``sweeps`` subscribers by direct message. The card's last edit goes first. The end is marked
        told in the transaction that queues the subscribers' messages (:func:`subscriptions.tell_sweep_end`)."""
        for view in await self.sweeps.ended_untold():
            sweep = view.sweep
            if sweep.id not in self._edited:  # not edited by this process (a restart): its final state first
                self._dirty.add(sweep.id)
            if sweep.id in self._dirty and sweep.id not in self._gone:
                if time.monotonic() - self._edited.get(sweep.id, 0.0) < EDIT_SECONDS:
                    continue  # the final card first, at its pace
                self._dirty.discard(sweep.id)
                await self._edit_card(sweep.id)
            channel = self.bot.get_channel(sweep.channel_id) if sweep.channel_id else None
            if not isinstance(channel, discord.abc.Messageable):
                await self._mark_told(sweep.id, [])  # its channel is gone: nobody can see it any more
                continue
            try:
                copies = await self._subscriber_copies(view, channel)
            except discord.HTTPException as error:
                log.warning("could not look up the subscribers of sweep %s: %s; retrying", sweep.id, error)
                continue
            mention = f"<@{sweep.requested_by_id}>" if sweep.requested_by_id else None
            text = render.ended_text(sweep, view.trials, render.goal_of(sweep.config), mention)
            reference = None
            if sweep.card_id and isinstance(channel, discord.abc.GuildChannel):
                reference = discord.MessageReference(
                    message_id=sweep.card_id, channel_id=channel.id, guild_id=channel.guild.id, fail_if_not_exists=False
                )
            try:
                await channel.send(
                    text,
                    reference=reference,  # type: ignore[arg-type]
                    allowed_mentions=discord.AllowedMentions(
                        everyone=False, roles=False, replied_user=False, users=[discord.Object(sweep.requested_by_id)]
                    )
                    if sweep.requested_by_id
                    else NO_PINGS,
                    nonce=f"sweep-end-{sweep.id}"[:25],
                )
            except discord.HTTPException as error:
                log.warning("could not tell the end of sweep %s: %s; retrying", sweep.id, error)
                continue
            await self._mark_told(sweep.id, copies)

    async def _subscriber_copies(
        self, view: SweepView, channel: discord.abc.Messageable
    ) -> list[tuple[Subscription, dict[str, Any]]]:
        """The direct message of a sweep's end for each member subscribed to ``sweeps`` of its project (the route's,
        and the W&B project its agents worked in) who can see the sweep's channel now; a member who cannot gets
        nothing (their subscription stays: the Inbox ends it only when they can see none of the project's channels).
        Raises discord.HTTPException when Discord could not say who is a member (the end is told on a later pass)."""
        sweep = view.sweep
        route = self.launching.sweep_route(sweep.route, sweep.channel_id)
        own = f"{sweep.entity or ''}/{sweep.project}" if sweep.project else None
        keys = [key for key in (route.project_key, own) if key]
        found = await asyncio.to_thread(self._sweep_subscribers, keys)
        guild = getattr(channel, "guild", None)
        if not found or guild is None:
            return []
        copies = []
        embed = render.ended_embed(
            sweep, view.trials, render.goal_of(sweep.config), base_url=os.environ.get("WANDB_BASE_URL"),
            where=f"<#{sweep.channel_id}>", project=route.project_label or (own or "").lstrip("/"),
            prefix=self.command_prefix(),
        )  # fmt: skip
        for subscription in found:
            if await self._sees(guild, subscription.user_id, route):
                copies.append((subscription, embed))
        return copies

    def _sweep_subscribers(self, keys: list[str]) -> list[Subscription]:
        """(blocking) The members subscribed to ``sweeps`` of any of these projects, one subscription each."""
        with self.services.runs.transaction() as db:
            return subscriptions.sweep_subscribers(db, keys)

    async def _sees(self, guild: discord.Guild, user_id: int, route: ProjectRoute) -> bool:
        """Is ``user_id`` a member of ``guild`` who can see ``route``'s channel (View Channel, with its overwrites)?"""
        member = guild.get_member(user_id)
        if member is None:
            try:
                member = await guild.fetch_member(user_id)
            except (discord.NotFound, discord.Forbidden):
                return False  # no longer in the server (or Discord will not say): nothing is sent on a guess
        return can_see(self.bot, self.settings, member, guild, route)

    async def _mark_told(self, sweep_id: str, copies: list[tuple[Subscription, dict[str, Any]]]) -> None:
        """The end was told in the channel: marked told and the subscribers' messages queued, in one transaction."""

        def mark() -> bool:
            with self.services.runs.transaction() as db:
                return subscriptions.tell_sweep_end(db, sweep_id, iso(utcnow()), copies)

        if await asyncio.to_thread(mark) and copies:
            log.info("sweep %s ended: %d subscriber(s) will be told by direct message", sweep_id, len(copies))

    @watch.before_loop
    async def _before_watch(self) -> None:
        await self.bot.wait_until_ready()
        await asyncio.sleep(TICK_SECONDS)  # the first commands after connecting come first (the service is built now)

    @watch.error
    async def _watch_died(self, error: BaseException) -> None:
        log.critical("the sweeps loop stopped", exc_info=error)


async def setup(bot: commands.Bot) -> None:
    """Load the sweeps cog alone."""
    await add_with_services(bot, __name__, Sweeps)
