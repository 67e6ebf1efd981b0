"""Sweeps that stop burning GPUs: a canary cell runs first (the others start once it trains, or wait for a decision
when it fails), and after two cells fail with the same exit code and the same last line, the queued cells are held
and one card asks Resume / Drop (rights checked at the click)."""

from __future__ import annotations

import asyncio

from tests.cogs.test_alert_cards import answer_to, button, cards
from tests.cogs.test_experiments import launch_env, report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn

GRID = '$sweep --no-canary {"exit": [3], "n": [1, 2, 3, 4, 5, 6]}'


async def test_two_identical_failures_hold_the_sweep_until_drop(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env(ADJUTANT_MAX_CONCURRENT="2")) as bot:
        count = len(discord_standin.sent())
        await discord_standin.post(GRID, author="admin")
        preview = await discord_standin.wait_for_message(
            lambda m: bool(m["embeds"]) and bool(discord_standin.buttons(m)), after=count, timeout=15
        )
        await discord_standin.click(preview, discord_standin.buttons(preview)[0], author="admin")
        await eventually(lambda: bool(cards(discord_standin, "held: 2 cells failed the same way")), timeout=30)
        card = cards(discord_standin, "held: 2 cells failed the same way")[0]
        assert "something went wrong: exiting with 3" in card["embeds"][0]["description"]
        await asyncio.sleep(2)
        started = len(list(out_dir.iterdir()))
        assert started <= 3, "the queued cells wait (one may have started between the two failures)"
        scheduler = bot.get_cog("Experiments").scheduler
        sweep_id = (await scheduler.recent(1))[0].sweep_id

        refused = await answer_to(discord_standin, card, button(discord_standin, card, "drop"), "teammate")
        assert refused["flags"] & 64 and "not allowed to drop sweeps" in refused["content"]
        dropped = await answer_to(discord_standin, card, button(discord_standin, card, "drop"), "admin")
        assert f"Sweep `{sweep_id}` dropped by admin: {6 - started} queued cell(s) cancelled" in dropped["content"]
        again = await answer_to(discord_standin, card, button(discord_standin, card, "resume"), "admin")
        assert "was already dropped" in again["content"]
        await asyncio.sleep(2)
        assert len(list(out_dir.iterdir())) == started, "no cell started after the hold"
        jobs = await scheduler.recent(10)
    assert sorted(j.state for j in jobs).count("cancelled") == 6 - started
    assert len(cards(discord_standin, "failed the same way")) == 1, "one card for the sweep"


async def queue_sweep(discord: DiscordStandIn, grid: str) -> None:
    count = len(discord.sent())
    await discord.post(grid, author="admin")
    preview = await discord.wait_for_message(
        lambda m: bool(m["embeds"]) and bool(discord.buttons(m)), after=count, timeout=15
    )
    await discord.click(preview, discord.buttons(preview)[0], author="admin")


async def test_a_failing_canary_starts_no_other_cell_until_launch_all_anyway(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env(ADJUTANT_MAX_CONCURRENT="3")):
        await queue_sweep(discord_standin, '$sweep {"exit": [3], "n": [1, 2, 3]}')
        await eventually(lambda: bool(cards(discord_standin, "its canary")), timeout=30)
        card = cards(discord_standin, "its canary")[0]
        assert "failed" in card["embeds"][0]["title"] and "2 queued cell(s) wait" in card["embeds"][0]["description"]
        await asyncio.sleep(2)
        assert len(list(out_dir.iterdir())) == 1, "only the canary ran"
        refused = await answer_to(discord_standin, card, button(discord_standin, card, "canary"), "teammate")
        assert refused["flags"] & 64 and "not allowed to retry canaries" in refused["content"]
        retried = await answer_to(discord_standin, card, button(discord_standin, card, "canary"), "admin")
        assert "runs again (attempt 2)" in retried["content"]
        await eventually(lambda: len(cards(discord_standin, "its canary")) == 2, timeout=30)  # it failed again
        again = await answer_to(discord_standin, card, button(discord_standin, card, "canary"), "admin")
        assert "not waiting for a retry" not in again["content"], "the new failure may be retried again"
        await eventually(lambda: len(cards(discord_standin, "its canary")) == 3, timeout=30)
        assert len(list(out_dir.iterdir())) == 1, "still only the canary ran"
        canary_id = card["embeds"][0]["title"].split("its canary ")[1].split()[0]
        assert len(report(discord_standin, canary_id)) == 3, "each attempt of the canary has its own end report"
        card = cards(discord_standin, "its canary")[-1]
        resumed = await answer_to(discord_standin, card, button(discord_standin, card, "resume"), "admin")
        assert "resumed by admin: 2 queued cell(s) started again" in resumed["content"]
        await eventually(lambda: len(list(out_dir.iterdir())) == 3, timeout=20)


async def test_a_canary_that_trains_releases_the_other_cells(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    env = launch_env(ADJUTANT_MAX_CONCURRENT="3", ADJUTANT_CANARY_MINUTES="0.03")  # 1.8 s without failing
    async with start_adjutant(env) as bot:
        await queue_sweep(discord_standin, '$sweep {"sleep": [5], "n": [1, 2, 3]}')
        await eventually(lambda: len(list(out_dir.iterdir())) == 1, timeout=20)
        await eventually(lambda: len(list(out_dir.iterdir())) == 3, timeout=20)
        jobs = await bot.get_cog("Experiments").scheduler.recent(3)
        canary = min(jobs, key=lambda j: j.seq)
        assert canary.state == "running", "the others started while the canary still ran"
        assert any(f"canary {canary.id} has run" in t for t in _titles(discord_standin))


def _titles(discord: DiscordStandIn) -> list[str]:
    return [e.get("title", "") for m in discord.sent() for e in m["embeds"]]
