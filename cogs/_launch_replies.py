"""How a launch door answers what the launch service decided: a refusal (to the asker), an acknowledgement with its
own thread (:class:`~adjutant.cogs._job_story.JobStory`), or an approval card. Composed into the Experiments cog,
the launch forms and the alert card's Rerun; it sends and records message ids, nothing else."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS, route_in
from adjutant.cogs._approval_views import approval_view
from adjutant.cogs._job_story import JobStory
from adjutant.launching import Awaiting, Launching, Outcome, Queued, Refused
from adjutant.projects import ProjectRoute
from adjutant.render import MESSAGE_LIMIT, truncate
from adjutant.settings import Settings
from adjutant.usage_render import approval_card

log = logging.getLogger(__name__)

Origin = commands.Context[Any] | discord.Interaction


class LaunchReplies:
    """Answers the outcome of a launch door."""

    def __init__(self, settings: Settings, launching: Launching, story: JobStory) -> None:
        self.settings = settings
        self.launching = launching
        self.story = story

    def route_here(self, channel: Any) -> ProjectRoute:
        """The route of the channel asked in (a thread counts as its parent), else the first (the global rule)."""
        return route_in(self.settings.routes, channel) or self.settings.routes[0]

    async def answer(self, origin: Origin, outcome: Outcome, *, prefix: str) -> None:
        if isinstance(outcome, Refused):
            await self.refuse(origin, outcome.text)
        elif isinstance(outcome, Queued):
            job = outcome.jobs[0]
            await self.story.acknowledge(origin, job, outcome.defaults, prefix=prefix, extra=outcome.note)
        else:
            await self.post_card(origin, outcome)

    @staticmethod
    async def refuse(origin: Origin, text: str) -> None:
        """A refusal only the asker needs: ephemeral for a click or a form, a reply for a command."""
        text = truncate(text, MESSAGE_LIMIT)
        try:
            if isinstance(origin, discord.Interaction):
                if origin.response.is_done():
                    await origin.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
                else:
                    await origin.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)
            else:
                await origin.send(text, allowed_mentions=NO_PINGS, ephemeral=True)
        except discord.HTTPException:
            log.exception("could not answer a refused launch in #%s", origin.channel)

    async def post_card(self, origin: Origin, awaiting: Awaiting) -> None:
        """The request's card with Approve / Reject, as the answer to the command or the form."""
        card: dict[str, Any] = {
            "embed": discord.Embed.from_dict(approval_card(awaiting.approval)),
            "view": approval_view(awaiting.approval.id),
            "allowed_mentions": NO_PINGS,
        }
        text = truncate(awaiting.text, MESSAGE_LIMIT)
        try:
            if isinstance(origin, commands.Context):
                message = await origin.reply(text, mention_author=False, **card)
            else:
                await origin.response.send_message(text, **card)
                message = await origin.original_response()
        except discord.HTTPException as error:
            log.warning("could not post the card of request #%d: %s", awaiting.approval.id, error)
            return
        await self.launching.card_posted(awaiting.approval, message.id)
