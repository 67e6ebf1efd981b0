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
        watcher = bot.get_cog("Runs").watcher
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
