"""Fault: one W&B poll takes four poll intervals. The loop's missed iterations must not turn into a burst of
catch-up polls right after it (discord.py's loops run missed iterations back to back)."""

from __future__ import annotations

import asyncio
import time

from tests.cogs.conftest import WANDB_ENV
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


async def test_a_slow_poll_causes_no_burst_of_polls(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    wandb_standin.create_run("a", state="running")
    async with start_adjutant(WANDB_ENV) as bot:  # a poll every second
        watcher = bot.get_cog("Runs").feeds.first.watcher
        await eventually(lambda: watcher.health.last_success is not None, timeout=20)
        await asyncio.sleep(1.5)
        wandb_standin.hang(1, seconds=4.0)  # the next request hangs 4 s: the next poll is 4 intervals long
        await eventually(lambda: wandb_standin.faults == [] or wandb_standin.faults[0].times == 0, timeout=10)
        slow_started = time.monotonic()  # the slow request has arrived and hangs
        await asyncio.sleep(3.5)
        wandb_standin.reset_counts()  # from just before the slow poll ends
        await eventually(lambda: time.monotonic() - slow_started > 4.8, timeout=10)
        right_after = wandb_standin.counts["Runs"]
        await asyncio.sleep(2.0)
        later = wandb_standin.counts["Runs"]
    assert right_after <= 1, f"{right_after} polls within 0.8 s of a slow one: a catch-up burst"
    assert 1 <= later - right_after <= 3, "and polling goes on at its interval"


async def test_a_hung_project_delays_no_other_project(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, tmp_path
) -> None:
    """Two projects; W&B hangs on every request about one of them for 12 s: the other's events still arrive within a
    few poll intervals."""
    wandb_standin.projects[("team", "vision")] = {}
    config = tmp_path / "adjutant.toml"
    config.write_text(
        '[[projects]]\nproject = "proj"\nentity = "team"\nchannel = "general"\n\n'
        '[[projects]]\nproject = "vision"\nentity = "team"\nchannel = "experiments"\n'
    )
    env = {"ADJUTANT_CONFIG": str(config), "ADJUTANT_CHANNEL": "", "ADJUTANT_POLL_SECONDS": "1"}
    async with start_adjutant(env) as bot:
        feeds = bot.get_cog("Runs").feeds
        vision = bot.get_cog("Runs").projects["team/vision"]
        await eventually(lambda: all(f.watcher.health.last_success for f in feeds.values()), timeout=30)
        wandb_standin.hang(50, seconds=12.0, project="vision")
        await asyncio.sleep(1.5)  # vision's poll is now stuck in its request
        wandb_standin.create_run("p1", display_name="still-told", state="running")
        started = time.monotonic()

        def told() -> bool:
            return any(
                "still-told started" in e.get("title", "") for m in discord_standin.sent("general") for e in m["embeds"]
            )

        await eventually(told, timeout=15)
        assert time.monotonic() - started < 8, "proj's announcement did not wait for vision's hung request"
        assert vision.task is not None and not vision.task.done(), "vision is still hung"
        wandb_standin.clear_faults()
