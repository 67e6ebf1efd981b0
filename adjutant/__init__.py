"""Adjutant: a Discord bot (discord.py cogs) that reports W&B runs and launches experiments.

Use it standalone (``python -m adjutant``), as a bot class (``Adjutant(...).run(token)``), or as
an extension of an existing bot (``await bot.load_extension("adjutant")``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from adjutant._version import __version__
from adjutant.settings import ConfigError, Settings

if TYPE_CHECKING:
    from discord.ext import commands

    from adjutant.bot import Adjutant

__all__ = [
    "Adjutant",
    "ConfigError",
    "Settings",
    "__version__",
    "refuse_double_load",
    "settings_for",
    "setup",
]

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    # discord.py is imported on first use of Adjutant, not by ``import adjutant``: the job
    # supervisor (python -m adjutant.supervisor) lives as long as a training run and needs none of it.
    if name == "Adjutant":
        from adjutant.bot import Adjutant

        return Adjutant
    raise AttributeError(f"module 'adjutant' has no attribute {name!r}")


def settings_for(bot: commands.Bot) -> Settings:
    """The settings of an :class:`Adjutant` bot, or (in a host bot) those of the environment, read now.

    The class is recognised by name, not identity: loading or unloading the ``adjutant`` extension
    makes discord.py re-import every ``adjutant.*`` module, so the bot's class may predate ours.
    """
    if any(cls.__module__ == "adjutant.bot" and cls.__qualname__ == "Adjutant" for cls in type(bot).__mro__):
        return bot.settings  # type: ignore[attr-defined]
    return Settings.from_env(os.environ)


def refuse_double_load(bot: commands.Bot, extension: str) -> None:
    """Loading the umbrella ``adjutant`` and a single ``adjutant.cogs.X`` together is a mistake; say so."""
    from discord.ext import commands

    if extension == "adjutant":
        loaded = [name for name in bot.extensions if name.startswith("adjutant.")]
    else:
        loaded = [name for name in bot.extensions if name == "adjutant"]
    if loaded:
        raise commands.ExtensionError(
            f"cannot load {extension!r}: {', '.join(loaded)} already loaded. Load either 'adjutant' (all cogs) "
            "or single 'adjutant.cogs.<name>' extensions, not both.",
            name=extension,
        )


async def setup(bot: commands.Bot) -> None:
    """Load all of Adjutant's cogs (discord.py calls this on ``load_extension("adjutant")``).

    The services (scheduler, watcher, stores) are built once here and handed to the cogs.
    """
    refuse_double_load(bot, "adjutant")
    from adjutant.cogs.experiments import Experiments
    from adjutant.cogs.greeting import Greeting
    from adjutant.cogs.sweeps import Sweeps
    from adjutant.cogs.usage import Usage
    from adjutant.grouping import add_cogs
    from adjutant.services import Services

    settings = settings_for(bot)
    if settings.reporting_enabled:  # the reporting cogs' modules only where they are added
        from adjutant.cogs._feeds import Feeds
        from adjutant.cogs.desk import Desk
        from adjutant.cogs.rules import Rules
        from adjutant.cogs.wandb_runs import Runs
    services = await Services.open(settings, secrets=lambda: (getattr(bot.http, "token", None) or "",))
    cogs: list[commands.Cog] = [
        Greeting(bot, settings),
        Experiments(bot, settings, services),
        Sweeps(bot, settings, services),
        Usage(bot, settings, services),
    ]
    if settings.reporting_enabled:
        feeds = Feeds(bot, settings, services)  # the W&B projects, shared by the three reporting cogs
        cogs += [
            Runs(bot, settings, services, feeds),
            Rules(bot, settings, services, feeds),
            Desk(bot, settings, services, feeds),
        ]
    else:
        log.warning("WANDB_PROJECT is not set: W&B run reporting is off (set WANDB_ENTITY and WANDB_PROJECT)")
    try:
        await add_cogs(bot, settings, cogs)
    except BaseException:
        await services.close_if_unused()  # discord.py removes the cogs already added; they release theirs
        raise


async def teardown(bot: commands.Bot) -> None:
    """discord.py calls this on ``unload_extension("adjutant")``, after the cogs are removed."""
    from adjutant.grouping import remove_group

    remove_group(bot)
