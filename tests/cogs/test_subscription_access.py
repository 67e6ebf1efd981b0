"""Issue 21, item 3: rights are checked when a direct message is delivered, not only at ``$subscribe``. A member who
can no longer see the project (or left the server) gets nothing more, and the subscription ends with one log line and
an audit entry. The inbox alone: real discord.py against the Discord stand-in, the real wandb client against the W&B
stand-in, a real SQLite file; the access answer (``may_see``) is what the cog computes from roles and channels."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import discord
from discord.ext import commands

from adjutant import subscriptions
from adjutant.alerts import enqueue_announcement
from adjutant.approvals import ApprovalStore
from adjutant.cogs._announcer import Inbox
from adjutant.settings import RUN_EVENTS
from adjutant.store import Store
from adjutant.wandb_source import WandbSource
from adjutant.watcher import Watcher, WatchRules
from tests.conftest import running
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

RULES = WatchRules(notify=frozenset(RUN_EVENTS), stall_after=dt.timedelta(minutes=30), metric="loss")


def dm_titles(discord_standin: DiscordStandIn, name: str) -> list[str]:
    return [e.get("title", "") for m in discord_standin.dms(name) for e in m["embeds"]]


async def finish_a_run(wandb_standin: WandbStandIn, watcher: Watcher, run_id: str, name: str) -> None:
    wandb_standin.create_run(run_id, display_name=name, state="running", config={"secret_param": "s3cr3t-value"})
    await watcher.poll_once()
    wandb_standin.update_run(run_id, state="finished")
    await watcher.poll_once()


async def test_a_member_who_lost_access_gets_nothing_more_and_the_subscription_ends_once(
    discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, tmp_path: Path, caplog
) -> None:
    path = tmp_path / "state" / "adjutant.sqlite3"
    store = Store(path)
    watcher = Watcher(store, WandbSource("team", "proj", timeout=5), RULES, timeout=5)
    await watcher.poll_once()  # baseline
    admin, teammate = discord_standin.member("admin"), discord_standin.member("teammate")
    with store.transaction() as db:
        lost = subscriptions.add(db, admin.id, watcher.project_key, ["finished"])
        kept = subscriptions.add(db, teammate.id, watcher.project_key, ["finished"])
        mine = subscriptions.add(db, admin.id, "", ["mine"])
    assert lost and kept and mine
    in_server = {admin.id, teammate.id}
    sees_project = {admin.id, teammate.id}
    asked: list[tuple[int, str]] = []

    async def may_see(user_id: int, project: str) -> bool:
        asked.append((user_id, project))
        return user_id in in_server and (project == "" or user_id in sees_project)

    bot = commands.Bot("$", intents=discord.Intents.default())
    async with running(bot, discord_standin.token):
        inbox = Inbox(bot, store, may_see=may_see)
        await finish_a_run(wandb_standin, watcher, "r1", "first-run")
        await inbox.deliver()
        assert dm_titles(discord_standin, "admin") == dm_titles(discord_standin, "teammate") != []
        assert (admin.id, watcher.project_key) in asked, "asked at delivery"

        sees_project.discard(admin.id)  # admin lost the role that let him see the project's channel
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="adjutant.cogs._announcer"):
            for run_id in ("r2", "r3"):
                await finish_a_run(wandb_standin, watcher, run_id, f"{run_id}-run")
                await inbox.deliver()
        assert any("r3-run finished" in t for t in dm_titles(discord_standin, "teammate"))
        assert not any("r2-run" in t or "r3-run" in t for t in dm_titles(discord_standin, "admin")), "nothing more"
        ended = [r.getMessage() for r in caplog.records if "ended" in r.getMessage()]
        assert len(ended) == 1 and f"subscription #{lost} of " in ended[0], ended
        assert f"they can no longer see {watcher.project_key}" in ended[0]
        assert store.subscription(lost) is None and store.subscription(kept) is not None
        assert store.subscription(mine) is not None, "their own jobs' ends are still theirs"
        assert store.pending(f"dm:{admin.id}") == []

        in_server.discard(admin.id)  # then left the server: even `mine` stops
        with store.transaction() as db:  # what the scheduler queues for `mine` when the job's end report is out
            enqueue_announcement(
                db, f"dm:{admin.id}", "r4", "job-end", {"title": "✅ Experiment jmine01 succeeded"}, None
            )
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="adjutant.cogs._announcer"):
            await inbox.deliver()
            await inbox.deliver()
        assert not any("jmine01" in t for t in dm_titles(discord_standin, "admin"))
        ended = [r.getMessage() for r in caplog.records if "ended" in r.getMessage()]
        assert len(ended) == 1 and f"subscription #{mine} of " in ended[0] and "no longer in the server" in ended[0]
        assert store.subscription(mine) is None
    entries = await asyncio.to_thread(ApprovalStore(path).entries, 10, admin.id)
    assert [(e.action, e.target) for e in entries] == [("unsubscribed", f"#{mine}"), ("unsubscribed", f"#{lost}")]
    assert entries[1].detail == f"ended by Adjutant: they can no longer see {watcher.project_key}"
    await watcher.close()


async def test_a_message_queued_before_the_member_unsubscribed_is_not_sent(
    discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, tmp_path: Path
) -> None:
    store = Store(tmp_path / "db")
    watcher = Watcher(store, WandbSource("team", "proj", timeout=5), RULES, timeout=5)
    await watcher.poll_once()
    teammate = discord_standin.member("teammate")
    with store.transaction() as db:
        subscriptions.add(db, teammate.id, watcher.project_key, ["finished"])
    await finish_a_run(wandb_standin, watcher, "r1", "late-run")
    with store.transaction() as db:
        assert subscriptions.remove(db, teammate.id, None) == 1  # $unsubscribe all, before delivery

    async def may_see(user_id: int, project: str) -> bool:
        return True

    bot = commands.Bot("$", intents=discord.Intents.default())
    async with running(bot, discord_standin.token):
        await Inbox(bot, store, may_see=may_see).deliver()
        await asyncio.sleep(0.5)
    assert discord_standin.dms("teammate") == [] and store.pending(f"dm:{teammate.id}") == []
    await watcher.close()
