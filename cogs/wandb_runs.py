"""W&B run reporting: announces run lifecycle changes and answers questions about runs."""

from __future__ import annotations

import logging

from discord.ext import commands

from adjutant import refuse_double_load, settings_for
from adjutant._cog import AdjutantCog
from adjutant.settings import ConfigError

log = logging.getLogger(__name__)


class WandbRuns(AdjutantCog, name="Runs"):
    """Reports on the runs of a W&B project."""


async def setup(bot: commands.Bot) -> None:
    """Load the W&B reporting cog alone; it needs WANDB_PROJECT."""
    refuse_double_load(bot, __name__)
    settings = settings_for(bot)
    if not settings.reporting_enabled:
        raise ConfigError("the W&B reporting cog needs WANDB_PROJECT (and usually WANDB_ENTITY) to be set")
    await bot.add_cog(WandbRuns(bot, settings))
