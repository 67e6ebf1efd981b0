"""Greeting: ``$hello``, the proof that Adjutant is listening."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from adjutant import refuse_double_load, settings_for
from adjutant._cog import AdjutantCog

log = logging.getLogger(__name__)


class Greeting(AdjutantCog, name="Greeting"):
    """First contact with Adjutant, and which servers it answers in."""

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        for guild in list(self.bot.guilds):
            await self._consider(guild)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._consider(guild)

    async def _consider(self, guild: discord.Guild) -> None:
        """A server Adjutant does not serve: leave it (ADJUTANT_LEAVE_UNKNOWN_GUILDS) or ignore it (logged once)."""
        if self.serves(guild):
            return
        if self.settings.leave_unknown_guilds and self.settings.guild_ids:
            log.warning("leaving server %s (%d): not in ADJUTANT_GUILD_ID", guild.name, guild.id)
            try:
                await guild.leave()
            except discord.HTTPException as error:
                log.error("could not leave server %s (%d): %s", guild.name, guild.id, error)

    @commands.hybrid_command(name="hello")  # type: ignore[arg-type]  # discord.py stubs reject hybrid commands in cogs
    async def hello(self, ctx: commands.Context[commands.Bot]) -> None:
        """Say hello: check that Adjutant is online and listening here."""
        await self.reply(ctx, "Hello!")

    @commands.command(name="sync")
    @commands.is_owner()
    async def sync(self, ctx: commands.Context[commands.Bot]) -> None:
        """Register the slash commands with Discord now (bot owner only; to ADJUTANT_GUILD_ID if set)."""
        from adjutant.bot import SyncRefused, sync_tree

        try:
            synced = await sync_tree(self.bot, self.settings.guild_ids)
        except SyncRefused as error:
            await self.reply(ctx, f"{error}. Nothing was registered; the bot's log has the details.")
            return
        where = (
            f"server(s) {', '.join(map(str, self.settings.guild_ids))}"
            if self.settings.guild_ids
            else "all servers (may take up to an hour)"
        )
        await self.reply(ctx, f"Synced {len(synced)} slash command(s) to {where}.")


async def setup(bot: commands.Bot) -> None:
    """Load the greeting cog alone."""
    refuse_double_load(bot, __name__)
    await bot.add_cog(Greeting(bot, settings_for(bot)))
