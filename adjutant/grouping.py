"""Adding Adjutant's cogs to a bot: as top-level commands, or all under one group (ADJUTANT_COMMAND_GROUP).

With a group (say ``adj``) every Adjutant command becomes ``$adj runs`` and ``/adj runs``, so Adjutant
fits into a host bot that already has a ``run``, ``status``, ``sync`` or ``help`` command. Without one,
a clash fails ``load_extension`` with a message that names the command and this setting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from discord import app_commands
from discord.ext import commands

from adjutant.settings import ConfigError, Settings

log = logging.getLogger(__name__)

#: Marks the group command Adjutant created, so that unloading removes exactly it.
GROUP_MARK = "adjutant-command-group"


def _clash(name: str, settings: Settings) -> ConfigError:
    if settings.command_group:
        return ConfigError(
            f"the bot already has a command named {name!r}, the name ADJUTANT_COMMAND_GROUP gives Adjutant's group; "
            "choose another group name"
        )
    return ConfigError(
        f"the bot already has a command named {name!r}, which Adjutant also defines. Set ADJUTANT_COMMAND_GROUP "
        "(keyword command_group), e.g. ADJUTANT_COMMAND_GROUP=adj, to put Adjutant's commands under one group "
        f"($adj {name}, /adj {name})"
    )


async def _show_group_help(ctx: commands.Context[Any]) -> None:
    """Adjutant's commands: run one of them, e.g. `$adj runs`."""
    await ctx.send_help(ctx.command)


async def add_cogs(bot: commands.Bot, settings: Settings, cogs: Sequence[commands.Cog]) -> None:
    """Add ``cogs`` to ``bot``; with ``settings.command_group``, re-parent their commands under one group."""
    if not settings.command_group:
        for cog in cogs:
            try:
                await bot.add_cog(cog)
            except commands.CommandRegistrationError as error:
                raise _clash(error.name, settings) from error
        return
    name = settings.command_group
    if bot.get_command(name) is not None:
        raise _clash(name, settings)
    group: commands.Group[Any, ..., Any] = commands.Group(
        _show_group_help,
        name=name,
        help="Adjutant: W&B runs and experiments. Run one of the commands below.",
        invoke_without_command=True,
        extras={GROUP_MARK: True},
    )
    slash = app_commands.Group(name=name, description="Adjutant: W&B runs and experiments", extras={GROUP_MARK: True})
    for cog in cogs:
        for command in cog.get_commands():  # the top-level commands of the cog
            group.add_command(command)  # parent set: the cog no longer adds it to the bot itself
            app_command = getattr(command, "app_command", None)  # a hybrid command's slash form
            if app_command is not None:
                slash.add_command(app_command)
        for app_only in [c for c in cog.__cog_app_commands__ if c.parent is None]:
            cog.__cog_app_commands__.remove(app_only)
            slash.add_command(app_only)
    if bot.tree.get_command(name) is not None:
        raise _clash(name, settings)
    for cog in cogs:
        await bot.add_cog(cog)
    bot.add_command(group)
    bot.tree.add_command(slash)
    log.info("Adjutant's commands are under %s%s and /%s", settings.prefix, name, name)


def remove_group(bot: commands.Bot) -> None:
    """Remove the group :func:`add_cogs` created, if any (extension teardown)."""
    for command in list(bot.commands):
        if command.extras.get(GROUP_MARK):
            bot.remove_command(command.name)
    for app_command in bot.tree.get_commands():
        if isinstance(app_command, app_commands.Group) and app_command.extras.get(GROUP_MARK):
            bot.tree.remove_command(app_command.name)
