"""A job's story in one place: a thread under its launch (or replies where threads are not allowed),
and the launch message edited in place while the job runs."""

from __future__ import annotations

import asyncio

from tests.cogs.conftest import WANDB_ENV
from tests.cogs.test_experiments import acks, launch, launch_env, received, wait_report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


async def test_job_story_in_a_thread_with_live_status(
    start_adjutant, discord_standin: DiscordStandIn, out_dir, wandb_standin, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")
    async with start_adjutant({**WANDB_ENV, **launch_env(), "ADJUTANT_POLL_SECONDS": "1"}):
        await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=20)
        await asyncio.sleep(1.5)
        job_id = await launch(discord_standin, '{"sleep": 14}')
        ack = acks(discord_standin)[0]
        await eventually(lambda: len(discord_standin.threads) == 1, timeout=10)
        thread = discord_standin.threads[0]
        assert thread["id"] == ack["id"] and thread["name"].startswith(job_id)
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        run_id = received(out_dir, job_id)["env"]["WANDB_RUN_ID"]
        wandb_standin.create_run(run_id, display_name="live-run", state="running")
        wandb_standin.log(run_id, [{"loss": 0.9}, {"loss": 0.5}, {"loss": 0.3}])

        def live() -> bool:
            embed = discord_standin.messages[int(ack["id"])]["embeds"][0]
            return "running" in embed["title"] and any(
                f["name"] == "Step" and f["value"] == "2" for f in embed["fields"]
            )

        await eventually(live, timeout=30)
        edits = discord_standin.rest("PATCH", f"/messages/{ack['id']}")
        assert edits, "the acknowledgement was edited in place"
        assert discord_standin.buttons(discord_standin.messages[int(ack["id"])]) == [f"adjutant:cancel:{job_id}"]
        wandb_standin.update_run(run_id, state="finished")
        done = await wait_report(discord_standin, job_id, timeout=40)
    assert done["channel_id"] == thread["id"], "the end report is in the job's thread"
    story = [e["title"] for m in discord_standin.in_thread(thread["id"]) for e in m["embeds"]]
    assert any("live-run started" in t for t in story), story
    assert story[-1] == f"✅ Experiment {job_id} succeeded"
    outside = [m for m in discord_standin.sent("general") if any("live-run" in e.get("title", "") for e in m["embeds"])]
    assert outside == [], "nothing of the run's story outside its thread"


async def test_replies_where_threads_are_not_allowed(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    discord_standin.deny_threads("general")
    async with start_adjutant(launch_env()):
        job_id = await launch(discord_standin, '{"epochs": 1}')
        done = await wait_report(discord_standin, job_id)
    assert discord_standin.threads == []
    assert done["channel_id"] == str(discord_standin.channel_id("general"))
    assert done["message_reference"]["message_id"] is not None


async def test_threads_off(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    async with start_adjutant(launch_env(ADJUTANT_JOB_THREADS="off")):
        job_id = await launch(discord_standin, '{"epochs": 1}')
        done = await wait_report(discord_standin, job_id)
    assert discord_standin.threads == []
    assert done["message_reference"] is not None
