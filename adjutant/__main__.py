"""Standalone entry point: ``python -m adjutant`` (or the ``adjutant`` console script).

The only module that reads ``.env`` and configures logging.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from adjutant._version import __version__
from adjutant.settings import ConfigError, Settings, env_example, env_file_sources, variables_help

if TYPE_CHECKING:
    import discord

# discord.py is imported in the functions that use it, after main() turned the garbage collector off (see main).

log = logging.getLogger("adjutant")

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2
EXIT_INTENTS = 3
EXIT_LOGIN = 4

INTENT_HELP = """\
Discord refused the privileged Message Content intent, which Adjutant needs to read `$` commands.
Enable it:
  1. open https://discord.com/developers/applications and pick your bot's application;
  2. Bot -> Privileged Gateway Intents -> turn on MESSAGE CONTENT INTENT -> Save Changes;
  3. start Adjutant again."""

LOGIN_HELP = """\
Discord rejected DISCORD_TOKEN (401 Unauthorized).
Copy a fresh token from https://discord.com/developers/applications -> your application -> Bot -> Reset Token,
put it in DISCORD_TOKEN (e.g. in .env), and start Adjutant again."""


def say(text: str, stream: TextIO) -> None:
    """The command line's own output (``--check``, ``--invite-url``, startup errors); not logging."""
    stream.write(f"{text}\n")
    stream.flush()


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m adjutant``."""
    parser = argparse.ArgumentParser(
        prog="python -m adjutant",
        description="Run Adjutant, the Discord bot that reports W&B runs and launches experiments.",
        epilog=variables_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="read settings from this file instead of ./.env (it must exist)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the configuration, the token, the Message Content intent, the channel, the W&B key and "
        "project and the experiment script; print each problem with its fix and exit (non-zero on problems)",
    )
    parser.add_argument(
        "--invite-url",
        action="store_true",
        help="print the link that adds the bot to a server (scopes and permissions included) and exit",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to log to stderr (default: INFO)",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="register the slash commands with Discord once after login (to ADJUTANT_GUILD_ID if set), then run",
    )
    parser.add_argument("--log-file", type=Path, default=None, metavar="PATH", help="also log to this file")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="the projects file (TOML, one [[projects]] table per W&B project and channel); same as ADJUTANT_CONFIG",
    )
    parser.add_argument(
        "--env-example",
        action="store_true",
        help="print a commented .env with every variable (what .env.example holds) and exit",
    )
    parser.add_argument("--version", action="version", version=f"adjutant {__version__}")
    return parser


def load_env_file(path: Path | None) -> Path | None:
    """Load ``path`` (or ``./.env`` when present) into ``os.environ``, never overriding set variables."""
    if path is None:
        default = Path.cwd() / ".env"
        if not default.is_file():
            return None
        path = default
    elif not path.is_file():
        raise ConfigError(f"--env-file {str(path)!r} does not exist; copy .env.example to it and fill it in")
    from dotenv import load_dotenv  # only with a file to read

    load_dotenv(path, override=False)
    return path


def describe(settings: Settings) -> list[str]:
    """What this configuration will do, one line each (no secrets)."""
    lines = []
    for route in settings.routes:
        project = f"{route.entity or '(default entity)'}/{route.project}" if route.project else None
        reporting = f"{project} every {settings.poll_seconds:g}s" if project else "off"
        launching = route.experiment_script or "off"
        lines.append(
            f"channel: {route.channel}; W&B reporting: {reporting}; ranking metric: {route.metric}"
            f" ({route.metric_goal}); launching: {launching}"
        )
    return [*lines, f"prefix: {settings.prefix}", f"state folder: {settings.state_dir}"]


def preflight(settings: Settings) -> None:
    """Stop before connecting if the state folder is held by another Adjutant or its database is damaged."""
    from adjutant.services import DATABASE_NAME
    from adjutant.state import StateError, busy_message, check_database, lock_holder

    holder = lock_holder(settings.state_dir)
    if holder is not None:
        raise StateError(busy_message(settings.state_dir, holder))
    check_database(settings.state_dir / DATABASE_NAME)


def run_check(settings: Settings, out: TextIO, config_problems: Sequence[str] = ()) -> int:
    """``--check``: report every problem with its fix in one run; exit code 0 when there is none.

    A bad setting is reported and left at its default, so the other checks still run.
    """
    from adjutant.doctor import run_checks

    for problem in config_problems:
        say(f"problem: configuration: {problem}", out)
    try:
        preflight(settings)
    except ConfigError as error:
        config_problems = [*config_problems, str(error)]
        say(f"problem: state folder: {error}", out)
    for line in describe(settings):
        say(f"  {line}", out)
    findings = asyncio.run(run_checks(settings))
    for finding in findings:
        say(f"{'ok' if finding.ok else 'problem'}: {finding.check}: {finding.message}", out)
    if config_problems:
        return EXIT_CONFIG
    if any(not f.ok for f in findings):
        return EXIT_PROBLEMS
    say("configuration OK", out)
    return EXIT_OK


async def _invite(token: str) -> str:
    import discord

    from adjutant.doctor import invite_url

    client = discord.Client(intents=discord.Intents.none())
    try:
        await asyncio.wait_for(client.login(token), 15)
        app = await asyncio.wait_for(client.application_info(), 15)
        return invite_url(app.id)
    finally:
        await client.close()


def configure_logging(level: str, log_file: Path | None) -> None:
    """discord.py's format on stderr (and optionally a file)."""
    import discord

    discord.utils.setup_logging(level=getattr(logging, level), root=True)
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(
            logging.Formatter("[{asctime}] [{levelname:<8}] {name}: {message}", "%Y-%m-%d %H:%M:%S", style="{")
        )
        logging.getLogger().addHandler(handler)


async def _serve(bot: discord.Client, token: str, *, collect: bool = True) -> None:
    """Run ``bot`` until it closes; SIGTERM and SIGINT close it cleanly (jobs it launched keep running).

    The garbage collector, off while starting (see :func:`main`), is turned on once the bot is set up (``login``
    runs ``setup_hook``: the extension, its services), unless ``collect`` is False."""
    loop = asyncio.get_running_loop()
    closing: set[asyncio.Task[None]] = set()

    def close() -> None:
        log.info("signal received; closing the connection to Discord")
        task = loop.create_task(bot.close())
        closing.add(task)
        task.add_done_callback(closing.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, close)
    async with bot:
        await bot.login(token)
        if collect:
            gc.freeze()  # what starting built lives as long as the bot: full collections need not walk it again
            gc.enable()
        await bot.connect()  # what bot.start does after login


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bot (or ``--check``); returns the process exit code."""
    # Starting builds tens of thousands of objects that live as long as the process (modules, discord.py's and
    # Adjutant's, classes, commands, the services): the garbage collector would walk them ~120 times (30-40 ms of a
    # ~0.35 s start, one full collection 14-22 ms of it) and free nothing. Off until the bot is set up (_serve), or
    # until main returns.
    collect = gc.isenabled()
    gc.disable()
    try:
        return _main(argv, collect=collect)
    finally:
        if collect:
            gc.enable()


def _main(argv: Sequence[str] | None, *, collect: bool) -> int:
    import discord
    from discord.ext import commands

    args = build_parser().parse_args(argv)
    out = sys.stdout
    if args.env_example:
        out.write(env_example())
        return EXIT_OK
    try:
        already_set = frozenset(os.environ)
        env_file = load_env_file(args.env_file)
        # where each variable of the file is, for messages that say which line to change
        sources = env_file_sources(env_file.read_text(), str(env_file), already_set) if env_file else {}
        if args.config is not None:
            os.environ["ADJUTANT_CONFIG"] = str(args.config)
        if args.check:
            settings, problems = Settings.from_env_checked(os.environ, sources=sources)
            return run_check(settings, out, problems)
        settings = Settings.from_env(os.environ, sources=sources)
    except ConfigError as error:
        for problem in error.problems:
            say(f"configuration error: {problem}", sys.stderr)
        return EXIT_CONFIG
    if settings.token is None:
        say(f"configuration error: {settings.problems(os.environ)[0]}", sys.stderr)
        return EXIT_CONFIG
    if args.invite_url:
        try:
            say(asyncio.run(_invite(settings.token.reveal())), out)
        except discord.LoginFailure:
            say(LOGIN_HELP, sys.stderr)
            return EXIT_LOGIN
        except (TimeoutError, OSError, discord.HTTPException) as error:
            say(f"Discord not reachable: {error}", sys.stderr)
            return EXIT_PROBLEMS
        return EXIT_OK

    from adjutant.bot import Adjutant

    configure_logging(args.log_level, args.log_file)
    # Adjutant has no voice features: discord.py's warnings about missing voice libraries are noise here.
    discord.VoiceClient.warn_nacl = False
    if hasattr(discord.VoiceClient, "warn_dave"):
        discord.VoiceClient.warn_dave = False
    for line in describe(settings):
        log.info("%s", line)
    try:
        preflight(settings)
    except ConfigError as error:
        say(f"configuration error: {error}", sys.stderr)
        return EXIT_CONFIG
    bot = Adjutant(settings=settings, sync_commands=args.sync)
    try:
        asyncio.run(_serve(bot, settings.token.reveal(), collect=collect))
    except commands.ExtensionFailed as error:
        if not isinstance(error.original, ConfigError):
            raise
        say(f"configuration error: {error.original}", sys.stderr)
        return EXIT_CONFIG
    except discord.PrivilegedIntentsRequired:
        say(INTENT_HELP, sys.stderr)
        return EXIT_INTENTS
    except discord.LoginFailure:
        say(LOGIN_HELP, sys.stderr)
        return EXIT_LOGIN
    except KeyboardInterrupt:
        pass
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
