"""End to end: the real discord.py client, over real sockets, against the Discord stand-in."""

from __future__ import annotations

import asyncio

from tests.standins.discord_standin import DiscordStandIn


async def test_hello_round_trip(start_adjutant, discord_standin: DiscordStandIn) -> None:
    async with start_adjutant():
        await discord_standin.post("$hello", author="member")
        reply = await discord_standin.wait_for_message(lambda m: m["content"] == "Hello!")
    assert reply["channel_id"] == str(discord_standin.channel_id("general"))
    request = discord_standin.rest("POST", "/messages")[-1]
    assert request.json["allowed_mentions"] == {"parse": []}
    assert discord_standin.identifies[0]["intents"] & (1 << 15), "message content intent requested"


async def test_other_channel_and_bots_are_ignored(start_adjutant, discord_standin: DiscordStandIn) -> None:
    async with start_adjutant():
        await discord_standin.post("$hello", author="admin", channel="random")
        await discord_standin.post("$hello", author="otherbot", channel="general")
        await discord_standin.post("$hello", author="member", channel="general")  # the control
        await discord_standin.wait_for_message(lambda m: m["content"] == "Hello!")
        await asyncio.sleep(0.3)
    assert [m["channel_id"] for m in discord_standin.sent()] == [str(discord_standin.channel_id("general"))]


async def test_channel_by_id(start_adjutant, discord_standin: DiscordStandIn) -> None:
    channel_id = discord_standin.channel_id("experiments")
    async with start_adjutant({"ADJUTANT_CHANNEL": str(channel_id)}):
        await discord_standin.post("$hello", channel="general")
        await discord_standin.post("$hello", channel="experiments")
        reply = await discord_standin.wait_for_message()
        await asyncio.sleep(0.3)
    print(
        {n: c["id"] for n, c in discord_standin.channels.items()},
        [(m["channel_id"], m["content"]) for m in discord_standin.sent()],
        [(r.method, r.path) for r in discord_standin.requests],
    )
    assert reply["channel_id"] == str(channel_id)
    assert len(discord_standin.sent()) == 1


async def test_custom_prefix(start_adjutant, discord_standin: DiscordStandIn) -> None:
    async with start_adjutant({"ADJUTANT_PREFIX": "!"}):
        await discord_standin.post("$hello")
        await discord_standin.post("!hello")
        await discord_standin.wait_for_message(lambda m: m["content"] == "Hello!")
        await asyncio.sleep(0.3)
    assert len(discord_standin.sent()) == 1


async def test_help_lists_commands_with_descriptions(start_adjutant, discord_standin: DiscordStandIn) -> None:
    async with start_adjutant():
        await discord_standin.post("$help")
        reply = await discord_standin.wait_for_message()
    text = reply["content"]
    assert "hello" in text and "Say hello" in text
    assert "experiment" in text
    # each command's syntax is shown whole, not cut at 80 columns
    assert '$experiment {"epochs": 10} or epochs=10 lr=0.001.' in text
    assert "$rerun j4k2m9x lr=0.01." in text and "..." not in text


async def test_bad_argument_gets_usage_not_traceback(start_adjutant, discord_standin: DiscordStandIn) -> None:
    async with start_adjutant():
        await discord_standin.post("$experiment")
        reply = await discord_standin.wait_for_message()
    assert "Traceback" not in reply["content"]
    assert "ADJUTANT_EXPERIMENT_SCRIPT" in reply["content"]
