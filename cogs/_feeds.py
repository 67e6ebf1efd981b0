"""The W&B projects Adjutant reports on (feeds) and the channels that watch each: what the Runs, Rules and Desk cogs
share. Built once in ``setup()`` and handed to each of them (composed, not inherited): which project a command is
about, who may see a project, whether its poll loop runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import discord
from discord.ext import commands, tasks

from adjutant._cog import NO_PINGS, AdjutantCog, channel_matches, find_channel
from adjutant.projects import ProjectRoute
from adjutant.render import code_safe, truncate
from adjutant.services import Services
from adjutant.settings import ConfigError, Settings
from adjutant.watcher import Watcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feed:
    """One W&B project: its watcher and the channels (routes) that watch it, in the order of the watcher's
    destinations (the n-th route's announcements wait in the n-th destination's outbox)."""

    watcher: Watcher
    routes: tuple[ProjectRoute, ...]

    @property
    def route(self) -> ProjectRoute:
        """The project's first channel: its metric and goal."""
        return self.routes[0]


class Feeds(Mapping[str, Feed]):
    """The projects reported on, by project key, and which one a command is about."""

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services) -> None:
        self.bot = bot
        self.settings = settings
        self.services = services
        routes: dict[str, list[ProjectRoute]] = {}
        for route in settings.routes:
            if route.project_key is not None:
                routes.setdefault(route.project_key, []).append(route)
        if not routes:
            raise ConfigError("W&B run reporting needs WANDB_PROJECT (and usually WANDB_ENTITY) to be set")
        self._feeds = {key: Feed(services.watchers[key], tuple(found)) for key, found in routes.items()}
        #: The loop that polls these projects (the Runs cog's, while it is loaded): ``$status`` says if it stopped.
        self.poll_loop: tasks.Loop[Any] | None = None

    @classmethod
    def shared(cls, bot: commands.Bot, settings: Settings, services: Services) -> Feeds:
        """The feeds of ``services`` when the cogs are loaded one by one: built by the first, shared after (like
        the services themselves, see :meth:`Services.for_bot`)."""
        for key, feeds in list(_shared.items()):
            if feeds.services.closed:
                del _shared[key]
        found = _shared.get(id(services))
        if found is None or found.services is not services:
            found = _shared[id(services)] = cls(bot, settings, services)
        return found

    def __getitem__(self, key: str) -> Feed:
        return self._feeds[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    @property
    def first(self) -> Feed:
        """The first project's feed (where a button outside every project's channel points)."""
        return next(iter(self._feeds.values()))

    @property
    def polling(self) -> bool:
        """True while a poll loop runs for these projects."""
        return self.poll_loop is not None and self.poll_loop.is_running()

    # --- which project ----------------------------------------------------------------------------
    def of_route(self, route: ProjectRoute | None) -> Feed | None:
        return None if route is None or route.project_key is None else self._feeds.get(route.project_key)

    def of_channel(self, channel: Any) -> Feed | None:
        """The project reported in ``channel`` (a thread counts as its parent), or None."""
        return self.of_route(next((r for r in self.settings.routes if channel_matches(r.channel, channel)), None))

    def of_interaction(self, interaction: discord.Interaction) -> Feed:
        """The project of the channel an interaction came from, else the first."""
        return self.of_channel(interaction.channel) or self.first

    async def for_command(self, ctx: commands.Context[Any], name: str | None = None) -> Feed | None:
        """The project a command is about: ``project:<name>`` (one the member can see), else the channel's own.
        Replies and returns None when there is none."""
        name = name or getattr(ctx, "adjutant_project", None)
        if not name:
            feed = self.of_channel(ctx.channel)
            if feed is None:
                await AdjutantCog.reply(
                    ctx, f"No W&B project is reported in this channel. Add `project:<name>`: {self.names()}."
                )
            return feed
        for feed in self._feeds.values():
            route = feed.route
            named = name in (route.project, route.project_label, route.project_key)
            if named and any(self.can_see(ctx.author, r) for r in feed.routes):
                return feed
        await AdjutantCog.reply(ctx, f"No project `{code_safe(truncate(name, 100))}` that you can see: {self.names()}.")
        return None

    def is_project(self, name: str) -> bool:
        return any(name in (f.route.project, f.route.project_label, f.route.project_key) for f in self.values())

    def names(self) -> str:
        return ", ".join(f"`{code_safe(feed.route.project or '')}`" for feed in self.values())

    def can_see(self, member: Any, route: ProjectRoute) -> bool:
        """True if ``member`` can see the channel of ``route``."""
        channel = find_channel(self.bot, self.settings, route.channel)
        permissions = getattr(channel, "permissions_for", None)
        if permissions is None or not isinstance(member, discord.Member):
            return False
        return bool(permissions(member).view_channel)


_shared: dict[int, Feeds] = {}


async def add_reporting_cog(
    bot: commands.Bot, extension: str, make: Callable[[commands.Bot, Settings, Services, Feeds], commands.Cog]
) -> None:
    """``setup()`` of one W&B reporting cog loaded alone: it needs WANDB_PROJECT; the services and the feeds are
    shared with the other cogs loaded alone."""
    from adjutant import refuse_double_load, settings_for
    from adjutant._cog import add_with_services

    refuse_double_load(bot, extension)
    if not settings_for(bot).reporting_enabled:
        raise ConfigError("the W&B reporting cog needs WANDB_PROJECT (and usually WANDB_ENTITY) to be set")

    def build(bot: commands.Bot, settings: Settings, services: Services) -> commands.Cog:
        return make(bot, settings, services, Feeds.shared(bot, settings, services))

    await add_with_services(bot, extension, build)


async def send_embed(ctx: commands.Context[Any], embed: dict[str, Any]) -> None:
    await ctx.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)


class ReportingCog(AdjutantCog):
    """The base the three W&B reporting cogs (Runs, Rules, Desk) truly share, side by side: the services, the run
    store and the feeds, held while the cog is loaded. A sibling base with a complete ``__init__``; no cog inherits
    another's."""

    services: Services

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services, feeds: Feeds) -> None:
        super().__init__(bot, settings, services)
        self.store = services.runs
        self.feeds = feeds

    async def cog_load(self) -> None:
        self.services.acquire()

    async def cog_unload(self) -> None:
        await self.services.release()
