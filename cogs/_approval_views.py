"""The approval card's buttons: Approve, Reject and Withdraw. Their custom ids carry the request's id, so the card
works after a restart; who may press them is checked at the click (approvers only, never the requester; Withdraw:
the requester only)."""

from __future__ import annotations

import re
from typing import Any, Self

import discord


class ApprovalButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"adjutant:approval:(?P<action>approve|reject|withdraw):(?P<id>[0-9]{1,18})",
):
    """Approve, Reject or Withdraw under an approval card."""

    def __init__(self, action: str, approval_id: int) -> None:
        style = {"approve": discord.ButtonStyle.success, "reject": discord.ButtonStyle.danger}.get(
            action, discord.ButtonStyle.secondary
        )
        super().__init__(
            discord.ui.Button(
                label=action.capitalize(), style=style, custom_id=f"adjutant:approval:{action}:{approval_id}"
            )
        )
        self.action = action
        self.approval_id = approval_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["action"], int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        from adjutant.cogs.experiments import Experiments  # the cog imports this module

        cog = interaction.client.get_cog("Experiments")  # type: ignore[attr-defined]
        if not isinstance(cog, Experiments):
            await interaction.response.send_message("Experiment launching is not loaded.", ephemeral=True)
            return
        await cog.approval_desk.decide(interaction, self.action, self.approval_id)


def approval_view(approval_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ApprovalButton("approve", approval_id))
    view.add_item(ApprovalButton("reject", approval_id))
    view.add_item(ApprovalButton("withdraw", approval_id))
    return view
