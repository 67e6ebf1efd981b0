"""The standalone bot: a ``commands.Bot`` that loads the Adjutant extension."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS
from adjutant.settings import Settings, unknown_keyword_message

__all__ = ["Adjutant", "default_intents", "sync_tree"]

log = logging.getLogger(__name__)


class SyncRefused(RuntimeError):
    """Discord refused the slash commands; the message says what it named (a command, a field, a limit)."""


async def sync_tree(bot: commands.Bot, guild_ids: tuple[int, ...]) -> list[Any]:
    """Register the slash commands with Discord: to Adjutant's servers (instant) or globally (may take a while).

    Raises :class:`SyncRefused` with Discord's own words when it refuses them."""
    try:
        return await _sync_tree(bot, guild_ids)
    except discord.app_commands.CommandSyncFailure as error:
        lines = [re.sub(r"In command '([^']+)' defined in function '[^']*'", r"/\1", line).strip()
                 for line in str(error).splitlines()[1:]] or [error.text]  # fmt: skip
        where = " ".join(f"{line}:" if line.startswith("/") else f"{line};" for line in lines).rstrip(";")
        raise SyncRefused(
            f"Discord refused the slash commands (HTTP {error.status}, code {error.code}): {where}"
        ) from None
    except discord.HTTPException as error:
        raise SyncRefused(f"Discord refused the slash commands ({error.status}): {error.text}") from None


async def _sync_tree(bot: commands.Bot, guild_ids: tuple[int, ...]) -> list[Any]:
    synced: list[Any] = []
    for guild_id in guild_ids:
        guild = discord.Object(id=guild_id)
        bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
        log.info("synced %d slash commands to server %d", len(synced), guild_id)
    if not guild_ids:
        synced = await bot.tree.sync()
        log.info("synced %d slash commands globally (Discord may take up to an hour to show them)", len(synced))
    return synced


def default_intents() -> discord.Intents:
    """Guilds and messages, plus the privileged Message Content intent that ``$`` commands need."""
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


#: Keywords that discord.py's ``commands.Bot`` (and ``discord.Client``) take; everything else must be a setting.
BOT_OPTIONS = frozenset(
    {
        "help_command", "tree_cls", "description", "allowed_contexts", "allowed_installs", "intents",
        "strip_after_prefix", "case_insensitive", "owner_id", "owner_ids", "self_bot", "max_messages", "proxy",
        "proxy_auth", "shard_id", "shard_count", "application_id", "member_cache_flags", "chunk_guilds_at_startup",
        "status", "activity", "allowed_mentions", "heartbeat_timeout", "guild_ready_timeout", "assume_unsync_clock",
        "enable_debug_events", "http_trace", "max_ratelimit_timeout", "connector", "enable_raw_presences",
    }
)  # fmt: skip


class Adjutant(commands.Bot):
    """A Discord bot that reports a W&B project's runs and launches experiments.

    ``Adjutant('entity', 'project', run_experiment_script='./run_experiment.sh').run(token)`` is the
    whole program. Every setting has a keyword (``max_concurrent=4``, ``job_threads=False``, ... see
    :class:`adjutant.settings.Settings`), given as a typed value; a setting not given is read from its
    environment variable (``env``, default ``os.environ``). ``.env`` files are read only by
    ``python -m adjutant``; in a program of your own, call ``dotenv.load_dotenv()`` first if you want one.
    Other keywords go to ``commands.Bot``; a keyword that is neither raises :class:`TypeError`.
    ``bot.settings.<keyword>`` reads each setting back.
    """

    def __init__(
        self,
        wandb_entity: str | None = None,
        wandb_project_title: str | None = None,
        run_experiment_script: str | os.PathLike[str] | None = None,
        *,
        channel_name: str | None = None,
        env: Mapping[str, str] | None = None,
        settings: Settings | None = None,
        sync_commands: bool = False,
        **options: Any,
    ) -> None:
        keywords = {k: options.pop(k) for k in list(options) if k in Settings.keywords()}
        unknown = sorted(set(options) - BOT_OPTIONS)
        if unknown:
            raise TypeError(f"Adjutant() got an unexpected keyword: {unknown_keyword_message(unknown[0])}")
        if settings is None:
            keywords.setdefault("entity", wandb_entity)
            keywords.setdefault("project", wandb_project_title)
            keywords.setdefault("run_experiment_script", run_experiment_script)
            if keywords.get("channel") is None:
                keywords["channel"] = channel_name
            settings = Settings.from_env(os.environ if env is None else env, **keywords)
        elif keywords:
            raise TypeError("give either settings= or setting keywords, not both")
        self.settings = settings
        self.sync_commands = sync_commands
        options.setdefault("intents", default_intents())
        options.setdefault("allowed_mentions", NO_PINGS)
        options.setdefault("description", "Adjutant: W&B run reports and experiment launches from Discord.")
        # width: a command's whole first docstring line (its syntax, ≤ 100 characters) fits in the listing.
        options.setdefault("help_command", commands.DefaultHelpCommand(no_category="Help", dm_help=False, width=140))
        super().__init__(command_prefix=settings.prefix, **options)

    async def setup_hook(self) -> None:
        """Load the Adjutant extension through the same ``setup()`` a host uses; sync slash commands if asked."""
        await self.load_extension("adjutant")
        if self.sync_commands:  # setup_hook runs after login, so the application id is known
            try:
                await sync_tree(self, self.settings.guild_ids)
            except SyncRefused as error:
                log.error("%s; the bot runs without (new) slash commands, its $ commands work", error)

    def run(self, token: str | None = None, **kwargs: Any) -> None:
        """Log in and run until stopped. ``token`` defaults to DISCORD_TOKEN from the settings."""
        if token is None:
            if self.settings.token is None:
                raise discord.LoginFailure("no token given and DISCORD_TOKEN is not set")
            token = self.settings.token.reveal()
        super().run(token, **kwargs)

    def __repr__(self) -> str:
        return f"<Adjutant settings={self.settings!r}>"
