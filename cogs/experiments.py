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
import secrets
import time
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from adjutant._cog import NO_PINGS, AdjutantCog, add_with_services, find_channel
from adjutant.access import refusal
from adjutant.admission import Verdict
from adjutant.alerts import JOBS_OUTBOX
from adjutant.cogs import _alert_views
from adjutant.cogs._alert_flow import AlertFlow
from adjutant.cogs._announcer import Announcer, Inbox, Refused
from adjutant.cogs._approval_views import ApprovalButton
from adjutant.cogs._job_story import JobStory
from adjutant.cogs._job_views import CancelButton, SweepConfirm
from adjutant.cogs._launch_base import queued_text
from adjutant.cogs._launch_form import EditButton
from adjutant.cogs._pager import send_pages
from adjutant.hparams import (
    HParamsError,
    LaunchOptions,
    diff,
    expand_sweep,
    parse_hyperparameters,
    sweep_size,
    take_launch_options,
    to_argument,
)
from adjutant.job_render import jobs_pages, sweep_preview
from adjutant.jobs import ACTIVE, ENDED, Job, JobState, read_tail_bytes, tail_lines, utcnow
from adjutant.render import MESSAGE_LIMIT, code_safe, truncate
from adjutant.scheduler import Scheduler
from adjutant.services import Services
from adjutant.settings import Settings

log = logging.getLogger(__name__)

LOG_ATTACHMENT_LIMIT = 8 * 1024 * 1024  # below Discord's default 10 MiB per file


class Experiments(AlertFlow, AdjutantCog, name="Experiments"):
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
        """Launch the experiment script with hyperparameters: $experiment {"epochs": 10} or epochs=10 lr=0.001.

        Options before the hyperparameters: --gpus N, --time 2h.
        """
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
        """Queue one experiment per combination: $sweep {"lr": [0.1, 0.01], "bs": [32, 64]}.

        Options before the grid: --gpus N, --time 2h, --no-canary.
        """
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
        """Launch again with a job's or W&B run's hyperparameters and changes: $rerun j4k2m9x lr=0.01.

        Options before the changes: --gpus N, --time 2h.
        """
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
