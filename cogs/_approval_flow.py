"""GPUs, quota and approval on the launch path: the admission, the approval card and its decision, and the
acknowledgement of a launch made from a button or a form (a base of the Experiments cog)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS
from adjutant.access import may_approve, may_request, quota_exempt
from adjutant.admission import Admission, Request, Verdict, admit
from adjutant.approvals import Approval, ApprovalState
from adjutant.cogs._approval_views import approval_view
from adjutant.cogs._job_views import CancelButton
from adjutant.cogs._launch_base import LaunchBase, queued_text
from adjutant.job_render import ack_embed
from adjutant.jobs import Job, JobRequest
from adjutant.render import MESSAGE_LIMIT, plain, truncate
from adjutant.usage_render import approval_card

log = logging.getLogger(__name__)


class ApprovalFlow(LaunchBase):
    """Admission, approval cards, audited launches."""

    async def _admit(self, user: Any, channel: Any, gpus: int, cells: int) -> Admission:
        """Launch now, wait for an approver, or refuse (see :func:`adjutant.admission.admit`)."""
        quota = None
        if self.settings.gpu_hours_per_week is not None and not quota_exempt(user):
            quota = await asyncio.to_thread(self.services.quota_of, user.id)
        pool = self.scheduler.gpus
        facts = Request(
            gpus=gpus,
            cells=cells,
            may_launch=await self.authorized(user, channel),
            may_request=may_request(user, self.settings),
            pool_size=len(pool) if pool is not None and self.settings.launcher == "local" else None,
            quota=quota[0] if quota else None,
            quota_frees_at=quota[1] if quota else None,
        )
        return admit(facts, approval_gpus=self.settings.approval_gpus, approval_jobs=self.settings.approval_jobs)

    async def _refused(self, ctx: commands.Context[Any], admission: Admission, action: str) -> None:
        await self.audit("refused", ctx.author, ctx.channel, detail=f"{action}: {admission.text}")
        await self.reply(ctx, admission.text)

    async def _launch_one(
        self,
        where: commands.Context[Any] | discord.Interaction,
        request: JobRequest,
        admission: Admission,
        *,
        detail: str,
        note: str,
        ack: Callable[[Job, str], Awaitable[None]],
    ) -> None:
        """After the admission said launch or ask: the approval card, or the job recorded (audited) and acknowledged
        with ``note`` (and the quota warning)."""
        if admission.verdict == Verdict.APPROVAL:
            await self._ask_approval(where, "experiment", [request], request.gpus, admission)
            return
        job = await self.scheduler.enqueue(request)
        user = where.author if isinstance(where, commands.Context) else where.user
        await self.audit("launch", user, where.channel, target=job.id, detail=detail)
        if admission.warning:
            note = f"{note}\n{admission.warning}".strip()
        await ack(job, note)

    async def _ask_approval(
        self,
        ctx: commands.Context[Any] | discord.Interaction,
        kind: str,
        requests: list[JobRequest],
        gpus: int,
        admission: Admission,
        *,
        canary: bool = False,
    ) -> None:
        """Record the request (no job yet) and post its card with Approve / Reject (a reply to the command, or the
        answer to a form)."""
        approval = await asyncio.to_thread(
            self.services.approvals.add, kind, requests, gpus=gpus, why=admission.text, canary=canary
        )
        user = ctx.author if isinstance(ctx, commands.Context) else ctx.user
        detail = f"{kind}, {len(requests)} job(s)"
        await self.audit("request", user, ctx.channel, target=f"#{approval.id}", detail=detail)
        text = f"Request #{approval.id} waits for an approver: nothing runs until one approves it."
        if admission.warning:
            text += "\n" + admission.warning
        card = {
            "embed": discord.Embed.from_dict(approval_card(approval)),
            "view": approval_view(approval.id),
            "allowed_mentions": NO_PINGS,
        }
        if isinstance(ctx, commands.Context):
            message = await ctx.reply(text, mention_author=False, **card)
        else:
            await ctx.response.send_message(text, **card)
            message = await ctx.original_response()
        await asyncio.to_thread(self.services.approvals.set_card, approval.id, message.id)

    async def approval_button(self, interaction: discord.Interaction, action: str, approval_id: int) -> None:
        """Approve (queue the request's jobs) or Reject: approvers only, never the requester; once."""
        if not self.serves(interaction.guild):
            return
        approval = await asyncio.to_thread(self.services.approvals.get, approval_id)
        if approval is None:
            await interaction.response.send_message("That request is no longer known.", ephemeral=True)
            return
        user = interaction.user
        if user.id == approval.requested_by_id:
            await self.audit("refused", user, interaction.channel, target=f"#{approval_id}", detail=f"{action} own")
            await interaction.response.send_message(
                "You cannot approve or reject your own request; another approver must.", ephemeral=True
            )
            return
        try:
            is_owner = await self.bot.is_owner(user)
        except discord.HTTPException:
            is_owner = False
        if not may_approve(user, self.settings, is_owner=is_owner):
            await self.audit("refused", user, interaction.channel, target=f"#{approval_id}", detail=action)
            who = (
                "members with the role(s) " + ", ".join(self.settings.approver_roles)
                if self.settings.approver_roles
                else "members with the Administrator or Manage Server permission"
            )
            await interaction.response.send_message(f"Only {who} may decide launch requests.", ephemeral=True)
            return
        decision = await asyncio.to_thread(
            self.services.approvals.decide, approval_id, action == "approve", user.id, str(user), self.scheduler.log_dir
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
        self.scheduler.wake()
        await self.audit(
            "approve" if done.state == ApprovalState.APPROVED else "reject",
            user,
            interaction.channel,
            target=f"#{done.id}",
            detail=", ".join(j.id for j in decision.jobs) or None,
        )
        await interaction.response.edit_message(embed=discord.Embed.from_dict(approval_card(done)), view=None)
        await self._tell_requester(interaction, done, decision.jobs)

    async def _tell_requester(self, interaction: discord.Interaction, approval: Approval, jobs: list[Job]) -> None:
        """The outcome, mentioning the requester (only them); an approved request's message acknowledges its jobs."""
        who = plain(truncate(str(interaction.user), 64))
        mention = discord.AllowedMentions(users=[discord.Object(approval.requested_by_id)], everyone=False, roles=False)
        head = f"<@{approval.requested_by_id}>, your request #{approval.id} was {approval.state} by {who}"
        channel: Any = interaction.channel
        message = None
        try:
            if approval.state == ApprovalState.REJECTED:
                await channel.send(head + "; nothing was launched.", allowed_mentions=mention)
                return
            if approval.kind == "experiment" and len(jobs) == 1:
                job = jobs[0]
                ahead = await self.scheduler.jobs_ahead(job)
                embed = ack_embed(job, queued_ahead=ahead, prefix=self.command_prefix())
                view = discord.ui.View(timeout=None)
                view.add_item(CancelButton(job.id))
                message = await channel.send(
                    head + ".", embed=discord.Embed.from_dict(embed), view=view, allowed_mentions=mention
                )
            else:
                message = await channel.send(
                    truncate(head + ". " + queued_text(jobs), MESSAGE_LIMIT), allowed_mentions=mention
                )
        except discord.HTTPException as error:
            log.warning("could not tell the outcome of request #%d: %s", approval.id, error)
        finally:
            if approval.state == ApprovalState.APPROVED:
                ack_id = message.id if message is not None else None
                for job in jobs:
                    await self.scheduler.acknowledged(job.id, ack_id=ack_id, message_id=job.message_id or ack_id)

    async def _ack_interaction(
        self, interaction: discord.Interaction, job: Job, defaults: dict[str, Any], note: str
    ) -> None:
        """Answer a launch made from a button or a form: the acknowledgement (with Cancel) is the answer itself."""
        ahead = await self.scheduler.jobs_ahead(job)
        embed = ack_embed(job, queued_ahead=ahead, defaults=defaults, prefix=self.command_prefix())
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(job.id))
        await interaction.response.send_message(
            truncate(note, MESSAGE_LIMIT), embed=discord.Embed.from_dict(embed), view=view, allowed_mentions=NO_PINGS
        )
        ack_id = None
        try:
            ack_id = (await interaction.original_response()).id
        except discord.HTTPException as error:
            log.warning("could not read back the acknowledgement of %s: %s", job.id, error)
        await self.scheduler.acknowledged(job.id, ack_id=ack_id, message_id=ack_id)
