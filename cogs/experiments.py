"""Experiment launching: ``$experiment {json}`` runs the team's script with the hyperparameters.

A thin adapter over :class:`adjutant.scheduler.Scheduler`: parse, check who may, record the job,
answer, then let the scheduler start it. The reply never waits for a backend. The ``supervise`` loop
drives the scheduler's passes; the ``tell`` loop sends end reports and live status edits, outside any
scheduler lock.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from adjutant._cog import NO_PINGS, AdjutantCog, add_with_services, find_channel
from adjutant.access import may_approve, may_request, quota_exempt, refusal
from adjutant.admission import Admission, Request, Verdict, admit
from adjutant.alerts import JOBS_OUTBOX
from adjutant.approvals import Approval, ApprovalState
from adjutant.cogs import _alert_views
from adjutant.cogs._announcer import Announcer, Inbox, Refused
from adjutant.cogs._approval_views import ApprovalButton, approval_view
from adjutant.cogs._job_story import JobStory
from adjutant.cogs._job_views import CancelButton, SweepConfirm
from adjutant.cogs._launch_form import EditAgain, EditButton, LaunchForm
from adjutant.cogs._pager import send_pages
from adjutant.forms import apply_form, form_keys
from adjutant.hparams import (
    HParamsError,
    LaunchOptions,
    diff,
    expand_sweep,
    parse_hyperparameters,
    sweep_size,
    take_launch_options,
    to_argument,
    validate,
)
from adjutant.job_render import ack_embed, jobs_pages, sweep_preview
from adjutant.jobs import ACTIVE, ENDED, Job, JobRequest, JobState, read_tail_bytes, tail_lines, utcnow
from adjutant.render import MESSAGE_LIMIT, code_safe, plain, truncate
from adjutant.scheduler import CancelOutcome, CancelResult, Scheduler
from adjutant.services import Services
from adjutant.settings import Settings
from adjutant.usage_render import approval_card

log = logging.getLogger(__name__)

LOG_ATTACHMENT_LIMIT = 8 * 1024 * 1024  # below Discord's default 10 MiB per file


def queued_text(jobs: list[Job]) -> str:
    """What a sweep's preview says once its jobs are queued."""
    ids = ", ".join(f"`{j.id}`" for j in jobs)
    return f"Queued {len(jobs)} experiment(s) of sweep `{jobs[0].sweep_id}`: {ids}"


class Experiments(AdjutantCog, name="Experiments"):
    """Launch, queue, cancel and follow training runs from chat."""

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services) -> None:
        super().__init__(bot, settings)
        self.services = services
        self.scheduler: Scheduler = services.scheduler
        self.story = JobStory(
            bot, settings, services.scheduler, lambda job: services.watcher_of(job.project, job.entity)
        )
        #: Alerts about jobs that W&B does not know about (log patterns) go out through their own outbox.
        self.alerts = Announcer(bot, services.runs, JOBS_OUTBOX, settings.metric, services.watcher)
        self._alerts_after = 0.0
        #: Direct messages and notes for one member, when the Runs cog (which delivers them too) is not loaded.
        self.inbox = Inbox(bot, services.runs)
        self.schema: dict[str, Any] | None = None
        #: Right-click → Apps → Rerun on an end report or a run card.
        self.rerun_menu = app_commands.ContextMenu(name="Rerun", callback=self._rerun_menu)
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
            self.schema = json.loads(text)
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
        await self.services.release()

    # --- who may launch -------------------------------------------------------------------------
    async def _refuse(self, ctx: commands.Context[Any], action: str) -> None:
        log.warning(
            "refused %s by %s (%d) in #%s: %r",
            action,
            ctx.author,
            ctx.author.id,
            ctx.channel,
            truncate(ctx.message.content, 300),
        )
        await self.audit("refused", ctx.author, ctx.channel, detail=f"{action}: {truncate(ctx.message.content, 200)}")
        await self.reply(ctx, refusal(self.rule_for(ctx.channel)))

    def launching_off(self, channel: Any) -> str | None:
        """Why launching is off in ``channel`` (and where it is on), or None when it is on there."""
        route = self.rule_for(channel)
        if route.experiment_script is not None:
            return None
        elsewhere = [r.channel_label() for r in self.routes if r.experiment_script is not None]
        if elsewhere:
            return f"Launching is off in this channel; it is on in {', '.join(elsewhere)}."
        return "Launching is off: this bot has no ADJUTANT_EXPERIMENT_SCRIPT (run_experiment_script)."

    async def _launch_precheck(self, ctx: commands.Context[Any], action: str) -> bool:
        off = self.launching_off(ctx.channel)
        if off is not None:
            await self.reply(ctx, off)
            return False
        if not await self.authorized(ctx.author, ctx.channel) and not may_request(ctx.author, self.settings):
            await self._refuse(ctx, action)
            return False
        return True

    # --- GPUs, quota, approval ------------------------------------------------------------------
    def _options(
        self, ctx: commands.Context[Any], gpus: int | None, text: str, *, sweep: bool = False
    ) -> tuple[LaunchOptions, str]:
        """``--gpus N`` / ``--time D`` (and a sweep's ``--no-canary``) before the hyperparameters, or the slash
        command's ``gpus`` option (a keyword-only parameter after the text: the ``$`` form never fills it, its text
        takes the rest of the message); the defaults (ADJUTANT_GPUS_PER_JOB, ADJUTANT_TIME_LIMIT) filled in."""
        options, rest = take_launch_options(text, sweep=sweep)
        if gpus is not None:
            if not 0 <= gpus <= 64:
                raise HParamsError("gpus must be between 0 and 64")
            options = LaunchOptions(gpus, options.time_limit, options.canary)
        limit = options.time_limit
        if limit is None and self.settings.time_limit is not None:
            limit = self.settings.time_limit * 60
        count = options.gpus if options.gpus is not None else self.settings.job_gpus
        return LaunchOptions(count, limit, options.canary), rest

    async def _admit(self, user: Any, channel: Any, gpus: int, cells: int) -> Admission:
        """Launch now, wait for an approver, or refuse (see :func:`adjutant.admission.admit`)."""
        quota = None
        if self.settings.gpu_hours_per_week is not None and not quota_exempt(user):
            quota = await asyncio.to_thread(self.services.quota_of, user.id)
        pool = self.scheduler.gpus
        facts = Request(
            gpus=gpus,
            cells=cells,
            may_launch=await self.authorized(user, channel),
            may_request=may_request(user, self.settings),
            pool_size=len(pool) if pool is not None and self.settings.launcher == "local" else None,
            quota=quota[0] if quota else None,
            quota_frees_at=quota[1] if quota else None,
        )
        return admit(facts, approval_gpus=self.settings.approval_gpus, approval_jobs=self.settings.approval_jobs)

    async def _refused(self, ctx: commands.Context[Any], admission: Admission, action: str) -> None:
        await self.audit("refused", ctx.author, ctx.channel, detail=f"{action}: {admission.text}")
        await self.reply(ctx, admission.text)

    async def _launch_one(
        self,
        where: commands.Context[Any] | discord.Interaction,
        request: JobRequest,
        admission: Admission,
        *,
        detail: str,
        note: str,
        ack: Callable[[Job, str], Awaitable[None]],
    ) -> None:
        """After the admission said launch or ask: the approval card, or the job recorded (audited) and acknowledged
        with ``note`` (and the quota warning)."""
        if admission.verdict == Verdict.APPROVAL:
            await self._ask_approval(where, "experiment", [request], request.gpus, admission)
            return
        job = await self.scheduler.enqueue(request)
        user = where.author if isinstance(where, commands.Context) else where.user
        await self.audit("launch", user, where.channel, target=job.id, detail=detail)
        if admission.warning:
            note = f"{note}\n{admission.warning}".strip()
        await ack(job, note)

    async def _ask_approval(
        self,
        ctx: commands.Context[Any] | discord.Interaction,
        kind: str,
        requests: list[JobRequest],
        gpus: int,
        admission: Admission,
        *,
        canary: bool = False,
    ) -> None:
        """Record the request (no job yet) and post its card with Approve / Reject (a reply to the command, or the
        answer to a form)."""
        approval = await asyncio.to_thread(
            self.services.approvals.add, kind, requests, gpus=gpus, why=admission.text, canary=canary
        )
        user = ctx.author if isinstance(ctx, commands.Context) else ctx.user
        detail = f"{kind}, {len(requests)} job(s)"
        await self.audit("request", user, ctx.channel, target=f"#{approval.id}", detail=detail)
        text = f"Request #{approval.id} waits for an approver: nothing runs until one approves it."
        if admission.warning:
            text += "\n" + admission.warning
        card = {
            "embed": discord.Embed.from_dict(approval_card(approval)),
            "view": approval_view(approval.id),
            "allowed_mentions": NO_PINGS,
        }
        if isinstance(ctx, commands.Context):
            message = await ctx.reply(text, mention_author=False, **card)
        else:
            await ctx.response.send_message(text, **card)
            message = await ctx.original_response()
        await asyncio.to_thread(self.services.approvals.set_card, approval.id, message.id)

    async def approval_button(self, interaction: discord.Interaction, action: str, approval_id: int) -> None:
        """Approve (queue the request's jobs) or Reject: approvers only, never the requester; once."""
        if not self.serves(interaction.guild):
            return
        approval = await asyncio.to_thread(self.services.approvals.get, approval_id)
        if approval is None:
            await interaction.response.send_message("That request is no longer known.", ephemeral=True)
            return
        user = interaction.user
        if user.id == approval.requested_by_id:
            await self.audit("refused", user, interaction.channel, target=f"#{approval_id}", detail=f"{action} own")
            await interaction.response.send_message(
                "You cannot approve or reject your own request; another approver must.", ephemeral=True
            )
            return
        try:
            is_owner = await self.bot.is_owner(user)
        except discord.HTTPException:
            is_owner = False
        if not may_approve(user, self.settings, is_owner=is_owner):
            await self.audit("refused", user, interaction.channel, target=f"#{approval_id}", detail=action)
            who = (
                "members with the role(s) " + ", ".join(self.settings.approver_roles)
                if self.settings.approver_roles
                else "members with the Administrator or Manage Server permission"
            )
            await interaction.response.send_message(f"Only {who} may decide launch requests.", ephemeral=True)
            return
        decision = await asyncio.to_thread(
            self.services.approvals.decide, approval_id, action == "approve", user.id, str(user), self.scheduler.log_dir
        )
        if decision is None:
            await interaction.response.send_message("That request is no longer known.", ephemeral=True)
            return
        done = decision.approval
        if not decision.changed:
            by = plain(truncate(done.decided_by or "?", 64))
            await interaction.response.send_message(
                f"Request #{done.id} was already {done.state} by {by}.", ephemeral=True
            )
            return
        self.scheduler.wake()
        await self.audit(
            "approve" if done.state == ApprovalState.APPROVED else "reject",
            user,
            interaction.channel,
            target=f"#{done.id}",
            detail=", ".join(j.id for j in decision.jobs) or None,
        )
        await interaction.response.edit_message(embed=discord.Embed.from_dict(approval_card(done)), view=None)
        await self._tell_requester(interaction, done, decision.jobs)

    async def _tell_requester(self, interaction: discord.Interaction, approval: Approval, jobs: list[Job]) -> None:
        """The outcome, mentioning the requester (only them); an approved request's message acknowledges its jobs."""
        who = plain(truncate(str(interaction.user), 64))
        mention = discord.AllowedMentions(users=[discord.Object(approval.requested_by_id)], everyone=False, roles=False)
        head = f"<@{approval.requested_by_id}>, your request #{approval.id} was {approval.state} by {who}"
        channel: Any = interaction.channel
        message = None
        try:
            if approval.state == ApprovalState.REJECTED:
                await channel.send(head + "; nothing was launched.", allowed_mentions=mention)
                return
            if approval.kind == "experiment" and len(jobs) == 1:
                job = jobs[0]
                ahead = await self.scheduler.jobs_ahead(job)
                embed = ack_embed(job, queued_ahead=ahead, prefix=self.command_prefix())
                view = discord.ui.View(timeout=None)
                view.add_item(CancelButton(job.id))
                message = await channel.send(
                    head + ".", embed=discord.Embed.from_dict(embed), view=view, allowed_mentions=mention
                )
            else:
                message = await channel.send(
                    truncate(head + ". " + queued_text(jobs), MESSAGE_LIMIT), allowed_mentions=mention
                )
        except discord.HTTPException as error:
            log.warning("could not tell the outcome of request #%d: %s", approval.id, error)
        finally:
            if approval.state == ApprovalState.APPROVED:
                ack_id = message.id if message is not None else None
                for job in jobs:
                    await self.scheduler.acknowledged(job.id, ack_id=ack_id, message_id=job.message_id or ack_id)

    def _prepare(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Schema defaults filled in and checked; what reaches the script is always valid JSON."""
        prepared, defaults = (params, {}) if self.schema is None else validate(params, self.schema)
        try:
            to_argument(prepared)
        except ValueError as error:
            raise HParamsError(f"cannot be passed to the script as JSON: {error}") from None
        return prepared, defaults

    def _request(self, params: dict[str, Any], ctx: commands.Context[Any], **extra: Any) -> JobRequest:
        return self._request_in(
            ctx.channel, params, ctx.author, ctx.message.id if ctx.interaction is None else None, **extra
        )

    def _request_in(
        self, channel: Any, params: dict[str, Any], author: Any, message_id: int | None, **extra: Any
    ) -> JobRequest:
        """A launch in ``channel``: its script, its project (the run lands where the channel looks)."""
        route = self.rule_for(channel)
        assert route.experiment_script is not None
        return JobRequest(
            params=params,
            script=str(route.experiment_script),
            requested_by_id=author.id,
            requested_by=str(author),
            channel_id=channel.id,
            message_id=message_id,
            backend=self.settings.launcher,
            project=route.project,
            entity=route.entity,
            **extra,
        )

    # --- autocomplete ---------------------------------------------------------------------------
    async def _complete(self, current: str, states: tuple[str, ...] | None) -> list[app_commands.Choice[str]]:
        found = []
        for job in await self.scheduler.recent(200):
            if (states is None or job.state in states) and current.lower() in job.id:
                label = truncate(f"{job.id} · {job.state} · {json.dumps(job.params, ensure_ascii=False)}", 100)
                found.append(app_commands.Choice(name=label, value=job.id))
        return found[:25]

    async def complete_job(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await self._complete(current, None)

    async def complete_active_job(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._complete(current, (JobState.QUEUED, *ACTIVE))

    # --- launching ------------------------------------------------------------------------------
    @commands.hybrid_command(name="experiment")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(
        hyperparameters='a JSON object like {"epochs": 10}, or pairs like epochs=10 lr=0.001',
        gpus="GPUs for the job (default ADJUTANT_GPUS_PER_JOB)",
    )
    async def experiment(
        self, ctx: commands.Context[Any], *, hyperparameters: str = "", gpus: int | None = None
    ) -> None:
        """Launch the experiment script: $experiment [--gpus N] [--time 2h] {"epochs": 10} (or epochs=10 lr=0.001)."""
        if ctx.interaction is not None and not hyperparameters.strip():  # /experiment alone: the launch form
            await self.open_form(ctx.interaction, "new", None)
            return
        if not await self._launch_precheck(ctx, "launch"):
            return
        try:
            options, text = self._options(ctx, gpus, hyperparameters)
            params, defaults = self._prepare(parse_hyperparameters(text))
        except HParamsError as error:
            await self.reply(ctx, f"Not launched: {error}")
            return
        assert options.gpus is not None
        admission = await self._admit(ctx.author, ctx.channel, options.gpus, 1)
        if admission.verdict == Verdict.REFUSED:
            await self._refused(ctx, admission, "launch")
            return
        request = self._request(params, ctx, gpus=options.gpus, time_limit=options.time_limit)

        async def ack(job: Job, note: str) -> None:
            await self.story.acknowledge(ctx, job, defaults, prefix=self.command_prefix(ctx), extra=note)

        await self._launch_one(ctx, request, admission, detail=to_argument(params), note="", ack=ack)

    @commands.hybrid_command(name="sweep")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(
        grid='a JSON object whose lists are the values to try, e.g. {"lr": [0.1, 0.01]}',
        gpus="GPUs for each job (default ADJUTANT_GPUS_PER_JOB)",
    )
    async def sweep(self, ctx: commands.Context[Any], *, grid: str = "", gpus: int | None = None) -> None:
        """Queue one experiment per combination: $sweep [--gpus N] [--no-canary] {"lr": [0.1, 0.01], "bs": [32, 64]}."""
        if not await self._launch_precheck(ctx, "sweep"):
            return
        try:
            options, grid = self._options(ctx, gpus, grid, sweep=True)
            canary = self.settings.canary_steps > 0 and options.canary
            parsed = parse_hyperparameters(grid)
            size = sweep_size(parsed)
            if size > self.settings.max_sweep:
                raise HParamsError(
                    f"that sweep has {size} combinations; the limit is {self.settings.max_sweep} (ADJUTANT_MAX_SWEEP)"
                )
            combos = [self._prepare(c)[0] for c in expand_sweep(parsed)]
        except HParamsError as error:
            await self.reply(ctx, f"Not queued: {error}")
            return
        per_job = options.gpus or 0
        admission = await self._admit(ctx.author, ctx.channel, per_job, len(combos))
        if admission.verdict == Verdict.REFUSED:
            await self._refused(ctx, admission, "sweep")
            return
        sweep_id = "sweep-" + secrets.token_hex(3)
        extra: dict[str, Any] = {"sweep_id": sweep_id, "gpus": per_job, "time_limit": options.time_limit}
        if admission.verdict == Verdict.APPROVAL:
            requests = [self._request(c, ctx, **extra) for c in combos]
            await self._ask_approval(ctx, "sweep", requests, per_job, admission, canary=canary)
            return

        async def may_launch_now(interaction: discord.Interaction) -> bool:
            if await self.authorized(interaction.user, interaction.channel):
                return True
            log.warning("refused sweep confirmation by %s (%d): rights gone", interaction.user, interaction.user.id)
            await interaction.response.send_message(refusal(self.rule_for(interaction.channel)), ephemeral=True)
            return False

        async def queue(interaction: discord.Interaction) -> str:
            preview_id = interaction.message.id if interaction.message is not None else None
            requests = [self._request(c, ctx, ack_id=preview_id, **extra) for c in combos]
            jobs = await self.scheduler.enqueue_many(requests, canary=canary)  # one transaction: all or none
            await self.audit(
                "launch", interaction.user, interaction.channel, target=sweep_id, detail=f"{len(jobs)} jobs"
            )
            text = queued_text(jobs)
            if canary and len(jobs) > 1:
                text += (
                    f"\n`{jobs[0].id}` runs first (the canary); the others start once it reaches step"
                    f" {self.settings.canary_steps} or runs {self.settings.canary_minutes:g} min without failing."
                )
            return text

        async def queued(interaction: discord.Interaction, text: str) -> None:
            await self.scheduler.sweep_acknowledged(sweep_id)  # the preview says so: reports may go out

        view = SweepConfirm(ctx.author.id, may_launch_now, queue, queued)
        preview = sweep_preview(combos, cap=self.settings.max_sweep)
        view.message = await ctx.reply(
            admission.warning,
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
        """Launch again with a job's (or W&B run's) hyperparameters and overrides: $rerun j4k2m9x [--gpus N] lr=0.01."""
        if not await self._launch_precheck(ctx, "rerun"):
            return
        try:
            asked, overrides = take_launch_options(overrides)
            if gpus is not None:
                if not 0 <= gpus <= 64:
                    raise HParamsError("gpus must be between 0 and 64")
                asked = LaunchOptions(gpus, asked.time_limit, asked.canary)
            changes = parse_hyperparameters(overrides, allow_empty=True)
        except HParamsError as error:
            await self.reply(ctx, f"Not launched: {error}")
            return
        job = await self.scheduler.get(source)
        if job is not None:
            base, origin = job.params, f"job `{job.id}`"
        else:
            route = self.rule_for(ctx.channel)
            watcher = self.services.watchers.get(route.project_key or "") or self.services.watcher
            if watcher is None:
                await self.reply(ctx, f"No job `{code_safe(truncate(source, 64))}` (and W&B reporting is off).")
                return
            ok, run = await self.ask_wandb(ctx, watcher, watcher.source.find, source)
            if not ok:
                return
            if run is None:
                await self.reply(ctx, f"No job or W&B run `{code_safe(truncate(source, 64))}`.")
                return
            base, origin = dict(run.public_config()), f"W&B run `{code_safe(run.id)}`"
        try:
            params, defaults = self._prepare(parse_hyperparameters(json.dumps({**base, **changes})))
        except (HParamsError, ValueError) as error:
            await self.reply(ctx, f"Not launched: {error}")
            return
        lines = diff(base, params)
        changed = "\n".join(lines) if lines else "(no changes)"
        note = f"Rerun of {origin}:\n```diff\n{code_safe(truncate(changed, 1500))}\n```"
        gpus = asked.gpus if asked.gpus is not None else job.gpus if job is not None else self.settings.job_gpus
        limit = asked.time_limit or (job.time_limit if job is not None else None)
        if limit is None and self.settings.time_limit is not None:
            limit = self.settings.time_limit * 60
        admission = await self._admit(ctx.author, ctx.channel, gpus, 1)
        if admission.verdict == Verdict.REFUSED:
            await self._refused(ctx, admission, "rerun")
            return
        request = self._request(params, ctx, gpus=gpus, time_limit=limit)

        async def ack(job: Job, text: str) -> None:
            await self.story.acknowledge(ctx, job, defaults, prefix=self.command_prefix(ctx), extra=text)

        await self._launch_one(ctx, request, admission, detail=f"rerun of {origin}", note=note, ack=ack)

    # --- cancelling -----------------------------------------------------------------------------
    def _cancel_text(self, result: CancelResult, job_id: str, prefix: str) -> str:
        job = result.job
        if result.outcome == CancelOutcome.UNKNOWN or job is None:
            return f"No job `{code_safe(truncate(job_id, 32))}`. `{prefix}jobs` lists them."
        if result.outcome == CancelOutcome.DEQUEUED:
            return f"Removed job `{job.id}` from the queue."
        if result.outcome == CancelOutcome.NOT_YET:
            return f"Could not cancel job `{job.id}` yet: {result.detail}. I will keep trying."
        if result.outcome == CancelOutcome.STOPPING:
            if job.backend == "slurm":
                return f"Stopping job `{job.id}`: scancel sent to Slurm job {job.external_id}."
            if job.backend == "ray":
                return f"Stopping job `{job.id}`: Ray was asked to stop it (SIGTERM, then SIGKILL from Ray)."
            grace = self.settings.cancel_grace_seconds
            return f"Stopping job `{job.id}`: SIGTERM sent, SIGKILL in {grace:g}s if it is still running."
        if result.outcome == CancelOutcome.ALREADY_CANCELLING:
            return f"Job `{job.id}` is already being cancelled."
        return f"Job `{job.id}` already ended ({job.state})."

    @commands.hybrid_command(name="cancel")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(job_id="the job to cancel")
    @app_commands.autocomplete(job_id=complete_active_job)
    async def cancel(self, ctx: commands.Context[Any], job_id: str) -> None:
        """Cancel a queued or running job: $cancel <job id>."""
        if not await self.authorized(ctx.author, ctx.channel):
            await self._refuse(ctx, "cancel")
            return
        key = job_id.strip().lower()
        result = await self.scheduler.cancel(key, str(ctx.author))
        await self.audit("cancel", ctx.author, ctx.channel, target=key[:32], detail=result.outcome.value)
        await self.reply(ctx, self._cancel_text(result, key, self.command_prefix(ctx)))

    async def cancel_from_button(self, interaction: discord.Interaction, job_id: str) -> None:
        if not self.serves(interaction.guild):
            return  # not one of Adjutant's servers: nothing is answered
        if not await self.authorized(interaction.user, interaction.channel):
            log.warning("refused cancel button for %s by %s (%d)", job_id, interaction.user, interaction.user.id)
            await self.audit("refused", interaction.user, interaction.channel, target=job_id, detail="cancel button")
            await interaction.response.send_message(refusal(self.rule_for(interaction.channel)), ephemeral=True)
            return
        result = await self.scheduler.cancel(job_id, str(interaction.user))
        await self.audit("cancel", interaction.user, interaction.channel, target=job_id, detail=result.outcome.value)
        text = self._cancel_text(result, job_id, self.command_prefix())
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)

    # --- the alert card's buttons ---------------------------------------------------------------
    async def alert_button(self, interaction: discord.Interaction, action: str, alert_id: int) -> None:
        """Stop (cancel the alert's job), Rerun (its hyperparameters) or Mute 1 h; rights checked at the click."""
        if action == "mute":
            await self.mute_alert(interaction, self.services.runs, alert_id)
            return
        if not await self.button_allowed(interaction, action):
            return
        alert = await asyncio.to_thread(self.services.runs.alert, alert_id)
        if alert is None:
            await interaction.response.send_message("That alert is no longer known.", ephemeral=True)
            return
        job = await self.scheduler.get(alert.job_id) if alert.job_id else None
        if action in ("resume", "drop"):
            await self._decide_sweep(interaction, job, action)
            return
        if action == "canary":
            if job is None or not await self.scheduler.retry_canary(job):
                await interaction.response.send_message("That canary is not waiting for a retry.", ephemeral=True)
                return
            who = plain(truncate(str(interaction.user), 64))
            text = f"Canary `{job.id}` of sweep `{job.sweep_id}` runs again (attempt {job.attempt + 1}), by {who}."
            await interaction.response.send_message(text, allowed_mentions=NO_PINGS)
            return
        if action == "stop":
            if job is None:
                await interaction.response.send_message("Only jobs Adjutant launched can be stopped.", ephemeral=True)
                return
            result = await self.scheduler.cancel(job.id, str(interaction.user))
            await self.audit("cancel", interaction.user, interaction.channel, target=job.id, detail="alert card")
            text = self._cancel_text(result, job.id, self.command_prefix())
            await interaction.response.send_message(text, allowed_mentions=NO_PINGS)
            return
        await self._rerun_from_alert(interaction, job, alert.params)

    async def _decide_sweep(self, interaction: discord.Interaction, job: Job | None, action: str) -> None:
        if job is None or job.sweep_id is None:
            await interaction.response.send_message("That sweep is no longer known.", ephemeral=True)
            return
        decision = "resumed" if action == "resume" else "dropped"
        before, changed = await self.scheduler.decide_sweep(job.sweep_id, decision, str(interaction.user))
        await self.audit("sweep decided", interaction.user, interaction.channel, target=job.sweep_id, detail=decision)
        if before != "held":
            await interaction.response.send_message(f"Sweep `{job.sweep_id}` was already {before}.", ephemeral=True)
            return
        who = plain(truncate(str(interaction.user), 64))
        verb = "started again" if decision == "resumed" else "cancelled"
        text = f"Sweep `{job.sweep_id}` {decision} by {who}: {changed} queued cell(s) {verb}."
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)

    async def _rerun_from_alert(
        self, interaction: discord.Interaction, job: Job | None, params: dict[str, Any] | None
    ) -> None:
        off = self.launching_off(interaction.channel)
        if off is not None:
            await interaction.response.send_message(off, ephemeral=True)
            return
        base = job.params if job is not None else params
        if base is None:
            await interaction.response.send_message("No hyperparameters are known for this run.", ephemeral=True)
            return
        try:
            prepared, defaults = self._prepare(parse_hyperparameters(json.dumps(base)))
        except (HParamsError, ValueError) as error:
            await interaction.response.send_message(f"Not launched: {error}", ephemeral=True)
            return
        gpus = job.gpus if job is not None else self.settings.job_gpus
        admission = await self._admit(interaction.user, interaction.channel, gpus, 1)
        if admission.verdict != Verdict.LAUNCH:
            text = (
                admission.text if admission.verdict == Verdict.REFUSED else "This rerun needs an approver: use $rerun."
            )
            await interaction.response.send_message(text, ephemeral=True)
            return
        limit = job.time_limit if job is not None else None
        request = self._request_in(interaction.channel, prepared, interaction.user, None, gpus=gpus, time_limit=limit)
        new_job = await self.scheduler.enqueue(request)
        await self.audit("launch", interaction.user, interaction.channel, target=new_job.id, detail="rerun from alert")
        origin = f"job `{job.id}`" if job is not None else "the alert's run"
        await self._ack_interaction(interaction, new_job, defaults, f"Rerun of {origin} with the same hyperparameters.")

    async def _ack_interaction(
        self, interaction: discord.Interaction, job: Job, defaults: dict[str, Any], note: str
    ) -> None:
        """Answer a launch made from a button or a form: the acknowledgement (with Cancel) is the answer itself."""
        ahead = await self.scheduler.jobs_ahead(job)
        embed = ack_embed(job, queued_ahead=ahead, defaults=defaults, prefix=self.command_prefix())
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(job.id))
        await interaction.response.send_message(
            truncate(note, MESSAGE_LIMIT), embed=discord.Embed.from_dict(embed), view=view, allowed_mentions=NO_PINGS
        )
        ack_id = None
        try:
            ack_id = (await interaction.original_response()).id
        except discord.HTTPException as error:
            log.warning("could not read back the acknowledgement of %s: %s", job.id, error)
        await self.scheduler.acknowledged(job.id, ack_id=ack_id, message_id=ack_id)

    # --- launch forms -------------------------------------------------------------------------------
    async def open_form(self, interaction: discord.Interaction, kind: str, source_id: str | None) -> None:
        """Open the launch form (a modal) prefilled from a job, a W&B run, or (``new``) the member's last job."""
        if not self.serves(interaction.guild):
            return
        off = self.launching_off(interaction.channel)
        if off is not None:
            await interaction.response.send_message(off, ephemeral=True)
            return
        user = interaction.user
        if not await self.authorized(user, interaction.channel) and not may_request(user, self.settings):
            await self.audit("refused", user, interaction.channel, detail="launch form")
            await interaction.response.send_message(refusal(self.rule_for(interaction.channel)), ephemeral=True)
            return
        source = await self._form_source(interaction, kind, source_id)
        if source is None:
            return
        params, origin, gpus, limit = source
        history = [job.params for job in await self.scheduler.recent(50)]
        keys = form_keys(params, history, self.schema)
        title = "Launch an experiment" if kind == "new" else f"Rerun {origin.replace('`', '')} with edits"
        await interaction.response.send_modal(self._form(title, params, keys, origin, gpus, limit))

    def _form(
        self,
        title: str,
        source: dict[str, Any],
        keys: list[str],
        origin: str,
        gpus: int,
        limit: float | None,
        typed: tuple[dict[str, str], str] | None = None,
    ) -> LaunchForm:
        async def submit(interaction: discord.Interaction, fields: dict[str, str], paragraph: str) -> None:
            try:
                params = apply_form(source, keys, fields, paragraph)
                prepared, defaults = self._prepare(params)
            except HParamsError as error:
                again = EditAgain(
                    interaction.user.id,
                    lambda: self._form(title, source, keys, origin, gpus, limit, (fields, paragraph)),
                )
                typed_fields = "".join(f"{code_safe(k)}: {code_safe(v)}\n" for k, v in fields.items())
                recap = f"```\n{typed_fields}{code_safe(truncate(paragraph, 1400))}\n```"
                text = f"Not launched: {error}\nWhat you typed (Edit again reopens the form with it):\n{recap}"
                await interaction.response.send_message(truncate(text, MESSAGE_LIMIT), view=again, ephemeral=True)
                return
            await self._launch_form(interaction, source, prepared, defaults, origin, gpus, limit)

        return LaunchForm(title, source, keys, submit, typed)

    async def _form_source(
        self, interaction: discord.Interaction, kind: str, source_id: str | None
    ) -> tuple[dict[str, Any], str, int, float | None] | None:
        """(hyperparameters, where from, GPUs, time limit) of a form's source; None when answered already."""
        default_limit = None if self.settings.time_limit is None else self.settings.time_limit * 60
        if kind == "job" and source_id is not None:
            job = await self.scheduler.get(source_id)
            if job is None:
                await interaction.response.send_message("That job is no longer known.", ephemeral=True)
                return None
            return dict(job.params), f"job `{job.id}`", job.gpus, job.time_limit
        if kind == "run" and source_id is not None:
            route = self.rule_for(interaction.channel)
            watcher = self.services.watcher_of(route.project, route.entity)
            run = None if watcher is None else watcher.latest.get(source_id)
            if run is None and watcher is not None:
                try:  # the form must open within Discord's 3 seconds: W&B gets two
                    run = await asyncio.wait_for(watcher.find(source_id), 2.0)
                except Exception as error:
                    log.info("no run %s for a form: %s", source_id, error)
                    text = f"W&B did not answer in time; try again, or `{self.command_prefix()}rerun {source_id}`."
                    await interaction.response.send_message(text, ephemeral=True)
                    return None
            if run is None:
                await interaction.response.send_message(f"No W&B run `{code_safe(source_id)}`.", ephemeral=True)
                return None
            return dict(run.public_config()), f"W&B run `{run.id}`", self.settings.job_gpus, default_limit
        channel_id = getattr(interaction.channel, "id", None)
        mine = [j for j in await self.scheduler.recent(50) if j.requested_by_id == interaction.user.id]
        last = next((j for j in mine if j.channel_id == channel_id), None)
        if last is not None:
            return dict(last.params), f"your last job `{last.id}`", last.gpus, last.time_limit
        return {}, "an empty form", self.settings.job_gpus, default_limit

    async def _launch_form(
        self,
        interaction: discord.Interaction,
        source: dict[str, Any],
        params: dict[str, Any],
        defaults: dict[str, Any],
        origin: str,
        gpus: int,
        limit: float | None,
    ) -> None:
        """A valid form: the diff against its source, then the usual rules (access, quota, approval)."""
        admission = await self._admit(interaction.user, interaction.channel, gpus, 1)
        if admission.verdict == Verdict.REFUSED:
            await self.audit("refused", interaction.user, interaction.channel, detail=f"form: {admission.text}")
            text = admission.text if admission.text != "not allowed" else refusal(self.rule_for(interaction.channel))
            await interaction.response.send_message(text, ephemeral=True)
            return
        changed = "\n".join(diff(source, params)) or "(no changes)"
        note = f"From {origin}:\n```diff\n{code_safe(truncate(changed, 1500))}\n```"
        request = self._request_in(interaction.channel, params, interaction.user, None, gpus=gpus, time_limit=limit)

        async def ack(job: Job, text: str) -> None:
            await self._ack_interaction(interaction, job, defaults, text)

        await self._launch_one(interaction, request, admission, detail=f"form, from {origin}", note=note, ack=ack)

    async def _rerun_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Right-click → Apps → Rerun on an end report or a run card: its launch form."""
        for row in message.components:
            for item in getattr(row, "children", []):
                found = re.fullmatch(r"adjutant:edit:(job|run):(.+)", getattr(item, "custom_id", None) or "")
                if found:
                    await self.open_form(interaction, found[1], found[2])
                    return
        title = message.embeds[0].title if message.embeds else ""
        job = re.search(r"Experiment (j[a-z0-9]{6})\b", title or "")
        if job is not None:
            await self.open_form(interaction, "job", job[1])
            return
        await interaction.response.send_message(
            "Rerun works on an experiment's end report or a run card.", ephemeral=True
        )

    # --- looking at jobs ------------------------------------------------------------------------
    @commands.hybrid_command(name="jobs", aliases=["queue"])  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def jobs_command(self, ctx: commands.Context[Any]) -> None:
        """List running, queued and recently ended experiments."""
        active = await self.scheduler.jobs_in(ACTIVE)
        queued = await self.scheduler.jobs_in((JobState.QUEUED,), 500)
        recent = [j for j in await self.scheduler.recent(30) if j.state in ENDED][:5]
        await send_pages(ctx, jobs_pages(active, queued, recent, utcnow(), prefix=self.command_prefix(ctx)))

    @commands.hybrid_command(name="logs")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(job_id="the job", lines="how many lines from the end, 1 to 1000 (default 20)")
    @app_commands.autocomplete(job_id=complete_job)
    async def logs(self, ctx: commands.Context[Any], job_id: str, lines: int = 20) -> None:
        """Show the end of a job's log: $logs <job id> [lines]; a long log comes as a file."""
        if not 1 <= lines <= 1000:
            await self.reply(ctx, "The number of lines must be between 1 and 1000.")
            return
        job = await self.scheduler.get(job_id.strip().lower())
        if job is None:
            prefix = self.command_prefix(ctx)
            await self.reply(ctx, f"No job `{code_safe(truncate(job_id, 32))}`. `{prefix}jobs` lists them.")
            return
        await self._send_log(ctx, job, lines)

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
            await self.story.finish_previews(queued_text)
            await self.story.send_reports()
            await self.story.refresh_status()
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
    async def _loop_died(self, error: BaseException) -> None:  # type: ignore[override]
        log.critical("a job loop stopped", exc_info=error)


async def setup(bot: commands.Bot) -> None:
    """Load the experiment launching cog alone."""
    await add_with_services(bot, __name__, Experiments)
