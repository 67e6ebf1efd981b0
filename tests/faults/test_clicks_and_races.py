"""Faults of timing: rights revoked between a preview and the click, a double click, kill -9 right after
"Queue them", and a W&B that stalls while a launch is being answered."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.cogs.conftest import WANDB_ENV
from tests.cogs.test_experiments import SCRIPT, launch, launch_env, wait_report
from tests.conftest import eventually, subprocess_env
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

GRID = '$sweep {"lr": [0.1, 0.01, 0.001], "epochs": 1}'


async def preview_of(discord: DiscordStandIn, author: str = "teammate") -> dict:
    count = len(discord.sent())
    await discord.post(GRID, author=author)

    def is_preview(message: dict) -> bool:
        # The preview's buttons are Queue them / Never mind; a job's acknowledgement (which also has an
        # embed, and may arrive meanwhile from an earlier sweep) only has its persistent Cancel button.
        buttons = discord.buttons(message)
        return bool(message["embeds"]) and bool(buttons) and not any(b.startswith("adjutant:") for b in buttons)

    return await discord.wait_for_message(is_preview, after=count, timeout=15)


def sweep_jobs(database: Path) -> list[tuple[str, str]]:
    if not database.exists():
        return []
    with sqlite3.connect(database, timeout=30) as db:
        return db.execute("SELECT id, sweep_id FROM jobs WHERE sweep_id IS NOT NULL").fetchall()


async def test_rights_revoked_after_the_preview_are_checked_at_the_click(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    async with start_adjutant(launch_env(ADJUTANT_LAUNCH_ROLES="ml-team")) as bot:
        preview = await preview_of(discord_standin)
        discord_standin.member("teammate").roles.clear()  # an admin removes her launch role
        await discord_standin.click(preview, discord_standin.buttons(preview)[0], author="teammate")
        await eventually(lambda: len(discord_standin.interaction_responses) == 1, timeout=10)
        refusal = discord_standin.interaction_responses[0]["data"]
        await asyncio.sleep(1)
        jobs = await asyncio.to_thread(bot.get_cog("Experiments").services.jobs.recent, 10)
    assert "not allowed to launch" in refusal["content"] and refusal["flags"] & 64, "ephemeral refusal"
    assert jobs == [] and list(out_dir.iterdir()) == []


async def test_a_double_click_queues_a_sweep_once(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    async with start_adjutant(launch_env()) as bot:
        for _ in range(5):
            preview = await preview_of(discord_standin, author="admin")
            before = len(discord_standin.interaction_responses)
            button = discord_standin.buttons(preview)[0]
            await asyncio.gather(
                discord_standin.click(preview, button, author="admin"),
                discord_standin.click(preview, button, author="admin"),
            )
            await eventually(lambda n=before: len(discord_standin.interaction_responses) == n + 2, timeout=10)
            answers = [r["data"].get("content", "") for r in discord_standin.interaction_responses[before:]]
            assert sum("Queued 3 experiment(s)" in a for a in answers) == 1, answers
            assert sum("already queued" in a for a in answers) == 1, answers
        jobs = await asyncio.to_thread(bot.get_cog("Experiments").services.jobs.recent, 100)
    assert len(jobs) == 15, "3 per sweep, 5 sweeps: never 6 for one"


async def test_kill_9_right_after_queue_them_queues_all_cells_or_none(
    discord_standin: DiscordStandIn, tmp_path: Path, out_dir
) -> None:
    state = tmp_path / "state"
    database = state / "adjutant.sqlite3"
    env = subprocess_env(
        discord_standin,
        {
            "ADJUTANT_STATE_DIR": str(state),
            "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT),
            "ADJUTANT_TEST_OUT": str(out_dir),
            "HOME": str(tmp_path),
        },
    )
    outcomes = []
    previews = []
    for round_ in range(4):
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "adjutant", cwd=tmp_path, env=env, stderr=subprocess.DEVNULL
        )
        try:
            await eventually(lambda n=round_: len(discord_standin.identifies) == n + 1, timeout=20)
            preview = await preview_of(discord_standin, author="admin")
            before = len(sweep_jobs(database))
            await discord_standin.click(preview, discord_standin.buttons(preview)[0], author="admin")
            await asyncio.sleep(random.uniform(0.0, 0.05))  # the worst moment is somewhere in here
        finally:
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
        queued = len(sweep_jobs(database)) - before
        outcomes.append(queued)
        previews.append(preview)
        assert queued in (0, 3), f"a sweep of 3 was cut to {queued} jobs by kill -9"
    # And after a restart, what was queued runs (and nothing else appears), and each preview whose sweep
    # was queued says so (the click's own answer may have been lost with the process).
    bot = await asyncio.create_subprocess_exec(sys.executable, "-m", "adjutant", cwd=tmp_path, env=env)
    try:
        total = len(sweep_jobs(database))
        await eventually(lambda: len(list(out_dir.glob("*.json"))) == total, timeout=60)
        told = [p for p, n in zip(previews, outcomes, strict=True) if n == 3]
        await eventually(lambda: all((p.get("content") or "").startswith("Queued 3") for p in told), timeout=30)
    finally:
        bot.terminate()
        await bot.wait()
    assert len(sweep_jobs(database)) == total == sum(outcomes)


async def test_a_stalled_w_and_b_never_delays_a_launch(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    """A job's end report waits for W&B (hung for 20 s); meanwhile /experiment is answered in time."""
    monkeypatch.delenv("WANDB_SERVICE")
    async with start_adjutant({**launch_env(), **WANDB_ENV}):
        await eventually(lambda: len(discord_standin.sent()) >= 1, timeout=20)  # connect summary
        first = await launch(discord_standin, '{"sleep": 1}')
        wandb_standin.hang(20, seconds=20)  # every W&B request now hangs 20 s
        await asyncio.sleep(2.5)  # the job has ended; its report is waiting for W&B
        started = time.monotonic()
        interaction = await discord_standin.slash("experiment", {"hyperparameters": '{"epochs": 1}'})
        await eventually(lambda: bool(discord_standin.responses(interaction)), timeout=10)
        answered = time.monotonic() - started
        wandb_standin.clear_faults()
        await wait_report(discord_standin, first, timeout=60)
    assert answered < 3.0, f"the slash command was answered after {answered:.1f}s (Discord allows 3 s)"
    response = discord_standin.responses(interaction)[0]
    assert "Experiment" in response["embeds"][0]["title"]


async def test_a_cancel_right_after_the_launch_is_never_lost(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    """Cancels that race the job's start (the supervisor recording 'running' as the bot records 'cancelling')."""
    async with start_adjutant(launch_env(ADJUTANT_MAX_CONCURRENT="8")):
        ids = []
        for _ in range(6):
            job_id = await launch(discord_standin, '{"sleep": 60}')
            await discord_standin.post(f"$cancel {job_id}")
            ids.append(job_id)
        for job_id in ids:
            done = await wait_report(discord_standin, job_id, timeout=30)
            assert done["embeds"][0]["title"].endswith(f"{job_id} cancelled"), done["embeds"][0]["title"]
