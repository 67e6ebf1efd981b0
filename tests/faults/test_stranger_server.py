"""Fault: a stranger invites the (public) bot to a server of her own, makes a #general and a role "ml-team",
and tries to use the team's Adjutant from there. Nothing she does is obeyed, answered or launched."""

from __future__ import annotations

import asyncio
import logging

from tests.cogs.test_experiments import acks, launch_env
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


async def stranger_tries_everything(discord: DiscordStandIn) -> None:
    await discord.post('$experiment {"stranger": 1}', author="stranger", channel="stranger:general")
    await discord.post("$hello", author="stranger", channel="stranger:general")
    await discord.post("$jobs", author="stranger", channel="stranger:general")
    await discord.slash("hello", author="stranger", channel="stranger:general")
    await asyncio.sleep(1.5)


def nothing_in_strangers_server(discord: DiscordStandIn) -> None:
    stranger_channel = str(discord.channel_id("stranger:general"))
    assert [m for m in discord.sent() if m["channel_id"] == stranger_channel] == []
    assert discord.interaction_responses == [], "no answer to her slash command either"


async def test_with_guild_id_a_strangers_server_is_never_obeyed(
    start_adjutant, discord_standin: DiscordStandIn, out_dir, caplog
) -> None:
    discord_standin.add_stranger_guild()
    env = launch_env(ADJUTANT_GUILD_ID=str(discord_standin.guild_id), ADJUTANT_LAUNCH_ROLES="ml-team")
    caplog.set_level(logging.WARNING, logger="adjutant")
    async with start_adjutant(env) as bot:
        assert len(bot.guilds) == 2
        await stranger_tries_everything(discord_standin)
        await stranger_tries_everything(discord_standin)
        nothing_in_strangers_server(discord_standin)
        assert list(out_dir.iterdir()) == [], "the team's script never ran"
        # The team is served as before, its role by the same name works in its own server.
        await discord_standin.post('$experiment {"team": 1}', author="teammate")
        await eventually(lambda: bool(acks(discord_standin)), timeout=10)
        await discord_standin.post("$hello", author="member")
        await discord_standin.wait_for_message(lambda m: m["content"] == "Hello!", timeout=10)
    ignored = [r for r in caplog.records if "ignoring server" in r.getMessage()]
    assert len(ignored) == 1, "logged once"
    assert discord_standin.left_guilds() == []


async def test_without_guild_id_two_servers_mean_no_server_is_obeyed(
    start_adjutant, discord_standin: DiscordStandIn, out_dir, caplog
) -> None:
    """Which server is the team's cannot be guessed from the order Discord lists them: none is served."""
    discord_standin.add_stranger_guild()
    caplog.set_level(logging.ERROR, logger="adjutant")
    async with start_adjutant(launch_env()):
        await stranger_tries_everything(discord_standin)
        await discord_standin.post('$experiment {"team": 1}', author="admin")
        await discord_standin.post("$hello", author="admin")
        await asyncio.sleep(1.5)
    assert discord_standin.sent() == []
    assert list(out_dir.iterdir()) == []
    assert any("ADJUTANT_GUILD_ID is not set" in r.getMessage() for r in caplog.records)


async def test_leave_unknown_guilds(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    stranger = discord_standin.add_stranger_guild()
    env = launch_env(ADJUTANT_GUILD_ID=str(discord_standin.guild_id), ADJUTANT_LEAVE_UNKNOWN_GUILDS="on")
    async with start_adjutant(env):
        await eventually(lambda: discord_standin.left_guilds() == [str(stranger)], timeout=10)
    assert str(discord_standin.guild_id) not in discord_standin.left_guilds()
