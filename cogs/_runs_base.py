"""The W&B reporting cog's base: its projects (feeds) and their channels (outlets), which project a command is
about, and the helpers its commands share."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import discord
from discord.ext import commands

from adjutant._cog import NO_PINGS, AdjutantCog, find_channel
from adjutant.cogs._announcer import Announcer, Inbox
from adjutant.projects import ProjectRoute
from adjutant.render import code_safe, truncate
from adjutant.services import Services
from adjutant.settings import Settings
from adjutant.watcher import Watcher

log = logging.getLogger(__name__)

#: Announcements that carry a chart of the ranking metric when the backlog is at most CHART_BACKLOG.
CHART_EVENTS = frozenset({"finished", "crashed", "stalled"})
CHART_BACKLOG = 3


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Outlet:
    """One outbox of a project and the channel it is delivered to."""

    route: ProjectRoute
    announcer: Announcer
    after: float = 0.0  # time.monotonic() before which it is not tried again (after a refusal)
    warned_no_channel: bool = False


@dataclass
class Feed:
    """One W&B project: its watcher, the channels that watch it, and its own poll task."""

    watcher: Watcher
    outlets: list[Outlet] = field(default_factory=list)
    greeted: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def route(self) -> ProjectRoute:
        return self.outlets[0].route


class RunsBase(AdjutantCog):
    """Reports on the runs of W&B projects and answers questions about them."""

    def __init__(self, bot: commands.Bot, settings: Settings, services: Services) -> None:
        super().__init__(bot, settings)
        assert services.watchers
        self.services = services
        self.store = services.runs
        self.feeds: dict[str, Feed] = {}
        for route in self.routes:
            if route.project_key is None:
                continue
            watcher = services.watchers[route.project_key]
            feed = self.feeds.setdefault(route.project_key, Feed(watcher))
            destination = watcher.destinations[len(feed.outlets)]
            feed.outlets.append(Outlet(route, Announcer(bot, self.store, destination, route.metric, watcher)))
        #: Direct messages to subscribers and notes for one member.
        self.inbox = Inbox(bot, self.store)

    # --- which project ----------------------------------------------------------------------------
    def feed_of_route(self, route: ProjectRoute | None) -> Feed | None:
        return None if route is None or route.project_key is None else self.feeds.get(route.project_key)

    async def feed_for(self, ctx: commands.Context[Any], name: str | None = None) -> Feed | None:
        """The project a command is about: ``project:<name>`` (one the member can see), else the channel's own.
        Replies and returns None when there is none."""
        name = name or getattr(ctx, "adjutant_project", None)
        if not name:
            feed = self.feed_of_route(self.route_for(ctx.channel))
            if feed is None:
                await self.reply(
                    ctx, f"No W&B project is reported in this channel. Add `project:<name>`: {self.project_names()}."
                )
            return feed
        for feed in self.feeds.values():
            route = feed.route
            named = name in (route.project, route.project_label, route.project_key)
            if named and any(self._can_see(ctx.author, outlet.route) for outlet in feed.outlets):
                return feed
        await self.reply(
            ctx, f"No project `{code_safe(truncate(name, 100))}` that you can see: {self.project_names()}."
        )
        return None

    def _is_project(self, name: str) -> bool:
        return any(name in (f.route.project, f.route.project_label, f.route.project_key) for f in self.feeds.values())

    def project_names(self) -> str:
        return ", ".join(f"`{code_safe(feed.route.project or '')}`" for feed in self.feeds.values())

    def _can_see(self, member: Any, route: ProjectRoute) -> bool:
        channel = find_channel(self.bot, self.settings, route.channel)
        permissions = getattr(channel, "permissions_for", None)
        if permissions is None or not isinstance(member, discord.Member):
            return False
        return bool(permissions(member).view_channel)

    @property
    def watcher(self) -> Watcher:
        """The first project's watcher."""
        return next(iter(self.feeds.values())).watcher

    # --- commands -------------------------------------------------------------------------------
    async def _ask(self, ctx: commands.Context[Any], w: Watcher, fn: Any, *args: Any) -> tuple[bool, Any]:
        return await self.ask_wandb(ctx, w, fn, *args)

    def _interaction_feed(self, interaction: discord.Interaction) -> Feed:
        return self.feed_of_route(self.route_for(interaction.channel)) or next(iter(self.feeds.values()))

    async def _send_embed(self, ctx: commands.Context[Any], embed: dict[str, Any]) -> None:
        await ctx.send(embed=discord.Embed.from_dict(embed), allowed_mentions=NO_PINGS)
