"""GPUs, quotas, approvals and the audit trail end to end: the real discord.py client against the Discord stand-in,
real supervisor and script processes (the script records the CUDA_VISIBLE_DEVICES it got), a real SQLite file."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import os
import signal
import sqlite3
from pathlib import Path

from adjutant.hparams import to_argument
from adjutant.jobs import JobRequest, JobState, JobStore, iso
from tests.cogs.test_alert_cards import answer_to
from tests.cogs.test_experiments import acks, job_id_of, launch, launch_env, received, wait_report
from tests.cogs.test_plots import png_of
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


def visible(out_dir: Path, job_id: str) -> set[int]:
    text = received(out_dir, job_id)["env"]["CUDA_VISIBLE_DEVICES"]
    return {int(g) for g in text.split(",") if g}


def state_db(bot) -> Path:
    return bot.get_cog("Experiments").services.jobs.path


async def test_jobs_get_their_own_gpus_and_wait_for_enough(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env(ADJUTANT_GPUS="0,1,2")) as bot:
        a = await launch(discord_standin, '--gpus 2 {"sleep": 4}')
        b = await launch(discord_standin, '{"sleep": 4}')  # the default: 1 GPU
        c = await launch(discord_standin, '--gpus 2 {"sleep": 0}')  # waits: only one is free
        await eventually(lambda: (out_dir / f"{a}.json").exists() and (out_dir / f"{b}.json").exists(), timeout=15)
        assert visible(out_dir, a).isdisjoint(visible(out_dir, b))
        assert len(visible(out_dir, a)) == 2 and len(visible(out_dir, b)) == 1
        assert received(out_dir, a)["env"]["ADJUTANT_GPUS"] == received(out_dir, a)["env"]["CUDA_VISIBLE_DEVICES"]
        assert not (out_dir / f"{c}.json").exists()
        ack = next(m for m in acks(discord_standin) if job_id_of(m) == a)
        assert "2 GPU(s)" in str(discord_standin.first_version(ack)["embeds"][0]["fields"])
        waiting = discord_standin.first_version(next(m for m in acks(discord_standin) if job_id_of(m) == c))
        assert waiting["embeds"][0]["title"] == f"🧪 Experiment {c}: queued; 2 jobs ahead", "it waits for GPUs"

        gpus = await say_embed(discord_standin, "$gpus")
        assert gpus["title"] == "🖥️ GPUs: 0 of 3 free · 1 job(s) queued"
        assert f"`{a}` by admin" in gpus["description"] and f"`{b}` by admin" in gpus["description"]

        await wait_report(discord_standin, c, timeout=30)
        assert len(visible(out_dir, c)) == 2
        jobs = JobStore(state_db(bot))
        assert jobs.get(a).gpu_ids and jobs.get(c).gpu_ids
        jobs.close()

        refused = await say(discord_standin, '$experiment --gpus 4 {"sleep": 0}')
        assert refused == "Not launched: it asks for 4 GPUs per job; this machine has 3 (ADJUTANT_GPUS)."
        bad = await say(discord_standin, '$experiment --gpus many {"sleep": 0}')
        assert "--gpus must be a whole number from 0 to 64, not 'many'" in bad


async def say(discord: DiscordStandIn, text: str, author: str = "admin") -> str:
    """Post a command; its text reply (a job's "queue done" note, which mentions its launcher, is skipped)."""
    count = len(discord.sent())
    await discord.post(text, author=author)
    message = await discord.wait_for_message(
        lambda m: bool(m["content"]) and not m["content"].startswith("<@"), after=count, timeout=10
    )
    return message["content"]


async def say_embed(discord: DiscordStandIn, text: str, author: str = "admin") -> dict:
    """Post a command; the embed it answers with (job reports arriving meanwhile are skipped)."""
    count = len(discord.sent())
    await discord.post(text, author=author)
    answers = ("🖥️", "📊", "🗂️")
    message = await discord.wait_for_message(
        lambda m: bool(m["embeds"]) and m["embeds"][0].get("title", "").startswith(answers), after=count, timeout=10
    )
    return message["embeds"][0]


def record_use(path: Path, member_id: int, member: str, gpus: int, hours: float) -> None:
    """A job that ran ``hours`` on ``gpus`` GPUs and ended an hour ago."""
    store = JobStore(path)
    request = JobRequest({"old": 1}, "/bin/true", member_id, member, None, None, gpus=gpus)
    job = store.add(request, path.parent / "logs")
    end = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    store.update(
        job.id,
        state=JobState.SUCCEEDED,
        started_at=iso(end - dt.timedelta(hours=hours)),
        ended_at=iso(end),
        reported=1,
        acked=1,
        queue_told=1,
    )
    store.close()


async def test_quota_warns_then_refuses_and_admins_are_exempt(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    teammate = discord_standin.member("teammate")
    env = launch_env(
        ADJUTANT_GPUS="0,1",
        ADJUTANT_GPU_HOURS_PER_WEEK="10",
        ADJUTANT_LAUNCH_ROLES="ml-team,Admin",
        ADJUTANT_TIME_LIMIT="10",  # a quota counts each job's worst case: its time limit
    )
    async with start_adjutant(env) as bot:
        db = state_db(bot)
        await asyncio.to_thread(record_use, db, teammate.id, "teammate", 2, 4.25)  # 8.5 GPU-hours
        job = await launch(discord_standin, '{"sleep": 0}', author="teammate")
        ack = next(m for m in acks(discord_standin) if job_id_of(m) == job)
        assert (
            "used 8.5 of your 10 GPU-hours this week; with this request you may reach 8.7 (87%)"
            in (discord_standin.first_version(ack)["content"])
        )

        await asyncio.to_thread(record_use, db, teammate.id, "teammate", 1, 2)  # 10.5 now
        refused = await say(discord_standin, '$experiment {"sleep": 0}', author="teammate")
        assert refused.startswith("Not launched: you have used 10.5 of your 10 GPU-hours over the last 7 days")
        assert "frees up <t:" in refused
        await asyncio.to_thread(record_use, db, discord_standin.member("admin").id, "admin", 2, 50)
        exempt = await launch(discord_standin, '{"sleep": 0}', author="admin")  # exempt

        scheduler = bot.get_cog("Experiments").scheduler
        for launched in (job, exempt):  # usage counts jobs that ran: wait until both have started
            for _ in range(200):
                if (await scheduler.get(launched)).started_at is not None:
                    break
                await asyncio.sleep(0.05)
        usage = await say_embed(discord_standin, "$usage week")
        assert usage["title"] == "📊 Usage, last week"
        by_member = usage["fields"][0]["value"]
        assert by_member.index("admin") < by_member.index("teammate"), "most GPU-hours first"
        assert "**teammate** · 3 job(s)" in by_member
        assert usage["image"]["url"] == "attachment://usage.png"
        assert png_of(discord_standin, "usage.png").format == "PNG"
        mine = await say_embed(discord_standin, "$usage day <@" + str(teammate.id) + ">")
        assert mine["title"] == "📊 Usage, last day: teammate"
        wrong = await say(discord_standin, "$usage year")
        assert "Usage: `$usage" in wrong


async def test_approval_cards(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    teammate = discord_standin.member("teammate")
    env = launch_env(ADJUTANT_GPUS="0,1", ADJUTANT_REQUEST_ROLES="ml-team", ADJUTANT_APPROVAL_GPUS="1")
    async with start_adjutant(env) as bot:
        count = len(discord_standin.sent())
        await discord_standin.post('$experiment {"sleep": 0, "asked": "teammate"}', author="teammate")
        card = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=10)
        assert card["embeds"][0]["title"] == "🛂 Approval needed: experiment request #1"
        assert "nothing runs until one approves it" in card["content"]
        jobs = JobStore(state_db(bot))
        assert jobs.recent(10) == [], "nothing is queued before an approval"
        own = await answer_to(discord_standin, card, "adjutant:approval:approve:1", "teammate")
        assert own["flags"] & 64 and "cannot approve or reject your own request" in own["content"]
        stranger = await answer_to(discord_standin, card, "adjutant:approval:approve:1", "member")
        assert stranger["flags"] & 64 and "Only members with the Administrator or Manage Server" in stranger["content"]
        assert jobs.recent(10) == []
        jobs.close()

    stale = copy.deepcopy(card)  # as a second approver's screen shows it, buttons and all
    # the card keeps working after a restart
    async with start_adjutant(env) as bot:
        count = len(discord_standin.sent())
        decided = await answer_to(discord_standin, card, "adjutant:approval:approve:1", "admin")
        assert decided["embeds"][0]["title"] == "✅ Approved: experiment request #1"
        told = await discord_standin.wait_for_message(lambda m: "request #1 was approved" in m["content"], after=count)
        assert told["content"].startswith(f"<@{teammate.id}>, your request #1 was approved by admin")
        assert [int(u) for u in discord_standin.allowed_mentions[int(told["id"])]["users"]] == [teammate.id]
        job_id = job_id_of(told)
        await wait_report(discord_standin, job_id, timeout=30)
        assert received(out_dir, job_id)["argv"] == [to_argument({"sleep": 0, "asked": "teammate"})]
        # a second approver whose screen still shows the buttons (a click that raced the first)
        again = await answer_to(discord_standin, stale, "adjutant:approval:reject:1", "manager")
        assert again["flags"] & 64 and "was already approved by admin" in again["content"]

        # a launcher asking above ADJUTANT_APPROVAL_GPUS waits too; a rejection launches nothing
        count = len(discord_standin.sent())
        await discord_standin.post('$sweep --gpus 2 {"sleep": [0, 1]}', author="manager")
        sweep_card = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=10)
        fields = {f["name"]: f["value"] for f in sweep_card["embeds"][0]["fields"]}
        assert (
            fields["Cost"] == "2 GPU(s) per job, 4 in all"
            and "above 1 (ADJUTANT\\_APPROVAL\\_GPUS)" in fields["Why it waits"]
        )
        rejected = await answer_to(discord_standin, sweep_card, "adjutant:approval:reject:2", "admin")
        assert rejected["embeds"][0]["title"] == "🚫 Rejected: sweep request #2"
        await discord_standin.wait_for_message(lambda m: "request #2 was rejected by admin" in m["content"])
        jobs = JobStore(state_db(bot))
        assert [j.id for j in jobs.recent(10)] == [job_id]
        jobs.close()

        # the audit trail of all of it, for administrators only
        audit = await say_embed(discord_standin, "$audit 20")
        lines = audit["description"].splitlines()
        actions = [line.split("** ", 1)[1].split()[0] for line in lines]
        assert actions[:3] == ["reject", "request", "approve"], lines
        assert {"approve", "request", "refused"} <= set(actions)
        assert any("**teammate** request `#1`" in line for line in lines)
        assert any("**member** refused `#1`" in line for line in lines)
        only_teammate = await say_embed(discord_standin, f"$audit 5 <@{teammate.id}>")
        assert all("**teammate**" in line for line in only_teammate["description"].splitlines())
        refused = await say(discord_standin, "$audit", author="member")
        assert "Only members with the Administrator or Manage Server permission may read the audit" in refused
        db_path = state_db(bot)
    with sqlite3.connect(db_path) as db:
        logged = db.execute("SELECT action, actor FROM audit WHERE action='refused' ORDER BY seq DESC").fetchone()
    assert logged == ("refused", "member")


async def test_a_lost_job_frees_its_gpus_and_a_cancelled_one_too(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    """kill -9 of the supervisor running a job that holds both GPUs: the job is lost, the waiting job gets them;
    then a cancel frees them for the next one."""
    async with start_adjutant(launch_env(ADJUTANT_GPUS="0,1", ADJUTANT_RETRIES="0")) as bot:
        first = await launch(discord_standin, '--gpus 2 {"sleep": 600}')
        second = await launch(discord_standin, '--gpus 2 {"sleep": 600}')
        third = await launch(discord_standin, '--gpus 1 {"sleep": 0}')
        await eventually(lambda: (out_dir / f"{first}.json").exists(), timeout=15)
        await asyncio.sleep(1)
        assert not (out_dir / f"{second}.json").exists() and not (out_dir / f"{third}.json").exists()
        store = bot.get_cog("Experiments").services.jobs
        job = await asyncio.to_thread(store.get, first)
        os.kill(job.supervisor_pid, signal.SIGKILL)
        lost = await wait_report(discord_standin, first, timeout=20)
        assert lost["embeds"][0]["title"] == f"❓ Experiment {first} lost"
        await eventually(lambda: (out_dir / f"{second}.json").exists(), timeout=15)
        assert visible(out_dir, second) == {0, 1}
        assert not (out_dir / f"{third}.json").exists(), "the 1-GPU job waits its turn"
        await discord_standin.post(f"$cancel {second}")
        await wait_report(discord_standin, second, timeout=20)
        await wait_report(discord_standin, third, timeout=20)
        assert len(visible(out_dir, third)) == 1


async def test_the_slash_command_takes_gpus(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    from tests.cogs.test_slash import answer

    async with start_adjutant(launch_env(ADJUTANT_GPUS="0,1,2")):
        interaction = await discord_standin.slash("experiment", {"hyperparameters": '{"sleep": 0}', "gpus": 3})
        launched = await answer(discord_standin, interaction)
        job_id = launched["embeds"][0]["title"].split()[2].rstrip(":")
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        assert visible(out_dir, job_id) == {0, 1, 2}
        interaction = await discord_standin.slash("experiment", {"hyperparameters": '{"sleep": 0}', "gpus": 9})
        refused = await answer(discord_standin, interaction)
        assert "this machine has 3" in refused["content"]
        # $rerun keeps the source's GPUs unless told: --gpus 1
        count = len(acks(discord_standin))
        await discord_standin.post(f"$rerun {job_id} --gpus 1 sleep=1")
        await eventually(lambda: len(acks(discord_standin)) > count, timeout=10)
        rerun = job_id_of(acks(discord_standin)[count])
        await eventually(lambda: (out_dir / f"{rerun}.json").exists(), timeout=15)
        assert len(visible(out_dir, rerun)) == 1
        assert received(out_dir, rerun)["argv"] == [to_argument({"sleep": 1})]


async def test_auto_without_a_driver_stops_startup_with_the_reason(discord_standin: DiscordStandIn, tmp_path) -> None:
    """ADJUTANT_GPUS=auto on this machine (no NVIDIA driver): python -m adjutant exits 2 with the reason, and
    --check names it too."""
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    env = subprocess_env(
        discord_standin, {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path), "ADJUTANT_GPUS": "auto"}
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adjutant", cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    text = err.decode()
    assert process.returncode == 2, text
    assert "configuration error: ADJUTANT_GPUS=auto: NVML did not start" in text and "no NVIDIA driver" in text
    assert "Traceback" not in text
    check = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adjutant",
        "--check",
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(check.communicate(), 60)
    assert check.returncode != 0 and "no NVIDIA driver" in out.decode()
