"""A local stand-in for Discord's REST API and gateway, for the real, unmodified discord.py client.

It serves on 127.0.0.1 (random port) with aiohttp: login (``/users/@me``, ``/oauth2/applications/@me``),
the gateway (HELLO, IDENTIFY, READY, GUILD_CREATE, heartbeats, RESUME), and the message routes the bot
uses. Tests post messages as guild members with :meth:`DiscordStandIn.post`, and read what the bot
did from :attr:`DiscordStandIn.requests` (every REST request) and :attr:`DiscordStandIn.messages`.

Point a client at it with :func:`patch_discord` (same process) or the ``sitecustomize`` in
``tests/standins/site`` (a bot run as a subprocess). See ../shared/notes/discord-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import itertools
import json
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import WSMsgType, web

from tests.standins import discord_rules as rules
from tests.standins.discord_rules import Refusal

DISCORD_EPOCH_MS = 1420070400000
PROVOKED = web.ResponseKey("provoked", bool)
_counter = itertools.count()

# Permission bits (Discord's documented values).
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
EVERYONE_PERMS = (
    (1 << 6)  # add reactions
    | (1 << 10)  # view channel
    | (1 << 11)  # send messages
    | (1 << 14)  # embed links
    | (1 << 15)  # attach files
    | (1 << 16)  # read message history
    | (1 << 35)  # create public threads
    | (1 << 38)  # send messages in threads
)


def snowflake() -> int:
    """A time-based Discord id, unique within the process."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (next(_counter) % (1 << 22))


def now_iso() -> str:
    """Discord's timestamp format."""
    return dt.datetime.now(dt.UTC).isoformat()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """discord.py compares Content-Type to exactly ``application/json`` (no charset)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@dataclass
class Member:
    """A user of the stand-in guild."""

    name: str
    id: int = field(default_factory=snowflake)
    roles: list[int] = field(default_factory=list)
    bot: bool = False

    def user(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "avatar": None,
            "global_name": self.name,
            "bot": self.bot,
        }

    def member(self, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in self.roles],
            "flags": 0,
            "joined_at": "2025-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
        }
        if with_user:
            data["user"] = self.user()
        return data


@dataclass
class Request:
    """One REST request the bot made."""

    method: str
    path: str
    json: Any = None
    files: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    invalid_json: bool = False


@dataclass
class Refused:
    """A request the stand-in refused as Discord would: what was asked, and Discord's answer."""

    method: str
    path: str
    status: int
    code: int
    message: str
    errors: dict[str, Any] = field(default_factory=dict)
    #: The test's world caused it (a fault it injected, a permission it withheld, a thread it locked).
    provoked: bool = False
    #: Inside ``expect_refusals()``.
    expected: bool = False

    def __str__(self) -> str:
        errors = f" {json.dumps(self.errors)}" if self.errors else ""
        return f"{self.method} {self.path} → {self.status} {self.code} {self.message}{errors}"


class DiscordStandIn:
    """The stand-in server. ``async with DiscordStandIn() as discord: ...``.

    It refuses what Discord refuses (:mod:`tests.standins.discord_rules`): invalid bodies (400 50035), missing
    channel permissions (403 50013), a second or late interaction callback. Every refusal is kept in
    :attr:`refusals`; the suite fails a test during which a refusal happened that the test neither provoked
    through the world (``send_faults``, :meth:`withhold`, ``deny_pins``, :meth:`lock_thread`, …) nor declared
    with :meth:`expect_refusals`.
    """

    #: Every stand-in created since the suite's check last looked (tests/conftest.py).
    live: ClassVar[list[DiscordStandIn]] = []

    def __init__(self, *, token: str = "test-token.standin", allow_message_content: bool = True) -> None:
        DiscordStandIn.live.append(self)
        self.token = token
        self.allow_message_content = allow_message_content
        self.guild_id = snowflake()
        self.application_id = snowflake()
        self.bot_user = Member("adjutant-bot", bot=True)
        self.everyone_role = {
            "id": str(self.guild_id),
            "name": "@everyone",
            "permissions": str(EVERYONE_PERMS),
        }
        self.roles: dict[str, dict[str, Any]] = {}
        for name, perms in (("Admin", ADMINISTRATOR), ("Manager", MANAGE_GUILD), ("ml-team", 0)):
            self.roles[name] = {
                "id": str(snowflake()),
                "name": name,
                "permissions": str(perms),
                "position": 1,
            }
        # The bot's managed role, as Discord creates it from the invite: what Adjutant needs, pinning included.
        self.bot_role: dict[str, Any] = {
            "id": str(snowflake()),
            "name": "Adjutant",
            "permissions": str(rules.BOT_ROLE_PERMISSIONS),
            "position": 1,
            "managed": True,
            "tags": {"bot_id": str(self.bot_user.id)},
        }
        self.bot_user.roles.append(int(self.bot_role["id"]))
        self.members: dict[str, Member] = {
            "founder": Member("founder"),  # guild owner
            "owner": Member("owner"),  # owner of the bot's application
            "admin": Member("admin", roles=[int(self.roles["Admin"]["id"])]),
            "manager": Member("manager", roles=[int(self.roles["Manager"]["id"])]),
            "teammate": Member("teammate", roles=[int(self.roles["ml-team"]["id"])]),
            "member": Member("member"),
            "otherbot": Member("otherbot", bot=True),
        }
        self.channels: dict[str, dict[str, Any]] = {}
        for position, name in enumerate(("general", "random", "experiments")):
            self.channels[name] = {
                "id": str(snowflake()),
                "type": 0,
                "name": name,
                "position": position,
                "permission_overwrites": [],
                "guild_id": str(self.guild_id),
            }
        self.requests: list[Request] = []
        #: Requests refused as Discord would refuse them (see the class docstring).
        self.refusals: list[Refused] = []
        self._expecting: list[tuple[set[int], list[Refused]]] = []
        self._withheld = False  # the test withheld a permission: 50013 refusals are its doing
        self._deleted: set[str] = set()
        #: Seconds an interaction may wait for its first callback (Discord: 3).
        self.interaction_deadline = rules.INTERACTION_DEADLINE
        self.messages: dict[int, dict[str, Any]] = {}
        #: Earlier versions of edited messages, oldest first (message id → versions before each edit).
        self.versions: dict[int, list[dict[str, Any]]] = {}
        self.identifies: list[dict[str, Any]] = []
        self.interaction_responses: list[dict[str, Any]] = []
        #: channel id → messages pinned there (PUT /channels/{c}/messages/pins/{m}); deny_pins: the bot may not pin.
        self.pins: dict[str, list[int]] = {}
        self.deny_pins = False
        #: message id → the allowed_mentions the bot sent it with (who it may ping).
        self.allowed_mentions: dict[int, Any] = {}
        #: Direct-message channels the bot opened, by recipient user id; members whose DMs are closed (50007).
        self.dm_channels: dict[str, dict[str, Any]] = {}
        self.dms_closed: set[str] = set()
        self._interactions: dict[str, dict[str, Any]] = {}
        self.synced: dict[str, list[dict[str, Any]]] = {}
        self.threads: list[dict[str, Any]] = []
        #: (requests, seconds) per channel, like Discord's: message creates and edits have a window each.
        self.rate_limit: tuple[int, float] | None = None
        self.rate_limited = 0
        self.stranger_guild_id: int | None = None
        self.stranger_roles: list[dict[str, Any]] = []
        #: Faults for the bot's message sends: (status, Discord error code, message), consumed one per send.
        self.send_faults: list[tuple[int, int, str]] = []
        self.deduplicated = 0
        self._nonces: dict[tuple[int, str], int] = {}
        self._sends: dict[str, list[float]] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._announcements: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._events: list[tuple[int, dict[str, Any]]] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.connected = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway/"

    async def start(self) -> DiscordStandIn:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_route("*", "/cdn/{tail:.*}", self._cdn)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> DiscordStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what tests call ------------------------------------------------------------------------
    @contextlib.contextmanager
    def expect_refusals(self, *codes: int) -> Iterator[list[Refused]]:
        """Declare that the test provokes refusals while the block runs (only these Discord error ``codes``
        if any are given). Yields the list of the refusals that happen inside the block."""
        seen: list[Refused] = []
        entry = (set(codes), seen)
        self._expecting.append(entry)
        try:
            yield seen
        finally:
            self._expecting.remove(entry)

    def unexpected_refusals(self) -> list[Refused]:
        """Refusals the test neither provoked through the world nor declared."""
        return [r for r in self.refusals if not (r.provoked or r.expected)]

    def withhold(self, channel: str, *permissions: str | int) -> None:
        """The bot loses ``permissions`` (names from ``discord_rules.PERMISSIONS`` or bits) in ``channel``:
        a member overwrite denies them, as a moderator would set it; a connected bot gets CHANNEL_UPDATE."""
        bits = 0
        for permission in permissions:
            bits |= rules.PERMISSIONS[permission] if isinstance(permission, str) else permission
        target = self.channels[channel]
        overwrites = target.setdefault("permission_overwrites", [])
        mine = next((o for o in overwrites if o["id"] == str(self.bot_user.id)), None)
        if mine is None:
            mine = {"id": str(self.bot_user.id), "type": 1, "allow": "0", "deny": "0"}
            overwrites.append(mine)
        mine["deny"] = str(int(mine["deny"]) | bits)
        mine["allow"] = str(int(mine["allow"]) & ~bits)
        self._withheld = True
        self._announce("CHANNEL_UPDATE", {**target, "guild_id": target.get("guild_id") or str(self.guild_id)})

    def set_role_permissions(self, role: str, permissions: int) -> None:
        """An admin edits a role's server-wide permissions (``role``: "@everyone", "Adjutant", the bot's own role,
        or a name in :attr:`roles`); a connected bot gets GUILD_ROLE_UPDATE."""
        target = {"@everyone": self.everyone_role, "Adjutant": self.bot_role}.get(role) or self.roles[role]
        target["permissions"] = str(permissions)
        self._withheld = True
        self._announce("GUILD_ROLE_UPDATE", {"guild_id": str(self.guild_id), "role": target})

    def grant(self, channel: str, *permissions: str | int) -> None:
        """Undo :meth:`withhold`: the bot's overwrite in ``channel`` no longer denies ``permissions``."""
        bits = 0
        for permission in permissions:
            bits |= rules.PERMISSIONS[permission] if isinstance(permission, str) else permission
        target = self.channels[channel]
        for overwrite in target.get("permission_overwrites", []):
            if overwrite["id"] == str(self.bot_user.id):
                overwrite["deny"] = str(int(overwrite["deny"]) & ~bits)
        self._announce("CHANNEL_UPDATE", {**target, "guild_id": target.get("guild_id") or str(self.guild_id)})

    def _announce(self, event: str, data: dict[str, Any]) -> None:
        """Dispatch a gateway event from synchronous test code (now if a loop runs, with the bot connected)."""
        if not self._sockets:
            return  # the bot reads the world from GUILD_CREATE when it connects
        with contextlib.suppress(RuntimeError):  # no running loop
            task = asyncio.get_running_loop().create_task(self.dispatch(event, data))
            self._announcements.add(task)
            task.add_done_callback(self._announcements.discard)

    def permissions_in(self, who: Member, channel: dict[str, Any]) -> int:
        """``who``'s permissions in ``channel`` (a thread takes its parent's overwrites), as Discord computes them."""
        if channel.get("type") in (10, 11, 12):
            channel = next((c for c in self.channels.values() if c["id"] == channel.get("parent_id")), channel)
        guild_id = channel.get("guild_id") or str(self.guild_id)
        if self.stranger_guild_id is not None and guild_id == str(self.stranger_guild_id):
            owner, roles = str(self.members["stranger"].id), self.stranger_roles
        else:
            owner, roles = str(self.members["founder"].id), [self.everyone_role, *self.roles.values(), self.bot_role]
        return rules.compute_permissions(
            member_id=str(who.id),
            member_roles={str(r) for r in who.roles},
            guild_id=guild_id,
            owner_id=owner,
            roles=roles,
            overwrites=channel.get("permission_overwrites") or [],
        )

    def add_stranger_guild(self) -> int:
        """A second server that invited the bot (bots are public by default): its owner "stranger" creates a
        #general and a role "ml-team" there, named like the team's. Call before the bot connects."""
        guild_id = snowflake()
        self.stranger_guild_id = guild_id
        role: dict[str, Any] = {"id": str(snowflake()), "name": "ml-team", "permissions": "0", "position": 1}
        everyone = {"id": str(guild_id), "name": "@everyone", "permissions": str(EVERYONE_PERMS)}
        self.stranger_roles = [everyone, role]
        self.members["stranger"] = Member("stranger", roles=[int(role["id"])])
        self.channels["stranger:general"] = {
            "id": str(snowflake()),
            "type": 0,
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "guild_id": str(guild_id),
        }
        return guild_id

    def lock_thread(self, thread_id: str) -> None:
        """Moderators lock (archive) a thread: the bot's sends there get 403 Thread is locked."""
        thread = next(c for c in self.channels.values() if c["id"] == thread_id)
        thread["thread_metadata"] = {**thread.get("thread_metadata", {}), "locked": True, "archived": True}

    def delete_channel(self, channel_id: str) -> None:
        """A channel or thread is deleted: the bot's sends there get 404 Unknown Channel."""
        self._deleted.add(str(channel_id))
        for key, channel in list(self.channels.items()):
            if channel["id"] == channel_id:
                del self.channels[key]

    def left_guilds(self) -> list[str]:
        return [r.path.rsplit("/", 1)[-1] for r in self.rest("DELETE", "/users/@me/guilds/")]

    def channel_id(self, name: str) -> int:
        return int(self.channels[name]["id"])

    def member(self, name: str) -> Member:
        return self.members[name]

    async def post(self, content: str, *, author: str = "admin", channel: str = "general") -> int:
        """A guild member posts ``content``; the bot receives MESSAGE_CREATE. Returns the message id."""
        who = self.members[author]
        message = self._message(self.channel_id(channel), who, content)
        await self.dispatch("MESSAGE_CREATE", message)
        return int(message["id"])

    def permissions_of(self, who: Member) -> int:
        """``who``'s server-wide permissions (no channel overwrites)."""
        if who.name == "stranger":  # the owner of the stranger's server
            return (1 << 53) - 1
        return self.permissions_in(who, {"guild_id": str(self.guild_id), "permission_overwrites": []})

    async def click(self, message: dict[str, Any], custom_id: str, *, author: str = "admin") -> str:
        """A member presses a button of ``message``; returns the interaction id."""
        channel = next(c for c in self.channels.values() if c["id"] == message["channel_id"])
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(3, data, author, channel, message=message)

    async def submit_modal(
        self, modal: dict[str, Any], values: dict[str, str], *, author: str = "admin", channel: str = "general"
    ) -> str:
        """A member submits a modal the bot opened (``modal``: the data of its type 9 response), each text input
        holding ``values[custom_id]`` (else what the bot prefilled); returns the interaction id."""
        rows = []
        for row in modal.get("components", []):
            inputs = row["components"] if row.get("type") == 1 else [row.get("component", {})]
            rows.append(
                {
                    "type": 1,
                    "components": [
                        {
                            "type": 4,
                            "custom_id": c["custom_id"],
                            "value": values.get(c["custom_id"], c.get("value", "")),
                        }
                        for c in inputs
                    ],
                }
            )
        data = {"custom_id": modal["custom_id"], "components": rows}
        return await self._interact(5, data, author, self.channels[channel])

    async def message_command(self, name: str, message: dict[str, Any], *, author: str = "admin") -> str:
        """A member right-clicks ``message`` → Apps → ``name`` (a message context menu command)."""
        channel = next(c for c in self.channels.values() if c["id"] == message["channel_id"])
        data = {
            "id": str(snowflake()),
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        }
        return await self._interact(2, data, author, channel)

    async def slash(
        self, name: str, options: dict[str, Any] | None = None, *, author: str = "admin", channel: str = "general"
    ) -> str:
        """A member runs ``/name`` with these option values; returns the interaction id."""
        data = {"id": str(snowflake()), "name": name, "type": 1, "options": _options(options or {})}
        return await self._interact(2, data, author, self.channels[channel])

    async def autocomplete(
        self, name: str, options: dict[str, Any], focused: str, *, author: str = "admin", channel: str = "general"
    ) -> list[dict[str, Any]]:
        """The choices the bot offers while ``focused`` is being typed."""
        opts = _options(options)
        for option in opts:
            if option["name"] == focused:
                option["focused"] = True
        data = {"id": str(snowflake()), "name": name, "type": 1, "options": opts}
        interaction_id = await self._interact(4, data, author, self.channels[channel])
        await self.wait_until(lambda: any(r["interaction_id"] == interaction_id for r in self.interaction_responses))
        response = next(r for r in self.interaction_responses if r["interaction_id"] == interaction_id)
        return list(response["data"].get("choices", []))

    def responses(self, interaction_id: str) -> list[dict[str, Any]]:
        """Messages that answer an interaction: the callback's message, then follow-ups, in order."""
        return [m for m in self.messages.values() if m.get("interaction_id") == interaction_id]

    async def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        author: str,
        channel: dict[str, Any],
        message: dict[str, Any] | None = None,
    ) -> str:
        who = self.members[author]
        interaction_id = str(snowflake())
        token = "itoken-" + interaction_id
        self._interactions[token] = {"id": interaction_id, "channel_id": int(channel["id"])}
        member = who.member()
        member["permissions"] = str(self.permissions_in(who, channel))
        interaction = {
            "id": interaction_id,
            "application_id": str(self.application_id),
            "type": kind,
            "token": token,
            "version": 1,
            "attachment_size_limit": 10 * 1024 * 1024,
            "guild_id": channel.get("guild_id", str(self.guild_id)),
            "channel_id": channel["id"],
            "channel": channel,
            "member": member,
            "app_permissions": str(self.permissions_in(self.bot_user, channel)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 0,
            "data": data,
        }
        if message is not None:
            interaction["message"] = message
        self._interactions[token]["type"] = kind
        await self.dispatch("INTERACTION_CREATE", interaction)
        self._interactions[token]["at"] = time.monotonic()  # Discord's 3 s start when the bot is told
        return interaction_id

    def buttons(self, message: dict[str, Any]) -> list[str]:
        """The custom ids of a message's buttons."""
        return [c["custom_id"] for row in message.get("components") or [] for c in row.get("components", [])]

    def first_version(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as it was created, before any edit."""
        versions = self.versions.get(int(message["id"]))
        return versions[0] if versions else message

    def dms(self, name: str) -> list[dict[str, Any]]:
        """Direct messages the bot sent to a member, oldest first."""
        dm = self.dm_channels.get(str(self.member(name).id))
        return [] if dm is None else [m for m in self.messages.values() if m["channel_id"] == dm["id"]]

    def sent(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages the bot created (in ``channel`` if given), oldest first."""
        cid = None if channel is None else str(self.channel_id(channel))
        return [
            m
            for m in self.messages.values()
            if m["author"]["id"] == str(self.bot_user.id) and (cid is None or m["channel_id"] == cid)
        ]

    async def wait_for_message(
        self,
        predicate: Callable[[dict[str, Any]], bool] = lambda m: True,
        *,
        timeout: float = 10.0,
        after: int = 0,
    ) -> dict[str, Any]:
        """The first message the bot creates (beyond the first ``after`` ones) that matches."""

        def find() -> dict[str, Any] | None:
            return next((m for m in self.sent()[after:] if predicate(m)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: find() is not None), timeout)
        found = find()
        assert found is not None
        return found

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds; it is re-checked whenever the bot makes a request."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    def rest(self, method: str | None = None, path_part: str = "") -> list[Request]:
        return [r for r in self.requests if (method is None or r.method == method) and path_part in r.path]

    # --- gateway --------------------------------------------------------------------------------
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        payload = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._events.append((self._seq, payload))
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps(payload))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT and msg.type != WSMsgType.BINARY:
                    break
                raw = msg.data if msg.type == WSMsgType.TEXT else zlib.decompress(msg.data)
                payload = json.loads(raw)
                op = payload.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif op == 2:
                    await self._identify(ws, payload["d"])
                elif op == 6:
                    await self._resume(ws, payload["d"])
        finally:
            self._sockets.discard(ws)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        if data.get("intents", 0) & (1 << 15) and not self.allow_message_content:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self._sockets.add(ws)
        ready = {
            "v": 10,
            "user": self.bot_user.user(),
            "guilds": [{"id": str(g), "unavailable": True} for g in self._guild_ids()],
            "session_id": "session-" + str(snowflake()),
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
        }
        await self.dispatch("READY", ready)
        await self.dispatch("GUILD_CREATE", self._guild())
        if self.stranger_guild_id is not None:
            await self.dispatch("GUILD_CREATE", self._stranger_guild())
        self.connected.set()

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self._sockets.add(ws)
        after = data.get("seq") or 0
        for seq, payload in self._events:
            if seq > after:
                await ws.send_str(json.dumps(payload))
        self._seq += 1
        await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": self._seq, "d": {}}))

    def _guild_ids(self) -> list[int]:
        return [self.guild_id] + ([self.stranger_guild_id] if self.stranger_guild_id is not None else [])

    def _stranger_guild(self) -> dict[str, Any]:
        guild = self._guild()
        members = [self.bot_user, self.members["stranger"]]
        guild.update(
            id=str(self.stranger_guild_id),
            name="Stranger's server",
            owner_id=str(self.members["stranger"].id),
            roles=self.stranger_roles,
            channels=[
                {k: v for k, v in c.items() if k != "guild_id"}
                for c in self.channels.values()
                if c.get("guild_id") == str(self.stranger_guild_id)
            ],
            members=[m.member() for m in members],
            member_count=2,
        )
        return guild

    def _guild(self) -> dict[str, Any]:
        members = [self.bot_user, *(m for m in self.members.values() if m.name != "stranger")]
        return {
            "id": str(self.guild_id),
            "name": "Stand-in ML Lab",
            "owner_id": str(self.members["founder"].id),
            "roles": [self.everyone_role, *self.roles.values(), self.bot_role],
            "channels": [
                {k: v for k, v in c.items() if k != "guild_id"}
                for c in self.channels.values()
                if c["type"] != 11 and c.get("guild_id", str(self.guild_id)) == str(self.guild_id)
            ],
            # Discord lists the active threads the bot can see (a restarted bot finds its job threads here).
            "threads": [
                c
                for c in self.channels.values()
                if c["type"] == 11
                and c.get("guild_id") == str(self.guild_id)
                and not (c.get("thread_metadata") or {}).get("archived")
            ],
            "members": [m.member() for m in members],
            "member_count": len(members),
            "emojis": [],
            "stickers": [],
            "features": [],
            "unavailable": False,
            "large": False,
            "premium_tier": 0,
            "preferred_locale": "en-US",
        }

    def _guild_of(self, channel_id: int) -> str:
        channel = next((c for c in self.channels.values() if c["id"] == str(channel_id)), None)
        return (channel or {}).get("guild_id") or str(self.guild_id)

    def _message(
        self, channel_id: int, author: Member, content: str, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        message = {
            "id": str(snowflake()),
            "type": 0,
            "channel_id": str(channel_id),
            "guild_id": self._guild_of(channel_id),
            "author": author.user(),
            "member": author.member(with_user=False),
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "flags": 0,
        }
        message.update(extra or {})
        if any(dm["id"] == str(channel_id) for dm in self.dm_channels.values()):
            del message["guild_id"]  # a direct message belongs to no server
        return message

    # --- REST -----------------------------------------------------------------------------------
    def _rate_headers(self, bucket: str, remaining: int = 4) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(time.time() + 5),
            "X-RateLimit-Reset-After": "5.0",
            "X-RateLimit-Bucket": bucket,
        }

    async def _record(self, request: web.Request) -> Request:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        record = Request(request.method, "/" + request.match_info["tail"], headers=headers)
        if request.content_type == "application/json" and request.can_read_body:
            try:
                record.json = json.loads(await request.read())
            except ValueError:
                record.invalid_json = True
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    try:
                        record.json = json.loads(data)
                    except ValueError:
                        record.invalid_json = True
                else:
                    record.files[part.filename or part.name or "file"] = bytes(data)  # type: ignore[union-attr]
        self.requests.append(record)
        return record

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _cdn(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n", content_type="image/png")

    async def _rest(self, request: web.Request) -> web.Response:
        record = await self._record(request)
        try:
            if record.invalid_json:
                response = self._refuse(rules.invalid_json())
            else:
                response = await self._route(request, record)
            if response.status >= 400 and response.status != 429:  # a 429 says "later", not "no"
                self._note_refusal(record, response)
            return response
        finally:
            await self._notify()

    def _refuse(self, refusal: Refusal | None, *, provoked: bool = False) -> web.Response:
        """Discord's answer to a refused request; ``provoked``: the test's world made Discord refuse it."""
        assert refusal is not None
        response = json_response(refusal.body(), status=refusal.status)
        response[PROVOKED] = provoked
        return response

    def _note_refusal(self, record: Request, response: web.Response) -> None:
        try:
            body = json.loads(bytes(response.body or b"{}"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            body = {}
        refused = Refused(
            record.method,
            record.path,
            response.status,
            int(body.get("code") or 0),
            str(body.get("message") or ""),
            body.get("errors") or {},
            provoked=response.get(PROVOKED, False),
        )
        for codes, seen in self._expecting:
            if not codes or refused.code in codes:
                refused.expected = True
                seen.append(refused)
        self.refusals.append(refused)

    def _missing_permissions(self, channel: dict[str, Any] | None, *needed: int) -> web.Response | None:
        """403 50013 unless the bot holds every permission in ``needed`` (each an int; a tuple: any one)."""
        if channel is None or channel.get("type") == 1:  # direct messages have no permissions
            return None
        have = self.permissions_in(self.bot_user, channel)
        if all(have & bits for bits in needed):
            return None
        return self._refuse(rules.missing_permissions(), provoked=self._withheld)

    async def _route(self, request: web.Request, record: Request) -> web.Response:
        path, method = record.path, record.method
        interaction = path.startswith("/interactions/") or path.startswith("/webhooks/")
        if not interaction and request.headers.get("Authorization") != f"Bot {self.token}":
            # Only a test hands the bot a wrong token.
            return self._refuse(Refusal(401, 0, "401: Unauthorized"), provoked=True)
        parts = path.strip("/").split("/")
        if parts[0] == "interactions" and len(parts) >= 4 and parts[3] == "callback":
            return self._interaction_callback(parts[1], record.json or {}, record)
        if parts[0] == "webhooks":
            return self._webhook(method, parts, record)
        if parts[0] == "applications" and parts[-1] == "commands" and method == "PUT":
            refusal = rules.bulk_overwrite(record.json)
            if refusal is not None:
                return self._refuse(refusal)
            scope = parts[3] if len(parts) == 5 else "global"
            self.synced[scope] = [
                {
                    **c,
                    "id": str(snowflake()),
                    "application_id": str(self.application_id),
                    "version": "1",
                    "type": c.get("type", 1),
                    "description": c.get("description", ""),  # Discord answers "" for context menus
                }
                for c in record.json or []
            ]
            return json_response(self.synced[scope])
        if path == "/users/@me/channels" and method == "POST":
            refusal = rules.open_dm(record.json)
            if refusal is not None:
                return self._refuse(refusal)
            recipient = str((record.json or {}).get("recipient_id"))
            who = next((m for m in self.members.values() if str(m.id) == recipient), None)
            if who is None:
                return json_response({"message": "Unknown User", "code": 10013}, status=404)
            dm = self.dm_channels.setdefault(
                recipient, {"id": str(snowflake()), "type": 1, "recipients": [who.user()], "last_message_id": None}
            )
            return json_response(dm)
        if parts[0] == "users" and len(parts) == 2 and parts[1] != "@me" and method == "GET":
            who = next((m for m in self.members.values() if str(m.id) == parts[1]), None)
            if who is None:
                return json_response({"message": "Unknown User", "code": 10013}, status=404)
            return json_response(who.user())
        if path == "/users/@me" and method == "GET":
            return json_response(self.bot_user.user())
        if path == "/oauth2/applications/@me" and method == "GET":
            return json_response(self._application())
        if path == "/gateway/bot":
            limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
            return json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})
        if path.startswith("/users/@me/guilds/") and method == "DELETE":
            return web.Response(status=204)
        if path == "/users/@me/guilds" and method == "GET":
            permissions = str(self.permissions_of(self.bot_user))
            guild = {"id": str(self.guild_id), "name": "Stand-in ML Lab", "icon": None, "owner": False}
            listed: list[dict[str, Any]] = [{**guild, "permissions": permissions, "features": []}]
            if self.stranger_guild_id is not None:
                stranger = {"id": str(self.stranger_guild_id), "name": "Stranger's server", "icon": None}
                listed.append({**stranger, "owner": False, "permissions": permissions, "features": []})
            return json_response(listed)
        if parts[0] == "guilds" and len(parts) >= 2 and parts[1] == str(self.guild_id) and method == "GET":
            guild = self._guild()
            if len(parts) == 2:
                return json_response({k: v for k, v in guild.items() if k not in ("channels", "members", "threads")})
            if parts[2:] == ["channels"]:
                return json_response(
                    [{**c, "guild_id": str(self.guild_id)} for c in self.channels.values() if c["type"] != 11]
                )
            if len(parts) == 4 and parts[2] == "members":
                who = next((m for m in [self.bot_user, *self.members.values()] if str(m.id) == parts[3]), None)
                if who is None:
                    return json_response({"message": "Unknown Member", "code": 10007}, status=404)
                return json_response(who.member())
        if parts[0] == "channels" and len(parts) >= 2:
            return await self._channel_route(method, parts, record)
        return json_response({"message": "404: Not Found", "code": 0}, status=404)

    def _interaction_callback(self, interaction_id: str, body: dict[str, Any], record: Request) -> web.Response:
        """Types: 4 message, 5 deferred message ("thinking…"), 6 deferred update, 7 update, 8 autocomplete, 9 modal
        (recorded in ``interaction_responses``; its submit comes from :meth:`submit_modal`)."""
        kind = body.get("type")
        data = body.get("data") or {}
        self.interaction_responses.append({"interaction_id": interaction_id, "type": kind, "data": data})
        token = next((t for t, i in self._interactions.items() if i["id"] == interaction_id), None)
        if token is None:
            return json_response({"message": "Unknown interaction", "code": 10062}, status=404)
        info = self._interactions[token]
        if info.get("answered"):
            return self._refuse(Refusal(400, 40060, "Interaction has already been acknowledged."))
        if time.monotonic() - info.get("at", time.monotonic()) > self.interaction_deadline:
            return self._refuse(Refusal(404, 10062, "Unknown interaction"))
        refusal = rules.interaction_callback(body, info.get("type", 2), files=len(record.files))
        if refusal is not None:
            return self._refuse(refusal)
        info["answered"] = True
        message = None
        if kind == 7:  # update the message the component belongs to
            event = next(
                (
                    p["d"]
                    for _, p in reversed(self._events)
                    if p.get("t") == "INTERACTION_CREATE" and p["d"]["id"] == interaction_id
                ),
                None,
            )
            if event is not None and int(event["message"]["id"]) in self.messages:
                message = self.messages[int(event["message"]["id"])]
                message.update({k: v for k, v in data.items() if k in ("content", "embeds", "components")})
        elif kind in (4, 5):
            message = self._store_bot_message(info["channel_id"], data, record, interaction_id=interaction_id)
            message["loading"] = kind == 5
            info["original"] = int(message["id"])
        result: dict[str, Any] = {
            "interaction": {
                "id": interaction_id,
                "type": 2,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool((data.get("flags") or 0) & 64),
            },
        }
        if message is not None:
            result["resource"] = {"type": kind, "message": message}
        return json_response(result)

    def _webhook(self, method: str, parts: list[str], record: Request) -> web.Response:
        """Follow-ups of an interaction: POST /webhooks/{app}/{token}, PATCH/GET …/messages/{id|@original}."""
        info = self._interactions.get(parts[2]) if len(parts) >= 3 else None
        if info is None:
            return json_response({"message": "Unknown Webhook", "code": 10015}, status=404)
        body = record.json or {}
        if method in ("POST", "PATCH"):
            refusal = rules.message_body(body, files=len(record.files), create=method == "POST")
            if refusal is not None:
                return self._refuse(refusal)
        if len(parts) == 3 and method == "POST":
            original = self.messages.get(info.get("original", 0))
            if original is not None and original.get("loading"):  # the first follow-up replaces "thinking…"
                original.update(self._message_fields(body, record))
                original["loading"] = False
                return json_response(original)
            message = self._store_bot_message(info["channel_id"], body, record, interaction_id=info["id"])
            return json_response(message)
        if len(parts) == 5 and parts[3] == "messages":
            target = info.get("original") if parts[4] == "@original" else int(parts[4])
            edited = self.messages.get(target or 0)
            if edited is None:
                return json_response({"message": "Unknown Message", "code": 10008}, status=404)
            message = edited
            if method == "PATCH":
                self.versions.setdefault(int(message["id"]), []).append(copy.deepcopy(message))
                message.update(self._message_fields(body, record))
                message["loading"] = False
                message["edited_timestamp"] = now_iso()
            return json_response(message)
        return json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)

    def _message_fields(self, body: dict[str, Any], record: Request) -> dict[str, Any]:
        fields: dict[str, Any] = {k: body[k] for k in ("content", "embeds", "components", "flags") if k in body}
        if record.files:
            fields["attachments"] = self._attachments(record)
        return fields

    def _attachments(self, record: Request) -> list[dict[str, Any]]:
        return [
            {
                "id": str(snowflake()),
                "filename": name,
                "size": len(data),
                "url": f"{self.base}/cdn/attachments/{name}",
                "proxy_url": f"{self.base}/cdn/attachments/{name}",
            }
            for name, data in record.files.items()
        ]

    def _store_bot_message(
        self, channel_id: int, body: dict[str, Any], record: Request, *, interaction_id: str | None = None
    ) -> dict[str, Any]:
        message = self._message(
            channel_id, self.bot_user, body.get("content") or "", self._message_fields(body, record)
        )
        message.pop("member")
        if interaction_id is not None:
            message["interaction_id"] = interaction_id
        self.messages[int(message["id"])] = message
        return message

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "Adjutant (stand-in)",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.members["owner"].user(),
            "verify_key": "0" * 64,
            # GATEWAY_MESSAGE_CONTENT (1 << 18): the portal's switch, as the doctor reads it
            "flags": (1 << 18) if self.allow_message_content else 0,
        }

    async def _channel_route(self, method: str, parts: list[str], record: Request) -> web.Response:
        channel_id = parts[1]
        dm_of = next((user for user, dm in self.dm_channels.items() if dm["id"] == channel_id), None)
        if dm_of is not None and len(parts) == 3 and parts[2] == "messages" and method == "POST":
            closed = {str(self.members[name].id) for name in self.dms_closed}
            if dm_of in closed:
                return self._refuse(Refusal(403, 50007, "Cannot send messages to this user"), provoked=True)
            refusal = rules.message_body(record.json or {}, files=len(record.files))
            if refusal is not None:
                return self._refuse(refusal)
            return self._create_message(int(channel_id), record.json or {}, record, f"channel-{channel_id}")
        channel = next((c for c in self.channels.values() if c["id"] == channel_id), None)
        if channel is None:
            deleted = channel_id in self._deleted
            return self._refuse(Refusal(404, 10003, "Unknown Channel"), provoked=deleted)
        if len(parts) == 2 and method == "GET":
            denied = self._missing_permissions(channel, rules.VIEW_CHANNEL)
            return denied or json_response({**channel, "guild_id": channel.get("guild_id") or str(self.guild_id)})
        if len(parts) == 2:
            return json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)
        is_thread = channel.get("type") in (10, 11, 12)
        send = rules.SEND_MESSAGES_IN_THREADS if is_thread else rules.SEND_MESSAGES
        bucket = f"channel-{channel_id}"
        if parts[2] == "typing":
            return self._missing_permissions(channel, rules.VIEW_CHANNEL, send) or web.Response(status=204)
        if parts[2] != "messages":
            return json_response({"message": "404: Not Found", "code": 0}, status=404)
        if len(parts) == 5 and parts[3] == "pins" and method == "PUT":  # discord.py 2.6+: /messages/pins/{m}
            if self.deny_pins:
                return self._refuse(rules.missing_permissions(), provoked=True)
            pin = rules.MANAGE_MESSAGES | rules.PIN_MESSAGES  # either one
            denied = self._missing_permissions(channel, rules.VIEW_CHANNEL, pin)
            if denied is not None:
                return denied
            if int(parts[4]) not in self.messages:
                return json_response({"message": "Unknown Message", "code": 10008}, status=404)
            self.pins.setdefault(channel_id, []).append(int(parts[4]))
            return web.Response(status=204)
        if len(parts) == 3 and method == "POST":
            limited = self._check_rate(channel_id)
            if limited is not None:
                return limited
            if self.send_faults:
                status, code, text = self.send_faults.pop(0)
                return self._refuse(Refusal(status, code, text), provoked=True)
            if (channel.get("thread_metadata") or {}).get("locked"):
                return self._refuse(Refusal(403, 50083, "Thread is locked"), provoked=True)
            body = record.json or {}
            needed = [rules.VIEW_CHANNEL, send]
            if body.get("embeds"):
                needed.append(rules.EMBED_LINKS)
            if record.files:
                needed.append(rules.ATTACH_FILES)
            denied = self._missing_permissions(channel, *needed)
            if denied is not None:
                return denied
            refusal = rules.message_body(body, files=len(record.files))
            if refusal is not None:
                return self._refuse(refusal)
            if body.get("message_reference") and not (
                self.permissions_in(self.bot_user, channel) & rules.READ_MESSAGE_HISTORY
            ):
                refusal = Refusal(400, 160002, "Cannot reply without permission to read message history")
                return self._refuse(refusal, provoked=self._withheld)
            return self._create_message(int(channel_id), body, record, bucket)
        if len(parts) >= 4:
            message = self.messages.get(int(parts[3]))
            if message is None:
                return json_response({"message": "Unknown Message", "code": 10008}, status=404)
            if len(parts) >= 5 and parts[4] == "reactions":
                if method == "PUT":
                    react = (rules.VIEW_CHANNEL, rules.READ_MESSAGE_HISTORY, rules.ADD_REACTIONS)
                    denied = self._missing_permissions(channel, *react)
                    if denied is not None:
                        return denied
                return web.Response(status=204)
            if len(parts) == 5 and parts[4] == "threads" and method == "POST":
                denied = self._missing_permissions(channel, rules.VIEW_CHANNEL, rules.CREATE_PUBLIC_THREADS)
                if denied is not None:
                    return denied
                refusal = rules.thread_from_message(record.json)
                if refusal is not None:
                    return self._refuse(refusal)
                return await self._create_thread(channel_id, message, record.json or {})
            if method == "GET":
                denied = self._missing_permissions(channel, rules.VIEW_CHANNEL, rules.READ_MESSAGE_HISTORY)
                return denied or json_response(message)
            if method == "PATCH":
                refusal = rules.message_body(record.json or {}, files=len(record.files), create=False)
                if refusal is not None:
                    return self._refuse(refusal)
                limited = self._check_rate(f"{channel_id}/edit")  # Discord buckets edits apart from sends
                if limited is not None:
                    return limited
                self.versions.setdefault(int(message["id"]), []).append(copy.deepcopy(message))
                message.update(
                    {k: v for k, v in (record.json or {}).items() if k in ("content", "embeds", "components")}
                )
                message["edited_timestamp"] = now_iso()
                return json_response(message)
            if method == "DELETE":
                self.messages.pop(int(parts[3]), None)
                return web.Response(status=204)
        return json_response({"message": "405: Method Not Allowed", "code": 0}, status=405)

    async def _create_thread(self, parent_id: str, message: dict[str, Any], body: dict[str, Any]) -> web.Response:
        thread_id = message["id"]  # a thread started from a message has the message's id
        thread = {
            "id": thread_id,
            "type": 11,
            "guild_id": str(self.guild_id),
            "parent_id": parent_id,
            "name": body.get("name") or "thread",
            "owner_id": str(self.bot_user.id),
            "member_count": 1,
            "message_count": 0,
            "rate_limit_per_user": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": body.get("auto_archive_duration") or 1440,
                "archive_timestamp": now_iso(),
                "locked": False,
            },
        }
        self.channels[f"thread-{thread_id}"] = thread
        self.threads.append(thread)
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return json_response(thread)

    def deny_threads(self, channel: str) -> None:
        """Members (the bot included) may not create threads in ``channel``."""
        overwrite = {"id": str(self.guild_id), "type": 0, "allow": "0", "deny": str(rules.CREATE_PUBLIC_THREADS)}
        self.channels[channel]["permission_overwrites"] = [overwrite]
        self._withheld = True

    def in_thread(self, thread_id: str) -> list[dict[str, Any]]:
        return [m for m in self.sent() if m["channel_id"] == thread_id]

    def _check_rate(self, channel_id: str) -> web.Response | None:
        if self.rate_limit is None:
            return None
        count, per = self.rate_limit
        now = time.monotonic()
        window = [t for t in self._sends.get(channel_id, []) if now - t < per]
        self._sends[channel_id] = window
        if len(window) >= count:
            self.rate_limited += 1
            retry = per - (now - window[0])
            headers = self._rate_headers(f"channel-{channel_id}", 0)
            headers.update({"Retry-After": f"{retry:.3f}", "Via": "1.1 google", "X-RateLimit-Scope": "user"})
            body = {"message": "You are being rate limited.", "retry_after": retry, "global": False}
            return json_response(body, status=429, headers=headers)
        window.append(now)
        return None

    def _create_message(self, channel_id: int, body: dict[str, Any], record: Request, bucket: str) -> web.Response:
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            earlier = self._nonces.get((channel_id, str(nonce)))
            if earlier is not None:  # Discord returns the first message instead of creating another
                self.deduplicated += 1
                return json_response(self.messages[earlier], headers=self._rate_headers(bucket))
        content = body.get("content") or ""
        embeds = body.get("embeds") or []
        attachments = self._attachments(record)
        extra = {
            "embeds": embeds,
            "components": body.get("components") or [],
            "attachments": attachments,
        }
        if body.get("message_reference"):
            extra["message_reference"] = body["message_reference"]
        message = self._message(channel_id, self.bot_user, content, extra)
        message.pop("member")
        self.messages[int(message["id"])] = message
        self.allowed_mentions[int(message["id"])] = body.get("allowed_mentions")
        if nonce is not None:
            self._nonces[(channel_id, str(nonce))] = int(message["id"])
        return json_response(message, headers=self._rate_headers(bucket))


def _options(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Slash command option payloads: 3 string, 4 integer, 5 boolean, 10 number."""
    out = []
    for name, value in values.items():
        kind = 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 10 if isinstance(value, float) else 3
        out.append({"name": name, "type": kind, "value": value})
    return out


def _embeds_too_big(embeds: list[dict[str, Any]]) -> bool:
    """Whether Discord would refuse these embeds in one message (50035)."""
    return rules.message_body({"embeds": embeds}, create=False) is not None


def patch_discord(base: str, gateway: str) -> None:
    """Point discord.py (in this process) at a stand-in. Test-only; never used by product code."""
    import discord
    import yarl

    discord.http.Route.BASE = f"{base}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    discord.asset.Asset.BASE = f"{base}/cdn"
