"""A sweep's card is posted once: a Confirm's post and the loop's first pass (which finds the sweep recorded
without a card) can run at the same moment (one request between them), a post repeated once the card is recorded
posts nothing, and a post repeated after its answer was lost gives the same message (a nonce Discord enforces)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests.cogs.test_sweeps import card, card_messages, out, start_search, sweep_env  # noqa: F401 (fixture)
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

GRID = '{"method": "grid", "parameters": {"x": {"values": [0.1]}, "steps": {"value": 1}}}'


async def test_posts_at_the_same_moment_give_one_card(
    start_adjutant,
    discord_standin: DiscordStandIn,
    wandb_standin: WandbStandIn,
    out: Path,  # noqa: F811
) -> None:
    async with start_adjutant(sweep_env()) as bot:
        sweep_id = await start_search(discord_standin, f"```json\n{GRID}\n```")
        first = card(discord_standin, sweep_id)
        cog = bot.get_cog("Sweeps")
        channel = bot.get_channel(int(first["channel_id"]))
        await asyncio.gather(cog.post_card(sweep_id, channel), cog.post_card(sweep_id, channel))
        assert len(card_messages(discord_standin, sweep_id)) == 1, "recorded: edited, never posted again"

        # Recorded without a card (the answer to the post was lost, or the bot stopped before recording it): a post
        # and two of the loop's edits at once send one request, and Discord's enforced nonce gives the same message.
        database = Path(bot.get_cog("Sweeps").services.database.path)
        with sqlite3.connect(database) as db:
            db.execute("UPDATE sweeps SET card_id=NULL WHERE id=?", (sweep_id,))
        posts = f"/channels/{first['channel_id']}/messages"
        before = len(discord_standin.rest("POST", posts))
        await asyncio.gather(cog.post_card(sweep_id, channel), cog._edit_card(sweep_id), cog._edit_card(sweep_id))
        assert len(discord_standin.rest("POST", posts)) - before == 1, "one post at a time per sweep"
        assert [m["id"] for m in card_messages(discord_standin, sweep_id)] == [first["id"]], "the same card"
        with sqlite3.connect(database) as db:
            (card_id,) = db.execute("SELECT card_id FROM sweeps WHERE id=?", (sweep_id,)).fetchone()
        assert str(card_id) == first["id"], "recorded again"
