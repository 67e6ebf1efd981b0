"""Delivering the outbox: run announcements to Discord, in order, rate-limited, each deleted only once
Discord accepted it. The Discord side of :class:`adjutant.watcher.Watcher`; used by the reporting cog."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS
from adjutant.plots import render_chart
from adjutant.ratelimit import RateWindow
from adjutant.render import pack_embeds
from adjutant.watcher import CATCH_UP, Watcher, describe_error

log = logging.getLogger(__name__)

#: Announcements that carry a chart of the ranking metric when the backlog is at most CHART_BACKLOG.
CHART_EVENTS = frozenset({"finished", "crashed", "stalled"})
CHART_BACKLOG = 3


class Refused(RuntimeError):
    """Discord refused a send for good (permission, unknown channel): the announcements stay in the outbox."""


def describe_refusal(error: discord.HTTPException) -> str:
    """What Discord refused and the fix, for the log and the chat."""
    if error.status == 403:
        return (
            f"Discord said 403 {error.text or 'Missing Permissions'}: give the bot View Channel, Send Messages, "
            "Embed Links, Attach Files and Send Messages in Threads there"
        )
    if error.status == 404:
        return f"Discord said 404 {error.text or 'Unknown Channel'}: the channel or thread is gone"
    return f"Discord said {error.status} {error.text}"


class Announcer:
    """Sends the watcher's outbox: 10 embeds a message at most, at most 4 messages per 5 seconds."""

    def __init__(self, bot: commands.Bot, watcher: Watcher, metric: str) -> None:
        self.bot = bot
        self.watcher = watcher
        self.store = watcher.store
        self.metric = metric
        self.rate = RateWindow(4, 5.0)
        #: Set when the cog unloads: a delivery in flight finishes its bookkeeping, then stops.
        self.stopping = False
        #: Refusals in a row (the delivery loop backs off exponentially on them).
        self.refusals = 0

    async def deliver_pending(self, channel: discord.abc.Messageable) -> int:
        """Send what the outbox holds, in order, rate-limited; returns how many announcements were sent."""
        sent = 0
        while True:
            items = await asyncio.to_thread(self.store.pending, self.watcher.project_key, 50)
            if not items:
                return sent
            if items[0].reply_to is not None or items[0].thread_id is not None or len(items) <= CHART_BACKLOG:
                # one at a time: a reply to a job's launch, or a quiet moment that can afford a chart
                groups, batches = pack_embeds([items[0].payload]), [items[:1]]
            else:
                plain_items = list(itertools.takewhile(lambda i: i.reply_to is None and i.thread_id is None, items))
                groups = pack_embeds([item.payload for item in plain_items])
                batches, start = [], 0
                for embeds in groups:
                    batches.append(plain_items[start : start + len(embeds)])
                    start += len(embeds)
            for embeds, batch in zip(groups, batches, strict=True):
                content = None
                if batch[0].context == CATCH_UP:
                    content = "While I was offline:"
                if self.stopping:
                    return sent
                files = []
                if len(batch) == 1 and batch[0].event in CHART_EVENTS:
                    png = await self._event_chart(batch[0].run_id)
                    if png is not None:
                        embeds = [{**embeds[0], "image": {"url": "attachment://chart.png"}}]
                        files = [discord.File(io.BytesIO(png), "chart.png")]
                targets: list[tuple[Any, discord.MessageReference | None]] = []
                if batch[0].thread_id is not None:
                    thread = self.bot.get_channel(batch[0].thread_id)
                    if isinstance(thread, discord.Thread):  # the job's thread holds its whole story
                        targets.append((thread, None))
                targets.append((channel, self._reference(channel, batch[0].reply_to)))
                nonce = f"a{batch[0].id}-{batch[-1].id}"
                refused = ""
                for attempt, (target, reference) in enumerate(targets):
                    note = content
                    if attempt:  # the thread refused: say so where the announcement lands instead
                        note = "\n".join(filter(None, [content, f"(I could not post in the job's thread: {refused})"]))
                    await self.rate.acquire()
                    try:
                        await target.send(
                            content=note,
                            files=files,
                            embeds=[discord.Embed.from_dict(e) for e in embeds],
                            allowed_mentions=NO_PINGS,
                            # Discord drops a resend with the same nonce (enforce_nonce) for a few minutes, so a
                            # crash between Discord's answer and our bookkeeping does not post the batch twice.
                            nonce=nonce if not attempt else f"{nonce}-c",
                            reference=reference,  # type: ignore[arg-type]
                        )
                    except discord.HTTPException as error:
                        if error.status == 429 or error.status >= 500:
                            raise  # transient: the loop retries this batch next time
                        refused = describe_refusal(error)
                        log.warning("%s refused run announcements %s: %s", target, [i.id for i in batch], refused)
                        if attempt + 1 < len(targets):
                            continue  # fall back to the channel
                        raise Refused(refused) from error  # kept in the outbox; the loop backs off
                    break
                await asyncio.to_thread(self.store.delivered, [i.id for i in batch])
                self.refusals = 0
                sent += len(batch)

    async def _event_chart(self, run_id: str) -> bytes | None:
        """A small chart of the ranking metric for an announcement, if the run has its history (else None)."""
        try:
            points = await self.watcher.ask(self.watcher.source.history, run_id, self.metric, 500)
            if len(points) < 2:
                return None
            data = {run_id: {self.metric: points}}
            return await asyncio.to_thread(render_chart, data, [self.metric], small=True)
        except Exception as error:  # a chart is a bonus: never hold an announcement back for it
            log.info("no chart for run %s: %s", run_id, describe_error(error))
            return None

    @staticmethod
    def _reference(channel: Any, message_id: int | None) -> discord.MessageReference | None:
        """Reply to a job's launch message when it is in this channel (a run's events join the job's story)."""
        if message_id is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            return None
        return discord.MessageReference(
            message_id=message_id, channel_id=channel.id, guild_id=channel.guild.id, fail_if_not_exists=False
        )
