"""Alert cards end to end: real discord.py ↔ Discord stand-in, real supervisor and script processes, the real
wandb client ↔ W&B stand-in. A card carries what fired and why, the launcher's mention (that user only), the log
tail, a chart with the trigger marked, and Stop / Rerun / Mute 1 h buttons that check rights at the click and
work after a restart."""

from __future__ import annotations

import asyncio
import re

from tests.cogs.conftest import WANDB_ENV, reporting_ready
from tests.cogs.test_experiments import acks, launch, launch_env
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

OOM = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB @everyone"
#: The rule card's title part: the metric name as typed, escaped for markdown (Discord shows ``val_loss``).
VAL_LOSS_CARD = "val\\_loss = 2.5 > 2"


def cards(discord: DiscordStandIn, title_part: str) -> list[dict]:
    return [m for m in discord.sent() if m["embeds"] and title_part in m["embeds"][0].get("title", "")]


def button(discord: DiscordStandIn, message: dict, action: str) -> str:
    found = [b for b in discord.buttons(message) if b.startswith(f"adjutant:alert:{action}:")]
    assert found, (action, discord.buttons(message))
    return found[0]


async def answer_to(discord: DiscordStandIn, message: dict, custom_id: str, author: str) -> dict:
    before = len(discord.interaction_responses)
    await discord.click(message, custom_id, author=author)
    await eventually(lambda: len(discord.interaction_responses) > before, timeout=10)
    return discord.interaction_responses[before]["data"]


async def test_a_log_pattern_printed_10000_times_is_one_card_in_the_job_thread(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    params = f'{{"print": "{OOM}", "times": 10000, "sleep": 60}}'
    async with start_adjutant(launch_env()) as bot:
        job_id = await launch(discord_standin, params)
        await eventually(lambda: bool(cards(discord_standin, f"Job {job_id} logged")), timeout=20)
        await asyncio.sleep(3)  # several passes later: still one card
        found = cards(discord_standin, f"Job {job_id} logged")
        assert len(found) == 1, [m["embeds"][0]["title"] for m in found]
        card = found[0]
        thread = discord_standin.threads[0]
        assert card["channel_id"] == thread["id"], "the card is in the job's thread"
        admin = discord_standin.member("admin")
        assert card["content"].startswith(f"<@{admin.id}>\n```"), "the launcher is mentioned, then the log tail"
        assert len(card["content"]) <= 2000 and "CUDA out of memory" in card["content"]
        mentions = discord_standin.allowed_mentions[int(card["id"])]
        assert mentions["parse"] == [] and [str(u) for u in mentions["users"]] == [str(admin.id)], (
            "that user only, never @everyone"
        )
        assert "CUDA out of memory" in card["embeds"][0]["description"]

        refusal = await answer_to(discord_standin, card, button(discord_standin, card, "stop"), "teammate")
        assert refusal["flags"] & 64 and "not allowed to stop jobs" in refusal["content"]
        job = await bot.get_cog("Experiments").scheduler.get(job_id)
        assert job is not None and job.state == "running", "a refused click does nothing"

        muted = await answer_to(discord_standin, card, button(discord_standin, card, "mute"), "admin")
        assert "muted until" in muted["content"]

        stopped = await answer_to(discord_standin, card, button(discord_standin, card, "stop"), "admin")
        assert f"Stopping job `{job_id}`" in stopped["content"]
        await eventually(lambda: any(f"Experiment {job_id} " in t for t in _titles(discord_standin)), timeout=20)

        before = len(acks(discord_standin))
        threads_before = len(discord_standin.threads)
        pointer = await answer_to(discord_standin, card, button(discord_standin, card, "rerun"), "admin")
        # The card is in the job's thread: the rerun is acknowledged in the channel, with a thread of its own.
        assert "acknowledged in the channel, with its own thread" in pointer["content"]
        rerun = await discord_standin.wait_for_message(
            lambda m: f"Rerun of job `{job_id}`" in (m["content"] or "") and bool(m["embeds"]), timeout=10
        )
        assert rerun["channel_id"] != thread["id"] and rerun["channel_id"] == thread["parent_id"]
        await eventually(lambda: len(discord_standin.threads) == threads_before + 1, timeout=10)
        new_id = re.search(r"Experiment (j[a-z0-9]{6})", rerun["embeds"][0]["title"])
        assert new_id is not None and new_id[1] != job_id
        new_job = await bot.get_cog("Experiments").scheduler.get(new_id[1])
        assert new_job is not None and new_job.params == job.params and new_job.requested_by_id == admin.id
        assert len(acks(discord_standin)) >= before
        await bot.get_cog("Experiments").scheduler.cancel(new_id[1], "test")


async def say(discord: DiscordStandIn, text: str, author: str = "admin") -> str:
    """Post a command and return the bot's reply."""
    count = len(discord.sent())
    await discord.post(text, author=author)
    return (await discord.wait_for_message(lambda m: bool(m["content"]), after=count, timeout=10))["content"]


def _titles(discord: DiscordStandIn) -> list[str]:
    return [m["embeds"][0].get("title", "") for m in discord.sent() if m["embeds"]]


async def test_watch_rules_from_chat_and_their_card(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client
    env = {**WANDB_ENV, **launch_env()}
    async with start_adjutant(env) as bot:
        await reporting_ready(bot)
        replies = [
            await say(discord_standin, text, author)
            for text, author in [
                ("$watch val_loss > 2", "teammate"),
                ("$watch val_loss = 2", "admin"),
                ("$watch val_loss > 2", "admin"),
            ]
        ]
        count = len(discord_standin.sent())
        await discord_standin.post("$watches")
        listed = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=10)
        replies.append(listed["embeds"][0]["description"])
        assert listed["embeds"][0]["title"] == "Watch rules of team/proj"
        assert "not allowed to set watch rules" in replies[0]
        assert "Not watched: the comparison must be one of <, <=, >, >=" in replies[1]
        assert "Watching `val_loss > 2 (all runs)` as rule #1" in replies[2]
        assert "#1 `val_loss > 2 (all runs)` by admin" in replies[3]

        wandb_standin.create_run("r1", state="running", config={"lr": 0.1}, summary={"val_loss": 1.0})
        wandb_standin.log("r1", [{"val_loss": 1.0}, {"val_loss": 1.5}, {"val_loss": 2.5}])
        await eventually(lambda: bool(cards(discord_standin, VAL_LOSS_CARD)), timeout=20)
        card = cards(discord_standin, VAL_LOSS_CARD)[0]
        assert card["attachments"] and card["embeds"][0]["image"]["url"] == "attachment://chart.png"
        assert "Watch rule #1" in card["embeds"][0]["description"]
        assert discord_standin.allowed_mentions[int(card["id"])]["parse"] == [], "no job: nobody is pinged"
        assert not any(b.startswith("adjutant:alert:stop:") for b in discord_standin.buttons(card)), "not our job"
        await asyncio.sleep(2.5)
        assert len(cards(discord_standin, VAL_LOSS_CARD)) == 1, "told once"

        rerun = await answer_to(discord_standin, card, button(discord_standin, card, "rerun"), "admin")
        assert "Rerun of the alert's run" in rerun["content"]
        jobs = await bot.get_cog("Experiments").scheduler.recent(5)
        assert jobs and jobs[0].params == {"lr": 0.1}, "the run's hyperparameters"
        await bot.get_cog("Experiments").scheduler.cancel(jobs[0].id, "test")

        replies = [await say(discord_standin, "$unwatch 7"), await say(discord_standin, "$unwatch 1")]
        assert "No watch rule `7`" in replies[0] and "Removed rule #1" in replies[1]


async def test_card_buttons_work_after_a_restart_and_the_card_is_not_sent_again(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    params = '{"print": "NCCL watchdog: Timeout after 600000 ms", "times": 3, "sleep": 60}'
    async with start_adjutant(launch_env()):
        job_id = await launch(discord_standin, params)
        await eventually(lambda: bool(cards(discord_standin, f"Job {job_id} logged")), timeout=20)
    card = cards(discord_standin, f"Job {job_id} logged")[0]
    assert "NCCL" in card["embeds"][0]["title"]
    async with start_adjutant(launch_env()) as bot:
        await asyncio.sleep(2)
        assert len(cards(discord_standin, f"Job {job_id} logged")) == 1, "a restart tells nothing again"
        stopped = await answer_to(discord_standin, card, button(discord_standin, card, "stop"), "admin")
        assert f"Stopping job `{job_id}`" in stopped["content"]
        scheduler = bot.get_cog("Experiments").scheduler

        async def ended() -> bool:
            job = await scheduler.get(job_id)
            return job is not None and job.state == "cancelled"

        for _ in range(100):
            if await ended():
                break
            await asyncio.sleep(0.1)
        assert await ended()


async def test_a_card_refused_then_failing_is_sent_once_later(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client
    async with start_adjutant({**WANDB_ENV, **launch_env()}) as bot:
        await reporting_ready(bot)
        assert "as rule #1" in await say(discord_standin, "$watch loss > 5")
        discord_standin.send_faults = [(503, 0, "Service Unavailable"), (403, 50013, "Missing Permissions")] * 2
        wandb_standin.create_run("r1", state="running", summary={"loss": 9.0})
        await eventually(lambda: bool(cards(discord_standin, "loss = 9 > 5")), timeout=40)
        await asyncio.sleep(2)
        assert discord_standin.send_faults == [], "every fault was met"
        assert len(cards(discord_standin, "loss = 9 > 5")) == 1, "sent once, nothing lost"
        assert len(cards(discord_standin, "started")) == 1, "and the announcement before it too"


async def test_a_failed_jobs_traceback_is_told_once_by_its_end_report(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    """Issue 20: the traceback came in the end report and again as a log-alert card titled with the regex. A pattern
    the end report's log tail shows is not a second card."""
    import sqlite3

    from adjutant.cogs._announcer import LOG_CARD_WAIT
    from tests.cogs.test_experiments import fields, wait_report

    params = '{"print": "Traceback (most recent call last):", "exit": 1}'
    async with start_adjutant(launch_env()) as bot:
        job_id = await launch(discord_standin, params)
        report = await wait_report(discord_standin, job_id)
        assert "Traceback (most recent call last):" in fields(report)["End of the log"]
        path = bot.settings.state_dir / "adjutant.sqlite3"

        def told() -> str:
            with sqlite3.connect(path) as db:
                return db.execute("SELECT log_told FROM jobs WHERE id=?", (job_id,)).fetchone()[0] or ""

        await eventually(lambda: "Traceback" in told(), timeout=10)  # the scan found it: the alert exists
        await asyncio.sleep(LOG_CARD_WAIT.total_seconds() + 3)
        assert cards(discord_standin, f"Job {job_id} logged") == [], "told once, by the end report"


async def test_a_crash_caught_up_after_a_restart_says_while_i_was_offline(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    """Issue 20: a crash caught up after a restart came as a card without "While I was offline:"."""
    async with start_adjutant(WANDB_ENV) as bot:
        await reporting_ready(bot)
        wandb_standin.create_run("c1", display_name="night-run", state="running")
        await eventually(lambda: bool(cards(discord_standin, "night-run started")), timeout=20)
        started = cards(discord_standin, "night-run started")[0]
        assert not (started["content"] or "").startswith("While I was offline"), "news as it happens"
    wandb_standin.update_run("c1", state="crashed")  # while the bot is down
    async with start_adjutant(WANDB_ENV):
        await eventually(lambda: bool(cards(discord_standin, "night-run crashed")), timeout=30)
    card = cards(discord_standin, "night-run crashed")[0]
    assert discord_standin.buttons(card), "a card (with its buttons)"
    assert card["content"].startswith("While I was offline:"), card["content"]
