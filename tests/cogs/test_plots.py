"""Charts: `$plot`/`/plot` and the charts in run announcements, decoded and checked as images."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from tests.cogs.conftest import WANDB_ENV
from tests.cogs.test_slash import answer
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


def png_of(discord: DiscordStandIn, name: str) -> Image.Image:
    """The last uploaded file called ``name``, decoded."""
    request = [r for r in discord.requests if name in r.files][-1]
    return Image.open(io.BytesIO(request.files[name]))


def not_blank(image: Image.Image) -> bool:
    colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    return colours is not None and len(colours) > 20


def seed(wandb: WandbStandIn) -> None:
    for name, scale in (("p1", 1.0), ("p2", 2.0), ("p3", 0.5)):
        wandb.create_run(name, display_name=f"model-{name}", state="finished")
        wandb.log(name, [{"loss": scale / (i + 1), "acc": 1 - scale / (i + 2)} for i in range(300)])


async def ask(discord: DiscordStandIn, text: str) -> dict:
    count = len(discord.sent())
    await discord.post(text)
    return await discord.wait_for_message(after=count, timeout=30)


async def test_plot_one_and_three_runs(start_adjutant, discord_standin, wandb_standin) -> None:
    seed(wandb_standin)
    async with start_adjutant(WANDB_ENV):
        await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=20)
        await asyncio.sleep(1.5)
        one = await ask(discord_standin, "$plot p1")
        single = png_of(discord_standin, "plot.png")
        three = await ask(discord_standin, "$plot p1 model-p2 p3 loss acc log")
        overlaid = png_of(discord_standin, "plot.png")
        unknown_metric = await ask(discord_standin, "$plot p1 val_loss")
        unknown_run = await ask(discord_standin, "$plot nosuchrun loss")
    assert one["embeds"][0]["image"]["url"] == "attachment://plot.png"
    assert one["embeds"][0]["title"] == "loss", "the ranking metric when none is named"
    assert single.format == "PNG" and single.size[0] >= 800 and not_blank(single)
    assert three["embeds"][0]["title"] == "loss, acc (log scale)"
    assert overlaid.size[1] > single.size[1], "one panel per metric"
    assert not_blank(overlaid)
    for run in ("model-p1", "model-p2", "model-p3"):
        assert run in three["embeds"][0]["description"]
    assert "No history for `val_loss`" in unknown_metric["content"] and "`acc`, `loss`" in unknown_metric["content"]
    assert "No run `nosuchrun`" in unknown_run["content"]


async def test_slash_plot(start_adjutant, discord_standin, wandb_standin) -> None:
    seed(wandb_standin)
    async with start_adjutant(WANDB_ENV):
        await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=20)
        await asyncio.sleep(1.5)
        interaction = await discord_standin.slash("plot", {"runs": "p1 p2", "metrics": "acc", "log_scale": False})
        result = await answer(discord_standin, interaction)
    assert result["embeds"][0]["title"] == "acc"
    assert result["attachments"][0]["filename"] == "plot.png"
    assert not_blank(png_of(discord_standin, "plot.png"))


async def test_finished_announcement_carries_a_chart(start_adjutant, discord_standin, wandb_standin) -> None:
    async with start_adjutant(WANDB_ENV):
        await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=20)
        await asyncio.sleep(1.5)
        wandb_standin.create_run("c1", display_name="charted", state="running")
        wandb_standin.log("c1", [{"loss": 1 / (i + 1)} for i in range(50)])
        await eventually(
            lambda: any("charted started" in e.get("title", "") for m in discord_standin.sent() for e in m["embeds"]),
            timeout=20,
        )
        wandb_standin.update_run("c1", state="finished")
        await eventually(
            lambda: any("charted finished" in e.get("title", "") for m in discord_standin.sent() for e in m["embeds"]),
            timeout=20,
        )
    finished = next(
        m for m in discord_standin.sent() if any("charted finished" in e.get("title", "") for e in m["embeds"])
    )
    assert finished["embeds"][0]["image"]["url"] == "attachment://chart.png"
    assert not_blank(png_of(discord_standin, "chart.png"))
    started = next(
        m for m in discord_standin.sent() if any("charted started" in e.get("title", "") for e in m["embeds"])
    )
    assert "image" not in started["embeds"][0], "only finished, crashed and stalled carry charts"
