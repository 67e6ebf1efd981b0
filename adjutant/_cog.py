"""What every Adjutant cog shares: the channel it listens in, and how its errors reach the chat.

Everything here is scoped to Adjutant's own cogs (``cog_check`` and ``cog_command_error``); nothing
is installed on the host bot.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import discord
from discord.ext import commands

from adjutant.launching import Asker
from adjutant.projects import ProjectRoute
from adjutant.render import MESSAGE_LIMIT, code_safe, plain, truncate
from adjutant.settings import Settings

if TYPE_CHECKING:
    from adjutant.services import Services

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Adjutant never pings: run names, job names and user input may contain @everyone or mentions.
NO_PINGS = discord.AllowedMentions.none()


#: What each alert button does, for refusals.
BUTTON_ACTIONS = {
    "stop": "stop jobs",
    "rerun": "launch experiments",
    "mute": "mute alerts",
    "canary": "retry canaries",
    "resume": "resume sweeps",
    "drop": "drop sweeps",
}


class WrongChannel(commands.CheckFailure):
    """The command was posted outside Adjutant's channel; it is ignored without a reply."""


class WrongGuild(commands.CheckFailure):
    """The command came from a server Adjutant does not serve; it is ignored without any answer."""


_warned_guilds: set[int] = set()


def note_foreign_guild(guild: Any, settings: Settings, guilds_joined: int) -> None:
    """Log once per server that Adjutant ignores it (and why)."""
    guild_id = getattr(guild, "id", 0)
    if guild_id in _warned_guilds:
        return
    _warned_guilds.add(guild_id)
    if settings.guild_ids:
        log.warning(
            "ignoring server %s (%s): not in ADJUTANT_GUILD_ID; set ADJUTANT_LEAVE_UNKNOWN_GUILDS=on to leave it",
            getattr(guild, "name", "?"),
            guild_id,
        )
    else:
        log.error(
            "the bot is in %d servers and ADJUTANT_GUILD_ID is not set: ignoring every command until it names the "
            "team's server (anyone can invite a public bot; see `python -m adjutant --check`)",
            guilds_joined,
        )


def channel_matches(setting: str | int, channel: Any) -> bool:
    """True if ``channel`` (a discord channel or thread) is the configured one.

    ``setting`` is a channel id or a channel name. A thread counts as its parent channel, so that
    a job's thread can take commands too.
    """
    candidates = [channel]
    parent = getattr(channel, "parent", None)
    if parent is not None:
        candidates.append(parent)
    for candidate in candidates:
        if isinstance(setting, int):
            if getattr(candidate, "id", None) == setting:
                return True
        elif getattr(candidate, "name", None) == setting:
            return True
    return False


def find_channel(
    bot: commands.Bot, settings: Settings, channel: str | int | None = None
) -> discord.abc.Messageable | None:
    """A configured channel (default: the first project's) in Adjutant's own server(s), or None."""
    from adjutant.access import guild_allowed

    setting = settings.routes[0].channel if channel is None else channel
    guilds = [g for g in bot.guilds if guild_allowed(g.id, settings, len(bot.guilds))]
    if isinstance(setting, int):
        found = bot.get_channel(setting)
        guild = getattr(found, "guild", None)
        if guild is None or guild not in guilds:
            return None
        return found if isinstance(found, discord.abc.Messageable) else None
    matches = [
        c
        for guild in guilds
        for c in guild.text_channels
        if c.name == setting and c.permissions_for(guild.me).send_messages
    ]
    if len(matches) > 1:
        log.warning(
            "%d channels are named #%s; announcing in the one of guild %s. Set ADJUTANT_CHANNEL to a channel id "
            "to choose.",
            len(matches),
            setting,
            matches[0].guild.name,
        )
    return matches[0] if matches else None


def route_in(routes: Sequence[ProjectRoute], channel: Any) -> ProjectRoute | None:
    """The route of a channel (a thread counts as its parent), or None if Adjutant does not serve it."""
    return next((route for route in routes if channel_matches(route.channel, channel)), None)


def home_of(channel: Any) -> Any:
    """Where a job's story opens: the channel itself, or a thread's parent (a thread has no threads)."""
    if isinstance(channel, discord.Thread) and channel.parent is not None:
        return channel.parent
    return channel


def route_channel(bot: commands.Bot, settings: Settings, route: ProjectRoute, guild: Any) -> Any:
    """The channel a route names, in ``guild`` (by id, or by name among its text channels), or None."""
    if isinstance(route.channel, int):
        found = bot.get_channel(route.channel)
        return found if getattr(found, "guild", None) == guild else None
    return next((c for c in getattr(guild, "text_channels", ()) if c.name == route.channel), None)


def can_see(bot: commands.Bot, settings: Settings, user: Any, guild: Any, route: ProjectRoute) -> bool:
    """Can ``user`` (a member of ``guild``) see ``route``'s channel: Discord's View Channel there, with the
    channel's overwrites? A plain user (a DM) sees none."""
    if not isinstance(user, discord.Member):
        return False
    channel = route_channel(bot, settings, route, guild)
    return channel is not None and channel.permissions_for(user).view_channel


async def member_may_see(bot: commands.Bot, settings: Settings, user_id: int, project_key: str) -> bool:
    """May this member still receive news of ``project_key`` (``""``: their own jobs)? Only while they are in one of
    Adjutant's servers and can see a channel that serves the project (checked when a direct message is delivered)."""
    from adjutant.access import guild_allowed

    routes = [r for r in settings.routes if not project_key or r.project_key == project_key]
    for guild in bot.guilds:
        if not guild_allowed(guild.id, settings, len(bot.guilds)):
            continue
        member = guild.get_member(user_id)
        if member is None:
            try:
                member = await guild.fetch_member(user_id)
            except discord.NotFound:
                continue  # not (or no longer) in this server
        if not project_key or any(can_see(bot, settings, member, guild, route) for route in routes):
            return True
    return False


#: One owner lookup at a time per bot: discord.py keeps the application's owner only once Discord has answered, so
#: commands arriving together before that each asked Discord (40 launches at once: 40 requests).
_OWNER_LOOKUPS: weakref.WeakKeyDictionary[commands.Bot, asyncio.Lock] = weakref.WeakKeyDictionary()


async def is_owner(bot: commands.Bot, user: discord.abc.User) -> bool:
    """``bot.is_owner(user)``, asking Discord for the owner at most once however many commands come at once; False
    when Discord cannot say."""
    lock = _OWNER_LOOKUPS.setdefault(bot, asyncio.Lock())
    try:
        if bot.owner_id is None and not bot.owner_ids:
            async with lock:  # the first caller asks; the others find the answer kept
                return await bot.is_owner(user)
        return await bot.is_owner(user)
    except discord.HTTPException:
        return False


async def asker_of(
    bot: commands.Bot, settings: Settings, origin: commands.Context[Any] | discord.Interaction, route: ProjectRoute
) -> Asker:
    """Who asks and where, for the launch service (see :class:`adjutant.launching.Asker`)."""
    if isinstance(origin, commands.Context):
        user: Any = origin.author
        message_id = origin.message.id if origin.interaction is None else None
    else:
        user = origin.user
        message_id = None
    owner = await is_owner(bot, user)
    guild = origin.guild
    home = home_of(origin.channel)
    if home is not origin.channel:
        message_id = None  # the command is in a thread: the job's story opens in the channel, not as a reply
    return Asker(
        user=user,
        is_owner=owner,
        route=route,
        channel_id=getattr(home, "id", 0),
        guild_id=getattr(guild, "id", None),
        message_id=message_id,
        can_see=lambda other: can_see(bot, settings, user, guild, other),
    )


def checked_route(ctx: commands.Context[Any]) -> ProjectRoute | None:
    """The route ``cog_check`` resolved for this command (None before the check ran)."""
    # Not isinstance: loading the extension re-imports adjutant.projects, so a route made before is of the old class.
    return cast("ProjectRoute | None", getattr(ctx, "adjutant_route", None))


PROJECT_WORD = re.compile(r"(?:^|\s)project:(\S+)")


def take_project_word(ctx: commands.Context[Any]) -> None:
    """``project:<name>`` anywhere in a ``$`` command's arguments asks about another project: taken out of the
    text before the arguments are parsed, and kept as ``ctx.adjutant_project``."""
    view = ctx.view
    if ctx.interaction is not None or view is None or getattr(ctx, "adjutant_project", None) is not None:
        return
    rest = view.buffer[view.index :]
    match = PROJECT_WORD.search(rest)
    if match is None:
        return
    ctx.adjutant_project = match[1]  # type: ignore[attr-defined]
    cleaned = rest[: match.start()] + rest[match.end() :]
    view.buffer = view.buffer[: view.index] + cleaned
    view.end = len(view.buffer)


class AdjutantCog(commands.Cog):
    """Base of Adjutant's cogs: listens only in the configured channel, never leaks a traceback."""

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services | None = None) -> None:
        self.bot = bot
        self.settings = settings
        #: The shared services (stores, scheduler, watchers, launching), for the cogs that use them.
        self.services = services
        #: The channels Adjutant serves and what each holds (ADJUTANT_CONFIG, or the one-project variables).
        self.routes: tuple[ProjectRoute, ...] = settings.routes

    def route_for(self, channel: Any) -> ProjectRoute | None:
        """The route of a channel (a thread counts as its parent), or None if Adjutant does not serve it."""
        return route_in(self.routes, channel)

    def channels_text(self) -> str:
        return ", ".join(route.channel_label() for route in self.routes)

    def serves(self, guild: Any) -> bool:
        """True if ``guild`` is one of Adjutant's servers (see :func:`adjutant.access.guild_allowed`)."""
        from adjutant.access import guild_allowed

        if guild_allowed(getattr(guild, "id", None), self.settings, len(self.bot.guilds)):
            return True
        if guild is not None:
            note_foreign_guild(guild, self.settings, len(self.bot.guilds))
        return False

    def rule_for(self, channel: Any) -> ProjectRoute:
        """The launch rule in a channel: its route's (ADJUTANT_CONFIG), else the first (the global rule)."""
        return self.route_for(channel) or self.routes[0]

    async def authorized(self, user: discord.abc.User, channel: Any = None) -> bool:
        """May ``user`` launch, cancel, set watch rules and mute alerts in ``channel`` (its launch rule)?"""
        from adjutant.access import may_launch

        return may_launch(user, self.rule_for(channel), is_owner=await is_owner(self.bot, user))

    async def audit(
        self, action: str, user: Any, channel: Any = None, *, target: str | None = None, detail: str | None = None
    ) -> None:
        """Record who did (or was refused) what, where: the audit trail ($audit) and a log line. A failure to record
        (a full disk) is logged, never shown to the member."""
        from adjutant.approvals import Action

        services = self.services
        if services is None:
            return
        guild = getattr(channel, "guild", None)
        try:
            await asyncio.to_thread(
                services.approvals.record,
                Action(action),
                getattr(user, "id", None),
                str(user),
                guild_id=getattr(guild, "id", None),
                channel_id=getattr(channel, "id", None),
                target=target,
                detail=None if detail is None else truncate(detail, 500),
            )
        except Exception:
            log.exception("could not record an audit entry (%s by %s)", action, user)

    async def button_allowed(self, interaction: discord.Interaction, what: str) -> bool:
        """Checks for a persistent button: Adjutant's server, a member allowed to act; else an ephemeral refusal
        (or, outside Adjutant's servers, nothing at all)."""
        from adjutant.access import refusal

        if not self.serves(interaction.guild):
            return False
        if not await self.authorized(interaction.user, interaction.channel):
            log.warning("refused %s button for %s (%d)", what, interaction.user, interaction.user.id)
            await self.audit("refused", interaction.user, interaction.channel, detail=f"{what} button")
            await interaction.response.send_message(
                refusal(self.rule_for(interaction.channel), BUTTON_ACTIONS.get(what, what)), ephemeral=True
            )
            return False
        return True

    async def mute_alert(self, interaction: discord.Interaction, store: Any, alert_id: int) -> None:
        """The alert card's "Mute 1 h": this run, this kind of alert."""
        import datetime as dt

        if not await self.button_allowed(interaction, "mute"):
            return
        alert = await asyncio.to_thread(store.alert, alert_id)
        if alert is None or not alert.run_id:
            await interaction.response.send_message("That alert is no longer known.", ephemeral=True)
            return
        until = await asyncio.to_thread(store.mute, alert, dt.datetime.now(dt.UTC))
        await self.audit("muted", interaction.user, interaction.channel, target=alert.run_id, detail=str(alert.kind))
        await interaction.response.send_message(
            f"🔕 {alert.kind} alerts of run `{code_safe(truncate(alert.run_id, 64))}` muted until"
            f" <t:{int(until.timestamp())}:t> by {plain(truncate(str(interaction.user), 64))}.",
            allowed_mentions=NO_PINGS,
        )

    async def cog_check(self, ctx: commands.Context[Any]) -> bool:
        """Commands are taken only in Adjutant's server(s), in the configured channel (and threads under it)."""
        if not self.serves(ctx.guild):
            raise WrongGuild(f"not one of Adjutant's servers ({ctx.guild})")
        route = self.route_for(ctx.channel)
        if route is None:
            raise WrongChannel(f"not in Adjutant's channels ({self.channels_text()})")
        ctx.adjutant_route = route  # type: ignore[attr-defined]  # resolved once per command: see checked_route
        take_project_word(ctx)
        return True

    async def cog_command_error(self, ctx: commands.Context[Any], error: Exception) -> None:
        """Turn a command's failure into a short, specific reply; log what the chat must not see."""
        if isinstance(error, WrongGuild):
            log.debug("ignored %s from server %s: %s", ctx.invoked_with, ctx.guild, error)
            return
        if isinstance(error, WrongChannel):
            log.debug("ignored %s from #%s: %s", ctx.invoked_with, ctx.channel, error)
            if ctx.interaction is not None:  # a slash command must be answered; only its author sees this
                await ctx.send(f"I take commands in {self.channels_text()} only.", ephemeral=True)
            return
        if isinstance(error, commands.UserInputError):
            usage = f"{ctx.clean_prefix}{ctx.command.qualified_name} {ctx.command.signature}" if ctx.command else ""
            name = ctx.command.qualified_name if ctx.command else ctx.invoked_with
            text = f"{error}\nUsage: `{usage.strip()}` (see `{ctx.clean_prefix}help {name}`)"
            await self.reply(ctx, text)
            return
        if isinstance(error, commands.CheckFailure | commands.CommandOnCooldown | commands.MaxConcurrencyReached):
            await self.reply(ctx, str(error) or "You are not allowed to use this command.")
            return
        original = getattr(error, "original", error)
        ref = secrets.token_hex(3)
        log.error("command %s failed (ref %s)", ctx.invoked_with, ref, exc_info=original)
        await self.reply(
            ctx,
            f"Something went wrong running `{ctx.invoked_with}` ({type(original).__name__}); "
            f"it is in the bot's log under ref `{ref}`.",
        )

    def command_prefix(self, ctx: commands.Context[Any] | None = None) -> str:
        """How a member types an Adjutant command here: ``$``, ``$adj `` (ADJUTANT_COMMAND_GROUP) or ``/``."""
        group = f"{self.settings.command_group} " if self.settings.command_group else ""
        if ctx is not None and ctx.interaction is not None:
            return f"/{group}"
        prefix = ctx.clean_prefix if ctx is not None else self.settings.prefix
        return f"{prefix}{group}"

    async def ask_wandb(
        self, ctx: commands.Context[Any], watcher: Any, fn: Callable[..., T], *args: Any
    ) -> tuple[bool, T | None]:
        """A W&B call for a command: ``(True, result)``, or ``(False, None)`` after replying with the problem.

        ``ctx.typing()`` defers a slash command first (it has 3 seconds to answer; W&B may take longer)
        and shows "typing…" for a ``$`` command.
        """
        from adjutant.wandb_source import ProjectNotFound
        from adjutant.watcher import describe_error

        try:
            async with ctx.typing():
                return True, await watcher.ask(fn, *args)
        except ProjectNotFound:
            await self.reply(ctx, f"The W&B project `{watcher.project_label}` has no runs yet.")
        except Exception as error:
            log.warning("W&B request for %s failed: %s", ctx.invoked_with, describe_error(error))
            await self.reply(ctx, f"W&B did not answer: {describe_error(error)}. Try again in a minute.")
        return False, None

    @staticmethod
    async def reply(ctx: commands.Context[Any], text: str, **kwargs: Any) -> discord.Message | None:
        """Send ``text`` (cut to Discord's 2000 characters) without pinging anyone; log if it cannot be sent."""
        try:
            return await ctx.send(truncate(text, MESSAGE_LIMIT), allowed_mentions=NO_PINGS, **kwargs)
        except discord.HTTPException:
            log.exception("could not reply in #%s", ctx.channel)
            return None


async def add_with_services(bot: commands.Bot, extension: str, make: Callable[..., commands.Cog]) -> None:
    """``setup()`` of a single cog extension that uses the services: ``make(bot, settings, services)``. The services
    are opened by the first such cog loaded and shared after; closed again if adding the cog fails."""
    from adjutant import refuse_double_load, settings_for
    from adjutant.services import Services

    refuse_double_load(bot, extension)
    settings = settings_for(bot)
    services = await Services.for_bot(bot, settings, secrets=lambda: (getattr(bot.http, "token", None) or "",))
    try:
        await bot.add_cog(make(bot, settings, services))
    finally:
        await services.close_if_unused()  # only if adding failed: a loaded cog holds them
