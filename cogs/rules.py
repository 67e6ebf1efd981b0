"""Watch rules ($watch, $watches, $unwatch) and subscriptions ($subscribe, $subscriptions, $unsubscribe) on the W&B
projects reported on (the feeds it shares with the Runs and Desk cogs)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from discord import app_commands
from discord.ext import commands

from adjutant import subscriptions
from adjutant.access import refusal
from adjutant.alerts import MAX_RULES, Fn, Reading, RuleError, WatchRule, parse_rule
from adjutant.cogs._feeds import ReportingCog, add_reporting_cog
from adjutant.cogs._pager import send_pages
from adjutant.render import code_safe, format_duration, format_number, paged_embeds, plain, truncate

log = logging.getLogger(__name__)


class Rules(ReportingCog, name="Rules"):
    """Watch rules on the runs' metrics, and subscriptions to a project's events by direct message."""

    async def _may_change_rules(self, ctx: commands.Context[Any], what: str) -> bool:
        """Watch rules are changed by members allowed to launch in the channel; others are refused, audited."""
        if await self.authorized(ctx.author, ctx.channel):
            return True
        await self.reply(ctx, refusal(self.rule_for(ctx.channel), what))
        await self.audit("refused", ctx.author, ctx.channel, detail=truncate(ctx.message.content, 200))
        return False

    # --- watch rules ----------------------------------------------------------------------------
    @commands.hybrid_command(name="watch")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(rule="e.g. val_loss > 2 or avg(val_loss, 5) > 2 [run id | group:<name> | tag:<name> | all]")
    async def watch_command(self, ctx: commands.Context[Any], *, rule: str = "") -> None:
        """Alert on running runs' metrics: $watch val_loss > 2, avg(val_loss, 5) > 2, plateau(loss, 5)."""
        if not await self._may_change_rules(ctx, "set watch rules"):
            return
        feed = await self.feeds.for_command(ctx)
        if feed is None:
            return
        w = feed.watcher
        prefix = self.command_prefix(ctx)
        try:
            spec = parse_rule(rule)
        except RuleError as error:
            await self.reply(
                ctx,
                f"Not watched: {error}. Usage: `{prefix}watch val_loss > 2 [group:sweep-7]`; also"
                " `avg|min|max|last(val_loss, 5) > 2`, `change(loss, 10, 50) > 25%`, `zscore(accuracy, 30) < -2`,"
                " `plateau(val_loss, 5)`, `diverging(loss, 3)`.",
            )
            return
        stored = await asyncio.to_thread(self.store.add_rule, w.project_key, spec, ctx.author.id, str(ctx.author))
        if stored is None:
            await self.reply(ctx, f"Not watched: {plain(w.project_label)} already has {MAX_RULES} rules.")
            return
        await self.audit("rule added", ctx.author, ctx.channel, target=f"#{stored.id}", detail=stored.describe())
        cost = ""
        if stored.term.needs_history:
            every = feed.watcher.rules.history_polls
            cost = f" It reads each matching run's history at most every {every} polls."
        await self.reply(
            ctx,
            f"Watching `{code_safe(stored.describe())}` as rule #{stored.id}: a running run is announced once when"
            f" it crosses it, again only after going back.{cost} `{prefix}unwatch {stored.id}` removes it.",
        )

    @commands.hybrid_command(name="watches")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def watches_command(self, ctx: commands.Context[Any]) -> None:
        """List the watch rules with their ids."""
        feed = await self.feeds.for_command(ctx)
        if feed is None:
            return
        w = feed.watcher
        rules = await asyncio.to_thread(self.store.rules, w.project_key)
        prefix = self.command_prefix(ctx)
        if not rules:
            await self.reply(ctx, f"No watch rules. Add one: `{prefix}watch val_loss > 2`.")
            return
        now = w.clock()
        lines = [
            f"#{r.id} `{code_safe(truncate(r.describe(), 200))}` by {plain(truncate(r.author, 40))}"
            f" · {last_reading(r, w.readings.get(r.id), now)}"
            for r in rules
        ]
        title = f"Watch rules of {w.project_label}"
        await send_pages(ctx, paged_embeds({"title": truncate(title, 256), "color": 0x3498DB}, lines, per_page=15))

    @commands.hybrid_command(name="unwatch")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(rule_id="the rule's id, from $watches")
    async def unwatch_command(self, ctx: commands.Context[Any], rule_id: str) -> None:
        """Remove a watch rule: $unwatch <id>."""
        if not await self._may_change_rules(ctx, "remove watch rules"):
            return
        feed = await self.feeds.for_command(ctx)
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
    @app_commands.describe(
        what="[project] [events: started finished crashed failed killed stalled resumed alerts sweeps mine all]"
    )
    async def subscribe_command(self, ctx: commands.Context[Any], *, what: str = "") -> None:
        """Get a direct message for a project's events: $subscribe [project] [events...], or $subscribe mine."""
        words = what.split()
        prefix = self.command_prefix(ctx)
        name = getattr(ctx, "adjutant_project", None)
        if (
            words
            and words[0].lower() not in (*subscriptions.EVENTS, "all")
            and (self.feeds.is_project(words[0]) or len(words) > 1)
        ):
            name, words = words[0], words[1:]
        try:
            events = subscriptions.parse_events(words) or subscriptions.DEFAULT_EVENTS
        except ValueError as error:
            await self.reply(ctx, f"Not subscribed: {error}. Usage: `{prefix}subscribe [project] [events...]`")
            return
        project = ""
        if events != ("mine",) or name:
            feed = await self.feeds.for_command(ctx, name)
            if feed is None:
                return
            if not any(self.feeds.can_see(ctx.author, route) for route in feed.routes):
                await self.reply(ctx, "Not subscribed: you cannot see that project's channel.")
                return
            project = feed.watcher.project_key

        added = await asyncio.to_thread(self.store.subscribe, ctx.author.id, project, events)
        if added is None:
            limit = subscriptions.MAX_SUBSCRIPTIONS
            await self.reply(ctx, f"Not subscribed: you have {limit} subscriptions already (`{prefix}unsubscribe`).")
            return
        await self.audit("subscribed", ctx.author, ctx.channel, target=f"#{added}", detail=", ".join(events))
        what = subscription_text(project, events)
        await self.reply(
            ctx,
            f"Subscription #{added}: I will send you a direct message {what}. Allow direct messages from this"
            f" server's members to receive them. `{prefix}unsubscribe {added}` stops it.",
        )

    @commands.hybrid_command(name="subscriptions")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def subscriptions_command(self, ctx: commands.Context[Any]) -> None:
        """List your subscriptions with their ids."""
        found = await asyncio.to_thread(self.store.member_subscriptions, ctx.author.id)
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
        removed = await asyncio.to_thread(self.store.unsubscribe, ctx.author.id, None if key == "all" else int(key))
        if not removed:
            await self.reply(ctx, f"No subscription `{code_safe(truncate(which, 20))}` of yours.")
            return
        await self.audit("unsubscribed", ctx.author, ctx.channel, target=which, detail=f"{removed} removed")
        await self.reply(ctx, f"Removed {removed} subscription(s).")


async def setup(bot: commands.Bot) -> None:
    """Load the watch rules and subscriptions cog alone; it needs WANDB_PROJECT."""
    await add_reporting_cog(bot, __name__, Rules)


def last_reading(rule: WatchRule, last: tuple[str, Reading, dt.datetime] | None, now: dt.datetime) -> str:
    """A rule's last reading for ``$watches``: "last 2.1 (run abc, 3m ago), crossed", or "not read yet"."""
    if last is None:
        return "not read yet"
    run_id, reading, when = last
    term = rule.term
    if term.fn in (Fn.CHANGE, Fn.PLATEAU):
        value = f"{reading.value * 100:+.3g}%"
    elif term.fn is Fn.DIVERGING:
        value = f"{format_number(reading.value)} times its best"
    else:
        value = format_number(reading.value)
    ago = format_duration(max(0.0, (now - when).total_seconds()))
    state = "crossed" if reading.crossed else "not crossed"
    return f"last {value} (run `{code_safe(truncate(run_id, 64))}`, {ago} ago), {state}"


def subscription_text(project: str, events: tuple[str, ...]) -> str:
    """What a subscription sends, in words: "when each of your jobs ends", "about `team/proj`: finished, crashed"."""
    parts = []
    if "mine" in events:
        parts.append("when each of your jobs ends and when your queue is done")
    others = [e for e in events if e not in ("mine", "sweeps")]
    where = f" of `{code_safe(project)}`" if project else ""
    if others:
        parts.append(f"about runs{where}: {', '.join(others)}")
    if "sweeps" in events:
        parts.append(f"when each sweep{where} ends")
    return ", and ".join(parts)
