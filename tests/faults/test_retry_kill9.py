"""Fault: the bot is killed with SIGKILL around a job's failure and its retry. The job's supervisor dies while the
bot is down; the restarted bot retries the job once; killed again right after that decision and restarted, it
still has exactly one retry, one note and one end report."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

from tests.cogs.conftest import TOKEN
from tests.cogs.test_experiments import SCRIPT, launch, pid_alive, received, report, wait_report
from tests.conftest import eventually, start_standalone, subprocess_env
from tests.standins.discord_standin import DiscordStandIn


async def test_kill_9_between_a_failure_and_its_retry_still_retries_exactly_once(tmp_path: Path, out_dir: Path) -> None:
    state = tmp_path / "state"
    database = state / "adjutant.sqlite3"
    async with DiscordStandIn(token=TOKEN) as standin:
        env = subprocess_env(
            standin,
            {
                "ADJUTANT_STATE_DIR": str(state),
                "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT),
                "ADJUTANT_TEST_OUT": str(out_dir),
                "HOME": str(tmp_path),
            },
        )

        async def start_bot() -> asyncio.subprocess.Process:
            return await start_standalone(standin, env, tmp_path)

        def row() -> tuple[str, int, int | None]:
            with sqlite3.connect(database, timeout=30) as db:
                return db.execute("SELECT state, attempt, supervisor_pid FROM jobs WHERE id=?", (job_id,)).fetchone()

        bot = await start_bot()
        try:
            job_id = await launch(standin, '{"sleep": 6}')
            await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
            first = received(out_dir, job_id)
            (out_dir / f"{job_id}.json").unlink()
            bot.kill()  # the bot dies first ...
            await bot.wait()
            supervisor = row()[2]
            assert supervisor is not None
            os.kill(supervisor, signal.SIGKILL)  # ... then the job's supervisor: the failure happens while it is down
            bot = await start_bot()
            await eventually(lambda: row()[1] == 2, timeout=30)  # the restarted bot decided to retry
            bot.kill()  # killed right after the decision
            await bot.wait()
            bot = await start_bot()
            await wait_report(standin, job_id, timeout=60)
            await asyncio.sleep(3)
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
                await asyncio.wait_for(bot.wait(), 20)
    assert row()[:2] == ("succeeded", 2), "exactly one retry, and it succeeded"
    notes = [e["title"] for m in standin.sent() for e in m["embeds"] if "attempt 2 of 2" in e.get("title", "")]
    assert len(notes) == 1, notes
    assert len(report(standin, job_id)) == 1
    assert received(out_dir, job_id)["env"]["WANDB_RUN_ID"] == first["env"]["WANDB_RUN_ID"]
    assert not pid_alive(first["pid"]), "nothing of the lost attempt is left"
