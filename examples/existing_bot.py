"""An existing bot, with its own cog, that loads Adjutant as an extension.

Run it with the same environment as Adjutant (DISCORD_TOKEN, WANDB_ENTITY, WANDB_PROJECT, ...):

    python examples/existing_bot.py
"""

from __future__ import annotations

import logging
import os

import discord
from discord.ext import commands
from dotenv import load_dotenv


class Utilities(commands.Cog):
    """The host bot's own commands."""

    @commands.command()
    async def ping(self, ctx: commands.Context) -> None:
        """Answer pong: the host bot's own command."""
        await ctx.send("pong")


class HostBot(commands.Bot):
    """A bot that existed before Adjutant."""

    async def setup_hook(self) -> None:
        await self.add_cog(Utilities())
        await self.load_extension("adjutant")  # all of Adjutant's cogs, configured from the environment


def main() -> None:
    load_dotenv()  # the host decides about .env and logging; Adjutant, as a guest, does neither
    intents = discord.Intents.default()
    intents.message_content = True  # needed by prefix commands, the host's and Adjutant's
    bot = HostBot(command_prefix="$", intents=intents)
    bot.run(os.environ["DISCORD_TOKEN"], log_level=logging.INFO)


if __name__ == "__main__":
    main()
