"""Greeting: ``$hello``, the proof that Adjutant is listening."""

from __future__ import annotations

import logging
from typing import Any

from discord.ext import commands

from adjutant import refuse_double_load, settings_for
from adjutant._cog import AdjutantCog

log = logging.getLogger(__name__)


class Greeting(AdjutantCog, name="Greeting"):
    """First contact with Adjutant."""

    @commands.command(name="hello")
    async def hello(self, ctx: commands.Context[Any]) -> None:
        """Say hello: check that Adjutant is online and listening here."""
        await self.reply(ctx, "Hello!")


async def setup(bot: commands.Bot) -> None:
    """Load the greeting cog alone."""
    refuse_double_load(bot, __name__)
    await bot.add_cog(Greeting(bot, settings_for(bot)))
