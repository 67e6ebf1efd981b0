"""A rule over a window end to end: real discord.py ↔ Discord stand-in, the real wandb client ↔ W&B stand-in.
`$watch avg(val_loss, 5) > 2` is refused or accepted in words, fires one card whose title says what it read (where
`val_loss > 2` alone would not fire), and `$watches` shows the rule's last reading."""

from __future__ import annotations

import asyncio

from tests.cogs.conftest import WANDB_ENV, reporting_ready
from tests.cogs.test_alert_cards import cards, say
from tests.cogs.test_experiments import launch_env
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

AVG_CARD = "avg(val\\_loss, 5) = 2.1 > 2"


async def test_a_window_rule_from_chat_fires_one_card_and_shows_its_last_reading(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client
    async with start_adjutant({**WANDB_ENV, **launch_env()}) as bot:
        await reporting_ready(bot)
        refused = await say(discord_standin, "$watch mean(val_loss, 5) > 2")
        assert "Not watched: unknown function 'mean': use avg, min, max, last" in refused
        refused = await say(discord_standin, "$watch avg(val_loss, 1) > 2")
        assert "N in avg(<metric>, N) must be a whole number from 2 to 500, not '1'" in refused
        refused = await say(discord_standin, "$watch change(val_loss, 5, 10) > 25")
        assert "give a percentage like 25%" in refused
        accepted = await say(discord_standin, "$watch avg(val_loss, 5) > 2")
        assert "Watching `avg(val_loss, 5) > 2 (all runs)` as rule #1" in accepted
        assert "reads each matching run's history at most every 6 polls" in accepted
        assert "as rule #2" in await say(discord_standin, "$watch val_loss > 2")

        wandb_standin.create_run("r1", state="running")
        wandb_standin.log("r1", [{"val_loss": v} for v in (3.0, 2.8, 2.1, 2.2, 2.2, 2.1, 1.9)])
        wandb_standin.update_run("r1", summary={})  # the heartbeat that comes with logging
        await eventually(lambda: bool(cards(discord_standin, AVG_CARD)), timeout=20)
        card = cards(discord_standin, AVG_CARD)[0]
        assert "Watch rule #1" in card["embeds"][0]["description"]
        assert card["attachments"], "with a chart of val_loss"
        await asyncio.sleep(2.5)  # several polls later
        assert len(cards(discord_standin, AVG_CARD)) == 1, "told once"
        assert not cards(discord_standin, "val\\_loss = 1.9"), "the latest value (1.9) crosses nothing"

        count = len(discord_standin.sent())
        await discord_standin.post("$watches")
        listed = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=10)
        lines = listed["embeds"][0]["description"].splitlines()
        assert lines[0].startswith("#1 `avg(val_loss, 5) > 2 (all runs)` by admin · last 2.1 (run `r1`, ")
        assert lines[0].endswith("ago), crossed")
        assert lines[1].startswith("#2 `val_loss > 2 (all runs)` by admin · last 1.9 (run `r1`, ")
        assert lines[1].endswith("ago), not crossed")
