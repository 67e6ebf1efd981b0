"""Long answers as pages with ◀ / ▶ buttons that only the member who asked may press."""

from __future__ import annotations

import contextlib
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS

#: How long the buttons work; then they are removed and the page shown stays.
PAGER_SECONDS = 600


class Pager(discord.ui.View):
    """Turns the pages of one answer; the asker's alone."""

    def __init__(self, pages: list[dict[str, Any]], owner_id: int) -> None:
        super().__init__(timeout=PAGER_SECONDS)
        self.pages = pages
        self.owner_id = owner_id
        self.index = 0
        self.message: discord.Message | None = None
        self._sync()

    def _sync(self) -> None:
        self.previous.disabled = self.index == 0
        self.next.disabled = self.index == len(self.pages) - 1

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(
                "Only the member who asked can turn these pages; ask for your own copy.", ephemeral=True
            )
            return False
        return True

    async def _show(self, interaction: discord.Interaction, index: int) -> None:
        self.index = max(0, min(index, len(self.pages) - 1))
        self._sync()
        await interaction.response.edit_message(embed=discord.Embed.from_dict(self.pages[self.index]), view=self)

    @discord.ui.button(label="◀", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index - 1)

    @discord.ui.button(label="▶", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await self._show(interaction, self.index + 1)

    async def on_timeout(self) -> None:
        if self.message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(view=None)


async def send_pages(ctx: commands.Context[Any], pages: list[dict[str, Any]]) -> None:
    """The first page, with the buttons when there are more."""
    first = discord.Embed.from_dict(pages[0])
    if len(pages) == 1:
        await ctx.send(embed=first, allowed_mentions=NO_PINGS)
        return
    view = Pager(pages, ctx.author.id)
    view.message = await ctx.send(embed=first, view=view, allowed_mentions=NO_PINGS)
