"""Greeting: ``$hello``, the proof that Adjutant is listening."""

from __future__ import annotations

import logging

from discord.ext import commands

from adjutant import refuse_double_load, settings_for
from adjutant._cog import AdjutantCog

log = logging.getLogger(__name__)


class Greeting(AdjutantCog, name="Greeting"):
    """First contact with Adjutant."""

    @commands.hybrid_command(name="hello")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def hello(self, ctx: commands.Context[commands.Bot]) -> None:
        """Say hello: check that Adjutant is online and listening here."""
        await self.reply(ctx, "Hello!")

    @commands.command(name="sync")
    @commands.is_owner()
    async def sync(self, ctx: commands.Context[commands.Bot]) -> None:
        """Register the slash commands with Discord now (bot owner only; to ADJUTANT_GUILD_ID if set)."""
        from adjutant.bot import sync_tree

        synced = await sync_tree(self.bot, self.settings.guild_id)
        where = f"server {self.settings.guild_id}" if self.settings.guild_id else "all servers (may take up to an hour)"
        await self.reply(ctx, f"Synced {len(synced)} slash command(s) to {where}.")


async def setup(bot: commands.Bot) -> None:
    """Load the greeting cog alone."""
    refuse_double_load(bot, __name__)
    await bot.add_cog(Greeting(bot, settings_for(bot)))
