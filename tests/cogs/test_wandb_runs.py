"""The W&B reporting cog end to end: real wandb client → W&B stand-in; real discord.py → Discord stand-in."""

from __future__ import annotations

import asyncio
import datetime as dt

import discord
import pytest
from discord.ext import commands

from adjutant.settings import Settings
from tests.cogs.conftest import WANDB_ENV, embeds, titles
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


def is_summary(message: dict) -> bool:
    return any("Adjutant is online" in e.get("title", "") for e in message["embeds"])


async def wait_titles(discord_standin: DiscordStandIn, expected: list[str], timeout: float = 20) -> None:
    """Wait until embeds whose titles contain each of ``expected`` have been sent."""

    def ok() -> bool:
        got = titles(discord_standin)
        return all(any(e in t for t in got) for e in expected)

    try:
        await eventually(ok, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"expected {expected}, got {titles(discord_standin)}") from None


async def test_connect_summary(start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn) -> None:
    wandb_standin.create_run("a1", display_name="good", state="finished", summary={"loss": 0.1})
    wandb_standin.create_run("a2", display_name="better", state="finished", summary={"loss": 0.05})
    wandb_standin.create_run("a3", display_name="boom", state="crashed", summary={"loss": 3.0})
    wandb_standin.create_run("a4", display_name="training-now", state="running")
    async with start_adjutant(WANDB_ENV):
        message = await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(2.5)  # a few polls: the existing runs must not be announced one by one
    text = message["embeds"][0]["description"]
    assert "**4 runs**" in text
    assert "2 finished" in text and "1 crashed" in text and "1 running" in text
    assert "better" in text and "0.05" in text and "a2" in text
    assert "Running now" in text and "training-now" in text
    assert len(discord_standin.sent()) == 1, titles(discord_standin)


async def test_missing_project_is_friendly(start_adjutant, discord_standin, wandb_standin) -> None:
    async with start_adjutant({**WANDB_ENV, "WANDB_PROJECT": "not-yet"}):
        message = await discord_standin.wait_for_message(is_summary, timeout=20)
    assert "has no runs yet" in message["embeds"][0]["description"]


async def test_lifecycle_notifications(start_adjutant, discord_standin, wandb_standin: WandbStandIn) -> None:
    async with start_adjutant({**WANDB_ENV, "ADJUTANT_STALL_MINUTES": "30"}):
        await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(1.5)  # baseline taken
        wandb_standin.create_run("r1", display_name="alpha", state="running", config={"lr": 0.1, "epochs": 3})
        await wait_titles(discord_standin, ["alpha started"])
        wandb_standin.log("r1", [{"loss": 1.0}, {"loss": 0.5}])
        wandb_standin.update_run("r1", state="finished")
        for name, state in (("r2", "crashed"), ("r3", "failed"), ("r4", "killed")):
            wandb_standin.create_run(name, display_name=f"run-{state}", state="running")
            await wait_titles(discord_standin, [f"run-{state} started"])
            wandb_standin.update_run(name, state=state)
        old = wandb_standin.now() - dt.timedelta(minutes=45)
        wandb_standin.create_run("r5", display_name="sleepy", state="running", created_at=old, heartbeat_at=old)
        await wait_titles(discord_standin, ["alpha finished", "run-crashed crashed", "run-failed failed"])
        await wait_titles(discord_standin, ["run-killed was killed", "sleepy started", "sleepy stalled"])
        wandb_standin.update_run("r5", heartbeat_at=wandb_standin.now())
        await wait_titles(discord_standin, ["sleepy is alive again"])
        await asyncio.sleep(2.5)
    got = titles(discord_standin)[1:]
    assert len(got) == len(set(got)), f"an event was announced twice: {got}"
    finished = next(e for e in embeds(discord_standin) if "alpha finished" in e["title"])
    assert finished["color"] == 0x2ECC71
    assert finished["url"].endswith("/team/proj/runs/r1")
    fields = {f["name"]: f["value"] for f in finished["fields"]}
    assert fields["loss"] == "0.5"
    assert "lr = 0.1" in fields["Config"] and "epochs = 3" in fields["Config"]
    assert "Run `r1` by alice" in finished["description"]
    for request in discord_standin.rest("POST", "/messages"):
        assert request.json["allowed_mentions"] == {"parse": []}


async def test_notify_filter(start_adjutant, discord_standin, wandb_standin) -> None:
    async with start_adjutant({**WANDB_ENV, "ADJUTANT_NOTIFY": "finished"}):
        await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(1.5)
        wandb_standin.create_run("n1", display_name="quiet", state="running")
        await asyncio.sleep(2.5)
        wandb_standin.update_run("n1", state="finished")
        await wait_titles(discord_standin, ["quiet finished"])
    assert not any("started" in t for t in titles(discord_standin))


async def test_restart_catches_up_once(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    async with start_adjutant(WANDB_ENV):
        await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(1.5)
        wandb_standin.create_run("k1", display_name="long-job", state="running")
        await wait_titles(discord_standin, ["long-job started"])
    # offline: the running run finishes; another run starts and crashes; a third starts
    wandb_standin.update_run("k1", state="finished", summary={"loss": 0.2})
    wandb_standin.create_run("k2", display_name="short-job", state="crashed")
    wandb_standin.create_run("k3", display_name="new-job", state="running")
    before = len(discord_standin.sent())
    async with start_adjutant(WANDB_ENV):
        await wait_titles(discord_standin, ["long-job finished", "short-job crashed", "new-job started"])
        await asyncio.sleep(3)
    after = discord_standin.sent()[before:]
    new_titles = [e["title"] for m in after for e in m["embeds"]]
    assert sum("long-job" in t for t in new_titles) == 1, new_titles
    assert not any("long-job started" in t for t in new_titles)
    catch_up = next(m for m in after if not is_summary(m))
    assert catch_up["content"] == "While I was offline:"
    assert is_summary(after[0]), "the connect summary comes first"


async def test_first_start_on_2000_runs_does_not_flood(start_adjutant, discord_standin, wandb_standin) -> None:
    wandb_standin.create_runs(2000, state="finished", summary={"loss": 1.0})
    async with start_adjutant(WANDB_ENV) as bot:
        message = await discord_standin.wait_for_message(is_summary, timeout=30)
        await asyncio.sleep(3)
        cog = bot.get_cog("Runs")
        assert await asyncio.to_thread(cog.store.count_runs, cog.feeds.first.watcher.project_key) == 2000
    assert "**2,000 runs**" in message["embeds"][0]["description"]
    assert len(discord_standin.sent()) == 1


async def test_burst_of_100_finishes_respects_rate_limit(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    discord_standin.rate_limit = (5, 5.0)  # what Discord is observed to allow per channel
    ids = [wandb_standin.create_run(f"s{i:03d}", display_name=f"sweep-{i:03d}", state="running") for i in range(100)]
    async with start_adjutant(WANDB_ENV):
        await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(1.5)
        with wandb_standin.lock:  # all 100 change between two polls, like a sweep finishing together
            for run_id in ids:
                wandb_standin.update_run(run_id, state="finished", summary={"loss": 0.5})

        def all_delivered() -> bool:
            return sum("finished" in t for t in titles(discord_standin)) >= 100

        await discord_standin.wait_until(all_delivered, timeout=60)
    finished = [t for t in titles(discord_standin) if "finished" in t]
    assert finished == [f"✅ sweep-{i:03d} finished" for i in range(100)], "none lost, none repeated, in order"
    messages = [m for m in discord_standin.sent() if not is_summary(m)]
    assert all(len(m["embeds"]) <= 10 for m in messages)
    assert len(messages) == 10
    assert discord_standin.rate_limited == 0, "Adjutant paced itself; Discord never had to say 429"


async def test_wandb_outage_then_recovery(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    env = {**WANDB_ENV, "ADJUTANT_WANDB_TIMEOUT": "2"}
    wandb_standin.create_run("o1", display_name="survivor", state="running")
    async with start_adjutant(env) as bot:
        await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(1.5)
        cog = bot.get_cog("Runs")
        wandb_standin.fail(1000, status=500)
        await eventually(lambda: cog.feeds.first.watcher.health.failures >= 2, timeout=30)
        wandb_standin.clear_faults()
        wandb_standin.hang(2, seconds=6)  # two requests time out
        wandb_standin.update_run("o1", state="finished")
        wandb_standin.create_run("o2", display_name="born-in-outage", state="failed")
        await discord_standin.post("$status")
        status = await discord_standin.wait_for_message(lambda m: "Last error" in m["content"], timeout=20)
        assert "failure(s) in a row" in status["content"]
        await wait_titles(discord_standin, ["survivor finished", "born-in-outage failed"], timeout=60)
        assert cog.poll.is_running() and not cog.poll.failed()
        await asyncio.sleep(2.5)
        assert cog.feeds.first.watcher.health.failures == 0
    got = [t for t in titles(discord_standin) if "survivor" in t or "born-in-outage" in t]
    assert got == ["✅ survivor finished", "❌ born-in-outage failed"], "no duplicates, no gaps"


async def test_garbage_answers_are_survived(start_adjutant, discord_standin, wandb_standin) -> None:
    async with start_adjutant(WANDB_ENV) as bot:
        await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(1.5)  # baseline taken
        cog = bot.get_cog("Runs")
        wandb_standin.garbage(3)
        wandb_standin.create_run("g1", display_name="after-garbage", state="finished")
        await wait_titles(discord_standin, ["after-garbage finished"], timeout=60)
        assert cog.poll.is_running()


@pytest.mark.slow  # 10,000 runs through the W&B stand-in and the real client: about 18 s of CPU on its own
async def test_idle_poll_costs_one_request_with_10000_runs(wandb_standin: WandbStandIn, tmp_path) -> None:
    wandb_standin.create_runs(10_000, state="finished", summary={"loss": 1.0})
    for _ in range(3):
        wandb_standin.create_run(state="running")
    settings = Settings.from_env({**WANDB_ENV, "ADJUTANT_STATE_DIR": str(tmp_path)})
    from adjutant.cogs._feeds import Feeds
    from adjutant.cogs.wandb_runs import Runs
    from adjutant.services import Services

    async with commands.Bot("$", intents=discord.Intents.default()) as bot:
        services = await Services.open(settings)
        cog = Runs(bot, settings, services, Feeds(bot, settings, services))
        await bot.add_cog(cog)
        await cog.feeds.first.watcher.poll_once()  # baseline
        await cog.feeds.first.watcher.poll_once()  # first incremental poll (catch-up)
        wandb_standin.reset_counts()
        assert await cog.feeds.first.watcher.poll_once() == 0
        assert dict(wandb_standin.counts) == {"Runs": 1, "__total__": 1}
        # ten runs change: still one request
        for run_id in list(wandb_standin.runs())[-10:]:
            wandb_standin.update_run(run_id, state="crashed")
        wandb_standin.reset_counts()
        queued = await cog.feeds.first.watcher.poll_once()
        assert dict(wandb_standin.counts) == {"Runs": 1, "__total__": 1}
        assert queued == 3, "only the three running runs changed state from Adjutant's point of view"
        await bot.remove_cog("Runs")


async def test_commands(start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn) -> None:
    wandb_standin.create_run("c1", display_name="tiny-lr", state="finished", summary={"loss": 0.3, "acc": 0.9})
    wandb_standin.create_run("c2", display_name="big-lr", state="finished", summary={"loss": 0.1, "acc": 0.8})
    wandb_standin.create_run(
        "c3", display_name="mid-lr", state="running", summary={"loss": 0.2, "_step": 41}, config={"lr": 0.01}
    )
    async with start_adjutant(WANDB_ENV):
        await discord_standin.wait_for_message(is_summary, timeout=20)
        await asyncio.sleep(1.2)

        async def ask(text: str) -> dict:
            count = len(discord_standin.sent())
            await discord_standin.post(text)
            return await discord_standin.wait_for_message(after=count, timeout=20)

        table = (await ask("$runs"))["embeds"][0]["description"]
        assert table.index("mid-lr") < table.index("big-lr") < table.index("tiny-lr"), "newest first"
        only_running = (await ask("$runs running 5"))["embeds"][0]["description"]
        assert "mid-lr" in only_running and "tiny-lr" not in only_running
        assert "neither a run state" in (await ask("$runs sideways"))["content"]

        card = (await ask("$run c3"))["embeds"][0]
        assert card["title"] == "mid-lr"
        fields = {f["name"]: f["value"] for f in card["fields"]}
        assert fields["State"].endswith("running") and fields["Step"] == "41"
        assert "lr = 0.01" in fields["Config"]
        assert (await ask("$run big-lr"))["embeds"][0]["title"] == "big-lr"
        missing = (await ask("$run tiny-l"))["content"]
        assert "No run `tiny-l`" in missing and "tiny-lr" in missing

        board = (await ask("$best"))["embeds"][0]["description"]
        assert board.index("big-lr") < board.index("mid-lr") < board.index("tiny-lr")
        board = (await ask("$best acc max 1"))["embeds"][0]
        assert "tiny-lr" in board["description"] and "big-lr" not in board["description"]
        unknown = (await ask("$best accuracy"))["content"]
        assert "has a `accuracy` metric" in unknown and "`acc`" in unknown
        assert "must be a whole number from 1 to 25, not '500'" in (await ask("$best 500"))["content"]

        status = (await ask("$status"))["content"]
        assert "Last successful poll" in status and "Watching 1 running run(s)" in status
    for message in discord_standin.sent():
        assert "Traceback" not in message["content"]


async def test_wandb_calls_never_run_on_event_loop_thread(wandb_standin: WandbStandIn, tmp_path) -> None:
    """All W&B calls of the cog run in its worker thread (the loop thread stays free)."""
    import threading

    settings = Settings.from_env({**WANDB_ENV, "ADJUTANT_STATE_DIR": str(tmp_path)})
    from adjutant.cogs._feeds import Feeds
    from adjutant.cogs.wandb_runs import Runs
    from adjutant.services import Services

    calls: list[str] = []
    async with commands.Bot("$", intents=discord.Intents.default()) as bot:
        services = await Services.open(settings)
        cog = Runs(bot, settings, services, Feeds(bot, settings, services))
        for name in ("next_page", "changed_runs", "snapshot"):
            original = getattr(cog.feeds.first.watcher.source, name)

            def recording(*args, _original=original, _name=name, **kwargs):
                calls.append((_name, threading.current_thread().name))
                return _original(*args, **kwargs)

            setattr(cog.feeds.first.watcher.source, name, recording)
        await bot.add_cog(cog)
        await cog.feeds.first.watcher.poll_once()
        await cog.feeds.first.watcher.poll_once()
        await cog.feeds.first.watcher.ask(cog.feeds.first.watcher.source.snapshot, "loss", "min")
    assert {name for name, _ in calls} == {"next_page", "changed_runs", "snapshot"}
    assert all(thread.startswith("adjutant-wandb") for _, thread in calls), calls
