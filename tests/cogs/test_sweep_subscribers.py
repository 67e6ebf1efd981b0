"""A sweep's end reaches its project's ``sweeps`` subscribers, end to end: real discord.py ↔ Discord stand-in, real
wandb clients ↔ W&B stand-in, real trial processes (tests/scripts/quadratic.py). One direct message each, with the best
trial (metric, parameters, W&B link) and the sweep's id; nothing for a member subscribed to other events, nothing for
a subscriber who cannot see the sweep's channel (though they see another channel of the project), nothing lost or
repeated for a member whose direct messages are closed, and nothing again after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from adjutant.sweeps import render
from tests.cogs.conftest import reporting_ready
from tests.cogs.test_alert_cards import say
from tests.cogs.test_sweeps import (  # noqa: F401  # out: the fixture
    QUADRATIC,
    ended_messages,
    out,
    start_search,
    sweep_env,
    wait_ended,
)
from tests.conftest import eventually
from tests.standins import discord_rules as rules
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn
from tests.test_sweep_render import GOAL, Sweep, Trial, outside_code, trials

GRID = (
    '```json\n{"method": "grid", "metric": {"name": "loss", "goal": "minimize"},'
    ' "parameters": {"x": {"values": [0.1, 0.3, 0.6]}}}\n```'
)


def one_project_two_channels(tmp_path: Path) -> Path:
    """team/proj is served in #general (where the sweep runs) and in #experiments."""
    path = tmp_path / "adjutant.toml"
    tables = "".join(
        f'\n[[projects]]\nproject = "proj"\nentity = "team"\nchannel = "{channel}"\nexperiment_script = "{QUADRATIC}"\n'
        for channel in ("general", "experiments")
    )
    path.write_text(tables)
    return path


def sweep_dms(discord: DiscordStandIn, name: str, sweep_id: str) -> list[dict[str, Any]]:
    """The embeds of the direct messages ``name`` got about the sweep."""
    return [e for m in discord.dms(name) for e in m["embeds"] if f"Sweep {sweep_id} " in e.get("title", "")]


async def say_in(discord: DiscordStandIn, text: str, author: str, channel: str) -> str:
    count = len(discord.sent())
    await discord.post(text, author=author, channel=channel)
    return (await discord.wait_for_message(lambda m: bool(m["content"]), after=count, timeout=10))["content"]


async def test_a_sweeps_end_reaches_each_subscriber_who_can_see_it_once_with_the_best_trial(
    start_adjutant,
    discord_standin: DiscordStandIn,
    wandb_standin: WandbStandIn,
    out: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    routed = ("WANDB_PROJECT", "WANDB_ENTITY", "ADJUTANT_EXPERIMENT_SCRIPT")  # the projects file says them
    env = {k: v for k, v in sweep_env().items() if k not in routed}
    env.update({"ADJUTANT_CONFIG": str(one_project_two_channels(tmp_path)), "ADJUTANT_CHANNEL": ""})
    discord_standin.dms_closed.add("owner")
    async with start_adjutant(env) as bot:
        await reporting_ready(bot)
        assert "Subscription #1" in await say(discord_standin, "$subscribe proj sweeps", "teammate")
        assert "Subscription #2" in await say(discord_standin, "$subscribe proj finished failed alerts", "manager")
        assert "Subscription #3" in await say(discord_standin, "$subscribe proj sweeps", "member")
        assert "Subscription #4" in await say(discord_standin, "$subscribe proj all", "owner")  # closed DMs
        # a moderator hides #general (the sweep's channel) from member, who still sees #experiments (same project)
        member = discord_standin.member("member")
        general = discord_standin.channels["general"]
        general["permission_overwrites"].append(
            {"id": str(member.id), "type": 1, "allow": "0", "deny": str(rules.PERMISSIONS["view_channel"])}
        )
        await discord_standin.dispatch("CHANNEL_UPDATE", {**general, "guild_id": str(discord_standin.guild_id)})

        sweep_id = await start_search(discord_standin, f"--parallel 3 {GRID}")
        await wait_ended(discord_standin, sweep_id)
        await eventually(lambda: bool(sweep_dms(discord_standin, "teammate", sweep_id)), timeout=30)
        view = await bot.get_cog("Sweeps").sweeps.view(sweep_id)
        runs = bot.get_cog("Sweeps").services.runs
        await eventually(lambda: runs.pending_destinations(("dm:",)) == [], timeout=20)
        await asyncio.sleep(3)  # more passes: nothing twice
        still = await say_in(discord_standin, "$subscriptions", "member", "experiments")

    (dm,) = sweep_dms(discord_standin, "teammate", sweep_id)
    best = next(t for t in view.trials if t.params["x"] == 0.3)
    assert dm["title"] == f"🏁 Sweep {sweep_id} finished"
    assert "3 trials: 3 done" in dm["description"] and f"results {sweep_id}" in dm["description"]
    (field,) = dm["fields"]
    assert field["name"] == "Best trial" and "`loss` = **0**" in field["value"] and "x=0.3" in field["value"]
    assert f"[trial {best.number}](" in field["value"] and f"/runs/{best.wandb_run_id})" in field["value"]
    assert not sweep_dms(discord_standin, "manager", sweep_id), "subscribed to other events: no sweep message"
    assert not sweep_dms(discord_standin, "member", sweep_id), "cannot see the sweep's channel: nothing"
    assert "#3" in still and "sweeps" in still, "their subscription stays: they still see the project"
    assert discord_standin.dms("owner") == [], "closed DMs: nothing delivered, nothing left waiting to repeat"
    assert len(ended_messages(discord_standin, sweep_id)) == 1, "the requester's message, once"

    async with start_adjutant(env):
        await asyncio.sleep(4)  # several passes of the sweeps loop after a restart
    assert len(sweep_dms(discord_standin, "teammate", sweep_id)) == 1, "not told again after a restart"
    assert len(ended_messages(discord_standin, sweep_id)) == 1


# --- the direct message itself (pure) ------------------------------------------------------------------------------


def test_the_message_says_how_it_ended_the_best_trial_with_its_link_and_the_sweeps_id() -> None:
    sweep = Sweep(state="finished", note="Target reached by trial 2: queued trials dropped.")
    embed = render.ended_embed(
        sweep, trials(), GOAL, base_url="http://127.0.0.1:9/", where="<#100>", project="team/proj", prefix="!"
    )
    assert embed["title"] == "🏁 Sweep sweep-abc123 finished"
    assert embed["description"].startswith(
        "5 trials: 2 done, 1 running, 1 failed, 1 stopped early. Its card is in <#100>"
    )
    assert "Target reached by trial 2" in embed["description"] and "`!results sweep-abc123`" in embed["description"]
    (best,) = embed["fields"]
    assert best["name"] == "Best trial" and "`loss` = **0.0025** (lowest wins)" in best["value"]
    assert "[trial 2](http://127.0.0.1:9/team/proj/runs/r2)" in best["value"] and "x=0.35, opt=sgd" in best["value"]
    assert embed["url"] == "http://127.0.0.1:9/team/proj/sweeps/ab12cd34"
    assert embed["footer"]["text"] == "Sweeps of team/proj · requested by admin"
    assert discord_rules_ok(embed)
    stopped = render.ended_embed(Sweep(state="stopped"), [Trial(1, {"x": 1})], GOAL)
    assert stopped["title"] == "⏹️ Sweep sweep-abc123 was stopped"
    assert stopped["fields"][0]["value"] == "No trial reported `loss`."
    agents = render.ended_embed(Sweep(state="finished", kind="agents", config={}), [Trial(1, {})], None)
    assert agents["description"].startswith("1 agent job: 1 done.") and not agents.get("fields")


def test_no_text_from_a_member_or_wandb_in_the_message_can_ping_or_format() -> None:
    evil = "@everyone **bold** <@123> [x](http://e.vil) `tick` <#5>"
    sweep = Sweep(state="finished", note=evil, requested_by=evil, config={"metric": {"name": evil}})
    goal = render.goal_of(sweep.config)
    embed = render.ended_embed(sweep, [Trial(1, {evil: evil}, value=1.0, wandb_run_id="r1")], goal, project=evil)
    text = outside_code(embed["title"] + embed["description"] + "".join(f["value"] for f in embed["fields"]))
    for rendered in ("@everyone", "<@123>", "**bold**", "[x](", "<#5>"):
        assert rendered not in text, rendered
    assert discord_rules_ok(embed)


def discord_rules_ok(embed: dict[str, Any]) -> bool:
    from tests.standins import discord_rules

    return discord_rules.message_body({"embeds": [embed]}, create=True) is None
