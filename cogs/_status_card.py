"""The pinned status card: posted once by ``$status pin``, then edited in place, never posted again.

Which card lives where is kept in SQLite (a restart edits the same message). The rule for what it shows and when an
edit is due is :mod:`adjutant.status`; this module only sends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from adjutant._cog import NO_PINGS
from adjutant.status import Snapshot, edit_due, status_card
from adjutant.store import Store

log = logging.getLogger(__name__)


class StatusCards:
    """The cards of one bot; ``snapshot()`` says what they should show now, ``clock()`` what time it is (``time.time``
    seconds: real time, or a test's) for the at-most-one-edit-a-minute rule."""

    def __init__(
        self,
        bot: Any,
        store: Store,
        snapshot: Callable[[], Awaitable[Snapshot]],
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bot = bot
        self.store = store
        self.snapshot = snapshot
        self.prefix = prefix
        self.clock = clock

    async def pin(self, channel: Any) -> str:
        """Post and pin the card in ``channel`` (or say where it already is); the answer for the member."""
        cards = await asyncio.to_thread(self.store.status_cards)
        existing = cards.get(channel.id)
        if existing is not None:
            url = f"https://discord.com/channels/{channel.guild.id}/{channel.id}/{existing['message_id']}"
            return f"This channel's status card is already there, and kept up to date: {url}"
        snapshot = await self.snapshot()
        message = await channel.send(
            embed=discord.Embed.from_dict(status_card(snapshot, prefix=self.prefix)), allowed_mentions=NO_PINGS
        )
        card = {"message_id": message.id, "signature": snapshot.signature(), "edited_at": self.clock()}
        card["stamps"] = list(snapshot.stamps())
        await asyncio.to_thread(self.store.set_status_card, channel.id, card)
        try:
            await message.pin(reason="Adjutant's status card")
        except discord.HTTPException as error:
            log.warning("could not pin the status card in #%s: %s", channel, error)
            return (
                "Status card posted; I could not pin it (I need the Pin Messages or Manage Messages permission here)."
                " It is kept up to date anyway."
            )
        return "Status card posted and pinned; it is edited in place at most once a minute, when something changes."

    async def refresh(self) -> None:
        """Edit each card whose content is due (see :func:`adjutant.status.edit_due`)."""
        cards = await asyncio.to_thread(self.store.status_cards)
        if not cards:
            return
        snapshot = await self.snapshot()
        now = self.clock()
        for channel_id, card in cards.items():
            due = edit_due(
                snapshot,
                now=now,
                last_edit=float(card.get("edited_at", 0)),
                last_signature=str(card.get("signature", "")),
                last_stamps=card.get("stamps", []),
            )
            if not due:
                continue
            channel = self.bot.get_channel(channel_id)
            if channel is None:
                continue  # not in the cache yet (or gone): the next round tries again
            embed = discord.Embed.from_dict(status_card(snapshot, prefix=self.prefix))
            try:
                await channel.get_partial_message(card["message_id"]).edit(embed=embed)
            except discord.NotFound:
                log.warning("the status card in #%s was deleted; $status pin posts a new one", channel)
                await asyncio.to_thread(self.store.drop_status_card, channel_id)
                continue
            except discord.HTTPException as error:
                log.warning("could not edit the status card in #%s (next round retries): %s", channel, error)
                continue
            card.update(signature=snapshot.signature(), edited_at=now, stamps=list(snapshot.stamps()))
            await asyncio.to_thread(self.store.set_status_card, channel_id, card)
