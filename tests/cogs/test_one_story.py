"""One story per job, whatever the door: each launch gets its own acknowledgement and its own thread (a sweep: one
thread for the sweep), and its end report lands in that thread, never in another job's. One test per door."""

from __future__ import annotations

import re

from tests.cogs.test_alert_cards import answer_to
from tests.cogs.test_desk import inputs, opened
from tests.cogs.test_experiments import acks, job_id_of, launch, launch_env, wait_report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


async def story_of(discord: DiscordStandIn, bot, job_id: str) -> tuple[dict, dict]:
    """The job's acknowledgement and its thread (opened under that acknowledgement), once its end is reported."""
    report = await wait_report(discord, job_id, timeout=30)
    job = await bot.get_cog("Experiments").scheduler.get(job_id)
    assert job is not None and job.thread_id is not None, f"job {job_id} has no thread"
    thread = next(t for t in discord.threads if t["id"] == str(job.thread_id))
    assert thread["id"] == str(job.ack_id), "the thread opens under the job's own acknowledgement"
    assert report["channel_id"] == thread["id"], "the end report is in the job's own thread"
    ack = discord.messages[int(job.ack_id)]
    assert ack["channel_id"] == str(discord.channel_id("general")), "acknowledged in the channel"
    return ack, thread


async def new_ack(discord: DiscordStandIn, count: int) -> str:
    await eventually(lambda: len(acks(discord)) > count, timeout=10)
    return job_id_of(acks(discord)[count])


async def test_dollar_experiment_and_slash_experiment(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    async with start_adjutant(launch_env()) as bot:
        first = await launch(discord_standin, '{"sleep": 0}')
        await story_of(discord_standin, bot, first)
        count = len(acks(discord_standin))
        await discord_standin.slash("experiment", {"hyperparameters": '{"sleep": 0, "door": "slash"}'})
        second = await new_ack(discord_standin, count)
        _, thread = await story_of(discord_standin, bot, second)
        assert thread["name"].startswith(second)


async def test_rerun_from_the_channel_and_from_inside_the_old_jobs_thread(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env()) as bot:
        first = await launch(discord_standin, '{"sleep": 0}')
        _, old_thread = await story_of(discord_standin, bot, first)
        count = len(acks(discord_standin))
        await discord_standin.post(f"$rerun {first} door=channel")
        second = await new_ack(discord_standin, count)
        await story_of(discord_standin, bot, second)

        # typed inside the old job's thread: its story does not go into the old thread
        count = len(acks(discord_standin))
        before = len(discord_standin.in_thread(old_thread["id"]))
        await discord_standin.post(f"$rerun {first} door=thread", channel=f"thread-{old_thread['id']}")
        third = await new_ack(discord_standin, count)
        _, thread = await story_of(discord_standin, bot, third)
        assert thread["id"] != old_thread["id"]
        in_old = discord_standin.in_thread(old_thread["id"])[before:]
        assert len(in_old) == 1 and "acknowledged in the channel, with its own thread" in in_old[0]["content"]


async def test_forms_rerun_with_edits_and_the_context_menu(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env()) as bot:
        first = await launch(discord_standin, '{"sleep": 0, "lr": 0.1}')
        report = await wait_report(discord_standin, first)
        jobs = []
        for opening in (
            lambda: discord_standin.click(report, f"adjutant:edit:job:{first}"),  # Rerun with edits
            lambda: discord_standin.message_command("Rerun", report),  # right-click → Apps → Rerun
            lambda: discord_standin.slash("experiment"),  # /experiment alone: the launch form
        ):
            modal = await opened(discord_standin, await opening())
            count = len(acks(discord_standin))
            await discord_standin.submit_modal(modal, {inputs(modal)["lr"]["custom_id"]: str(0.2 + len(jobs))})
            jobs.append(await new_ack(discord_standin, count))
        threads = {(await story_of(discord_standin, bot, job))[1]["id"] for job in jobs}
        assert len(threads) == 3, "each form launch has its own thread"


async def test_an_approved_request_and_a_sweep(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    async with start_adjutant(launch_env(ADJUTANT_REQUEST_ROLES="ml-team", ADJUTANT_CANARY_STEPS="0")) as bot:
        count = len(discord_standin.sent())
        await discord_standin.post('$experiment {"sleep": 0, "door": "approval"}', author="teammate")
        card = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=10)
        count = len(acks(discord_standin))
        await answer_to(discord_standin, card, "adjutant:approval:approve:1", "admin")
        approved = await new_ack(discord_standin, count)
        await story_of(discord_standin, bot, approved)

        count = len(discord_standin.sent())
        await discord_standin.post('$sweep {"sleep": [0, 0.1, 0.2]}')
        preview = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=10)
        confirm = next(b for b in discord_standin.buttons(preview) if b)
        threads = len(discord_standin.threads)
        await discord_standin.click(preview, confirm)
        await eventually(lambda: len(discord_standin.threads) == threads + 1, timeout=10)
        sweep_thread = discord_standin.threads[-1]
        assert sweep_thread["id"] == preview["id"] and sweep_thread["name"].startswith("sweep ")
        await eventually(lambda: "Queued 3 experiment(s)" in discord_standin.messages[int(preview["id"])]["content"])
        ids = re.findall(r"`(j[a-z0-9]{6})`", discord_standin.messages[int(preview["id"])]["content"])
        for job_id in ids:
            report = await wait_report(discord_standin, job_id, timeout=30)
            assert report["channel_id"] == sweep_thread["id"], "every cell's story is in the sweep's thread"
