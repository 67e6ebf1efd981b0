"""Experiment launching: ``$experiment {json}`` runs the team's script with the hyperparameters.

A thin adapter over :class:`adjutant.launching.Launching` (every launch door and every action on a job, with the
rule of the job's own route) and :class:`adjutant.scheduler.Scheduler`: gather who asks and where, call the service
once, answer. The reply never waits for a backend. The ``supervise`` loop drives the scheduler's passes; the ``tell``
loop sends end reports and live status edits, outside any scheduler lock. The approval card, the launch forms and
the alert card's job buttons are composed helpers (:mod:`._approval_desk`, :mod:`._form_desk`,
:mod:`._alert_actions`); the persistent buttons find them through this cog, typed.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from adjutant._cog import (
    NO_PINGS,
    AdjutantCog,
    add_with_services,
    asker_of,
    checked_route,
    find_channel,
    member_may_see,
)
from adjutant.access import refusal
from adjutant.alerts import JOBS_OUTBOX
from adjutant.clock import utcnow
from adjutant.cogs import _alert_views
from adjutant.cogs._alert_actions import AlertActions
from adjutant.cogs._announcer import Announcer, Inbox, Refused
from adjutant.cogs._approval_desk import ApprovalDesk
from adjutant.cogs._approval_views import ApprovalButton
from adjutant.cogs._form_desk import FormDesk
from adjutant.cogs._job_story import JobStory
from adjutant.cogs._job_views import CancelButton, SweepConfirm
from adjutant.cogs._launch_form import EditButton
from adjutant.cogs._launch_replies import LaunchReplies
from adjutant.cogs._pager import send_pages
from adjutant.cogs.sweeps import Sweeps, read_config_file
from adjutant.job_render import jobs_pages, sweep_preview
from adjutant.jobs import ACTIVE, ENDED, Job, JobState, read_tail_bytes, tail_lines
from adjutant.launch_render import cancel_text, queued_text
from adjutant.launching import Asker, Launching, Queued, SearchPlan, SweepPlan
from adjutant.launching import Refused as NotLaunched
from adjutant.numbers import NumberError, parse_whole
from adjutant.render import MESSAGE_LIMIT, code_safe, truncate
from adjutant.scheduler import Scheduler
from adjutant.services import Services
from adjutant.settings import Settings

log = logging.getLogger(__name__)

LOG_ATTACHMENT_LIMIT = 8 * 1024 * 1024  # below Discord's default 10 MiB per file


class Experiments(AdjutantCog, name="Experiments"):
    """Launch, queue, cancel and follow training runs from chat."""

    services: Services

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services) -> None:
        super().__init__(bot, settings, services)
        self.scheduler: Scheduler = services.scheduler
        self.launching: Launching = services.launching
        self.story = JobStory(
            bot, settings, services.scheduler, lambda job: services.watcher_of(job.project, job.entity)
        )
        self.replies = LaunchReplies(settings, self.launching, self.story)
        #: The persistent buttons' handlers (found through this cog by type, never by a method's name).
        self.approval_desk = ApprovalDesk(self, self.launching, self.story)
        self.forms = FormDesk(self, self.launching, self.replies)
        self.alert_actions = AlertActions(self, self.launching, self.replies, services.runs)
        #: Alerts about jobs that W&B does not know about (log patterns) go out through their own outbox.
        self.alerts = Announcer(
            bot, services.runs, JOBS_OUTBOX, settings.metric, services.watcher, policy=self.alert_actions.policy
        )
        self._alerts_after = 0.0
        #: Direct messages and notes for one member, when the Runs cog (which delivers them too) is not loaded.
        self.inbox = Inbox(
            bot, services.runs, may_see=lambda user_id, project: member_may_see(bot, settings, user_id, project)
        )
        #: Right-click → Apps → Rerun on an end report or a run card.
        self.rerun_menu = app_commands.ContextMenu(name="Rerun", callback=self.forms.rerun_menu)
        if not any(route.launch_roles or route.launch_users for route in settings.routes):
            # Without a launch list only Manage Server (or Administrator) may launch: say so to Discord too, so
            # the slash forms are hidden from others by default (the server can still change it).
            launch_commands: list[Any] = [self.experiment, self.sweep, self.rerun, self.cancel]
            for command in launch_commands:
                if command.app_command is not None:
                    command.app_command.default_permissions = discord.Permissions(manage_guild=True)
            self.rerun_menu.default_permissions = discord.Permissions(manage_guild=True)

    # --- lifecycle ------------------------------------------------------------------------------
    async def cog_load(self) -> None:
        self.services.acquire()
        if self.settings.hparams_schema is not None:
            text = await asyncio.to_thread(self.settings.hparams_schema.read_text, encoding="utf-8")
            self.launching.schema = json.loads(text)
        self.bot.add_dynamic_items(CancelButton, ApprovalButton, EditButton)
        self.bot.tree.add_command(self.rerun_menu)
        _alert_views.register(self.bot)
        self.supervise.start()
        self.tell.start()

    async def cog_unload(self) -> None:
        self.alerts.stopping = True
        self.supervise.cancel()
        self.tell.cancel()
        self.bot.remove_dynamic_items(CancelButton, ApprovalButton, EditButton)
        self.bot.tree.remove_command(self.rerun_menu.name, type=self.rerun_menu.type)
        _alert_views.unregister(self.bot, self)
        await self.story.close()  # report edits still waiting for W&B: cancelled (the report itself is sent)
        await self.services.release()

    async def asker(self, origin: commands.Context[Any] | discord.Interaction) -> Asker:
        """Who asks and where (the channel's route, resolved once for the whole door: by cog_check for a command)."""
        route = checked_route(origin) if isinstance(origin, commands.Context) else None
        return await asker_of(self.bot, self.settings, origin, route or self.rule_for(origin.channel))

    # --- autocomplete ---------------------------------------------------------------------------
    async def _complete(
        self, interaction: discord.Interaction, current: str, states: tuple[str, ...] | None
    ) -> list[app_commands.Choice[str]]:
        asker = await self.asker(interaction)
        found = []
        for job in self.launching.visible(asker, await self.scheduler.recent(200)):
            if (states is None or job.state in states) and current.lower() in job.id:
                label = truncate(f"{job.id} · {job.state} · {json.dumps(job.params, ensure_ascii=False)}", 100)
                found.append(app_commands.Choice(name=label, value=job.id))
        return found[:25]

    async def complete_job(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await self._complete(interaction, current, None)

    async def complete_active_job(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._complete(interaction, current, (JobState.QUEUED, *ACTIVE))

    # --- launching ------------------------------------------------------------------------------
    @commands.hybrid_command(name="experiment")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(
        hyperparameters='a JSON object like {"epochs": 10}, or pairs like epochs=10 lr=0.001',
        gpus="GPUs for the job (default ADJUTANT_GPUS_PER_JOB)",
    )
    async def experiment(
        self, ctx: commands.Context[Any], *, hyperparameters: str = "", gpus: int | None = None
    ) -> None:
        """Launch the experiment script with hyperparameters: $experiment {"epochs": 10} or epochs=10 lr=0.001.

        Options before the hyperparameters: --gpus N, --time 2h.
        """
        if ctx.interaction is not None and not hyperparameters.strip():  # /experiment alone: the launch form
            await self.forms.open(ctx.interaction, "new", None)
            return
        outcome = await self.launching.experiment(await self.asker(ctx), hyperparameters, gpus)
        await self.replies.answer(ctx, outcome, prefix=self.command_prefix(ctx))

    @commands.hybrid_command(name="sweep")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(
        grid='a W&B sweep configuration (YAML or JSON), or a JSON object of lists, e.g. {"lr": [0.1, 0.01]}',
        gpus="GPUs for each job (default ADJUTANT_GPUS_PER_JOB)",
        file="a W&B sweep configuration file (.yaml, .yml or .json)",
    )
    async def sweep(
        self,
        ctx: commands.Context[Any],
        *,
        grid: str = "",
        gpus: int | None = None,
        file: discord.Attachment | None = None,
    ) -> None:
        """Run a W&B sweep configuration (YAML/JSON, or a file) or a grid: $sweep {"lr": [0.1, 0.01]}.

        Options before it: --parallel K, --seed N, --gpus N, --time 2h, --no-canary.
        """
        attachments = [file] if file is not None else list(ctx.message.attachments) if ctx.interaction is None else []
        asker = await self.asker(ctx)
        attached = None
        if attachments:
            refused = await self.launching.gate(asker, "sweep")  # rights first: nothing is fetched for a refusal
            if refused is not None:
                await self.replies.refuse(ctx, refused.text)
                return
            if ctx.interaction is not None:
                await ctx.defer()  # fetching the file may take seconds; Discord wants an answer within 3
            read = await read_config_file(attachments[0])
            if isinstance(read, NotLaunched):
                await self.replies.refuse(ctx, read.text)
                return
            attached = read
        plan = await self.launching.sweep(asker, grid, gpus, attached=attached)
        if isinstance(plan, SearchPlan):
            sweeps = self.bot.get_cog("Sweeps")
            if not isinstance(sweeps, Sweeps):
                await self.replies.refuse(
                    ctx, "Not queued: the Sweeps cog is not loaded, so W&B configurations cannot run."
                )
                return
            await sweeps.preview(ctx, plan)
            return
        if not isinstance(plan, SweepPlan):
            await self.replies.answer(ctx, plan, prefix=self.command_prefix(ctx))
            return
        await self._confirm_sweep(ctx, plan)

    async def _confirm_sweep(self, ctx: commands.Context[Any], plan: SweepPlan) -> None:
        """The preview with Queue them / Never mind: only the requester, while they may still launch."""
        queued_jobs: list[Job] = []

        async def may_launch_now(interaction: discord.Interaction) -> bool:
            clicker = await self.asker(interaction)
            if self.launching.may_launch(clicker, plan.route):
                return True
            refused = await self.launching.refuse(clicker, "sweep confirmation", refusal(plan.route))
            await interaction.response.send_message(refused.text, ephemeral=True)
            return False

        async def queue(interaction: discord.Interaction) -> str:
            preview_id = interaction.message.id if interaction.message is not None else None
            outcome = await self.launching.queue_sweep(plan, await self.asker(interaction), preview_id)
            if not isinstance(outcome, Queued):
                return outcome.text
            queued_jobs.extend(outcome.jobs)
            text = queued_text(outcome.jobs)
            if plan.canary and len(outcome.jobs) > 1:
                text += (
                    f"\n`{outcome.jobs[0].id}` runs first (the canary); the others start once it reaches step"
                    f" {self.settings.canary_steps} or runs {self.settings.canary_minutes:g} min without failing."
                )
            return text

        async def queued(interaction: discord.Interaction, text: str) -> None:
            if queued_jobs:  # the preview says so: one thread for the sweep, and reports may go out
                await self.story.acknowledge_sweep(interaction.message, queued_jobs)

        view = SweepConfirm(ctx.author.id, may_launch_now, queue, queued)
        preview = sweep_preview(plan.combos, cap=self.settings.max_sweep)
        view.message = await ctx.reply(
            plan.warning,
            embed=discord.Embed.from_dict(preview),
            view=view,
            allowed_mentions=NO_PINGS,
            mention_author=False,
        )

    @commands.hybrid_command(name="rerun")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(
        source="a job id or a W&B run id",
        overrides="changes, e.g. lr=0.01 or a JSON object",
        gpus="GPUs for the new job (default: the source job's)",
    )
    @app_commands.autocomplete(source=complete_job)
    async def rerun(
        self, ctx: commands.Context[Any], source: str, *, overrides: str = "", gpus: int | None = None
    ) -> None:
        """Launch again with a job's or W&B run's hyperparameters and changes: $rerun j4k2m9x lr=0.01.

        Options before the changes: --gpus N, --time 2h.
        """
        asker = await self.asker(ctx)
        async with ctx.typing():  # a W&B run's config may take W&B a moment (a slash command is deferred)
            outcome = await self.launching.rerun(asker, source, overrides, gpus)
        await self.replies.answer(ctx, outcome, prefix=self.command_prefix(ctx))

    # --- cancelling -----------------------------------------------------------------------------
    @commands.hybrid_command(name="cancel")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(job_id="the job to cancel")
    @app_commands.autocomplete(job_id=complete_active_job)
    async def cancel(self, ctx: commands.Context[Any], job_id: str) -> None:
        """Cancel a queued or running job: $cancel <job id>."""
        result = await self.launching.cancel(await self.asker(ctx), job_id)
        if isinstance(result, NotLaunched):
            await self.reply(ctx, result.text)
            return
        await self.reply(ctx, self._cancel_text(result, job_id, self.command_prefix(ctx)))

    async def cancel_from_button(self, interaction: discord.Interaction, job_id: str) -> None:
        """The Cancel button under an acknowledgement: the rule of the job's own route."""
        if not self.serves(interaction.guild):
            return  # not one of Adjutant's servers: nothing is answered
        result = await self.launching.cancel(await self.asker(interaction), job_id)
        if isinstance(result, NotLaunched):
            await interaction.response.send_message(result.text, ephemeral=True)
            return
        text = self._cancel_text(result, job_id, self.command_prefix())
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)

    def _cancel_text(self, result: Any, job_id: str, prefix: str) -> str:
        return cancel_text(result, job_id, prefix, grace_seconds=self.settings.cancel_grace_seconds)

    # --- looking at jobs ------------------------------------------------------------------------
    @commands.hybrid_command(name="jobs", aliases=["queue"])  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def jobs_command(self, ctx: commands.Context[Any]) -> None:
        """List running, queued and recently ended experiments (of the channels you can see)."""
        asker = await self.asker(ctx)
        active = self.launching.visible(asker, await self.scheduler.jobs_in(ACTIVE))
        queued = self.launching.visible(asker, await self.scheduler.jobs_in((JobState.QUEUED,), 500))
        recent = [j for j in self.launching.visible(asker, await self.scheduler.recent(30)) if j.state in ENDED][:5]
        await send_pages(ctx, jobs_pages(active, queued, recent, utcnow(), prefix=self.command_prefix(ctx)))

    @commands.hybrid_command(name="logs")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(job_id="the job", lines="how many lines from the end, 1 to 1000 (default 20)")
    @app_commands.autocomplete(job_id=complete_job)
    async def logs(self, ctx: commands.Context[Any], job_id: str, lines: str = "20") -> None:
        """Show the end of a job's log: $logs <job id> [lines]; a long log comes as a file."""
        try:
            count = parse_whole(str(lines), what="the number of lines", low=1, high=1000)
        except NumberError as error:
            await self.reply(ctx, str(error))
            return
        job = await self.launching.job_for(await self.asker(ctx), job_id)
        if job is None:
            prefix = self.command_prefix(ctx)
            await self.reply(ctx, f"No job `{code_safe(truncate(job_id, 32))}`. `{prefix}jobs` lists them.")
            return
        await self._send_log(ctx, job, count)

    async def _send_log(self, ctx: commands.Context[Any], job: Job, lines: int) -> None:
        path = Path(job.log_path)
        tail, size = await asyncio.to_thread(tail_lines, path, lines)
        if size == 0:
            await self.reply(ctx, f"Job `{job.id}` ({job.state}) has written no log yet.")
            return
        header = f"Last {len(tail)} line(s) of `{job.id}` ({job.state}):\n"
        block = "```\n" + code_safe("\n".join(tail)) + "\n```"
        if len(header) + len(block) <= MESSAGE_LIMIT:
            await self.reply(ctx, header + block)
            return
        data, size = await asyncio.to_thread(read_tail_bytes, path, LOG_ATTACHMENT_LIMIT)
        note = f"The log of `{job.id}` ({job.state}), {size:,} bytes"
        if size > len(data):
            note += f"; this file holds its last {len(data):,} bytes"
        await ctx.send(
            note + ".", file=discord.File(io.BytesIO(data), filename=f"{job.id}.log"), allowed_mentions=NO_PINGS
        )

    # --- loops ----------------------------------------------------------------------------------
    @tasks.loop(seconds=1)
    async def supervise(self) -> None:
        """Drive the scheduler: a pass every second (launches and job ends wake it sooner)."""
        try:
            await self.scheduler.run_pass()
        except Exception:
            log.exception("supervising jobs failed; retrying")

    @tasks.loop(seconds=0)
    async def tell(self) -> None:
        """Send what the scheduler has to tell: end reports, then live status edits (never under its lock)."""
        await self.scheduler.wait_for_change(1.0)
        try:
            if self.bot.is_ready():
                await self.approval_desk.finish_decisions()
            await self.story.finish_previews(queued_text)
            await self.story.send_reports()
            await self.story.refresh_status()
            await self.alert_actions.act_due()  # ADJUTANT_ALERT_POLICY's stops, at their deadline
        except Exception:
            log.exception("telling about jobs failed; retrying")
        await self._deliver_alerts()
        if self.bot.get_cog("Runs") is None:
            try:
                await self.inbox.deliver()
            except Exception:
                log.exception("delivering direct messages failed; retrying")

    async def _deliver_alerts(self) -> None:
        """Log-pattern alerts, as cards in each job's thread (else the channel)."""
        if time.monotonic() < self._alerts_after:
            return
        channel = find_channel(self.bot, self.settings)
        if channel is None:
            return
        try:
            await self.alerts.deliver_pending(channel)
        except Refused as error:
            self.alerts.refusals += 1
            self._alerts_after = time.monotonic() + min(300.0, 5.0 * 2 ** (self.alerts.refusals - 1))
            if self.alerts.refusals == 1:
                log.error("log alerts wait in the outbox: %s (retrying, backing off up to 5 min)", error)
        except Exception:
            log.exception("delivering log alerts failed; retrying")

    @supervise.before_loop
    @tell.before_loop
    async def _before_loops(self) -> None:
        await self.bot.wait_until_ready()

    @supervise.error
    @tell.error
    async def _loop_died(self, error: BaseException) -> None:
        log.critical("a job loop stopped", exc_info=error)


async def setup(bot: commands.Bot) -> None:
    """Load the experiment launching cog alone."""
    await add_with_services(bot, __name__, Experiments)
