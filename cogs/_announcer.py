"""Delivering the outbox: run announcements to Discord, in order, rate-limited, each deleted only once
Discord accepted it. The Discord side of :class:`adjutant.watcher.Watcher`; used by the reporting cog."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS
from adjutant.alerts import END_TAIL_LINES, ActionState, Alert, AlertKind, AlertPolicy, decide_action, shown_in_tail
from adjutant.cogs._alert_views import alert_view
from adjutant.jobs import ENDED, Job, JobState, tail_lines
from adjutant.plots import render_bars, render_chart
from adjutant.ratelimit import RateWindow
from adjutant.render import MESSAGE_LIMIT, log_tail_block, pack_embeds, truncate
from adjutant.store import OutboxItem, Store
from adjutant.subscriptions import CHANNEL_PREFIX, DM_PREFIX, Subscription
from adjutant.watcher import CATCH_UP, Watcher, describe_error

log = logging.getLogger(__name__)

#: Announcements that carry a chart of the ranking metric when the backlog is at most CHART_BACKLOG.
CHART_EVENTS = frozenset({"finished", "crashed", "stalled"})
CHART_BACKLOG = 3
#: The most characters of a job's log an alert card quotes.
LOG_TAIL_LIMIT = 1900
#: What announcements found by the first poll after a start (context CATCH_UP) begin with, whatever their form.
OFFLINE = "While I was offline:"
#: A log-pattern card of a running job waits this long for the job's end: a traceback printed as the job dies is
#: told by the end report's log tail, not by a second message.
LOG_CARD_WAIT = dt.timedelta(seconds=5)

#: "May this member still see this project?": (user id, project key, or "" for their own jobs: "are they still in
#: Adjutant's server?") → bool. Asked when a direct message is delivered.
MaySee = Callable[[int, str], Awaitable[bool]]
#: The announcements about to be sent that may be sent; it removes the others from the outbox.
Admit = Callable[[list[OutboxItem]], Awaitable[list[OutboxItem]]]


class Refused(RuntimeError):
    """Discord refused a send for good (permission, unknown channel): the announcements stay in the outbox."""

    def __init__(self, text: str, code: int = 0) -> None:
        super().__init__(text)
        #: Discord's error code (50007: the member does not take direct messages).
        self.code = code


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


def action_text(alert: Alert) -> str:
    """What a card says about its policy's action: when it stops the job, that it was kept, or that it cannot."""
    if alert.action_state == ActionState.PENDING and alert.action_note == AlertPolicy.describe(0):
        return "**Policy (stop):** this job is being stopped."
    if alert.action_state == ActionState.PENDING and alert.action_at is not None:
        return (
            f"**Policy ({alert.action_note}):** this job is stopped <t:{int(alert.action_at.timestamp())}:R> unless"
            " someone presses **Keep running**."
        )
    if alert.action_state == ActionState.KEPT:
        return f"**Policy:** kept running by {alert.action_note}; this alert stops nothing."
    if alert.action_state == ActionState.CANNOT:
        return (
            f"**Policy ({alert.action_note}):** Adjutant did not launch this run, so it cannot stop it; stop it where"
            " it runs."
        )
    return ""


class Announcer:
    """Sends one outbox (a W&B project's, or the jobs' log alerts): 10 embeds a message at most, at most 4
    messages per 5 seconds; an alert one at a time, as a card (mention, chart, log tail, buttons)."""

    def __init__(
        self,
        bot: commands.Bot,
        store: Store,
        project_key: str,
        metric: str,
        watcher: Watcher | None = None,
        *,
        admit: Admit | None = None,
        policy: AlertPolicy | None = None,
    ) -> None:
        self.bot = bot
        #: ADJUTANT_ALERT_POLICY: a card whose job a policy stops says when, and has Keep running.
        self.policy = policy
        #: Which of the waiting announcements may be sent now (the inbox's access check), if anything.
        self.admit = admit
        self.watcher = watcher
        self.store = store
        self.project_key = project_key
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
            items = await asyncio.to_thread(self.store.pending, self.project_key, 50)
            if items and self.admit is not None:
                admitted = await self.admit(items)  # the others are out of the outbox now
                if not admitted:
                    continue
                items = admitted
            if not items:
                return sent
            if items[0].alert_id is not None:
                if self.stopping:
                    return sent
                if not await self._send_card(channel, items[0]):
                    return sent  # a log card waits for its job's end; the rest of this outbox waits behind it
                sent += 1
                continue
            if "_mention" in items[0].payload:  # a note for one member ("your queue is done"): pings that member only
                if self.stopping:
                    return sent
                await self._send_note(channel, items[0])
                sent += 1
                continue
            alone = items[0].event == "digest" or items[0].reply_to is not None or items[0].thread_id is not None
            if alone or len(items) <= CHART_BACKLOG:
                # one at a time: a reply to a job's launch, or a quiet moment that can afford a chart
                groups, batches = pack_embeds([items[0].payload]), [items[:1]]
            else:
                plain_items = list(
                    itertools.takewhile(
                        lambda i: (
                            i.reply_to is None and i.thread_id is None and i.alert_id is None and i.event != "digest"
                        ),
                        items,
                    )
                )
                groups = pack_embeds([item.payload for item in plain_items])
                batches, start = [], 0
                for embeds in groups:
                    batches.append(plain_items[start : start + len(embeds)])
                    start += len(embeds)
            for embeds, batch in zip(groups, batches, strict=True):
                content = None
                if batch[0].context == CATCH_UP:
                    content = OFFLINE
                if self.stopping:
                    return sent
                files = []
                if len(batch) == 1 and batch[0].event == "digest" and "_bars" in embeds[0]:
                    bars = embeds[0]["_bars"]
                    embeds = [{k: v for k, v in embeds[0].items() if k != "_bars"}]
                    try:
                        bars_png = await asyncio.to_thread(
                            render_bars, bars["labels"], bars["values"], title=bars["title"], unit=bars["unit"]
                        )
                    except Exception as error:  # a chart is a bonus: never hold the digest back for it
                        log.warning("no chart for a digest: %s", error)
                    else:
                        embeds = [{**embeds[0], "image": {"url": "attachment://digest.png"}}]
                        files = [discord.File(io.BytesIO(bars_png), "digest.png")]
                elif len(batch) == 1 and batch[0].event in CHART_EVENTS:
                    png = await self._event_chart(batch[0].run_id)
                    if png is not None:
                        embeds = [{**embeds[0], "image": {"url": "attachment://chart.png"}}]
                        files = [discord.File(io.BytesIO(png), "chart.png")]
                await self._send(
                    channel,
                    batch[0].thread_id,
                    batch[0].reply_to,
                    f"a{batch[0].id}-{batch[-1].id}",
                    [i.id for i in batch],
                    content=content,
                    files=files,
                    embeds=[discord.Embed.from_dict(e) for e in embeds],
                    allowed_mentions=NO_PINGS,
                )
                await asyncio.to_thread(self.store.delivered, [i.id for i in batch])
                self.refusals = 0
                sent += len(batch)

    async def _send(
        self,
        channel: discord.abc.Messageable,
        thread_id: int | None,
        reply_to: int | None,
        nonce: str,
        ids: list[int],
        **message: Any,
    ) -> None:
        """Send to the job's thread when there is one, else to the channel (replying to the launch); a thread that
        refuses falls back to the channel, saying so. Transient errors propagate (the loop retries); a refusal
        everywhere raises :class:`Refused` (the announcements stay in the outbox)."""
        targets: list[tuple[Any, discord.MessageReference | None]] = []
        if thread_id is not None:
            thread = self.bot.get_channel(thread_id)
            if isinstance(thread, discord.Thread):  # the job's thread holds its whole story
                targets.append((thread, None))
        targets.append((channel, self._reference(channel, reply_to)))
        refused = ""
        content = message.pop("content", None)
        for attempt, (target, reference) in enumerate(targets):
            note = content
            if attempt:  # the thread refused: say so where the announcement lands instead
                note = "\n".join(filter(None, [content, f"(I could not post in the job's thread: {refused})"]))
            await self.rate.acquire()
            try:
                await target.send(
                    content=truncate(note, MESSAGE_LIMIT) if note else None,
                    # Discord drops a resend with the same nonce (enforce_nonce) for a few minutes, so a crash
                    # between Discord's answer and our bookkeeping does not post the batch twice.
                    nonce=nonce if not attempt else f"{nonce}-c",
                    reference=reference,
                    **message,
                )
            except discord.HTTPException as error:
                if error.status == 429 or error.status >= 500:
                    raise  # transient: the loop retries this batch next time
                refused = describe_refusal(error)
                log.warning("%s refused announcements %s: %s", target, ids, refused)
                if attempt + 1 < len(targets):
                    for file in message.get("files") or ():
                        file.reset()
                    continue  # fall back to the channel
                raise Refused(refused, error.code) from error  # kept in the outbox; the loop backs off
            return

    async def _send_note(self, channel: discord.abc.Messageable, item: OutboxItem) -> None:
        embed = dict(item.payload)
        user = int(embed.pop("_mention"))
        mentions = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(user)])
        await self._send(
            channel,
            None,
            None,
            f"a{item.id}",
            [item.id],
            content=_offline_prefix(item) + f"<@{user}>",
            embeds=[discord.Embed.from_dict(embed)],
            allowed_mentions=mentions,
        )
        await asyncio.to_thread(self.store.delivered, [item.id])
        self.refusals = 0

    async def _send_card(self, channel: discord.abc.Messageable, item: OutboxItem) -> bool:
        """An alert as a card: what fired and why (the embed), the chart of the metric concerned with the trigger
        marked, the job's log tail, the launcher mentioned (that user only), and Stop / Rerun / Mute 1 h. False when
        it is not decided yet (a log card waiting for its job's end); True once sent, or dropped because the job's
        end report shows the same lines."""
        assert item.alert_id is not None
        alert = await asyncio.to_thread(self.store.alert, item.alert_id)
        job = await asyncio.to_thread(self.store.job, alert.job_id) if alert and alert.job_id else None
        if alert is not None and job is not None and alert.kind is AlertKind.LOG:
            verdict = await self._log_card_verdict(item, alert, job)
            if verdict == "wait":
                return False
            if verdict == "told":
                log.info("log alert %s of job %s: its end report shows it; no card", item.event, job.id)
                await asyncio.to_thread(self.store.delivered, [item.id])
                return True
        embed = dict(item.payload)
        if alert is not None and self.policy is not None:
            alert = await asyncio.to_thread(self._decide, alert, self.policy)
            said = action_text(alert)
            if said:
                embed["description"] = (str(embed.get("description") or "") + "\n" + said).strip()
        files = []
        if alert is not None and alert.metric and alert.run_id:
            png = await self._event_chart(alert.run_id, alert.metric, alert.step)
            if png is not None:
                embed["image"] = {"url": "attachment://chart.png"}
                files = [discord.File(io.BytesIO(png), "chart.png")]
        prefix = _offline_prefix(item)
        content, mentions = prefix or None, NO_PINGS
        if job is not None:
            content = f"{prefix}<@{job.requested_by_id}>"
            mentions = discord.AllowedMentions(
                everyone=False, roles=False, replied_user=False, users=[discord.Object(job.requested_by_id)]
            )
            tail, _size = await asyncio.to_thread(tail_lines, Path(job.log_path), 40)
            if tail:
                content += "\n" + log_tail_block(tail, LOG_TAIL_LIMIT - len(prefix))
        view = alert_view(alert, job) if alert is not None else None
        if job is not None and job.channel_id is not None:  # a job's card goes where the job was launched
            launched_in = self.bot.get_channel(job.channel_id)
            if isinstance(launched_in, discord.abc.Messageable):
                channel = launched_in
        thread_id = job.thread_id if job is not None and job.thread_id else item.thread_id
        reply_to = job.message_id if job is not None and job.message_id else item.reply_to
        await self._send(
            channel,
            thread_id,
            reply_to,
            f"a{item.id}",
            [item.id],
            content=content,
            files=files,
            embeds=[discord.Embed.from_dict(embed)],
            allowed_mentions=mentions,
            **({"view": view} if view is not None else {}),
        )
        await asyncio.to_thread(self.store.delivered, [item.id])
        self.refusals = 0
        return True

    def _decide(self, alert: Alert, policy: AlertPolicy) -> Alert:
        """(thread) The alert's action, decided once (the acting loop may have decided it first)."""
        with self.store.transaction() as db:
            return decide_action(db, alert, policy)

    @staticmethod
    async def _log_card_verdict(item: OutboxItem, alert: Alert, job: Job) -> str:
        """``told``: the job failed (or was lost) and its end report's log tail shows a line of this pattern;
        ``wait``: the job still runs and the alert is younger than LOG_CARD_WAIT (it may be dying: a traceback comes
        just before the end); else ``send``."""
        pattern = item.event.partition(":")[2]
        if job.state in (JobState.FAILED, JobState.LOST):
            tail, _size = await asyncio.to_thread(tail_lines, Path(job.log_path), END_TAIL_LINES)
            return "told" if shown_in_tail(pattern, tail) else "send"
        if job.state in ENDED or alert.created_at is None:
            return "send"
        return "wait" if dt.datetime.now(dt.UTC) - alert.created_at < LOG_CARD_WAIT else "send"

    async def _event_chart(self, run_id: str, metric: str | None = None, mark: float | None = None) -> bytes | None:
        """A small chart of a metric (default: the ranking metric) for an announcement, if the run has its history
        (else None); ``mark``: the step an alert fired at."""
        if self.watcher is None:
            return None
        metric = metric or self.metric
        try:
            points = await self.watcher.ask(self.watcher.source.history, run_id, metric, 500)
            if len(points) < 2:
                return None
            data = {run_id: {metric: points}}
            return await asyncio.to_thread(render_chart, data, [metric], small=True, mark_step=mark)
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


def _offline_prefix(item: OutboxItem) -> str:
    """Catch-up after a restart is said as such, whatever the announcement's form (a batch, a card, a note)."""
    return f"{OFFLINE}\n" if item.context == CATCH_UP else ""


class Inbox:
    """Direct messages (``dm:<user id>``) and notes to a channel (``channel:<id>``) from the outbox, each destination
    with its own announcer and rate window. A member who does not take direct messages (Discord 50007) keeps their
    subscription; the message is dropped, logged once per member, and nobody else waits for it.

    Rights are checked when a direct message is delivered, not only at ``$subscribe``: with ``may_see``, a member who
    can no longer see the project a message is about (or left the server) gets nothing more, and the subscription is
    ended (with the messages waiting for it), with one log line and an audit entry."""

    def __init__(self, bot: commands.Bot, store: Store, *, may_see: MaySee | None = None) -> None:
        self.bot = bot
        self.store = store
        self.may_see = may_see
        self.announcers: dict[str, Announcer] = {}
        self.after: dict[str, float] = {}
        self._closed_dms: set[int] = set()

    async def deliver(self) -> None:
        destinations = await asyncio.to_thread(self.store.pending_destinations, (DM_PREFIX, CHANNEL_PREFIX))
        await asyncio.gather(*(self._deliver(destination) for destination in destinations))

    async def _deliver(self, destination: str) -> None:
        if time.monotonic() < self.after.get(destination, 0.0):
            return
        announcer = self.announcers.get(destination)
        if announcer is None:
            admit = None
            if destination.startswith(DM_PREFIX) and self.may_see is not None:
                user_id = int(destination.removeprefix(DM_PREFIX))

                async def admit(items: list[OutboxItem]) -> list[OutboxItem]:
                    return await self.admit(user_id, items)

            announcer = Announcer(self.bot, self.store, destination, "loss", admit=admit)
            self.announcers[destination] = announcer
        try:
            target = await self._target(destination)
            if target is None:
                return
            await announcer.deliver_pending(target)
        except Refused as error:
            if error.code == 50007 and destination.startswith(DM_PREFIX):
                user = int(destination.removeprefix(DM_PREFIX))
                if user not in self._closed_dms:
                    self._closed_dms.add(user)
                    log.warning("member %d does not take direct messages (%s); their subscriptions stay", user, error)
                dropped = await asyncio.to_thread(self.store.pending, destination, 1000)
                await asyncio.to_thread(self.store.delivered, [item.id for item in dropped])
                return
            announcer.refusals += 1
            self.after[destination] = time.monotonic() + min(300.0, 5.0 * 2 ** (announcer.refusals - 1))
            log.warning("messages to %s wait in the outbox: %s", destination, error)
        except Exception:
            log.exception("delivering messages to %s failed; retrying", destination)

    async def _target(self, destination: str) -> discord.abc.Messageable | None:
        if destination.startswith(CHANNEL_PREFIX):
            channel = self.bot.get_channel(int(destination.removeprefix(CHANNEL_PREFIX)))
            return channel if isinstance(channel, discord.abc.Messageable) else None
        user_id = int(destination.removeprefix(DM_PREFIX))
        user = self.bot.get_user(user_id)
        if user is None:
            try:
                user = await self.bot.fetch_user(user_id)
            except discord.NotFound:
                log.warning("member %d is gone: dropping their direct messages", user_id)
                dropped = await asyncio.to_thread(self.store.pending, destination, 1000)
                await asyncio.to_thread(self.store.delivered, [item.id for item in dropped])
                subscribed = await asyncio.to_thread(self.store.member_subscriptions, user_id)
                await self._end(user_id, subscribed, "their Discord account is gone")
                return None
        return user.dm_channel or await user.create_dm()

    async def admit(self, user_id: int, items: list[OutboxItem]) -> list[OutboxItem]:
        """The direct messages to ``user_id`` that may be sent: those about a project the member may still see
        (``may_see``). A subscription whose member may not is ended with the messages waiting for it; a message whose
        subscription the member ended meanwhile is dropped. Every message not returned is out of the outbox."""
        if self.may_see is None:
            return items
        verdicts: dict[str, bool] = {}
        found: dict[int, Subscription | None] = {}
        admitted: list[OutboxItem] = []
        dropped: list[int] = []
        ending: dict[int, Subscription] = {}
        for item in items:
            subscription = None
            if item.subscription_id is not None:
                if item.subscription_id not in found:
                    found[item.subscription_id] = await asyncio.to_thread(self.store.subscription, item.subscription_id)
                subscription = found[item.subscription_id]
                if subscription is None:
                    dropped.append(item.id)  # unsubscribed since it was queued
                    continue
            project = subscription.project if subscription is not None else ""  # "": the member's own jobs
            if project not in verdicts:
                verdicts[project] = await self.may_see(user_id, project)
            if verdicts[project]:
                admitted.append(item)
            elif subscription is not None:
                ending[subscription.id] = subscription
            else:
                dropped.append(item.id)
        if not verdicts.get("", True):  # no longer in the server: `mine` ends too
            mine = await asyncio.to_thread(self.store.member_subscriptions, user_id)
            ending.update({s.id: s for s in mine if s.project == ""})
        if dropped:
            await asyncio.to_thread(self.store.delivered, dropped)
        for project in {s.project for s in ending.values()}:
            why = f"they can no longer see {project}" if project else "they are no longer in the server"
            await self._end(user_id, [s for s in ending.values() if s.project == project], why)
        return admitted

    async def _end(self, user_id: int, ending: list[Subscription], why: str) -> None:
        """End subscriptions Adjutant may no longer serve: one log line and one audit entry each."""
        if not ending:
            return
        user = self.bot.get_user(user_id)
        member = str(user) if user is not None else f"member {user_id}"
        for subscription in await asyncio.to_thread(self.store.end_subscriptions, ending, member, why):
            log.warning(
                "subscription #%d of %s (%d) ended: %s; its direct messages are dropped",
                subscription.id,
                member,
                user_id,
                why,
            )
