"""The sweep commands as slash commands: ``/agents`` refuses a member without launch rights privately (nothing is
recorded), and a sweep of another W&B project than the channel's; ``/sweeps`` with nothing yet says how to start one,
``/sweeps sweep:<unknown>`` names no sweep."""

from __future__ import annotations

from tests.cogs.test_sweeps import sweep_env
from tests.standins.discord_standin import DiscordStandIn


async def answer(discord: DiscordStandIn, name: str, options: dict[str, str], author: str) -> dict:
    interaction = await discord.slash(name, options, author=author)
    await discord.wait_until(lambda: bool(discord.responses(interaction)), timeout=15)
    return discord.responses(interaction)[0]


async def test_slash_agents_and_sweeps(start_adjutant, discord_standin: DiscordStandIn) -> None:
    async with start_adjutant(sweep_env()) as bot:
        refused = await answer(discord_standin, "agents", {"sweep": "team/proj/ab12cd34", "options": "2"}, "member")
        assert refused["flags"] & 64 and "not allowed" in refused["content"], refused
        elsewhere = await answer(discord_standin, "agents", {"sweep": "rival/secret/ab12cd34"}, "admin")
        assert elsewhere["flags"] & 64, elsewhere
        assert "is not a sweep of this channel's W&B project (`team/proj`)" in elsewhere["content"], elsewhere
        bad = await answer(discord_standin, "agents", {"sweep": "no such thing!"}, "admin")
        assert bad["flags"] & 64 and "not a W&B sweep id" in bad["content"]
        empty = await answer(discord_standin, "sweeps", {}, "admin")
        assert "No sweeps yet. `/sweep` starts one." in empty["content"]
        unknown = await answer(discord_standin, "sweeps", {"sweep": "sweep-zzzzzz"}, "admin")
        assert "No sweep `sweep-zzzzzz`" in unknown["content"]
        assert await bot.get_cog("Sweeps").sweeps.list(None) == [], "nothing recorded"
