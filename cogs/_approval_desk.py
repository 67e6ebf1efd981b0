"""The approval card's Approve / Reject: approvers only, never the requester, decided once; the approved jobs are
acknowledged like any launch, each with its own thread (a sweep: one thread). Composed into the Experiments cog;
the persistent buttons (:mod:`adjutant.cogs._approval_views`) find it through the cog, typed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import AdjutantCog, asker_of
from adjutant.access import may_approve
from adjutant.approvals import Approval, ApprovalState
from adjutant.cogs._job_story import JobStory
from adjutant.jobs import Job
from adjutant.launch_render import queued_text
from adjutant.launching import Launching
from adjutant.render import plain, truncate
from adjutant.usage_render import approval_card

log = logging.getLogger(__name__)


class ApprovalDesk:
    """Decides launch requests from their card's buttons."""

    def __init__(self, cog: AdjutantCog, launching: Launching, story: JobStory) -> None:
        self.cog = cog
        self.bot: commands.Bot = cog.bot
        self.launching = launching
        self.story = story

    async def decide(self, interaction: discord.Interaction, action: str, approval_id: int) -> None:
        """Approve (queue the request's jobs) or Reject: approvers only, never the requester; once."""
        if not self.cog.serves(interaction.guild):
            return
        approvals = self.launching.approvals
        approval = await asyncio.to_thread(approvals.get, approval_id)
        if approval is None:
            await interaction.response.send_message("That request is no longer known.", ephemeral=True)
            return
        asker = await asker_of(self.bot, self.cog.settings, interaction, self.cog.rule_for(interaction.channel))
        user = interaction.user
        if user.id == approval.requested_by_id:
            await self.launching.audit("refused", asker, target=f"#{approval_id}", detail=f"{action} own")
            await interaction.response.send_message(
                "You cannot approve or reject your own request; another approver must.", ephemeral=True
            )
            return
        settings = self.cog.settings
        if not may_approve(user, settings, is_owner=asker.is_owner):
            await self.launching.audit("refused", asker, target=f"#{approval_id}", detail=action)
            who = (
                "members with the role(s) " + ", ".join(settings.approver_roles)
                if settings.approver_roles
                else "members with the Administrator or Manage Server permission"
            )
            await interaction.response.send_message(f"Only {who} may decide launch requests.", ephemeral=True)
            return
        scheduler = self.launching.scheduler
        decision = await asyncio.to_thread(
            approvals.decide, approval_id, action == "approve", user.id, str(user), scheduler.log_dir
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
        scheduler.wake()
        await self.launching.audit(
            "approve" if done.state == ApprovalState.APPROVED else "reject",
            asker,
            target=f"#{done.id}",
            detail=", ".join(j.id for j in decision.jobs) or None,
        )
        await interaction.response.edit_message(
            content=decided_text(done), embed=discord.Embed.from_dict(approval_card(done)), view=None
        )
        await self.tell_requester(interaction.channel, str(interaction.user), done, decision.jobs)

    async def tell_requester(self, channel: Any, decider: str, approval: Approval, jobs: list[Job]) -> None:
        """The outcome, mentioning the requester (only them); an approved request's jobs are acknowledged, each with
        its story (its thread)."""
        who = plain(truncate(decider, 64))
        mention = discord.AllowedMentions(users=[discord.Object(approval.requested_by_id)], everyone=False, roles=False)
        head = f"<@{approval.requested_by_id}>, your request #{approval.id} was {approval.state} by {who}"
        if approval.state == ApprovalState.REJECTED:
            try:
                await channel.send(head + "; nothing was launched.", allowed_mentions=mention)
            except discord.HTTPException as error:
                log.warning("could not tell the outcome of request #%d: %s", approval.id, error)
            return
        await self.story.acknowledge_approved(channel, head, mention, jobs, queued_text(jobs) if jobs else "")


def decided_text(approval: Approval) -> str:
    """The card's message once decided (it no longer says it waits)."""
    by = plain(truncate(approval.decided_by or "?", 64))
    if approval.state == ApprovalState.APPROVED:
        return f"Request #{approval.id} was approved by {by}."
    return f"Request #{approval.id} was {approval.state} by {by}; nothing runs."
