"""Alerts that act (ADJUTANT_ALERT_POLICY), end to end: real discord.py ↔ Discord stand-in, real supervisor and script
processes, the real wandb client ↔ W&B stand-in. A job whose W&B run leaves its GPU idle past the window under
``stop after 1`` gets one card that says when it is stopped, with Keep running; at the deadline exactly one cancel
and one "stopped (policy)" note; Keep pressed in time stops nothing; a member without rights is refused privately.
Time past the deadline is driven through ``act_due(now)``; the running tell loop, on real time, must not act early."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3

from adjutant.clock import utcnow
from tests.cogs.conftest import WANDB_ENV, reporting_ready
from tests.cogs.test_alert_cards import answer_to, button, cards
from tests.cogs.test_experiments import launch, launch_env, received, wait_report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

IDLE_CARD = "leaves its GPUs idle"
POLICY_ENV = {
    **WANDB_ENV,
    "ADJUTANT_GPU_IDLE_MINUTES": "0.1",
    "ADJUTANT_ALERT_POLICY": "gpu-idle=stop after 1",
}


async def idle_job(bot, discord: DiscordStandIn, wandb: WandbStandIn, out_dir) -> tuple[str, dict]:
    """A running job whose W&B run reports its GPU at 0 % until the GPU idle card comes; (job id, card)."""
    await reporting_ready(bot)
    job_id = await launch(discord, '{"sleep": 120}')
    await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
    run_id = received(out_dir, job_id)["env"]["WANDB_RUN_ID"]
    wandb.create_run(run_id, display_name="idle-run", state="running", summary={"loss": 1.0, "_step": 1})
    wandb.update_run(run_id, system={"system.gpu.0.gpu": 0})
    await eventually(lambda: bool(cards(discord, IDLE_CARD)), timeout=30)
    return job_id, cards(discord, IDLE_CARD)[0]


def current(discord: DiscordStandIn, message: dict) -> dict:
    """A message as it is now (after edits)."""
    return next(m for m in discord.sent() if m["id"] == message["id"])


def policy_notes(discord: DiscordStandIn, job_id: str) -> list[dict]:
    return cards(discord, f"Job {job_id} stopped: GPU idle for")


async def test_gpu_idle_under_stop_after_1_is_one_card_then_one_cancel_and_one_note(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client
    async with start_adjutant({**POLICY_ENV, **launch_env()}) as bot:
        job_id, card = await idle_job(bot, discord_standin, wandb_standin, out_dir)
        description = card["embeds"][0]["description"]
        deadline = re.search(r"stopped <t:(\d+):R> unless someone presses \*\*Keep running\*\*", description)
        assert deadline is not None, description
        assert "Policy (stop after 1 min)" in description
        due = dt.datetime.fromtimestamp(int(deadline[1]), dt.UTC)
        assert dt.timedelta(seconds=50) < due - utcnow() <= dt.timedelta(seconds=61), "a minute after the alert"
        assert discord_standin.buttons(card)[0].startswith("adjutant:alert:keep:"), "Keep running comes first"

        refusal = await answer_to(discord_standin, card, button(discord_standin, card, "keep"), "teammate")
        assert refusal["flags"] & 64 and "not allowed to keep jobs running" in refusal["content"]

        actions = bot.get_cog("Experiments").alert_actions
        scheduler = bot.get_cog("Experiments").scheduler
        await asyncio.sleep(3)  # the tell loop runs on real time: the deadline is not there yet
        job = await scheduler.get(job_id)
        assert job is not None and job.state == "running", "nothing before the deadline"
        assert await actions.act_due(due - dt.timedelta(seconds=1)) == 0

        assert await actions.act_due(due + dt.timedelta(seconds=1)) == 1, "at the deadline: the job is stopped"
        assert await actions.act_due(due + dt.timedelta(seconds=2)) == 0, "and never twice"
        report = await wait_report(discord_standin, job_id, timeout=30)
        assert report["embeds"][0]["title"] == f"⏹️ Experiment {job_id} cancelled"
        assert report["embeds"][0]["description"].startswith("**Cancelled by Adjutant (policy: GPU idle for ")
        await eventually(lambda: bool(policy_notes(discord_standin, job_id)), timeout=10)
        await asyncio.sleep(2)
        notes = policy_notes(discord_standin, job_id)
        assert len(notes) == 1 and notes[0]["embeds"][0]["title"].endswith("(policy)"), notes
        assert notes[0]["channel_id"] == report["channel_id"], "in the job's thread"
        assert len(cards(discord_standin, IDLE_CARD)) == 1, "one card"

        late = await answer_to(discord_standin, card, button(discord_standin, card, "keep"), "admin")
        assert late["flags"] & 64 and "Too late" in late["content"]

        # Killed after the cancel, before its note was recorded: a restart finds it taken, tells it, cancels no more.
        with sqlite3.connect(bot.settings.state_dir / "adjutant.sqlite3") as db:
            db.execute("UPDATE alerts SET action_state='acting' WHERE kind='gpu-idle'")
            requested = db.execute("SELECT cancel_requested_at FROM jobs WHERE id=?", (job_id,)).fetchone()
        assert await actions.act_due(due + dt.timedelta(seconds=5)) == 0, "no second cancel"
        await eventually(lambda: len(policy_notes(discord_standin, job_id)) == 2, timeout=10)
        with sqlite3.connect(bot.settings.state_dir / "adjutant.sqlite3") as db:
            assert db.execute("SELECT cancel_requested_at FROM jobs WHERE id=?", (job_id,)).fetchone() == requested
            assert db.execute("SELECT action_state FROM alerts WHERE kind='gpu-idle'").fetchall() == [("done",)]


async def test_keep_running_within_the_grace_stops_nothing_and_is_audited(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")
    async with start_adjutant({**POLICY_ENV, **launch_env()}) as bot:
        job_id, card = await idle_job(bot, discord_standin, wandb_standin, out_dir)
        keep = button(discord_standin, card, "keep")
        kept = await answer_to(discord_standin, card, keep, "admin")
        assert f"Job `{job_id}` keeps running, by admin" in kept["content"]
        await eventually(lambda: "kept running by admin" in current(discord_standin, card)["embeds"][0]["description"])
        edited = current(discord_standin, card)
        assert "unless someone presses" not in edited["embeds"][0]["description"]
        assert not any(b.startswith("adjutant:alert:keep:") for b in discord_standin.buttons(edited)), "no Keep"
        assert any(b.startswith("adjutant:alert:stop:") for b in discord_standin.buttons(edited)), "Stop stays"

        actions = bot.get_cog("Experiments").alert_actions
        assert await actions.act_due(utcnow() + dt.timedelta(minutes=5)) == 0, "kept: no cancel"
        scheduler = bot.get_cog("Experiments").scheduler
        job = await scheduler.get(job_id)
        assert job is not None and job.state == "running" and job.cancelled_by is None
        with sqlite3.connect(bot.settings.state_dir / "adjutant.sqlite3") as db:
            audited = db.execute("SELECT action, target FROM audit WHERE action='kept running'").fetchall()
        assert audited == [("kept running", job_id)]
        assert policy_notes(discord_standin, job_id) == []
        await scheduler.cancel(job_id, "test")


async def test_a_bot_killed_during_the_grace_stops_the_job_once_at_the_original_deadline(
    tmp_path, out_dir, wandb_standin: WandbStandIn
) -> None:
    """SIGKILL the standalone bot while a policy's stop is pending; the restarted bot stops the job once, at the
    deadline the card gave, and tells it once."""
    import os

    from tests.cogs.conftest import TOKEN
    from tests.cogs.test_experiments import SCRIPT
    from tests.conftest import start_standalone, subprocess_env

    state = tmp_path / "state"
    wandb_env = {k: os.environ[k] for k in ("WANDB_BASE_URL", "WANDB_API_KEY", "WANDB_DIR", "WANDB_CONFIG_DIR")}
    async with DiscordStandIn(token=TOKEN) as standin:
        env = subprocess_env(
            standin,
            {
                **wandb_env,
                **POLICY_ENV,
                "ADJUTANT_ALERT_POLICY": "gpu-idle=stop after 0.25",  # 15 s of grace
                "ADJUTANT_STATE_DIR": str(state),
                "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT),
                "ADJUTANT_CANCEL_GRACE_SECONDS": "1",
                "ADJUTANT_TEST_OUT": str(out_dir),
                "HOME": str(tmp_path),
            },
        )

        def job_row(job_id: str) -> tuple[str, str | None, str | None]:
            with sqlite3.connect(state / "adjutant.sqlite3") as db:
                return db.execute(
                    "SELECT state, cancel_requested_at, cancelled_by FROM jobs WHERE id=?", (job_id,)
                ).fetchone()

        bot = await start_standalone(standin, env, tmp_path)
        try:
            await standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=30)  # the connect summary
            job_id = await launch(standin, '{"sleep": 120}')
            await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
            run_id = received(out_dir, job_id)["env"]["WANDB_RUN_ID"]
            wandb_standin.create_run(run_id, display_name="idle-run", state="running", summary={"_step": 1})
            wandb_standin.update_run(run_id, system={"system.gpu.0.gpu": 0})
            await eventually(lambda: bool(cards(standin, IDLE_CARD)), timeout=40)
            card = cards(standin, IDLE_CARD)[0]
            deadline = re.search(r"stopped <t:(\d+):R>", card["embeds"][0]["description"])
            assert deadline is not None
            due = dt.datetime.fromtimestamp(int(deadline[1]), dt.UTC)
            bot.kill()  # kill -9 during the grace
            await bot.wait()
            assert utcnow() < due - dt.timedelta(seconds=3), "killed well within the grace"
            bot = await start_standalone(standin, env, tmp_path)
            while utcnow() < due - dt.timedelta(seconds=1):
                assert job_row(job_id)[:2] == ("running", None), "nothing before the original deadline"
                await asyncio.sleep(0.2)
            await eventually(lambda: job_row(job_id)[1] is not None, timeout=15)
            requested = dt.datetime.fromisoformat(str(job_row(job_id)[1]))
            assert due <= requested.astimezone(dt.UTC) + dt.timedelta(seconds=1) <= due + dt.timedelta(seconds=10)
            assert str(job_row(job_id)[2]).startswith("Adjutant (policy: GPU idle for ")
            await eventually(lambda: bool(policy_notes(standin, job_id)), timeout=15)
            await wait_report(standin, job_id, timeout=30)
            await asyncio.sleep(3)
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
    assert len(policy_notes(standin, job_id)) == 1, "told once"
    assert len(cards(standin, IDLE_CARD)) == 1, "one card, not again after the restart"
    with sqlite3.connect(state / "adjutant.sqlite3") as db:
        assert db.execute("SELECT action_state FROM alerts WHERE kind='gpu-idle'").fetchall() == [("done",)]
