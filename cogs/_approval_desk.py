"""The approval card's Approve / Reject: approvers only, never the requester, decided once; the approved jobs are
acknowledged like any launch, each with its own thread (a sweep: one thread). Composed into the Experiments cog;
the persistent buttons (:mod:`adjutant.cogs._approval_views`) find it through the cog, typed."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import AdjutantCog, asker_of, home_of
from adjutant.access import may_approve
from adjutant.approvals import Action, Approval, ApprovalState
from adjutant.cogs._job_story import JobStory
from adjutant.jobs import Job
from adjutant.launch_render import queued_text
from adjutant.launching import Asker, Launching
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
        #: Decisions made before this moment belong to an earlier run of the bot: told by finish_decisions().
        self.started = dt.datetime.now(dt.UTC)
        self._next_check = 0.0

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
        if action == "withdraw":
            await self._withdraw(interaction, asker, approval)
            return
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
        await self.tell_requester(interaction.channel, done, decision.jobs)
        await asyncio.to_thread(approvals.mark_announced, done.id)

    async def _withdraw(self, interaction: discord.Interaction, asker: Asker, approval: Approval) -> None:
        """The requester takes their pending request back (only them)."""
        if interaction.user.id != approval.requested_by_id:
            await self.launching.audit("refused", asker, target=f"#{approval.id}", detail="withdraw, not theirs")
            await interaction.response.send_message("Only the member who asked may withdraw a request.", ephemeral=True)
            return
        approvals = self.launching.approvals
        decision = await asyncio.to_thread(approvals.withdraw, approval.id, interaction.user.id, str(interaction.user))
        if decision is None or not decision.changed:
            state = decision.approval.state if decision is not None else "gone"
            await interaction.response.send_message(f"Request #{approval.id} was already {state}.", ephemeral=True)
            return
        await self.launching.audit("withdraw", asker, target=f"#{approval.id}")
        done = decision.approval
        await interaction.response.edit_message(
            content=decided_text(done), embed=discord.Embed.from_dict(approval_card(done)), view=None
        )
        await asyncio.to_thread(approvals.mark_announced, done.id)

    async def tell_requester(self, channel: Any, approval: Approval, jobs: list[Job]) -> None:
        """The outcome, mentioning the requester (only them); an approved request's jobs are acknowledged, each with
        its story (its thread). The send carries a nonce, so a resend after a restart is dropped by Discord."""
        mention = discord.AllowedMentions(users=[discord.Object(approval.requested_by_id)], everyone=False, roles=False)
        who = plain(truncate(approval.decided_by or "?", 64))
        head = f"<@{approval.requested_by_id}>, your request #{approval.id} was {approval.state} by {who}"
        nonce = f"approval-{approval.id}"
        if approval.state != ApprovalState.APPROVED:
            if approval.state == ApprovalState.EXPIRED:
                hours = self.cog.settings.approval_hours
                head = (
                    f"<@{approval.requested_by_id}>, your request #{approval.id} expired: no approver decided within"
                    f" {hours:g} h (ADJUTANT_APPROVAL_HOURS)"
                )
            try:
                await home_of(channel).send(head + "; nothing was launched.", allowed_mentions=mention, nonce=nonce)
            except discord.HTTPException as error:
                log.warning("could not tell the outcome of request #%d: %s", approval.id, error)
            return
        text = queued_text(jobs) if jobs else ""
        await self.story.acknowledge_approved(channel, head, mention, jobs, text, nonce=nonce)

    async def finish_decisions(self) -> None:
        """Requests past ADJUTANT_APPROVAL_HOURS expire; every decision whose card or requester was not told (the bot
        died after the decision, or the request expired) is told now, once: the card shows the decision, the
        requester hears it, an approved request's jobs are acknowledged."""
        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + FINISH_EVERY
        approvals = self.launching.approvals
        hours = self.cog.settings.approval_hours
        expired = await asyncio.to_thread(approvals.expire, dt.timedelta(hours=hours))
        for approval in expired:
            log.info("request #%d expired after %g h without a decision", approval.id, hours)
            await asyncio.to_thread(
                approvals.record, Action.EXPIRED, None, "Adjutant", channel_id=approval.channel_id,
                target=f"#{approval.id}", detail=f"no decision within {hours:g} h",
            )  # fmt: skip
        # Decisions of an earlier run of the bot (it died before telling them), or left untold for a while.
        cutoff = max(self.started, dt.datetime.now(dt.UTC) - UNANNOUNCED_GRACE)
        untold = await asyncio.to_thread(approvals.unannounced, cutoff)
        for approval in [*expired, *(a for a in untold if a.id not in {e.id for e in expired})]:
            channel = self.bot.get_channel(approval.channel_id) if approval.channel_id else None
            if not isinstance(channel, discord.abc.Messageable):
                continue  # not visible yet (a restart before the guild arrived): next pass
            if approval.card_id is not None and hasattr(channel, "get_partial_message"):
                card = channel.get_partial_message(approval.card_id)
                try:
                    embed = discord.Embed.from_dict(approval_card(approval))
                    await card.edit(content=decided_text(approval), embed=embed, view=None)
                except discord.HTTPException as error:
                    log.warning("could not show the decision on the card of request #%d: %s", approval.id, error)
            if approval.state != ApprovalState.WITHDRAWN:
                jobs = await asyncio.to_thread(approvals.jobs_of, approval)
                await self.tell_requester(channel, approval, jobs)
            await asyncio.to_thread(approvals.mark_announced, approval.id)


#: How often undecided requests are checked for expiry and untold decisions looked for.
FINISH_EVERY = 2.0
#: A decision younger than this is being told by its own click; the restart path leaves it alone.
UNANNOUNCED_GRACE = dt.timedelta(seconds=30)


def decided_text(approval: Approval) -> str:
    """The card's message once decided (it no longer says it waits)."""
    by = plain(truncate(approval.decided_by or "?", 64))
    if approval.state == ApprovalState.APPROVED:
        return f"Request #{approval.id} was approved by {by}."
    if approval.state == ApprovalState.WITHDRAWN:
        return f"Request #{approval.id} was withdrawn by {by}; nothing runs."
    if approval.state == ApprovalState.EXPIRED:
        return f"Request #{approval.id} expired without a decision; nothing runs."
    return f"Request #{approval.id} was {approval.state} by {by}; nothing runs."
