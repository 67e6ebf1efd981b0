"""Faults: a launch request's whole life. The requester may withdraw it (nobody else); one nobody decides expires;
a decision whose bot died before telling it (kill -9 right after Approve: the decision and its jobs were committed,
the card and the requester not told) is told after the restart, once, and its job is acknowledged with its own
thread and reported."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import sqlite3

from adjutant.approvals import ApprovalStore
from adjutant.jobs import iso
from tests.cogs.test_alert_cards import answer_to
from tests.cogs.test_experiments import job_id_of, launch_env, wait_report
from tests.cogs.test_gpus import state_db
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


def told(discord: DiscordStandIn, text: str) -> list[dict]:
    return [m for m in discord.sent() if text in (m["content"] or "")]


async def request(discord: DiscordStandIn, params: str) -> dict:
    count = len(discord.sent())
    await discord.post(f"$experiment {params}", author="teammate")
    return await discord.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=10)


async def test_withdraw_expiry_and_a_decision_told_after_a_restart(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    teammate = discord_standin.member("teammate")
    admin = discord_standin.member("admin")
    env = launch_env(ADJUTANT_REQUEST_ROLES="ml-team", ADJUTANT_LAUNCH_USERS=str(admin.id))
    async with start_adjutant(env) as bot:
        first = await request(discord_standin, '{"sleep": 0, "n": 1}')
        second = await request(discord_standin, '{"sleep": 0, "n": 2}')
        third = await request(discord_standin, '{"sleep": 0, "n": 3}')
        assert "adjutant:approval:withdraw:1" in discord_standin.buttons(first)

        stale = copy.deepcopy(first)  # as an approver's screen still shows it
        others = await answer_to(discord_standin, first, "adjutant:approval:withdraw:1", "admin")
        assert others["flags"] & 64 and "Only the member who asked may withdraw" in others["content"]
        withdrawn = await answer_to(discord_standin, first, "adjutant:approval:withdraw:1", "teammate")
        assert withdrawn["embeds"][0]["title"] == "↩️ Withdrawn: experiment request #1"
        assert withdrawn["content"] == "Request #1 was withdrawn by teammate; nothing runs."
        late = await answer_to(discord_standin, stale, "adjutant:approval:approve:1", "admin")
        assert late["flags"] & 64 and "already withdrawn" in late["content"]
        db = state_db(bot)

    # The bot died right after an approver's click had committed: the decision and its job are in the database,
    # the card still says it waits and the requester was never told. And request #3 has waited for 25 hours.
    approvals = ApprovalStore(db)
    decision = approvals.decide(2, True, admin.id, "admin", db.parent / "logs")
    assert decision is not None and decision.changed and len(decision.jobs) == 1
    approvals.close()
    with sqlite3.connect(db) as conn:
        long_ago = iso(dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
        conn.execute("UPDATE approvals SET created_at=? WHERE id=3", (long_ago,))
    job_id = decision.jobs[0].id

    threads = len(discord_standin.threads)
    async with start_adjutant(env):
        await eventually(lambda: bool(told(discord_standin, "your request #2 was approved by admin")), timeout=20)
        [ack] = told(discord_standin, "your request #2 was approved by admin")
        assert ack["content"].startswith(f"<@{teammate.id}>") and job_id_of(ack) == job_id
        assert [int(u) for u in discord_standin.allowed_mentions[int(ack["id"])]["users"]] == [teammate.id]
        await eventually(lambda: len(discord_standin.threads) > threads, timeout=10)  # its own thread
        card = next(m for m in discord_standin.sent() if m["id"] == second["id"])
        assert card["content"] == "Request #2 was approved by admin." and not discord_standin.buttons(card)
        await wait_report(discord_standin, job_id, timeout=30)

        await eventually(lambda: bool(told(discord_standin, "your request #3 expired")), timeout=20)
        expired = next(m for m in discord_standin.sent() if m["id"] == third["id"])
        assert expired["embeds"][0]["title"] == "⌛ Expired: experiment request #3"
        assert not discord_standin.buttons(expired)

    async with start_adjutant(env):  # told once: another restart repeats nothing
        await asyncio.sleep(3)
    assert len(told(discord_standin, "your request #2 was approved")) == 1
    assert len(told(discord_standin, "your request #3 expired")) == 1
    assert not told(discord_standin, "your request #1")
