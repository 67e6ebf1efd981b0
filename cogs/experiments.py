"""Experiment launching: ``$experiment {json}`` runs the team's script with the hyperparameters."""

from __future__ import annotations

import logging
from typing import Any

from discord.ext import commands

from adjutant import refuse_double_load, settings_for
from adjutant._cog import AdjutantCog

log = logging.getLogger(__name__)


class Experiments(AdjutantCog, name="Experiments"):
    """Launch training runs from chat."""

    @commands.command(name="experiment")
    async def experiment(self, ctx: commands.Context[Any], *, hyperparameters: str = "") -> None:
        """Launch the experiment script with JSON hyperparameters, e.g. $experiment {"epochs": 10}."""
        if not self.settings.launching_enabled:
            await self.reply(
                ctx, "Launching is off: this bot has no ADJUTANT_EXPERIMENT_SCRIPT (run_experiment_script)."
            )
            return
        await self.reply(ctx, "Launching is not available in this version of Adjutant yet.")


async def setup(bot: commands.Bot) -> None:
    """Load the experiment launching cog alone."""
    refuse_double_load(bot, __name__)
    await bot.add_cog(Experiments(bot, settings_for(bot)))
