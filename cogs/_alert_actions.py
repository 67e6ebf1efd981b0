"""The alert card's buttons that act on jobs: Stop (cancel), Rerun (a launch door), Retry canary, Resume / Drop a
held sweep. Each checks the rule of the alert's *job's* route at the click. Mute is the alert's, not a job's: the
cog's :meth:`~adjutant._cog.AdjutantCog.mute_alert`. Composed into the Experiments cog."""

from __future__ import annotations

import asyncio
import logging

import discord

from adjutant._cog import NO_PINGS, AdjutantCog, asker_of
from adjutant.cogs._launch_replies import LaunchReplies
from adjutant.jobs import Job, SweepHold
from adjutant.launch_render import cancel_text
from adjutant.launching import Asker, Launching, Refused
from adjutant.render import plain, truncate
from adjutant.store import Store

log = logging.getLogger(__name__)


class AlertActions:
    """What the alert card's Stop / Rerun / Retry canary / Resume / Drop do."""

    def __init__(self, cog: AdjutantCog, launching: Launching, replies: LaunchReplies, runs: Store) -> None:
        self.cog = cog
        self.launching = launching
        self.replies = replies
        self.runs = runs

    async def press(self, interaction: discord.Interaction, action: str, alert_id: int) -> None:
        if action == "mute":
            await self.cog.mute_alert(interaction, self.runs, alert_id)
            return
        if not self.cog.serves(interaction.guild):
            return
        alert = await asyncio.to_thread(self.runs.alert, alert_id)
        if alert is None:
            await interaction.response.send_message("That alert is no longer known.", ephemeral=True)
            return
        route = self.replies.route_here(interaction.channel)
        asker = await asker_of(self.cog.bot, self.cog.settings, interaction, route)
        job = await self.launching.scheduler.get(alert.job_id) if alert.job_id else None
        if action == "rerun":
            outcome = await self.launching.alert_rerun(asker, job, alert.params, prefix=self.cog.command_prefix())
            await self.replies.answer(interaction, outcome, prefix=self.cog.command_prefix())
            return
        if job is None:
            await interaction.response.send_message(GONE.get(action, "That job is no longer known."), ephemeral=True)
            return
        refused = await self.launching.may_act(asker, job, BUTTON_WORDS.get(action, action))
        if refused is not None:
            await interaction.response.send_message(refused.text, ephemeral=True)
            return
        if action == "stop":
            await self._stop(interaction, asker, job)
        elif action == "canary":
            await self._retry_canary(interaction, job)
        elif action in ("resume", "drop"):
            await self._decide_sweep(interaction, asker, job, action)

    async def _stop(self, interaction: discord.Interaction, asker: Asker, job: Job) -> None:
        result = await self.launching.cancel(asker, job.id)
        if isinstance(result, Refused):
            await interaction.response.send_message(result.text, ephemeral=True)
            return
        grace = self.cog.settings.cancel_grace_seconds
        text = cancel_text(result, job.id, self.cog.command_prefix(), grace_seconds=grace)
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)

    async def _retry_canary(self, interaction: discord.Interaction, job: Job) -> None:
        if not await self.launching.scheduler.retry_canary(job):
            await interaction.response.send_message("That canary is not waiting for a retry.", ephemeral=True)
            return
        who = plain(truncate(str(interaction.user), 64))
        text = f"Canary `{job.id}` of sweep `{job.sweep_id}` runs again (attempt {job.attempt + 1}), by {who}."
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)

    async def _decide_sweep(self, interaction: discord.Interaction, asker: Asker, job: Job, action: str) -> None:
        if job.sweep_id is None:
            await interaction.response.send_message("That sweep is no longer known.", ephemeral=True)
            return
        decision = SweepHold.RESUMED if action == "resume" else SweepHold.DROPPED
        before, changed = await self.launching.scheduler.decide_sweep(job.sweep_id, decision, str(interaction.user))
        await self.launching.audit("sweep decided", asker, target=job.sweep_id, detail=decision)
        if before != SweepHold.HELD:
            await interaction.response.send_message(f"Sweep `{job.sweep_id}` was already {before}.", ephemeral=True)
            return
        who = plain(truncate(str(interaction.user), 64))
        verb = "started again" if decision == SweepHold.RESUMED else "cancelled"
        text = f"Sweep `{job.sweep_id}` {decision} by {who}: {changed} queued cell(s) {verb}."
        await interaction.response.send_message(text, allowed_mentions=NO_PINGS)


#: The answer when the alert's job is gone (or was never Adjutant's).
GONE = {
    "stop": "Only jobs Adjutant launched can be stopped.",
    "canary": "That canary is not waiting for a retry.",
    "resume": "That sweep is no longer known.",
    "drop": "That sweep is no longer known.",
}
#: What each alert button does, for refusals.
BUTTON_WORDS = {
    "stop": "stop jobs",
    "rerun": "launch experiments",
    "canary": "retry canaries",
    "resume": "resume sweeps",
    "drop": "drop sweeps",
}
