"""The Discord stand-in refuses what Discord refuses, and answers as Discord answers (status, code, errors path).

Each test sends the offending request through the real discord.py client (its HTTP client, so that the request is
exactly what a bot would send), or with raw aiohttp where discord.py itself never sends such a body (invalid JSON,
interaction callbacks it would refuse to repeat)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.http import Route

from tests.conftest import running
from tests.standins import discord_rules as rules
from tests.standins.discord_standin import DiscordStandIn, Refused


@pytest.fixture
async def client(discord_standin: DiscordStandIn) -> AsyncIterator[discord.Client]:
    """A plain discord.py client connected to the stand-in; interactions it receives go to ``client.received``."""
    intents = discord.Intents.default()
    intents.message_content = True
    bot = discord.Client(intents=intents, guild_ready_timeout=0.1)
    received: asyncio.Queue[discord.Interaction] = asyncio.Queue()
    bot.received = received  # type: ignore[attr-defined]

    @bot.event
    async def on_interaction(interaction: discord.Interaction) -> None:
        await received.put(interaction)

    async with running(bot, discord_standin.token):
        yield bot


async def refused(standin: DiscordStandIn, call: Awaitable[Any]) -> tuple[discord.HTTPException, Refused]:
    """Send ``call`` (declared as provoking a refusal): the exception discord.py raised, and the stand-in's record."""
    with standin.expect_refusals() as seen, pytest.raises(discord.HTTPException) as info:
        await call
    assert len(seen) == 1, seen
    return info.value, seen[0]


def invalid(error: discord.HTTPException, path: str, message: str) -> None:
    """Discord's "Invalid Form Body" naming ``path`` (dotted, as discord.py prints it) and the rule."""
    assert (error.status, error.code) == (400, 50035), (error.status, error.code, error.text)
    lines = [line for line in error.text.splitlines() if line.startswith(f"In {path}: ")]
    assert any(message in line for line in lines), error.text


def send(client: discord.Client, standin: DiscordStandIn, payload: dict[str, Any], channel: str = "general") -> Any:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=standin.channel_id(channel))
    return client.http.request(route, json=payload)


def sync(client: discord.Client, standin: DiscordStandIn, commands: list[dict[str, Any]]) -> Any:
    return client.http.bulk_upsert_global_commands(standin.application_id, commands)


def command(name: str = "status", description: str = "Show the status", **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "type": 1, **extra}


def option(name: str = "job", description: str = "The job", kind: int = 3, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "type": kind, **extra}


def row(*components: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(components)}


def button(custom_id: str = "b", label: str = "Go") -> dict[str, Any]:
    return {"type": 2, "style": 1, "custom_id": custom_id, "label": label}


def select(custom_id: str = "s") -> dict[str, Any]:
    return {"type": 3, "custom_id": custom_id, "options": [{"label": "a", "value": "a"}]}


# --- messages ------------------------------------------------------------------------------------------------
async def test_content_over_2000_characters(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    channel = client.get_channel(discord_standin.channel_id("general"))
    assert isinstance(channel, discord.TextChannel)
    error, record = await refused(discord_standin, channel.send("x" * 2001))
    invalid(error, "content", "Must be 2000 or fewer in length.")
    assert record.errors == {
        "content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}
    }
    assert (record.method, record.path) == ("POST", f"/channels/{discord_standin.channel_id('general')}/messages")


async def test_more_than_10_embeds(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    error, _ = await refused(discord_standin, send(client, discord_standin, {"embeds": [{"title": "t"}] * 11}))
    invalid(error, "embeds", "Must be 10 or fewer in length.")


async def test_more_than_6000_characters_across_embeds(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    embeds = [{"description": "d" * 4000}, {"description": "d" * 1000, "footer": {"text": "f" * 1001}}]
    error, _ = await refused(discord_standin, send(client, discord_standin, {"embeds": embeds}))
    invalid(error, "embeds", "Embed size exceeds maximum size of 6000")
    exactly = [{"description": "d" * 4000}, {"description": "d" * 1000, "footer": {"text": "f" * 1000}}]
    await send(client, discord_standin, {"embeds": exactly})


@pytest.mark.parametrize(
    ("embed", "path", "message"),
    [
        ({"title": "t" * 257}, "embeds.0.title", "Must be 256 or fewer in length."),
        ({"description": "d" * 4097}, "embeds.0.description", "Must be 4096 or fewer in length."),
        ({"footer": {"text": "f" * 2049}}, "embeds.0.footer.text", "Must be 2048 or fewer in length."),
        ({"author": {"name": "a" * 257}}, "embeds.0.author.name", "Must be 256 or fewer in length."),
        ({"fields": [{"name": "n", "value": "v"}] * 26}, "embeds.0.fields", "Must be 25 or fewer in length."),
        ({"fields": [{"name": "n" * 257, "value": "v"}]}, "embeds.0.fields.0.name", "Must be between 1 and 256"),
        ({"fields": [{"name": "n", "value": "v" * 1025}]}, "embeds.0.fields.0.value", "Must be between 1 and 1024"),
        ({"fields": [{"name": "", "value": "v"}]}, "embeds.0.fields.0.name", "This field is required"),
        ({"fields": [{"name": "n", "value": ""}]}, "embeds.0.fields.0.value", "This field is required"),
        ({"color": 0x1000000}, "embeds.0.color", "int value should be less than or equal to 16777215."),
    ],
)
async def test_embed_limits(
    client: discord.Client, discord_standin: DiscordStandIn, embed: dict[str, Any], path: str, message: str
) -> None:
    error, _ = await refused(discord_standin, send(client, discord_standin, {"embeds": [embed]}))
    invalid(error, path, message)


async def test_an_empty_message(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    error, _ = await refused(discord_standin, send(client, discord_standin, {"content": ""}))
    assert (error.status, error.code) == (400, 50006)


async def test_an_edit_is_held_to_the_same_rules(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    channel = client.get_channel(discord_standin.channel_id("general"))
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("fine")
    error, record = await refused(discord_standin, message.edit(content="x" * 2001))
    invalid(error, "content", "Must be 2000 or fewer in length.")
    assert record.method == "PATCH"


# --- components ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("components", "path", "message"),
    [
        ([row(button(f"b{i}")) for i in range(6)], "components", "Must be 5 or fewer in length."),
        ([row(*(button(f"b{i}") for i in range(6)))], "components.0.components", "Must be between 1 and 5 in length."),
        ([row(select(), button())], "components.0.components", "The specified component exceeds the maximum width"),
        (
            [row(button("same"), button("same"))],
            "components.0.components.1.custom_id",
            "custom id cannot be duplicated",
        ),
        ([row(button("x" * 101))], "components.0.components.0.custom_id", "Must be between 1 and 100 in length."),
        ([row(button(""))], "components.0.components.0.custom_id", "Must be between 1 and 100 in length."),
        ([row(button(label="l" * 81))], "components.0.components.0.label", "Must be 80 or fewer in length."),
        ([row()], "components.0.components", "Must be between 1 and 5 in length."),
        ([{"type": 10, "content": "V2 only"}], "components.0.type", "Component type 10 is not valid here."),
    ],
)
async def test_component_rules(
    client: discord.Client, discord_standin: DiscordStandIn, components: list[Any], path: str, message: str
) -> None:
    payload = {"content": "pick", "components": components}
    error, _ = await refused(discord_standin, send(client, discord_standin, payload))
    invalid(error, path, message)


async def test_custom_ids_are_unique_across_rows(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    payload = {"content": "pick", "components": [row(button("same")), row(button("same"))]}
    error, _ = await refused(discord_standin, send(client, discord_standin, payload))
    invalid(error, "components.1.components.0.custom_id", "Component custom id cannot be duplicated")


async def test_components_v2_flag_refuses_content_and_embeds(
    client: discord.Client, discord_standin: DiscordStandIn
) -> None:
    text = {"type": 10, "content": "hello"}
    payload = {"flags": rules.COMPONENTS_V2, "content": "legacy", "embeds": [{"title": "t"}], "components": [text]}
    error, _ = await refused(discord_standin, send(client, discord_standin, payload))
    invalid(error, "content", "The 'content' field cannot be used when using MessageFlags.IS_COMPONENTS_V2")
    invalid(error, "embeds", "The 'embeds' field cannot be used when using MessageFlags.IS_COMPONENTS_V2")
    await send(client, discord_standin, {"flags": rules.COMPONENTS_V2, "components": [text, row(button())]})


async def test_components_v2_at_most_40_components(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    texts = [{"type": 10, "content": f"line {i}"} for i in range(20)]
    container = {"type": 17, "components": texts}
    payload = {"flags": rules.COMPONENTS_V2, "components": [container, container]}  # 2 containers + 40 texts
    error, _ = await refused(discord_standin, send(client, discord_standin, payload))
    invalid(error, "components", "The maximum number of components (40) exceeded.")


# --- threads ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "t" * 101])
async def test_thread_name_1_to_100(client: discord.Client, discord_standin: DiscordStandIn, name: str) -> None:
    channel = client.get_channel(discord_standin.channel_id("general"))
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("start")
    call = client.http.start_thread_with_message(channel.id, message.id, name=name, auto_archive_duration=1440)
    error, _ = await refused(discord_standin, call)
    invalid(error, "name", "Must be between 1 and 100 in length.")
    assert discord_standin.threads == []


async def test_thread_archive_duration_is_one_of_four(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    channel = client.get_channel(discord_standin.channel_id("general"))
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("start")
    call = client.http.start_thread_with_message(channel.id, message.id, name="ok", auto_archive_duration=90)  # type: ignore[arg-type]
    error, _ = await refused(discord_standin, call)
    invalid(error, "auto_archive_duration", "Value must be one of {60, 1440, 4320, 10080}.")


# --- application commands ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("commands", "path", "message"),
    [
        ([command(description="d" * 101)], "0.description", "Must be between 1 and 100 in length."),
        ([command(description="")], "0.description", "Must be between 1 and 100 in length."),
        ([command("Status")], "0.name", "Command name is invalid"),
        ([command("job status")], "0.name", "Command name is invalid"),
        ([command("n" * 33)], "0.name", "Must be between 1 and 32 in length."),
        ([command(options=[option(description="d" * 101)])], "0.options.0.description", "Must be between 1 and 100"),
        ([command(options=[option(name="Job")])], "0.options.0.name", "Command name is invalid"),
        ([command(options=[option(f"o{i}") for i in range(26)])], "0.options", "Must be 25 or fewer in length."),
        (
            [command(options=[option(choices=[{"name": f"c{i}", "value": f"{i}"} for i in range(26)])])],
            "0.options.0.choices",
            "Must be 25 or fewer in length.",
        ),
        (
            [command(options=[option("a", required=False), option("b", required=True)])],
            "0.options.1.required",
            "Required options must be placed before non-required options",
        ),
        ([command(options=[option("a"), option("a")])], "0.options.1.name", "Option names must be unique"),
        (
            [command(options=[option(autocomplete=True, choices=[{"name": "a", "value": "a"}])])],
            "0.options.0.autocomplete",
            "Autocomplete cannot be set with choices",
        ),
        (
            [{"name": "Rerun with edits", "type": 3, "description": "Reruns it"}],
            "0.description",
            "Context menu commands cannot have a description",
        ),
        ([command(), command()], "1.name", "Application command names must be unique"),
        (
            [command(options=[option("group", kind=2, options=[option("inner", kind=2, options=[option(kind=1)])])])],
            "0.options.0.options.0.type",
            "Value must be one of {1}.",
        ),
        (
            [command(options=[option("sub", kind=1), option("plain")])],
            "0.options",
            "Sub-command and sub-command group option types are mutually exclusive",
        ),
        (
            [
                command(
                    options=[
                        option(f"o{i}", "d" * 100, choices=[{"name": "n" * 50, "value": "v" * 100}]) for i in range(25)
                    ]
                )
            ],
            "0",
            "Command exceeds maximum size (4000)",
        ),
    ],
)
async def test_command_rules(
    client: discord.Client, discord_standin: DiscordStandIn, commands: list[dict[str, Any]], path: str, message: str
) -> None:
    error, record = await refused(discord_standin, sync(client, discord_standin, commands))
    invalid(error, path, message)
    assert record.method == "PUT" and discord_standin.synced == {}


async def test_integer_fields_as_strings_and_unicode_names_are_accepted(
    client: discord.Client, discord_standin: DiscordStandIn
) -> None:
    """discord.py sends ``default_member_permissions`` as a decimal string; Discord accepts it, and names in
    other scripts (Devanagari, Thai, an apostrophe)."""
    commands = [
        command("स्थिति", default_member_permissions="8"),
        command("สถานะ"),
        command("don't-stop_2"),
        {"name": "Rerun with edits", "type": 3},
    ]
    await sync(client, discord_standin, commands)
    assert len(discord_standin.synced["global"]) == 4


@pytest.mark.parametrize(("kind", "most"), [(1, 100), (2, 15), (3, 15)])
async def test_at_most_100_chat_input_and_15_context_menus(
    client: discord.Client, discord_standin: DiscordStandIn, kind: int, most: int
) -> None:
    def one(i: int) -> dict[str, Any]:
        return command(f"c{i}") if kind == 1 else {"name": f"Menu {i}", "type": kind}

    await sync(client, discord_standin, [one(i) for i in range(most)])
    error, _ = await refused(discord_standin, sync(client, discord_standin, [one(i) for i in range(most + 1)]))
    assert (error.status, error.code) == (400, 30032)


async def test_a_real_tree_with_a_long_description_is_refused_as_discord_does(
    client: discord.Client, discord_standin: DiscordStandIn
) -> None:
    """What ``tree.sync()`` sends for a command whose description is too long: discord.py reads Discord's
    errors path (``0.description``) back to the command."""
    tree = app_commands.CommandTree(client)

    @tree.command(name="status", description="x" * 101)
    async def status(interaction: discord.Interaction) -> None: ...

    error, _ = await refused(discord_standin, tree.sync())
    assert isinstance(error, app_commands.CommandSyncFailure) and (error.status, error.code) == (400, 50035)
    assert "In command 'status'" in str(error) and "description: Must be between 1 and 100 in length." in str(error)


# --- interactions -----------------------------------------------------------------------------------------
async def callback(standin: DiscordStandIn, interaction_id: str, body: Any) -> tuple[int, Any]:
    """An interaction callback as raw HTTP (discord.py would not send a second one, or a broken one)."""
    url = f"{standin.base}/api/v10/interactions/{interaction_id}/itoken-{interaction_id}/callback"
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, str) else None
        json_body = None if isinstance(body, str) else body
        headers = {"Content-Type": "application/json"}
        async with session.post(url, data=data, json=json_body, headers=headers if data else None) as response:
            return response.status, await response.json(content_type=None)


async def test_an_interaction_is_answered_once(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    interaction_id = await discord_standin.slash("status")
    interaction: discord.Interaction = await asyncio.wait_for(client.received.get(), 5)  # type: ignore[attr-defined]
    await interaction.response.defer()
    with discord_standin.expect_refusals(40060) as seen:
        status, body = await callback(discord_standin, interaction_id, {"type": 4, "data": {"content": "again"}})
    assert (status, body["code"]) == (400, 40060) and len(seen) == 1


async def test_a_modal_only_as_the_first_response(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    interaction_id = await discord_standin.slash("form")
    interaction: discord.Interaction = await asyncio.wait_for(client.received.get(), 5)  # type: ignore[attr-defined]
    await interaction.response.defer()
    modal = {"custom_id": "m", "title": "Form", "components": [row(text_input())]}
    with discord_standin.expect_refusals(40060):
        status, body = await callback(discord_standin, interaction_id, {"type": 9, "data": modal})
    assert (status, body["code"]) == (400, 40060)


async def test_an_interaction_answered_after_3_s_is_unknown(
    client: discord.Client, discord_standin: DiscordStandIn
) -> None:
    assert discord_standin.interaction_deadline == 3.0, "Discord's deadline"
    discord_standin.interaction_deadline = 0.2  # the same rule, sooner
    await discord_standin.slash("status")
    interaction: discord.Interaction = await asyncio.wait_for(client.received.get(), 5)  # type: ignore[attr-defined]
    await asyncio.sleep(0.4)
    error, _ = await refused(discord_standin, interaction.response.send_message("late"))
    assert (error.status, error.code) == (404, 10062)


def text_input(custom_id: str = "t", label: str = "Params") -> dict[str, Any]:
    return {"type": 4, "custom_id": custom_id, "style": 1, "label": label}


@pytest.mark.parametrize(
    ("modal", "path", "message"),
    [
        (
            {"custom_id": "m", "title": "Form", "components": [row(text_input(f"t{i}")) for i in range(6)]},
            "data.components",
            "Must be between 1 and 5 in length.",
        ),
        (
            {"custom_id": "m", "title": "T" * 46, "components": [row(text_input())]},
            "data.title",
            "Must be between 1 and 45",
        ),
        ({"custom_id": "m", "title": "", "components": [row(text_input())]}, "data.title", "Must be between 1 and 45"),
        (
            {"custom_id": "m", "title": "Form", "components": [row(text_input(label="L" * 46))]},
            "data.components.0.components.0.label",
            "Must be between 1 and 45 in length.",
        ),
    ],
)
async def test_modal_rules(
    client: discord.Client, discord_standin: DiscordStandIn, modal: dict[str, Any], path: str, message: str
) -> None:
    interaction_id = await discord_standin.slash("form")
    await asyncio.wait_for(client.received.get(), 5)  # type: ignore[attr-defined]
    with discord_standin.expect_refusals(50035) as seen:
        status, body = await callback(discord_standin, interaction_id, {"type": 9, "data": modal})
    assert (status, body["code"]) == (400, 50035) and len(seen) == 1
    node = body["errors"]
    for part in path.split("."):
        node = node[part]
    assert message in node["_errors"][0]["message"]


async def test_a_real_modal_is_accepted(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    interaction_id = await discord_standin.slash("form")
    interaction: discord.Interaction = await asyncio.wait_for(client.received.get(), 5)  # type: ignore[attr-defined]
    modal = discord.ui.Modal(title="Launch an experiment", custom_id="form")
    modal.add_item(discord.ui.TextInput(label="Parameters", custom_id="params", style=discord.TextStyle.paragraph))
    await interaction.response.send_modal(modal)
    assert [r["type"] for r in discord_standin.interaction_responses if r["interaction_id"] == interaction_id] == [9]


async def test_a_dm_needs_a_recipient(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    error, _ = await refused(discord_standin, client.http.start_private_message("mallory"))
    invalid(error, "recipient_id", 'Value "mallory" is not snowflake.')
    await client.http.start_private_message(discord_standin.member("admin").id)


async def test_invalid_json(discord_standin: DiscordStandIn) -> None:
    url = f"{discord_standin.base}/api/v10/channels/{discord_standin.channel_id('general')}/messages"
    headers = {"Authorization": f"Bot {discord_standin.token}", "Content-Type": "application/json"}
    with discord_standin.expect_refusals(50109):
        async with aiohttp.ClientSession() as session, session.post(url, data="{not json", headers=headers) as r:
            assert (r.status, (await r.json(content_type=None))["code"]) == (400, 50109)


# --- permissions ------------------------------------------------------------------------------------------
async def test_permissions_are_computed_as_discord_does(discord_standin: DiscordStandIn) -> None:
    bot, general = discord_standin.bot_user, discord_standin.channels["general"]
    assert discord_standin.permissions_in(bot, general) & rules.BOT_ROLE_PERMISSIONS == rules.BOT_ROLE_PERMISSIONS
    everyone = {"id": str(discord_standin.guild_id), "type": 0, "allow": "0", "deny": str(rules.SEND_MESSAGES)}
    general["permission_overwrites"] = [everyone]
    assert not discord_standin.permissions_in(discord_standin.member("member"), general) & rules.SEND_MESSAGES
    assert not discord_standin.permissions_in(bot, general) & rules.SEND_MESSAGES, "@everyone's deny beats roles"
    role_allow = {"id": discord_standin.bot_role["id"], "type": 0, "allow": str(rules.SEND_MESSAGES), "deny": "0"}
    general["permission_overwrites"] = [everyone, role_allow]
    assert discord_standin.permissions_in(bot, general) & rules.SEND_MESSAGES, "a role's allow beats @everyone's deny"
    member_deny = {"id": str(bot.id), "type": 1, "allow": "0", "deny": str(rules.SEND_MESSAGES)}
    general["permission_overwrites"] = [everyone, role_allow, member_deny]
    assert not discord_standin.permissions_in(bot, general) & rules.SEND_MESSAGES, "the member's overwrite last"
    founder, admin = discord_standin.member("founder"), discord_standin.member("admin")
    assert discord_standin.permissions_in(founder, general) == rules.ALL_PERMISSIONS, "the owner has all"
    assert discord_standin.permissions_in(admin, general) == rules.ALL_PERMISSIONS, "Administrator has all"


async def _message_in(client: discord.Client, standin: DiscordStandIn) -> discord.Message:
    channel = client.get_channel(standin.channel_id("general"))
    assert isinstance(channel, discord.TextChannel)
    return await channel.send("here")


@pytest.mark.parametrize(
    ("withheld", "action"),
    [
        ("send_messages", "send"),
        ("view_channel", "send"),
        ("embed_links", "embed"),
        ("attach_files", "file"),
        ("create_public_threads", "thread"),
        ("send_messages_in_threads", "in_thread"),
        ("pin_messages", "pin"),
        ("add_reactions", "react"),
        ("read_message_history", "read"),
    ],
)
async def test_a_withheld_permission_is_refused(
    client: discord.Client, discord_standin: DiscordStandIn, withheld: str, action: str
) -> None:
    message = await _message_in(client, discord_standin)
    channel = message.channel
    assert isinstance(channel, discord.TextChannel)
    thread = await message.create_thread(name="story") if action == "in_thread" else None
    discord_standin.withhold("general", withheld)
    await asyncio.sleep(0.1)  # CHANNEL_UPDATE reaches the client
    calls = {
        "send": lambda: channel.send("hi"),
        "embed": lambda: channel.send(embed=discord.Embed(title="card")),
        "file": lambda: channel.send(file=discord.File(__file__)),
        "thread": lambda: message.create_thread(name="story"),
        "in_thread": lambda: thread.send("in the story"),  # type: ignore[union-attr]
        "pin": lambda: message.pin(),
        "react": lambda: message.add_reaction("✅"),
        "read": lambda: channel.fetch_message(message.id),
    }
    with pytest.raises(discord.Forbidden) as info:
        await calls[action]()
    assert (info.value.status, info.value.code, info.value.text) == (403, 50013, "Missing Permissions")
    assert [r.code for r in discord_standin.refusals] == [50013]
    assert discord_standin.unexpected_refusals() == [], "a withheld permission is the test's doing"
    assert not getattr(channel.permissions_for(channel.guild.me), withheld), "the client was told (CHANNEL_UPDATE)"


async def test_a_role_that_loses_a_permission_is_refused_and_the_client_told(
    client: discord.Client, discord_standin: DiscordStandIn
) -> None:
    message = await _message_in(client, discord_standin)
    discord_standin.set_role_permissions("Adjutant", rules.BOT_ROLE_PERMISSIONS & ~rules.ADD_REACTIONS)
    discord_standin.set_role_permissions("@everyone", rules.VIEW_CHANNEL | rules.SEND_MESSAGES)
    await asyncio.sleep(0.1)  # GUILD_ROLE_UPDATE reaches the client
    channel = message.channel
    assert isinstance(channel, discord.TextChannel)
    assert not channel.permissions_for(channel.guild.me).add_reactions
    with pytest.raises(discord.Forbidden):
        await message.add_reaction("✅")
    await channel.send("still allowed")
    assert discord_standin.unexpected_refusals() == []


async def test_pinning_needs_manage_messages_or_pin_messages(
    client: discord.Client, discord_standin: DiscordStandIn
) -> None:
    message = await _message_in(client, discord_standin)
    discord_standin.withhold("general", "pin_messages")
    everyone = discord_standin.channels["general"]["permission_overwrites"]
    mine = next(o for o in everyone if o["id"] == str(discord_standin.bot_user.id))
    mine["allow"] = str(rules.MANAGE_MESSAGES)
    await message.pin()
    assert discord_standin.pins[str(message.channel.id)] == [message.id]


# --- the counter -------------------------------------------------------------------------------------------
async def test_unprovoked_refusals_are_counted(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    with pytest.raises(discord.HTTPException):
        await send(client, discord_standin, {"content": "x" * 2001})
    discord_standin.send_faults = [(403, 50013, "Missing Permissions")]
    with pytest.raises(discord.Forbidden):
        await send(client, discord_standin, {"content": "fine"})
    unexpected = discord_standin.unexpected_refusals()
    assert [(r.status, r.code) for r in unexpected] == [(400, 50035)], "the injected fault is the test's doing"
    assert "content" in str(unexpected[0]) and "Must be 2000 or fewer in length." in str(unexpected[0])
    assert DiscordStandIn.live[-1] is discord_standin, "the suite-wide check sees this stand-in"
    discord_standin.refusals.clear()  # seen; the suite-wide check must not fail this test


async def test_expect_refusals_declares_only_its_codes(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    with discord_standin.expect_refusals(50006), pytest.raises(discord.HTTPException):
        await send(client, discord_standin, {"content": "x" * 2001})
    assert len(discord_standin.unexpected_refusals()) == 1, "50035 was not declared"
    discord_standin.refusals.clear()


# --- what a bot typically sends is accepted ----------------------------------------------------------------
async def test_a_typical_bot_is_accepted(client: discord.Client, discord_standin: DiscordStandIn) -> None:
    tree = app_commands.CommandTree(client)

    @tree.command(name="experiment", description="Launch an experiment")
    @app_commands.describe(params="JSON parameters", priority="How urgent")
    @app_commands.choices(priority=[app_commands.Choice(name="high", value="high")])
    @app_commands.default_permissions(administrator=True)
    async def experiment(interaction: discord.Interaction, params: str, priority: str | None = None) -> None: ...

    group = app_commands.Group(name="runs", description="W&B runs")

    @group.command(name="best", description="The best run")
    async def best(interaction: discord.Interaction, metric: str) -> None: ...

    @best.autocomplete("metric")
    async def metrics(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return []

    tree.add_command(group)

    @tree.context_menu(name="Rerun with edits")
    async def rerun(interaction: discord.Interaction, message: discord.Message) -> None: ...

    await tree.sync()
    channel = client.get_channel(discord_standin.channel_id("general"))
    assert isinstance(channel, discord.TextChannel)
    asked = await channel.send("$experiment {}")
    embed = discord.Embed(title="🚀 Job abc queued", description="d" * 4000, colour=0x2ECC71)
    embed.add_field(name="Parameters", value="`{}`").set_footer(text="Adjutant").set_author(name="admin")
    view = discord.ui.View()
    view.add_item(discord.ui.Button(label="Cancel", custom_id="adjutant:cancel:abc", style=discord.ButtonStyle.danger))
    view.add_item(discord.ui.Button(label="W&B", url="https://wandb.ai/team/proj"))
    reply = await asked.reply(embed=embed, view=view, file=discord.File(__file__, filename="params.json"))
    thread = await reply.create_thread(name="abc · {}", auto_archive_duration=1440)
    await thread.send("started", allowed_mentions=discord.AllowedMentions(users=[asked.author]))
    await reply.edit(content="edited", embed=embed)
    await reply.pin()
    await reply.add_reaction("✅")
    async with channel.typing():
        pass
    await channel.fetch_message(reply.id)
    await discord_standin.slash("experiment", {"params": "{}"})
    interaction: discord.Interaction = await asyncio.wait_for(client.received.get(), 5)  # type: ignore[attr-defined]
    await interaction.response.defer(thinking=True)
    await interaction.followup.send("queued", embed=embed, ephemeral=True)
    await interaction.edit_original_response(content="done")
    assert discord_standin.refusals == []
