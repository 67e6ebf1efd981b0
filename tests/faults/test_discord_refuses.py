"""Faults: Discord refuses sends (403 Missing Permissions, a locked or deleted thread, a 503 on a reply).
Nothing is lost: each announcement and end report is delivered once, somewhere, once Discord accepts it."""

from __future__ import annotations

import asyncio

import pytest

from tests.cogs.conftest import WANDB_ENV, titles
from tests.cogs.test_experiments import acks, job_id_of, launch, launch_env, report, wait_report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

MISSING_PERMISSIONS = (403, 50013, "Missing Permissions")


async def test_two_transient_403s_lose_no_announcement(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    ids = [wandb_standin.create_run(f"r{i}", display_name=f"run-{i}", state="running") for i in range(10)]
    async with start_adjutant(WANDB_ENV):
        await eventually(lambda: len(discord_standin.sent()) >= 1, timeout=20)  # the connect summary
        await asyncio.sleep(1.5)
        discord_standin.send_faults = [MISSING_PERMISSIONS, MISSING_PERMISSIONS]
        with wandb_standin.lock:
            for run_id in ids:
                wandb_standin.update_run(run_id, state="finished", summary={"loss": 0.5})
        await eventually(lambda: sum("finished" in t for t in titles(discord_standin)) >= 10, timeout=60)
        await asyncio.sleep(2)
    finished = [t for t in titles(discord_standin) if "finished" in t]
    assert sorted(finished) == sorted(f"✅ run-{i} finished" for i in range(10)), "each once, none lost"
    assert discord_standin.send_faults == [], "both refusals happened"


async def test_a_403_on_an_end_report_delays_it_and_loses_nothing(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env(ADJUTANT_JOB_THREADS="off")):
        job_id = await launch(discord_standin, '{"sleep": 1}')
        discord_standin.send_faults = [MISSING_PERMISSIONS, MISSING_PERMISSIONS]
        await wait_report(discord_standin, job_id, timeout=40)
        await asyncio.sleep(1)
    assert len(report(discord_standin, job_id)) == 1
    assert discord_standin.send_faults == []


@pytest.mark.parametrize("fault", ["locked", "deleted"])
async def test_a_thread_that_refuses_sends_the_report_to_the_channel(
    start_adjutant, discord_standin: DiscordStandIn, out_dir, fault: str
) -> None:
    """A moderator locks, or deletes, the job's thread while it runs: the end report lands in the channel."""
    async with start_adjutant(launch_env()):
        job_id = await launch(discord_standin, '{"sleep": 2}')
        ack = next(m for m in acks(discord_standin) if job_id_of(m) == job_id)
        await eventually(lambda: any(t["id"] == ack["id"] for t in discord_standin.threads), timeout=10)
        if fault == "locked":
            discord_standin.lock_thread(ack["id"])
        else:
            discord_standin.delete_channel(ack["id"])
        done = await wait_report(discord_standin, job_id, timeout=30)
    assert done["channel_id"] == str(discord_standin.channel_id("general"))
    if fault == "locked":
        assert "could not post in the job's thread" in done["content"] and "locked" in done["content"]
    assert len(report(discord_standin, job_id)) == 1


async def test_a_503_on_the_acknowledgement_still_tells_the_member(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    """The job was recorded: the member learns its id and state although the first reply failed."""
    async with start_adjutant(launch_env()):
        discord_standin.send_faults = [(503, 0, "Service Unavailable")]
        posted = await discord_standin.post('$experiment {"sleep": 1}')
        await eventually(lambda: bool(acks(discord_standin)), timeout=20)
        job_id = job_id_of(acks(discord_standin)[0])
        await wait_report(discord_standin, job_id, timeout=30)
    replies = [
        m for m in discord_standin.sent() if str((m.get("message_reference") or {}).get("message_id")) == str(posted)
    ]
    assert len(replies) == 1, "one acknowledgement (the retry), not two"
    assert not any("Something went wrong" in (m.get("content") or "") for m in discord_standin.sent())


async def test_no_acknowledgement_at_all_still_gives_the_job_id(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env()):
        discord_standin.send_faults = [(503, 0, "Service Unavailable")] * 3  # every attempt at the reply fails
        await discord_standin.post('$experiment {"sleep": 1}')
        plain = await discord_standin.wait_for_message(lambda m: "is recorded" in (m.get("content") or ""), timeout=30)
        job_id = plain["content"].split("`")[1]
        await wait_report(discord_standin, job_id, timeout=30)
    assert list(out_dir.glob(f"{job_id}.json")), "the job ran"


async def test_a_withheld_send_permission_delays_the_end_report_and_loses_nothing(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    """A moderator takes Send Messages from the bot in its channel while a job runs (a channel overwrite, as in
    Discord), then gives it back: the end report is not posted meanwhile, and arrives once afterwards."""
    async with start_adjutant(launch_env(ADJUTANT_JOB_THREADS="off")):
        job_id = await launch(discord_standin, '{"sleep": 1}')
        discord_standin.withhold("general", "send_messages")
        await asyncio.sleep(6)  # the job ends meanwhile
        assert report(discord_standin, job_id) == [], "Discord refused it"
        discord_standin.grant("general", "send_messages")
        await wait_report(discord_standin, job_id, timeout=60)
        await asyncio.sleep(1)
    assert len(report(discord_standin, job_id)) == 1
