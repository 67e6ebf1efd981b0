"""Experiment launching: ``$experiment {json}`` runs the team's script with the hyperparameters.

Each job is recorded in SQLite before anything is spawned, then run by a supervisor process
(:mod:`adjutant.supervisor`) in a session of its own, so jobs outlive restarts and crashes of the
bot and their end is still learned. The ``supervise`` loop starts queued jobs, notices vanished
supervisors, escalates cancels to SIGKILL, and reports each ended job once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from adjutant import refuse_double_load, settings_for
from adjutant._cog import NO_PINGS, AdjutantCog, find_channel
from adjutant.access import may_launch, refusal
from adjutant.hparams import (
    HParamsError,
    diff,
    expand_sweep,
    parse_hyperparameters,
    sweep_size,
    validate,
)
from adjutant.job_render import ack_embed, end_embed, jobs_embed, status_embed, sweep_preview, wandb_run_url
from adjutant.jobs import (
    ACTIVE,
    ENDED,
    Job,
    JobStore,
    child_environment,
    iso,
    read_tail_bytes,
    tail_lines,
    utcnow,
)
from adjutant.launchers import Launcher, LaunchError, make_launcher
from adjutant.render import MESSAGE_LIMIT, code_safe, truncate
from adjutant.settings import Settings

log = logging.getLogger(__name__)

LOG_ATTACHMENT_LIMIT = 8 * 1024 * 1024  # below Discord's default 10 MiB per file


class ChannelUnavailable(RuntimeError):
    """Nowhere to report yet; the report stays pending and is retried."""


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"adjutant:cancel:(?P<job>j[a-z0-9]{6})"):
    """The "Cancel" button under a launch; its custom id carries the job id, so it works after a restart."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger, custom_id=f"adjutant:cancel:{job_id}")
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(  # type: ignore[override]
        cls, interaction: discord.Interaction, item: discord.ui.Button[Any], match: re.Match[str]
    ) -> CancelButton:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        cog = interaction.client.get_cog("Experiments")  # type: ignore[attr-defined]
        if not isinstance(cog, Experiments):
            await interaction.response.send_message("Experiment launching is not loaded.", ephemeral=True)
            return
        await cog.cancel_from_button(interaction, self.job_id)


class SweepConfirm(discord.ui.View):
    """Confirm / Cancel under a sweep preview; only the requester may press them."""

    def __init__(self, cog: Experiments, requester_id: int, combos: list[dict[str, Any]]) -> None:
        super().__init__(timeout=300)
        self.cog = cog
        self.requester_id = requester_id
        self.combos = combos
        self.message: discord.Message | None = None

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.requester_id:
            await interaction.response.send_message(
                "Only the person who asked for this sweep can confirm it.", ephemeral=True
            )
            return False
        return True

    @discord.ui.button(label="Queue them", style=discord.ButtonStyle.success)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        jobs = await self.cog.enqueue_sweep(self.combos, interaction.user, interaction.channel_id, interaction.message)
        ids = ", ".join(f"`{j.id}`" for j in jobs)
        await interaction.response.edit_message(
            content=truncate(f"Queued {len(jobs)} experiment(s) of sweep `{jobs[0].sweep_id}`: {ids}", MESSAGE_LIMIT),
            view=None,
        )

    @discord.ui.button(label="Never mind", style=discord.ButtonStyle.secondary)
    async def abort(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Sweep not queued.", view=None)

    async def on_timeout(self) -> None:
        if self.message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(content="Sweep not confirmed in 5 minutes; nothing queued.", view=None)


class Experiments(AdjutantCog, name="Experiments"):
    """Launch, queue, cancel and follow training runs from chat."""

    def __init__(self, bot: commands.Bot, settings: Settings) -> None:
        super().__init__(bot, settings)
        self.jobs: JobStore | None = None
        self.schema: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._launchers: dict[str, Launcher] = {}
        self._token = ""
        self._status_refreshed = 0.0
        self._last_status: dict[str, str] = {}
        if not settings.launch_roles and not settings.launch_users:
            # Without a launch list only Manage Server (or Administrator) may launch: say so to Discord too, so
            # the slash forms are hidden from others by default (the server can still change it).
            commands_: list[Any] = [self.experiment, self.sweep, self.rerun, self.cancel]
            for command in commands_:
                command.app_command.default_permissions = discord.Permissions(manage_guild=True)

    @property
    def log_dir(self) -> Path:
        return self.settings.state_dir / "logs"

    # --- lifecycle ------------------------------------------------------------------------------
    async def cog_load(self) -> None:
        self.jobs = await asyncio.to_thread(JobStore, self.settings.state_dir / "adjutant.sqlite3")
        if self.settings.hparams_schema is not None:
            text = await asyncio.to_thread(self.settings.hparams_schema.read_text, encoding="utf-8")
            self.schema = json.loads(text)
        self.bot.add_dynamic_items(CancelButton)
        self.supervise.start()

    async def cog_unload(self) -> None:
        self.supervise.cancel()
        self.bot.remove_dynamic_items(CancelButton)
        if self.jobs is not None:
            await asyncio.to_thread(self.jobs.close)

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # --- who may launch -------------------------------------------------------------------------
    async def authorized(self, user: discord.abc.User) -> bool:
        try:
            is_owner = await self.bot.is_owner(user)
        except discord.HTTPException:
            is_owner = False
        return may_launch(user, self.settings, is_owner=is_owner)

    async def _refuse(self, ctx: commands.Context[Any], action: str) -> None:
        log.warning(
            "refused %s by %s (%d) in #%s at %s: %r",
            action,
            ctx.author,
            ctx.author.id,
            ctx.channel,
            utcnow().isoformat(timespec="seconds"),
            truncate(ctx.message.content, 300),
        )
        await self.reply(ctx, refusal(self.settings))

    async def _launch_precheck(self, ctx: commands.Context[Any], action: str) -> bool:
        if not self.settings.launching_enabled:
            await self.reply(
                ctx, "Launching is off: this bot has no ADJUTANT_EXPERIMENT_SCRIPT (run_experiment_script)."
            )
            return False
        if not await self.authorized(ctx.author):
            await self._refuse(ctx, action)
            return False
        return True

    def _prepare(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.schema is None:
            return params, {}
        return validate(params, self.schema)

    # --- autocomplete ---------------------------------------------------------------------------
    async def _complete(self, current: str, states: tuple[str, ...] | None) -> list[app_commands.Choice[str]]:
        if self.jobs is None:
            return []
        jobs = await self._db(self.jobs.recent, 200)
        found = []
        for job in jobs:
            if (states is None or job.state in states) and current.lower() in job.id:
                label = truncate(f"{job.id} · {job.state} · {json.dumps(job.params, ensure_ascii=False)}", 100)
                found.append(app_commands.Choice(name=label, value=job.id))
        return found[:25]

    async def complete_job(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await self._complete(current, None)

    async def complete_active_job(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._complete(current, ("queued", *ACTIVE))

    # --- launching ------------------------------------------------------------------------------
    async def enqueue(
        self,
        params: dict[str, Any],
        user: discord.abc.User,
        channel_id: int | None,
        message_id: int | None,
        sweep_id: str | None = None,
    ) -> Job:
        assert self.jobs is not None and self.settings.run_experiment_script is not None
        job: Job = await self._db(
            self.jobs.add,
            params=params,
            script=str(self.settings.run_experiment_script),
            requested_by_id=user.id,
            requested_by=str(user),
            channel_id=channel_id,
            message_id=message_id,
            log_dir=self.log_dir,
            sweep_id=sweep_id,
            backend=self.settings.launcher,
        )
        log.info("job %s queued by %s: %s", job.id, user, truncate(json.dumps(params), 300))
        return job

    async def _ack(self, ctx: commands.Context[Any], job: Job, defaults: dict[str, Any], extra: str = "") -> None:
        """Start the job if a slot is free, then answer with its id, its place in line and a Cancel button."""
        assert self.jobs is not None
        await self.tick()
        queued = await self._db(self.jobs.where, ("queued",))
        active = await self._db(self.jobs.where, ACTIVE)
        waiting = [j for j in queued if j.seq < job.seq]
        ahead = len(waiting) + len(active) if any(j.id == job.id for j in queued) else 0
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(job.id))
        message = await ctx.reply(
            content=truncate(extra, MESSAGE_LIMIT) or None,
            embed=discord.Embed.from_dict(ack_embed(job, queued_ahead=ahead, defaults=defaults)),
            view=view,
            allowed_mentions=NO_PINGS,
            mention_author=False,
        )
        changes: dict[str, Any] = {"ack_id": message.id}
        if ctx.interaction is not None:
            changes["message_id"] = message.id  # a slash command has no message of its own: the story starts here
        thread = await self._open_thread(message, job)
        if thread is not None:
            changes["thread_id"] = thread.id
        await self._db(self.jobs.update, job.id, **changes)

    async def _open_thread(self, message: discord.Message, job: Job) -> discord.Thread | None:
        """A thread under the acknowledgement for the job's story, where the channel allows one (else None)."""
        channel = message.channel
        if not self.settings.job_threads or not isinstance(channel, discord.TextChannel):
            return None
        me = channel.guild.me
        permissions = channel.permissions_for(me)
        if not (permissions.create_public_threads and permissions.send_messages_in_threads):
            log.info("no thread for job %s: no permission to create threads in #%s; replying instead", job.id, channel)
            return None
        name = truncate(f"{job.id} · {json.dumps(job.params, ensure_ascii=False)}", 100)
        try:
            return await message.create_thread(name=name, auto_archive_duration=1440)
        except discord.HTTPException as error:
            log.info("no thread for job %s (%s); replying instead", job.id, error)
            return None

    @commands.hybrid_command(name="experiment")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(hyperparameters='a JSON object like {"epochs": 10}, or pairs like epochs=10 lr=0.001')
    async def experiment(self, ctx: commands.Context[Any], *, hyperparameters: str = "") -> None:
        """Launch the experiment script: $experiment {"epochs": 10} or $experiment epochs=10 lr=0.001."""
        if not await self._launch_precheck(ctx, "launch"):
            return
        try:
            params, defaults = self._prepare(parse_hyperparameters(hyperparameters))
        except HParamsError as error:
            await self.reply(ctx, f"Not launched: {error}")
            return
        job = await self.enqueue(params, ctx.author, ctx.channel.id, ctx.message.id)
        await self._ack(ctx, job, defaults)

    @commands.hybrid_command(name="sweep")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(grid='a JSON object whose lists are the values to try, e.g. {"lr": [0.1, 0.01]}')
    async def sweep(self, ctx: commands.Context[Any], *, grid: str = "") -> None:
        """Queue one experiment per combination: $sweep {"lr": [0.1, 0.01], "batch_size": [32, 64]}."""
        if not await self._launch_precheck(ctx, "sweep"):
            return
        try:
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
        view = SweepConfirm(self, ctx.author.id, combos)
        preview = sweep_preview(combos, cap=self.settings.max_sweep)
        view.message = await ctx.reply(
            embed=discord.Embed.from_dict(preview), view=view, allowed_mentions=NO_PINGS, mention_author=False
        )

    async def enqueue_sweep(
        self, combos: list[dict[str, Any]], user: discord.abc.User, channel_id: int | None, message: Any
    ) -> list[Job]:
        import secrets

        sweep_id = "sweep-" + secrets.token_hex(3)
        message_id = getattr(message, "id", None)
        jobs = [await self.enqueue(combo, user, channel_id, message_id, sweep_id=sweep_id) for combo in combos]
        await self.tick()
        return jobs

    @commands.hybrid_command(name="rerun")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(source="a job id or a W&B run id", overrides="changes, e.g. lr=0.01 or a JSON object")
    @app_commands.autocomplete(source=complete_job)
    async def rerun(self, ctx: commands.Context[Any], source: str, *, overrides: str = "") -> None:
        """Launch again with a job's (or W&B run's) hyperparameters and overrides: $rerun j4k2m9x lr=0.01."""
        if not await self._launch_precheck(ctx, "rerun"):
            return
        assert self.jobs is not None
        try:
            changes = parse_hyperparameters(overrides, allow_empty=True)
        except HParamsError as error:
            await self.reply(ctx, f"Not launched: {error}")
            return
        job = await self._db(self.jobs.get, source)
        if job is not None:
            base, origin = job.params, f"job `{job.id}`"
        else:
            runs = self.bot.get_cog("Runs")
            if runs is None:
                await self.reply(ctx, f"No job `{code_safe(truncate(source, 64))}` (and W&B reporting is off).")
                return
            ok, run = await runs._ask(ctx, runs.source.find, source)  # type: ignore[attr-defined]
            if not ok:
                return
            if run is None:
                await self.reply(ctx, f"No job or W&B run `{code_safe(truncate(source, 64))}`.")
                return
            base, origin = dict(run.public_config()), f"W&B run `{code_safe(run.id)}`"
        try:
            params, defaults = self._prepare({**base, **changes})
        except HParamsError as error:
            await self.reply(ctx, f"Not launched: {error}")
            return
        lines = diff(base, params)
        changed = "\n".join(lines) if lines else "(no changes)"
        note = f"Rerun of {origin}:\n```diff\n{code_safe(truncate(changed, 1500))}\n```"
        new_job = await self.enqueue(params, ctx.author, ctx.channel.id, ctx.message.id)
        await self._ack(ctx, new_job, defaults, extra=note)

    # --- cancelling -----------------------------------------------------------------------------
    async def cancel_job(self, job_id: str, by: str) -> str:
        """Cancel a queued or running job; returns what happened, for the chat."""
        assert self.jobs is not None
        job = await self._db(self.jobs.get, job_id)
        if job is None:
            return f"No job `{code_safe(truncate(job_id, 32))}`. `$jobs` lists them."
        if job.state == "queued":
            done = await self._db(
                self.jobs.update, job.id, expect=("queued",), state="cancelled", ended_at=iso(), cancelled_by=by
            )
            if done:
                return f"Removed job `{job.id}` from the queue."
            job = await self._db(self.jobs.get, job_id)
            assert job is not None
        if job.state in ("starting", "running"):
            await self._db(
                self.jobs.update,
                job.id,
                expect=("starting", "running"),
                state="cancelling",
                cancel_requested_at=iso(),
                cancelled_by=by,
            )
            launcher = self.launcher_for(job)
            try:
                await self._db(launcher.cancel, job)
            except LaunchError as error:
                return f"Could not cancel job `{job.id}` yet: {error}. I will keep trying."
            if launcher.name == "slurm":
                return f"Stopping job `{job.id}`: scancel sent to Slurm job {job.external_id}."
            grace = self.settings.cancel_grace_seconds
            return f"Stopping job `{job.id}`: SIGTERM sent, SIGKILL in {grace:g}s if it is still running."
        if job.state == "cancelling":
            return f"Job `{job.id}` is already being cancelled."
        return f"Job `{job.id}` already ended ({job.state})."

    @commands.hybrid_command(name="cancel")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(job_id="the job to cancel")
    @app_commands.autocomplete(job_id=complete_active_job)
    async def cancel(self, ctx: commands.Context[Any], job_id: str) -> None:
        """Cancel a queued or running job: $cancel <job id>."""
        if not await self.authorized(ctx.author):
            await self._refuse(ctx, "cancel")
            return
        await self.reply(ctx, await self.cancel_job(job_id.strip().lower(), str(ctx.author)))
        await self.tick()

    async def cancel_from_button(self, interaction: discord.Interaction, job_id: str) -> None:
        if not await self.authorized(interaction.user):
            log.warning("refused cancel button for %s by %s (%d)", job_id, interaction.user, interaction.user.id)
            await interaction.response.send_message(refusal(self.settings), ephemeral=True)
            return
        text = await self.cancel_job(job_id, str(interaction.user))
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)
        await self.tick()

    # --- looking at jobs ------------------------------------------------------------------------
    @commands.hybrid_command(name="jobs", aliases=["queue"])  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def jobs_command(self, ctx: commands.Context[Any]) -> None:
        """List running, queued and recently ended experiments."""
        assert self.jobs is not None
        active = await self._db(self.jobs.where, ACTIVE)
        queued = await self._db(self.jobs.where, ("queued",), 15)
        recent = [j for j in await self._db(self.jobs.recent, 30) if j.state in ENDED][:5]
        embed = jobs_embed(active, queued, recent, utcnow())
        await ctx.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)

    @commands.hybrid_command(name="logs")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    @app_commands.describe(job_id="the job", lines="how many lines from the end, 1 to 1000 (default 20)")
    @app_commands.autocomplete(job_id=complete_job)
    async def logs(self, ctx: commands.Context[Any], job_id: str, lines: int = 20) -> None:
        """Show the end of a job's log: $logs <job id> [lines]; a long log comes as a file."""
        assert self.jobs is not None
        if not 1 <= lines <= 1000:
            await self.reply(ctx, "The number of lines must be between 1 and 1000.")
            return
        job = await self._db(self.jobs.get, job_id.strip().lower())
        if job is None:
            await self.reply(ctx, f"No job `{code_safe(truncate(job_id, 32))}`. `$jobs` lists them.")
            return
        path = Path(job.log_path)
        tail, size = await self._db(tail_lines, path, lines)
        if size == 0:
            await self.reply(ctx, f"Job `{job.id}` ({job.state}) has written no log yet.")
            return
        header = f"Last {len(tail)} line(s) of `{job.id}` ({job.state}):\n"
        block = "```\n" + code_safe("\n".join(tail)) + "\n```"
        if len(header) + len(block) <= MESSAGE_LIMIT:
            await self.reply(ctx, header + block)
            return
        data, size = await self._db(read_tail_bytes, path, LOG_ATTACHMENT_LIMIT)
        note = f"The log of `{job.id}` ({job.state}), {size:,} bytes"
        if size > len(data):
            note += f"; this file holds its last {len(data):,} bytes"
        await ctx.send(
            note + ".", file=discord.File(io.BytesIO(data), filename=f"{job.id}.log"), allowed_mentions=NO_PINGS
        )

    # --- the supervise loop ---------------------------------------------------------------------
    @tasks.loop(seconds=1)
    async def supervise(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("supervising jobs failed; retrying")

    @supervise.before_loop
    async def _before_supervise(self) -> None:
        await self.bot.wait_until_ready()

    @supervise.error
    async def _supervise_died(self, error: BaseException) -> None:  # type: ignore[override]
        log.critical("the job supervision loop stopped", exc_info=error)

    async def tick(self) -> None:
        """Reconcile running jobs, start queued ones, report ended ones. Safe to call any time."""
        if self.jobs is None:
            return
        self._token = getattr(self.bot.http, "token", None) or ""
        async with self._lock:
            await self._db(self._reconcile)
            await self._start_queued()
            if self.bot.is_ready():
                await self._report_ended()
                await self._refresh_status()

    def launcher_for(self, job: Job | None = None) -> Launcher:
        """The job's launcher (it keeps the backend it was launched on), or the configured one."""
        assert self.jobs is not None
        name = job.backend if job is not None else self.settings.launcher
        if name not in self._launchers:
            self._launchers[name] = make_launcher(name, self.settings, str(self.jobs.path))
        return self._launchers[name]

    def _reconcile(self) -> None:
        """(thread) Ask each active job's launcher what changed; force cancels past their grace."""
        assert self.jobs is not None
        now = utcnow()
        for job in self.jobs.where(ACTIVE):
            launcher = self.launcher_for(job)
            try:
                changes = launcher.refresh(job)
            except LaunchError as error:
                log.warning("cannot check job %s: %s", job.id, error)
                continue
            if changes and self.jobs.update(job.id, expect=ACTIVE, **changes):
                if changes.get("state") == "lost":
                    log.warning("job %s lost: %s", job.id, changes.get("reason"))
                    launcher.escalate(job)  # leave nothing of it behind
                continue
            if (
                job.state == "cancelling"
                and job.cancel_requested_at is not None
                and job.killed_at is None
                and (now - job.cancel_requested_at).total_seconds() >= self.settings.cancel_grace_seconds
            ):
                log.info(
                    "job %s still running %gs after the cancel: forcing it", job.id, self.settings.cancel_grace_seconds
                )
                launcher.escalate(job)
                self.jobs.update(job.id, killed_at=iso())

    async def _start_queued(self) -> None:
        assert self.jobs is not None
        active = await self._db(self.jobs.where, ACTIVE)
        free = self.settings.max_concurrent - len(active)
        if free <= 0:
            return
        for job in await self._db(self.jobs.where, ("queued",), free):
            if await self._db(self.jobs.update, job.id, expect=("queued",), state="starting"):
                await self._db(self._submit, job)

    def _submit(self, job: Job) -> None:
        """(thread) Hand a starting job to its launcher with the job's own environment."""
        assert self.jobs is not None
        env = child_environment(
            os.environ,
            job,
            secrets_to_drop=(self._token,),
            entity=self.settings.entity,
            project=self.settings.project,
        )
        try:
            recorded = self.launcher_for(job).submit(job, env)
        except LaunchError as error:
            log.error("job %s could not start: %s", job.id, error)
            self.jobs.update(job.id, expect=("starting",), state="failed", reason=str(error), ended_at=iso())
            return
        self.jobs.update(job.id, **recorded)
        log.info("job %s submitted to %s: %s", job.id, self.launcher_for(job).name, recorded)

    async def _report_ended(self) -> None:
        assert self.jobs is not None
        for job in await self._db(self.jobs.unreported):
            try:
                await self._report(job)
            except ChannelUnavailable as error:
                log.warning("cannot report job %s yet: %s", job.id, error)
                return
            except discord.HTTPException as error:
                if 400 <= error.status < 500 and error.status != 429:
                    log.error("Discord refused the report of job %s: %s", job.id, error)
                    await self._db(self.jobs.update, job.id, reported=1)
                else:
                    raise
            else:
                await self._db(self.jobs.update, job.id, reported=1)

    async def _report(self, job: Job) -> None:
        channel: Any = self.bot.get_channel(job.channel_id) if job.channel_id else None
        if not isinstance(channel, discord.abc.Messageable):
            channel = find_channel(self.bot, self.settings.channel)
        if channel is None:
            raise ChannelUnavailable(f"channel {self.settings.channel!r} not found")
        target, in_thread = channel, False
        if job.thread_id:
            thread = self.bot.get_channel(job.thread_id)
            if thread is None:
                with contextlib.suppress(discord.HTTPException):
                    thread = await self.bot.fetch_channel(job.thread_id)
            if isinstance(thread, discord.Thread):
                target, in_thread = thread, True
        tail, _ = await self._db(tail_lines, Path(job.log_path), 15)
        run = await self._wandb_run(job)
        url = run.url if run is not None and run.url else _run_url(self.settings, job.wandb_run_id)
        embed = end_embed(job, log_tail=tail, run=run, run_url=url, metric=self.settings.metric, now=utcnow())
        reference = None
        if job.message_id and not in_thread and isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            reference = discord.MessageReference(
                message_id=job.message_id, channel_id=channel.id, guild_id=channel.guild.id, fail_if_not_exists=False
            )
        await target.send(
            embed=discord.Embed.from_dict(embed),
            reference=reference,  # type: ignore[arg-type]
            allowed_mentions=NO_PINGS,
            nonce=f"job-{job.id}",  # Discord drops a resend after a crash between send and bookkeeping
        )
        if job.ack_id:
            with contextlib.suppress(discord.HTTPException, AttributeError):
                await channel.get_partial_message(job.ack_id).edit(view=None)  # the job is over: no Cancel button

    async def _refresh_status(self) -> None:
        """Edit each running job's acknowledgement in place: state, elapsed time, W&B step and metrics."""
        now = time.monotonic()
        if now - self._status_refreshed < max(10.0, self.settings.poll_seconds):
            return
        self._status_refreshed = now
        assert self.jobs is not None
        runs = self.bot.get_cog("Runs")
        latest: dict[str, Any] = getattr(runs, "latest", {}) if runs is not None else {}
        for job in await self._db(self.jobs.where, ("running",)):
            channel = self.bot.get_channel(job.channel_id) if job.channel_id else None
            if job.ack_id is None or not isinstance(channel, discord.TextChannel | discord.Thread):
                continue
            embed = status_embed(job, run=latest.get(job.wandb_run_id), metric=self.settings.metric, now=utcnow())
            key = json.dumps(embed, sort_keys=True, default=str)
            if self._last_status.get(job.id) == key:
                continue  # nothing new: no edit
            try:
                await channel.get_partial_message(job.ack_id).edit(embed=discord.Embed.from_dict(embed))
            except discord.HTTPException as error:
                log.info("could not update the status of job %s: %s", job.id, error)
                continue
            self._last_status[job.id] = key

    async def _wandb_run(self, job: Job) -> Any:
        """The job's W&B run, if the reporting cog is loaded and W&B knows it (never fails the report)."""
        runs = self.bot.get_cog("Runs")
        if runs is None:
            return None
        try:
            return await runs._wandb(runs.source.find, job.wandb_run_id)  # type: ignore[attr-defined]
        except Exception as error:
            log.info("W&B run %s of job %s not available: %s", job.wandb_run_id, job.id, error)
            return None


def _run_url(settings: Settings, run_id: str) -> str | None:
    return wandb_run_url(os.environ.get("WANDB_BASE_URL"), settings.entity, settings.project, run_id)


async def setup(bot: commands.Bot) -> None:
    """Load the experiment launching cog alone."""
    refuse_double_load(bot, __name__)
    await bot.add_cog(Experiments(bot, settings_for(bot)))
