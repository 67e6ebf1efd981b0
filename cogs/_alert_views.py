"""The alert card's buttons: Stop, Rerun, Mute 1 h, Keep running (while a policy's stop is pending). Their custom ids
carry the alert's id, so they work after a restart; what they act on (the job, the run, its hyperparameters) is read
back from the alert's record."""

from __future__ import annotations

import logging
import re
from typing import Any, Self

import discord

from adjutant.alerts import ActionState, Alert, AlertKind
from adjutant.jobs import ACTIVE, Job

log = logging.getLogger(__name__)

ACTIONS = {
    "stop": "Stop",
    "rerun": "Rerun",
    "mute": "Mute 1 h",
    "canary": "Retry canary",
    "resume": "Resume sweep",
    "drop": "Drop sweep",
    "keep": "Keep running",
}
STYLES = {
    "stop": discord.ButtonStyle.danger,
    "rerun": discord.ButtonStyle.primary,
    "mute": discord.ButtonStyle.secondary,
    "canary": discord.ButtonStyle.primary,
    "resume": discord.ButtonStyle.primary,
    "drop": discord.ButtonStyle.danger,
    "keep": discord.ButtonStyle.success,
}
#: The cogs that answer alert buttons, in the order asked (Stop and Rerun need Experiments).
HANDLERS = ("Experiments", "Runs")


class AlertButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"adjutant:alert:(?P<action>stop|rerun|mute|canary|resume|drop|keep):(?P<id>[0-9]{1,18})",
):
    """One of the alert card's buttons."""

    def __init__(self, action: str, alert_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=ACTIONS[action], style=STYLES[action], custom_id=f"adjutant:alert:{action}:{alert_id}"
            )
        )
        self.action = action
        self.alert_id = alert_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["action"], int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        from adjutant._cog import AdjutantCog
        from adjutant.cogs.experiments import Experiments  # the cog imports this module

        client: Any = interaction.client
        experiments = client.get_cog("Experiments")
        if isinstance(experiments, Experiments):
            await experiments.alert_actions.press(interaction, self.action, self.alert_id)
            return
        # Without experiment launching only Mute works, answered by any Adjutant cog that holds the services.
        cog = next((c for c in client.cogs.values() if isinstance(c, AdjutantCog) and c.services is not None), None)
        if cog is None or cog.services is None:
            await interaction.response.send_message("Adjutant is not loaded.", ephemeral=True)
        elif self.action == "mute":
            await cog.mute_alert(interaction, cog.services.runs, self.alert_id)
        elif cog.serves(interaction.guild):
            await interaction.response.send_message("Experiment launching is not loaded.", ephemeral=True)


def alert_view(alert: Alert, job: Job | None) -> discord.ui.View:
    """Keep running (a policy's stop is pending), Stop (a job Adjutant launched that is still active), Rerun (a job's
    or a run's hyperparameters), Mute 1 h."""
    view = discord.ui.View(timeout=None)
    if alert.kind in (AlertKind.SWEEP_HELD, AlertKind.CANARY_FAILED):  # the sweep's queued cells wait for one
        if alert.kind == AlertKind.CANARY_FAILED:
            view.add_item(AlertButton("canary", alert.id))
        view.add_item(AlertButton("resume", alert.id))
        view.add_item(AlertButton("drop", alert.id))
        return view
    if job is not None and job.state in ACTIVE:
        if alert.action_state == ActionState.PENDING:
            view.add_item(AlertButton("keep", alert.id))
        view.add_item(AlertButton("stop", alert.id))
    if job is not None or alert.params is not None:
        view.add_item(AlertButton("rerun", alert.id))
    if alert.run_id:
        view.add_item(AlertButton("mute", alert.id))
    return view


def register(bot: Any) -> None:
    bot.add_dynamic_items(AlertButton)


def unregister(bot: Any, leaving: object) -> None:
    """Remove the buttons' handler when the last cog answering them unloads."""
    if not any(bot.get_cog(name) not in (None, leaving) for name in HANDLERS):
        bot.remove_dynamic_items(AlertButton)
