"""Fault: the bot is killed with SIGKILL between a preemption's signal and the victim's re-queue. The victim exits
while the bot is down; the restarted bot re-queues it once; killed again right after that and restarted, it still has
exactly one re-queue (attempt 2, the same W&B run), one note in each thread, and no failure or retry reported."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from tests.cogs.conftest import TOKEN
from tests.cogs.test_experiments import SCRIPT, launch, report, wait_report
from tests.cogs.test_gpu_preemption import events, kinds
from tests.conftest import eventually, start_standalone, subprocess_env
from tests.standins.discord_standin import DiscordStandIn


async def test_kill_9_between_the_signal_and_the_requeue_still_requeues_exactly_once(
    tmp_path: Path, out_dir: Path
) -> None:
    state = tmp_path / "state"
    database = state / "adjutant.sqlite3"
    async with DiscordStandIn(token=TOKEN) as standin:
        env = subprocess_env(
            standin,
            {
                "ADJUTANT_STATE_DIR": str(state),
                "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT),
                "ADJUTANT_TEST_OUT": str(out_dir),
                "ADJUTANT_GPUS": "0",
                "ADJUTANT_PREEMPT_GRACE_SECONDS": "5",
                "ADJUTANT_RETRIES": "0",
                "HOME": str(tmp_path),
            },
        )

        async def start_bot() -> asyncio.subprocess.Process:
            return await start_standalone(standin, env, tmp_path)

        def row(job_id: str) -> tuple[str, int, str | None]:
            with sqlite3.connect(database, timeout=30) as db:
                return db.execute("SELECT state, attempt, preempted_at FROM jobs WHERE id=?", (job_id,)).fetchone()

        bot = await start_bot()
        try:
            low = await launch(standin, '--priority low --preemptible {"sleep": 4, "usr1": "exit", "usr1_delay": 2}')
            await eventually(lambda: kinds(out_dir, low) == ["start"], timeout=15)
            high = await launch(standin, '--priority high {"sleep": 1}')
            await eventually(lambda: "usr1" in kinds(out_dir, low), timeout=10)
            assert row(low)[2] is not None, "the decision was recorded before the signal"
            bot.kill()  # between the signal and the re-queue: the victim exits while the bot is down
            await bot.wait()
            await eventually(lambda: "checkpointed" in kinds(out_dir, low), timeout=10)
            bot = await start_bot()
            await eventually(lambda: row(low)[1] == 2, timeout=30)  # the restarted bot re-queued it
            bot.kill()  # killed right after that decision
            await bot.wait()
            bot = await start_bot()
            await wait_report(standin, high, timeout=30)
            await wait_report(standin, low, timeout=60)  # attempt 2 ran to its end
            await asyncio.sleep(2)
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
                await asyncio.wait_for(bot.wait(), 20)
    assert row(low)[:2] == ("succeeded", 2), "exactly one re-queue, and attempt 2 ran"
    starts = [run for what, _, run in events(out_dir, low) if what == "start"]
    assert len(starts) == 2 and starts[0] == starts[1], "the same W&B run"
    sent = [e.get("title", "") for m in standin.sent() for e in m["embeds"]]
    assert len([t for t in sent if t.startswith(f"⏏️ Job {low} preempted by {high}")]) == 1
    assert len([t for t in sent if t.startswith(f"⏏️ Job {high} preempts {low}")]) == 1
    assert not [t for t in sent if t.startswith(f"🔁 Job {low}")], "not a retry"
    assert len(report(standin, low)) == 1, "one end report: attempt 2's"
