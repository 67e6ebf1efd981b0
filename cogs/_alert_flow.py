"""The alert card's buttons as launches and cancels: Stop, Rerun, Retry canary, Resume / Drop sweep (a base of the
Experiments cog; Mute is in _cog)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import discord

from adjutant._cog import NO_PINGS
from adjutant.admission import Verdict
from adjutant.cogs._form_flow import FormFlow
from adjutant.hparams import (
    HParamsError,
    parse_hyperparameters,
)
from adjutant.jobs import Job
from adjutant.render import plain, truncate

log = logging.getLogger(__name__)


class AlertFlow(FormFlow):
    """What the alert card's buttons do."""

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
