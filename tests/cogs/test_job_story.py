"""A job's story as a member reads it: the acknowledgement ends in the job's final state, and every reply
that names a command names it as the member types it (custom prefix, command group)."""

from __future__ import annotations

import json
import re

from tests.cogs.test_experiments import acks, fields, job_id_of, launch, launch_env, wait_report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


def everything_said(discord: DiscordStandIn) -> str:
    """All the text of every message of the bot as it reads now (content, embeds, footers)."""
    return json.dumps([{"content": m.get("content"), "embeds": m.get("embeds")} for m in discord.sent()])


def assert_final(discord: DiscordStandIn, job_id: str, state: str, exit_code: str) -> None:
    ack = next(m for m in acks(discord) if job_id_of(m) == job_id)
    embed = ack["embeds"][0]
    assert embed["title"].endswith(f"Experiment {job_id}: {state}"), embed["title"]
    assert fields(ack)["Exit code"] == exit_code
    assert "Duration" in fields(ack)
    report = wait_report_now(discord, job_id)
    assert f"/{report['channel_id']}/{report['id']}" in embed["description"], "links to the end report"
    assert not discord.buttons(ack), "no Cancel button once it ended"
    # Nothing anywhere still says the job runs.
    mine = [m for m in discord.sent() if job_id in json.dumps(m)]
    text = json.dumps([m["embeds"] for m in mine])
    assert "updated live" not in text
    assert f"{job_id}: running" not in text and "starting now" not in text and "queued;" not in text


def wait_report_now(discord: DiscordStandIn, job_id: str) -> dict:
    from tests.cogs.test_experiments import report

    found = report(discord, job_id)
    assert len(found) == 1, f"exactly one end report of {job_id}"
    return found[0]


async def test_a_job_that_ends_at_once_ends_its_acknowledgement_and_reports_in_its_thread(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env()):
        job_id = await launch(discord_standin, '{"exit": 3}')
        done = await wait_report(discord_standin, job_id)
        ack = next(m for m in acks(discord_standin) if job_id_of(m) == job_id)
        await eventually(lambda: "failed" in ack["embeds"][0]["title"], timeout=10)
    assert done["channel_id"] == ack["id"], "the end report is in the job's thread (made under the acknowledgement)"
    assert discord_standin.first_version(ack)["embeds"][0]["title"].startswith("🧪")
    assert_final(discord_standin, job_id, "failed", "3")


async def test_a_long_job_shows_live_status_then_its_final_state(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env(ADJUTANT_POLL_SECONDS="1")):
        job_id = await launch(discord_standin, '{"sleep": 11}')
        ack = next(m for m in acks(discord_standin) if job_id_of(m) == job_id)
        await eventually(lambda: ack["embeds"][0]["title"].endswith(": running"), timeout=20)
        assert "updated live" in ack["embeds"][0]["footer"]["text"]
        await wait_report(discord_standin, job_id, timeout=30)
        await eventually(lambda: "succeeded" in ack["embeds"][0]["title"], timeout=10)
    assert_final(discord_standin, job_id, "succeeded", "0")


async def test_a_custom_prefix_names_every_command_in_replies(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env(ADJUTANT_PREFIX="!")):
        await discord_standin.post("!jobs")
        empty = await discord_standin.wait_for_message(timeout=10)
        assert '`!experiment {"epochs": 1}`' in empty["embeds"][0]["description"]
        count = len(discord_standin.sent())
        await discord_standin.post("!cancel jnothin")
        unknown = await discord_standin.wait_for_message(after=count, timeout=10)
        assert "`!jobs` lists them" in unknown["content"]
        count = len(discord_standin.sent())
        await discord_standin.post("!logs jnothin")
        assert "`!jobs` lists them" in (await discord_standin.wait_for_message(after=count, timeout=10))["content"]
        await discord_standin.post("!experiment {}".replace("{}", '{"epochs": 1}'))
        await eventually(lambda: bool(acks(discord_standin)), timeout=10)
        job_id = job_id_of(acks(discord_standin)[0])
        first = discord_standin.first_version(acks(discord_standin)[0])
        assert first["embeds"][0]["footer"]["text"] == f"!cancel {job_id} · !logs {job_id}"
        done = await wait_report(discord_standin, job_id)
        assert done["embeds"][0]["footer"]["text"] == f"!logs {job_id} for the whole log"
    said = everything_said(discord_standin)
    assert not re.search(r"\$(cancel|logs|jobs|experiment|runs|run|best|plot|sweep|rerun)\b", said), said


async def test_a_command_group_names_commands_with_the_group(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env(ADJUTANT_COMMAND_GROUP="adj")):
        await discord_standin.post("$hello")  # not Adjutant's any more: nothing answers
        await discord_standin.post('$adj experiment {"epochs": 1}')
        await eventually(lambda: bool(acks(discord_standin)), timeout=10)
        job_id = job_id_of(acks(discord_standin)[0])
        first = discord_standin.first_version(acks(discord_standin)[0])
        assert first["embeds"][0]["footer"]["text"] == f"$adj cancel {job_id} · $adj logs {job_id}"
        done = await wait_report(discord_standin, job_id)
        assert done["embeds"][0]["footer"]["text"] == f"$adj logs {job_id} for the whole log"
        await discord_standin.post("$adj hello")
        await eventually(lambda: len(greetings(discord_standin)) == 1, timeout=10)
    assert len(greetings(discord_standin)) == 1, "$hello (outside the group) was not answered; $adj hello was"


def greetings(discord: DiscordStandIn) -> list[dict]:
    return [m for m in discord.sent() if "hello" in (m.get("content") or "").lower()]


async def test_an_end_report_goes_out_while_w_and_b_hangs_and_is_completed_by_an_edit(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin, out_dir, monkeypatch
) -> None:
    """W&B hangs when the job ends: its end report goes out at once (with the run's link, known from the polls);
    the run's name, state and metric come by an edit once W&B answers."""
    import asyncio
    import datetime as dt

    from tests.cogs.conftest import WANDB_ENV
    from tests.cogs.test_experiments import received

    monkeypatch.delenv("WANDB_SERVICE")  # the fake one of out_dir would capture this process's wandb client
    async with start_adjutant({**WANDB_ENV, **launch_env()}) as bot:
        await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=20)  # connect summary
        job_id = await launch(discord_standin, '{"sleep": 4}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        run_id = received(out_dir, job_id)["env"]["WANDB_RUN_ID"]
        wandb_standin.create_run(run_id, display_name="hung-run", state="running", summary={"loss": 0.5})
        await eventually(lambda: "hung-run started" in everything_said(discord_standin), timeout=15)
        wandb_standin.update_run(run_id, state="finished", summary={"loss": 0.125})
        wandb_standin.hang(1000, seconds=6.0)  # from now on every W&B request takes 6 s
        done = await wait_report(discord_standin, job_id, timeout=20)
        arrived = dt.datetime.now(dt.UTC)
        ended = bot.get_cog("Experiments").services.jobs.get(job_id).ended_at
        first = json.loads(json.dumps(done))  # as it was sent
        assert wandb_standin.faults, "W&B was still hanging when the report went out"
        wandb_standin.clear_faults()  # W&B answers again (the requests in flight still take their 6 s)
        await eventually(lambda: "loss" in fields(done), timeout=30)
        await asyncio.sleep(0.5)
    waited = (arrived - ended).total_seconds()
    assert waited < 3, f"the end report came {waited:.1f} s after the job ended: it waited for W&B"
    assert run_id in fields(first)["W&B run"] and "loss" not in fields(first), "sent with the link, without W&B's part"
    assert fields(done)["loss"] == "0.125"
    assert "hung-run" in fields(done)["W&B run"] and "finished" in fields(done)["W&B run"]
    assert len(wait_report_now(discord_standin, job_id)["embeds"]) == 1, "completed in place: one report"
