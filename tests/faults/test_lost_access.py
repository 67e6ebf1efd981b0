"""Faults: a subscription does not outlive the member's access. A member subscribed to a project's events, then lost
the right to see its channel; the next run of it that finishes reaches the members who can still see it, not them,
and their subscription ends with an audit entry (the real cogs compute the access from roles and overwrites)."""

from __future__ import annotations

import asyncio

from tests.cogs.conftest import WANDB_ENV, reporting_ready
from tests.cogs.test_alert_cards import say
from tests.cogs.test_subscriptions import dm_titles
from tests.conftest import eventually
from tests.standins import discord_rules as rules
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


async def test_a_member_who_can_no_longer_see_the_channel_gets_nothing_more(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    teammate = discord_standin.member("teammate")
    async with start_adjutant(WANDB_ENV) as bot:
        await reporting_ready(bot)
        assert "Subscription #1" in await say(discord_standin, "$subscribe finished", "teammate")
        assert "Subscription #2" in await say(discord_standin, "$subscribe finished", "manager")

        # a moderator hides #general from teammate (a member overwrite), as Discord then tells the bot
        general = discord_standin.channels["general"]
        general["permission_overwrites"].append(
            {"id": str(teammate.id), "type": 1, "allow": "0", "deny": str(rules.PERMISSIONS["view_channel"])}
        )
        await discord_standin.dispatch("CHANNEL_UPDATE", {**general, "guild_id": str(discord_standin.guild_id)})

        wandb_standin.create_run("r1", display_name="late-run", state="running")
        await asyncio.sleep(2)
        wandb_standin.update_run("r1", state="finished")
        await eventually(
            lambda: any("late-run finished" in t for t in dm_titles(discord_standin, "manager")), timeout=30
        )
        await asyncio.sleep(2)
        assert dm_titles(discord_standin, "teammate") == [], "nothing for a member who cannot see the project"
        assert "no subscriptions" in (await say(discord_standin, "$subscriptions", "teammate")).lower()
        entries = bot.get_cog("Runs").services.approvals.entries(10)
        ended = [e for e in entries if e.action == "unsubscribed" and e.actor_id == teammate.id]
        assert ended and "can no longer see" in (ended[0].detail or ""), [(e.action, e.detail) for e in entries]
