"""The run desk end to end: long answers paged with buttons only the asker may press, $compare, the status card.
Real discord.py against the Discord stand-in; the real wandb client against the W&B stand-in."""

from __future__ import annotations

from tests.cogs.conftest import WANDB_ENV, reporting_ready
from tests.cogs.test_alert_cards import answer_to
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


async def ask(discord: DiscordStandIn, text: str, author: str = "admin") -> dict:
    count = len(discord.sent())
    await discord.post(text, author=author)
    return await discord.wait_for_message(lambda m: bool(m["embeds"] or m["content"]), after=count, timeout=20)


async def test_long_answers_are_paged_and_only_the_asker_turns_pages(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    for i in range(25):
        wandb_standin.create_run(f"r{i:02d}", display_name=f"run-{i:02d}", state="finished", summary={"loss": i / 10})
    async with start_adjutant(WANDB_ENV) as bot:
        await reporting_ready(bot)
        answer = await ask(discord_standin, "$runs 25")
        first = answer["embeds"][0]
        assert first["footer"]["text"] == "page 1 of 3"
        rows = first["description"].strip("`\n").splitlines()
        assert rows[0].startswith("state") and len(rows) == 11, "the header and 10 runs"
        assert discord_standin.buttons(answer), "◀ ▶"
        next_id = discord_standin.buttons(answer)[1]
        refused = await answer_to(discord_standin, answer, next_id, "member")
        assert refused["flags"] & 64 and "Only the member who asked can turn these pages" in refused["content"]
        assert answer["embeds"][0]["footer"]["text"] == "page 1 of 3"
        turned = await answer_to(discord_standin, answer, next_id, "admin")
        assert turned["embeds"][0]["footer"]["text"] == "page 2 of 3"
        shown = set()
        for page in (first, turned["embeds"][0]):
            shown |= {line.split()[1] for line in page["description"].strip("`\n").splitlines()[1:]}
        assert len(shown) == 20, "no run on two pages"
        turned = await answer_to(discord_standin, answer, next_id, "admin")
        last = turned["embeds"][0]["description"].strip("`\n").splitlines()
        assert turned["embeds"][0]["footer"]["text"] == "page 3 of 3" and len(last) == 6
        assert "run-00" in turned["embeds"][0]["description"], "the oldest run is on the last page, not cut"
        small = await ask(discord_standin, "$runs 5")
        assert "footer" not in small["embeds"][0] and not discord_standin.buttons(small)
