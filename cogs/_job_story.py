"""A job's story in Discord: its acknowledgement, its thread, live status edits, its end report.

The Discord side of :class:`adjutant.scheduler.Scheduler`; used by the Experiments cog. Rendering is
pure (:mod:`adjutant.job_render`); this module only sends and edits.

Order guarantees: the end report of a job goes out only once its acknowledgement has been recorded
(so a job that ends within a second is reported in its thread); status edits and end reports run in
one task, one after the other, so the last edit of an acknowledgement is always its final state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS, find_channel, home_of
from adjutant.alerts import END_TAIL_LINES
from adjutant.clock import utcnow
from adjutant.cogs._job_views import CancelButton
from adjutant.cogs._launch_form import edit_view
from adjutant.job_render import ack_embed, end_embed, final_ack_embed, status_embed, wandb_run_url
from adjutant.jobs import Job, JobState, tail_lines
from adjutant.render import MESSAGE_LIMIT, truncate
from adjutant.scheduler import Scheduler
from adjutant.settings import Settings
from adjutant.watcher import Watcher, describe_error

log = logging.getLogger(__name__)

#: Attempts at sending an acknowledgement when Discord answers 5xx or 429.
ACK_ATTEMPTS = 3
#: How long after its end report a job's W&B run is still asked about (what W&B adds comes by an edit).
RUN_LOOKUP_SECONDS = 60.0
#: End reports sent at once (each job's report is its own).
REPORTS_AT_ONCE = 8
#: End reports asking W&B about their run at once (the others wait their turn; no report waits for W&B).
RUN_LOOKUPS_AT_ONCE = 4
#: After Discord refused a report everywhere, wait this long before trying again.
REPORT_RETRY_SECONDS = 60.0
#: A sweep's preview still unchanged this long after its jobs were recorded was left behind by a crash.
SWEEP_PREVIEW_GRACE = dt.timedelta(seconds=10)


class NowhereToReport(RuntimeError):
    """No channel to report in yet (not visible, or not found); the report waits."""


def report_nonce(job: Job) -> str:
    """The end report's nonce: Discord drops a resend of the same report, never a later attempt's own report."""
    return f"job-{job.id}" if job.attempt == 1 else f"job-{job.id}-{job.attempt}"


def _transient(error: discord.HTTPException) -> bool:
    return error.status >= 500 or error.status == 429


#: The least time between two edits of a job's status when W&B brought news (a poll's step or metrics).
NEWS_SECONDS = 3.0


class JobStory:
    """Sends and edits the messages of jobs."""

    def __init__(
        self,
        bot: commands.Bot,
        settings: Settings,
        scheduler: Scheduler,
        watcher_of: Callable[[Job], Watcher | None],
    ) -> None:
        self.bot = bot
        self.settings = settings
        self.scheduler = scheduler
        #: The watcher of a job's W&B project (None when it has none).
        self.watcher_of = watcher_of
        self._status_refreshed = 0.0
        self._last_status: dict[str, str] = {}
        #: When each job's status was last edited (time.monotonic()), and the W&B part it showed then.
        self._status_edited: dict[str, float] = {}
        self._status_run: dict[str, str] = {}
        self._retry_after: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        #: End reports being completed with what W&B says of their run (see :meth:`_complete`).
        self._completions: set[asyncio.Task[None]] = set()
        self._lookups = asyncio.Semaphore(RUN_LOOKUPS_AT_ONCE)

    @property
    def prefix(self) -> str:
        group = f"{self.settings.command_group} " if self.settings.command_group else ""
        return f"{self.settings.prefix}{group}"

    # --- the acknowledgement --------------------------------------------------------------------
    async def acknowledge(
        self,
        origin: commands.Context[Any] | discord.Interaction,
        job: Job,
        defaults: dict[str, Any],
        *,
        prefix: str,
        extra: str = "",
    ) -> None:
        """Answer a launch, whatever its door: the job's id, its place in line, a Cancel button; then its own
        thread under that acknowledgement. Asked inside a thread (another job's), the acknowledgement goes to the
        channel, where a thread can open, and the asker is pointed to it.

        The job is already recorded: whatever happens to this answer, the member learns the job's id and
        state (a retry, else a plain message, else its end report says so).
        """
        ahead = await self.scheduler.jobs_ahead(job)
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(job.id))
        embed = discord.Embed.from_dict(ack_embed(job, queued_ahead=ahead, defaults=defaults, prefix=prefix))
        content = truncate(extra, MESSAGE_LIMIT) or None
        home = home_of(origin.channel)
        in_thread = home is not origin.channel
        message: discord.Message | None = None
        for attempt in range(ACK_ATTEMPTS):
            try:
                message = await self._send_ack(origin, home if in_thread else None, content, embed, view)
                break
            except discord.HTTPException as error:
                log.warning("acknowledgement of job %s not sent (attempt %d): %s", job.id, attempt + 1, error)
                if not _transient(error):
                    break
                await asyncio.sleep(0.5 * 2**attempt)
        if message is None:
            await self._plain_ack(origin, job, prefix)
            await self.scheduler.acknowledged(job.id, ack_id=None)
            return
        if in_thread:
            await self._point_to(origin, f"Job `{job.id}` is acknowledged in the channel, with its own thread: "
                                          f"{message.jump_url}")  # fmt: skip
        thread = await self._open_thread(message, job)
        replied_to_message = isinstance(origin, commands.Context) and origin.interaction is None and not in_thread
        await self.scheduler.acknowledged(
            job.id,
            ack_id=message.id,
            thread_id=thread.id if thread is not None else None,
            message_id=None if replied_to_message else message.id,  # a slash command or a form has no message
        )

    @staticmethod
    async def _send_ack(
        origin: commands.Context[Any] | discord.Interaction,
        home: Any,
        content: str | None,
        embed: discord.Embed,
        view: discord.ui.View,
    ) -> discord.Message:
        if home is not None:
            return await home.send(content=content, embed=embed, view=view, allowed_mentions=NO_PINGS)
        if isinstance(origin, commands.Context):
            return await origin.reply(
                content=content, embed=embed, view=view, allowed_mentions=NO_PINGS, mention_author=False
            )
        if origin.response.is_done():
            return await origin.followup.send(
                content=content or discord.utils.MISSING, embed=embed, view=view, allowed_mentions=NO_PINGS, wait=True
            )
        await origin.response.send_message(content=content, embed=embed, view=view, allowed_mentions=NO_PINGS)
        return await origin.original_response()

    @staticmethod
    async def _point_to(origin: commands.Context[Any] | discord.Interaction, text: str) -> None:
        try:
            if isinstance(origin, commands.Context):
                await origin.reply(text, allowed_mentions=NO_PINGS, mention_author=False)
            elif origin.response.is_done():
                await origin.followup.send(text, allowed_mentions=NO_PINGS)
            else:
                await origin.response.send_message(text, allowed_mentions=NO_PINGS)
        except discord.HTTPException as error:
            log.info("could not point to an acknowledgement: %s", error)

    async def acknowledge_sweep(self, message: discord.Message | None, jobs: list[Job]) -> None:
        """A sweep's jobs are acknowledged by ``message`` (its preview, or the approval's answer): one thread for
        the whole sweep under it, and every cell's story goes there."""
        sweep_id = jobs[0].sweep_id
        assert sweep_id is not None
        thread = None if message is None else await self._open_thread(message, jobs[0], name=f"sweep {sweep_id}")
        await self.scheduler.sweep_acknowledged(sweep_id, thread.id if thread is not None else None)

    async def acknowledge_approved(
        self,
        channel: Any,
        head: str,
        mention: discord.AllowedMentions,
        jobs: list[Job],
        text: str,
        *,
        nonce: str | None = None,
    ) -> None:
        """An approved request: its experiment acknowledged like any launch (with its own thread), or its sweep's
        jobs listed (with one thread for the sweep); the requester (only them) is mentioned."""
        home = home_of(channel)
        message: discord.Message | None = None
        try:
            if len(jobs) == 1 and jobs[0].sweep_id is None:
                job = jobs[0]
                ahead = await self.scheduler.jobs_ahead(job)
                view = discord.ui.View(timeout=None)
                view.add_item(CancelButton(job.id))
                embed = discord.Embed.from_dict(ack_embed(job, queued_ahead=ahead, prefix=self.prefix))
                message = await home.send(head + ".", embed=embed, view=view, allowed_mentions=mention, nonce=nonce)
            else:
                message = await home.send(
                    truncate(f"{head}. {text}", MESSAGE_LIMIT), allowed_mentions=mention, nonce=nonce
                )
        except discord.HTTPException as error:
            log.warning("could not acknowledge approved job(s) %s: %s", ", ".join(j.id for j in jobs), error)
        if jobs and jobs[0].sweep_id is not None:
            await self.acknowledge_sweep(message, jobs)
            return
        for job in jobs:
            thread = None if message is None else await self._open_thread(message, job)
            ack_id = message.id if message is not None else None
            await self.scheduler.acknowledged(
                job.id,
                ack_id=ack_id,
                thread_id=thread.id if thread is not None else None,
                message_id=job.message_id or ack_id,
            )

    async def _plain_ack(self, origin: commands.Context[Any] | discord.Interaction, job: Job, prefix: str) -> None:
        text = f"Job `{job.id}` is recorded ({job.state}). `{prefix}jobs` shows it; `{prefix}cancel {job.id}` stops it."
        try:
            if isinstance(origin, discord.Interaction):
                if origin.response.is_done():
                    await origin.followup.send(text, allowed_mentions=NO_PINGS)
                else:
                    await origin.response.send_message(text, allowed_mentions=NO_PINGS)
            elif origin.interaction is not None and origin.interaction.response.is_done():
                await origin.interaction.followup.send(text, allowed_mentions=NO_PINGS)
            else:
                await origin.send(text, allowed_mentions=NO_PINGS)
        except discord.HTTPException as error:
            log.error("could not tell anyone that job %s was recorded (%s); its end report will", job.id, error)

    async def _open_thread(
        self, message: discord.Message, job: Job, *, name: str | None = None
    ) -> discord.Thread | None:
        """A thread under the acknowledgement for the job's story, where the channel allows one (else None)."""
        channel = message.channel
        if not self.settings.job_threads or not isinstance(channel, discord.TextChannel):
            return None
        permissions = channel.permissions_for(channel.guild.me)
        if not (permissions.create_public_threads and permissions.send_messages_in_threads):
            log.info("no thread for job %s: no permission to create threads in #%s; replying instead", job.id, channel)
            return None
        name = truncate(name or f"{job.id} · {json.dumps(job.params, ensure_ascii=False)}", 100)
        try:
            return await message.create_thread(name=name, auto_archive_duration=1440)
        except discord.HTTPException as error:
            log.info("no thread for job %s (%s); replying instead", job.id, error)
            return None

    # --- sweeps queued just before a crash --------------------------------------------------------
    async def finish_previews(self, text: Callable[[list[Job]], str]) -> None:
        """A sweep recorded while the bot died before updating its preview: the preview says which jobs it
        queued now (after a restart), so that nobody queues it again by hand."""
        if not self.bot.is_ready():
            return
        for sweep_id, jobs in (await self.scheduler.unannounced_sweeps(SWEEP_PREVIEW_GRACE)).items():
            channel = self._channel(jobs[0])
            if channel is not None and hasattr(channel, "get_partial_message") and jobs[0].ack_id:
                content = truncate(text(jobs) + " (queued just before a restart)", MESSAGE_LIMIT)
                try:
                    await channel.get_partial_message(jobs[0].ack_id).edit(content=content, embed=None, view=None)
                except discord.HTTPException as error:
                    log.warning("could not update the preview of %s: %s", sweep_id, error)
            await self.scheduler.sweep_acknowledged(sweep_id)

    # --- end reports ----------------------------------------------------------------------------
    async def send_reports(self) -> None:
        if not self.bot.is_ready():
            return
        now = time.monotonic()
        due = [job for job in await self.scheduler.reports_due() if self._retry_after.get(job.id, 0.0) <= now]
        sending = asyncio.Semaphore(REPORTS_AT_ONCE)

        async def send(job: Job) -> None:
            async with sending:
                try:
                    await self._report(job)
                except NowhereToReport as error:
                    log.warning("end report of job %s waits: %s", job.id, error)
                    self._retry_after[job.id] = now + 5.0
                except discord.HTTPException as error:
                    failures = self._failures[job.id] = self._failures.get(job.id, 0) + 1
                    delay = 2.0 if _transient(error) else min(REPORT_RETRY_SECONDS, 5.0 * 2 ** (failures - 1))
                    log.warning("end report of job %s not accepted yet (%s); retrying in %.0fs", job.id, error, delay)
                    self._retry_after[job.id] = now + delay

        # Each job's report is its own: one slow to send delays no other (status edits wait for all of them).
        failed = [r for r in await asyncio.gather(*map(send, due), return_exceptions=True) if r is not None]
        if failed:
            raise failed[0]

    def _channel(self, job: Job) -> Any:
        channel = self.bot.get_channel(job.channel_id) if job.channel_id else None
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return find_channel(self.bot, self.settings)

    async def _thread(self, job: Job) -> discord.Thread | None:
        if not job.thread_id:
            return None
        thread = self.bot.get_channel(job.thread_id)
        if thread is None:
            try:
                thread = await self.bot.fetch_channel(job.thread_id)
            except discord.HTTPException:
                return None
        return thread if isinstance(thread, discord.Thread) else None

    async def _report(self, job: Job) -> None:
        channel = self._channel(job)
        if channel is None:
            raise NowhereToReport(f"channel {job.channel_id} of job {job.id} not found")
        run_url = await self._known_run_url(job)
        tail, _ = await asyncio.to_thread(tail_lines, Path(job.log_path), END_TAIL_LINES)
        now = utcnow()
        report = end_embed(
            job, log_tail=tail, run=None, run_url=run_url, metric=self._metric(job), now=now, prefix=self.prefix
        )
        embed = discord.Embed.from_dict(report)
        thread = await self._thread(job)
        message: discord.Message | None = None
        note = None
        if thread is not None:
            try:
                message = await thread.send(
                    embed=embed, view=self._edit_view(job), allowed_mentions=NO_PINGS, nonce=report_nonce(job)
                )
            except discord.HTTPException as error:
                if _transient(error):
                    raise
                log.warning("the thread of job %s refused its end report (%s); reporting in the channel", job.id, error)
                note = f"(I could not post in the job's thread: Discord said {error.status} {error.text})"
        elif job.thread_id:
            note = "(the job's thread is gone, so its end report is here)"
        if message is None:
            reference = None
            if job.message_id and isinstance(channel, discord.abc.GuildChannel):
                reference = discord.MessageReference(
                    message_id=job.message_id,
                    channel_id=channel.id,
                    guild_id=channel.guild.id,
                    fail_if_not_exists=False,
                )
            message = await channel.send(
                content=note,
                embed=embed,
                view=self._edit_view(job),
                reference=reference,
                allowed_mentions=NO_PINGS,
                nonce=report_nonce(job),
            )
        assert message is not None
        await self._finish_ack(channel, job, message)
        await self.scheduler.reported(job.id, message.id, report)
        self._last_status.pop(job.id, None)
        self._status_edited.pop(job.id, None)
        self._status_run.pop(job.id, None)
        self._retry_after.pop(job.id, None)
        self._failures.pop(job.id, None)
        if self.watcher_of(job) is not None:
            task = asyncio.create_task(self._complete(job, message, report, tail, now), name=f"report-{job.id}")
            self._completions.add(task)
            task.add_done_callback(self._completions.discard)

    async def _complete(
        self, job: Job, message: discord.Message, sent: dict[str, Any], tail: list[str], ended: dt.datetime
    ) -> None:
        """What W&B adds to a sent end report (the run's name and state, its link, the metric), by an edit when W&B
        answers: at most :data:`RUN_LOOKUPS_AT_ONCE` reports ask at once, none after :data:`RUN_LOOKUP_SECONDS`.
        Never fails: a slow or absent W&B leaves the report as it was sent."""
        watcher = self.watcher_of(job)
        if watcher is None:
            return
        try:
            async with asyncio.timeout(RUN_LOOKUP_SECONDS):
                async with self._lookups:
                    run = await watcher.fetch(job.wandb_run_id)
        except Exception as error:
            log.info("W&B run %s of job %s not available: %s", job.wandb_run_id, job.id, describe_error(error))
            return
        if run is None:
            return
        report = end_embed(
            job,
            log_tail=tail,
            run=run,
            run_url=run.url or self._url(job),
            metric=self._metric(job),
            now=ended,
            prefix=self.prefix,
        )
        if report == sent:
            return
        try:
            await message.edit(embed=discord.Embed.from_dict(report))
        except discord.HTTPException as error:
            log.info("could not add W&B's view of run %s to the end report of job %s: %s", run.id, job.id, error)

    async def close(self) -> None:
        """Stop completing end reports (the bot is going away)."""
        for task in list(self._completions):
            task.cancel()
        await asyncio.gather(*self._completions, return_exceptions=True)

    @staticmethod
    def _edit_view(job: Job) -> discord.ui.View:
        """The end report's "Rerun with edits" (a job id always fits the button's custom id)."""
        view = edit_view("job", job.id)
        assert view is not None
        return view

    async def _finish_ack(self, channel: Any, job: Job, report: discord.Message) -> None:
        """The acknowledgement tells the end too: final state, exit code, duration, a link to the report."""
        if not job.ack_id or not hasattr(channel, "get_partial_message"):
            return
        embed = final_ack_embed(job, report_url=report.jump_url, now=utcnow())
        try:
            await channel.get_partial_message(job.ack_id).edit(embed=discord.Embed.from_dict(embed), view=None)
        except discord.HTTPException as error:
            log.warning("could not mark the acknowledgement of job %s as ended: %s", job.id, error)

    async def _known_run_url(self, job: Job) -> str | None:
        """The link to the job's W&B run when a poll has seen the run (no W&B request: the report never waits)."""
        watcher = self.watcher_of(job)
        if watcher is None or not await watcher.knows(job.wandb_run_id):
            return None
        return self._url(job)

    def _url(self, job: Job) -> str | None:
        entity = job.entity or self.settings.entity
        return wandb_run_url(
            os.environ.get("WANDB_BASE_URL"), entity, job.project or self.settings.project, job.wandb_run_id
        )

    def _metric(self, job: Job) -> str:
        watcher = self.watcher_of(job)
        return watcher.rules.metric if watcher is not None else self.settings.metric

    # --- live status ----------------------------------------------------------------------------
    async def refresh_status(self) -> None:
        """Edit each running job's acknowledgement in place: state, elapsed time, W&B step and metrics. A job's status
        is edited every max(10 s, poll interval), and sooner (NEWS_SECONDS after its last edit) when a poll brought
        its W&B run's step or metrics anew: what W&B has is shown within a poll, whatever the phase of the edits."""
        now = time.monotonic()
        if not self.bot.is_ready() or now - self._status_refreshed < 1.0:
            return
        self._status_refreshed = now
        every = max(10.0, self.settings.poll_seconds)
        for job in await self.scheduler.jobs_in((JobState.RUNNING,)):
            watcher = self.watcher_of(job)
            latest = watcher.latest if watcher is not None else {}
            channel = self.bot.get_channel(job.channel_id) if job.channel_id else None
            if job.ack_id is None or not isinstance(channel, discord.TextChannel | discord.Thread):
                continue
            run = latest.get(job.wandb_run_id)
            shown = "" if run is None else json.dumps([run.step(), run.public_metrics()], sort_keys=True, default=str)
            since = now - self._status_edited.get(job.id, float("-inf"))
            news = shown != self._status_run.get(job.id, "")
            if since < every and not (news and since >= NEWS_SECONDS):
                continue
            embed = status_embed(job, run=run, metric=self._metric(job), now=utcnow(), prefix=self.prefix)
            key = json.dumps(embed, sort_keys=True, default=str)
            if self._last_status.get(job.id) == key:
                continue  # nothing new: no edit
            current = await self.scheduler.get(job.id)
            if current is None or current.state != JobState.RUNNING:
                continue  # it ended meanwhile: its end report edits the acknowledgement
            try:
                await channel.get_partial_message(job.ack_id).edit(embed=discord.Embed.from_dict(embed))
            except discord.HTTPException as error:
                log.info("could not update the status of job %s: %s", job.id, error)
                continue
            self._last_status[job.id] = key
            self._status_edited[job.id] = now
            self._status_run[job.id] = shown
