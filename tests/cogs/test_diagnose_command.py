"""$diagnose end to end: real wandb client → W&B stand-in (the run's sampled history); real discord.py → Discord
stand-in. The answer is the pure diagnosis (tests/test_diagnose.py) with a chart, and costs one request per metric."""

from __future__ import annotations

import asyncio

from tests.cogs.conftest import WANDB_ENV
from tests.cogs.test_wandb_runs import is_summary
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


async def test_diagnose_a_run(start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn) -> None:
    wandb_standin.create_run("d1", display_name="plateau-run", state="running")
    wandb_standin.log(
        "d1",
        [
            {
                "loss": 1 / (1 + i),  # still converging
                "val_loss": 1 / (1 + min(i, 11)),  # no better after step 11
                "_timestamp": 1_767_780_000.0 + 60 * i,  # a step a minute
            }
            for i in range(40)
        ],
    )
    async with start_adjutant(WANDB_ENV):
        await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(1.2)

        async def ask(text: str) -> dict:
            count = len(discord_standin.sent())
            await discord_standin.post(text)
            return await discord_standin.wait_for_message(after=count, timeout=20)

        wandb_standin.reset_counts()
        answer = await ask("$diagnose plateau-run")
        histories = wandb_standin.counts["RunSampledHistory"]
        embed = answer["embeds"][0]
        assert embed["title"] == "🩺 Diagnosis of plateau-run (d1)"
        assert "**loss**: converging" in embed["description"]
        assert "**val\\_loss**: plateaued since step 11" in embed["description"]
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        gap = fields["Validation against training"]
        assert gap == "val\\_loss - loss = +0.05833 now, +0.03333 half-way; widening: overfitting?"
        assert fields["Pace"] == "1 steps/min now, median 1"
        assert answer["attachments"] and embed["image"]["url"] == "attachment://diagnosis.png"
        assert histories == 3, "one sampled history per metric (loss, val_loss) and one of _timestamp"

        missing = (await ask("$diagnose plateau-rn"))["content"]
        assert "No run `plateau-rn`" in missing and "plateau-run" in missing
    for message in discord_standin.sent():
        assert "Traceback" not in message["content"]
