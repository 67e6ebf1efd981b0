"""The buttons under launches: Cancel (works after a restart) and a sweep's Queue them / Never mind."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, Self

import discord

from adjutant.render import MESSAGE_LIMIT, truncate

#: (interaction) → True if the presser may launch now; it has answered the interaction when False.
RightsCheck = Callable[[discord.Interaction], Awaitable[bool]]
#: (interaction) → the text that replaces the preview once the sweep is queued.
QueueSweep = Callable[[discord.Interaction], Awaitable[str]]


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"adjutant:cancel:(?P<job>j[a-z0-9]{6})"):
    """The "Cancel" button under a launch; its custom id carries the job id, so it works after a restart."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger, custom_id=f"adjutant:cancel:{job_id}")
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        from adjutant.cogs.experiments import Experiments  # the cog imports this module

        cog = interaction.client.get_cog("Experiments")  # type: ignore[attr-defined]
        if not isinstance(cog, Experiments):
            await interaction.response.send_message("Experiment launching is not loaded.", ephemeral=True)
            return
        await cog.cancel_from_button(interaction, self.job_id)


class SweepConfirm(discord.ui.View):
    """Confirm / Cancel under a sweep preview. Only the requester may press them, and only while they may
    still launch (checked at the click); the first press wins, a second gets "already queued"."""

    def __init__(
        self,
        requester_id: int,
        may_launch: RightsCheck,
        queue: QueueSweep,
        queued: Callable[[discord.Interaction, str], Awaitable[None]],
    ) -> None:
        super().__init__(timeout=300)
        self.requester_id = requester_id
        self.may_launch = may_launch
        self.queue = queue
        self.queued = queued
        self.message: discord.Message | None = None
        self.outcome: str | None = None  # set synchronously by the first press: "queued" or "dropped"

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.requester_id:
            await interaction.response.send_message(
                "Only the person who asked for this sweep can confirm it.", ephemeral=True
            )
            return False
        if self.outcome is not None:
            await interaction.response.send_message(f"This sweep was already {self.outcome}.", ephemeral=True)
            return False
        return True

    @discord.ui.button(label="Queue them", style=discord.ButtonStyle.success)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        if self.outcome is not None:  # a second click that passed the check while the first was running
            await interaction.response.send_message(f"This sweep was already {self.outcome}.", ephemeral=True)
            return
        self.outcome = "queued"  # consumed before any await: a concurrent click sees it
        if not await self.may_launch(interaction):
            self.outcome = None  # rights gone: nothing queued, the preview stays for someone allowed
            return
        self.stop()
        text = await self.queue(interaction)
        await interaction.response.edit_message(content=truncate(text, MESSAGE_LIMIT), view=None)
        await self.queued(interaction, text)

    @discord.ui.button(label="Never mind", style=discord.ButtonStyle.secondary)
    async def abort(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.outcome = "dropped"
        self.stop()
        await interaction.response.edit_message(content="Sweep not queued.", view=None)

    async def on_timeout(self) -> None:
        if self.message is not None and self.outcome is None:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(content="Sweep not confirmed in 5 minutes; nothing queued.", view=None)
