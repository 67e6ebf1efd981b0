"""The standalone bot: a ``commands.Bot`` that loads the Adjutant extension."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS
from adjutant.settings import Settings

__all__ = ["Adjutant", "default_intents", "sync_tree"]

log = logging.getLogger(__name__)


async def sync_tree(bot: commands.Bot, guild_id: int | None) -> list[Any]:
    """Register the slash commands with Discord: to one server (instant) or globally (may take a while)."""
    if guild_id is not None:
        guild = discord.Object(id=guild_id)
        bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
        log.info("synced %d slash commands to server %d", len(synced), guild_id)
    else:
        synced = await bot.tree.sync()
        log.info("synced %d slash commands globally (Discord may take up to an hour to show them)", len(synced))
    return synced


def default_intents() -> discord.Intents:
    """Guilds and messages, plus the privileged Message Content intent that ``$`` commands need."""
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


class Adjutant(commands.Bot):
    """A Discord bot that reports a W&B project's runs and launches experiments.

    ``Adjutant('entity', 'project', run_experiment_script='./run_experiment.sh').run(token)`` is the
    whole program. Every setting has a keyword argument; a setting not given is read from the
    environment variable of the same meaning (see README), so ``.env`` works here too.
    """

    def __init__(
        self,
        wandb_entity: str | None = None,
        wandb_project_title: str | None = None,
        run_experiment_script: str | os.PathLike[str] | None = None,
        *,
        channel: str | int | None = None,
        channel_name: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        poll_seconds: float | None = None,
        launch_roles: list[str] | tuple[str, ...] | None = None,
        launch_users: list[int] | tuple[int, ...] | None = None,
        metric: str | None = None,
        metric_goal: str | None = None,
        prefix: str | None = None,
        env: Mapping[str, str] | None = None,
        settings: Settings | None = None,
        sync_commands: bool = False,
        **bot_options: Any,
    ) -> None:
        if settings is None:
            settings = Settings.from_env(
                os.environ if env is None else env,
                entity=wandb_entity,
                project=wandb_project_title,
                run_experiment_script=run_experiment_script,
                channel=channel if channel is not None else channel_name,
                state_dir=state_dir,
                poll_seconds=poll_seconds,
                launch_roles=launch_roles,
                launch_users=launch_users,
                metric=metric,
                metric_goal=metric_goal,
                prefix=prefix,
            )
        self.settings = settings
        self.sync_commands = sync_commands
        bot_options.setdefault("intents", default_intents())
        bot_options.setdefault("allowed_mentions", NO_PINGS)
        bot_options.setdefault("description", "Adjutant: W&B run reports and experiment launches from Discord.")
        bot_options.setdefault("help_command", commands.DefaultHelpCommand(no_category="Help", dm_help=False))
        super().__init__(command_prefix=settings.prefix, **bot_options)

    async def setup_hook(self) -> None:
        """Load the Adjutant extension through the same ``setup()`` a host uses; sync slash commands if asked."""
        await self.load_extension("adjutant")
        if self.sync_commands:  # setup_hook runs after login, so the application id is known
            await sync_tree(self, self.settings.guild_id)

    def run(self, token: str | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Log in and run until stopped. ``token`` defaults to DISCORD_TOKEN from the settings."""
        if token is None:
            if self.settings.token is None:
                raise discord.LoginFailure("no token given and DISCORD_TOKEN is not set")
            token = self.settings.token.reveal()
        super().run(token, **kwargs)

    def __repr__(self) -> str:
        return f"<Adjutant settings={self.settings!r}>"
