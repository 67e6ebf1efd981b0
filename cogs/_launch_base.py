"""What every launch door shares: where launching is on, who may launch or request, the options before the
hyperparameters, their validation, and the job request (the base of the Experiments cog)."""

from __future__ import annotations

import logging
from typing import Any

from discord.ext import commands

from adjutant._cog import AdjutantCog
from adjutant.access import may_request, refusal
from adjutant.hparams import (
    HParamsError,
    LaunchOptions,
    take_launch_options,
    to_argument,
    validate,
)
from adjutant.jobs import Job, JobRequest
from adjutant.render import code_safe, truncate
from adjutant.scheduler import CancelOutcome, CancelResult, Scheduler
from adjutant.services import Services

log = logging.getLogger(__name__)


def queued_text(jobs: list[Job]) -> str:
    """What a sweep's preview says once its jobs are queued."""
    ids = ", ".join(f"`{j.id}`" for j in jobs)
    return f"Queued {len(jobs)} experiment(s) of sweep `{jobs[0].sweep_id}`: {ids}"


class LaunchBase(AdjutantCog):
    """Shared by the launch doors (commands, buttons, forms)."""

    services: Services
    scheduler: Scheduler
    schema: dict[str, Any] | None

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
