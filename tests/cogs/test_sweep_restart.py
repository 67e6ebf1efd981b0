"""Exactly once across a crash: the bot (its own process) is killed with SIGKILL after 3 of a random sweep's 6 trials
and started again; the sweep goes on from what is recorded (the optimiser is rebuilt from the trials table): 6 trials
in all, none twice, one W&B sweep, the same card edited to its end."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.cogs.conftest import TOKEN
from tests.cogs.test_sweeps import (  # noqa: F401  # out: the fixture
    QUADRATIC,
    card,
    card_state,
    ended_messages,
    out,
    records,
    start_search,
    sweep_env,
    yaml_block,
)
from tests.conftest import eventually, start_standalone, subprocess_env
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

CONFIG = yaml_block(
    """
method: random
metric: {name: loss, goal: minimize}
run_cap: 6
parameters:
  x: {distribution: uniform, min: -1.0, max: 1.0}
  steps: {value: 3}
  step_seconds: {value: 0.5}
"""
)


@pytest.mark.timeout(400)
async def test_kill_9_after_3_of_6_trials_and_a_restart_give_6_trials_none_twice(
    tmp_path: Path,
    out: Path,  # noqa: F811
    wandb_standin: WandbStandIn,
) -> None:
    state = tmp_path / "state"
    wandb_env = {k: v for k, v in os.environ.items() if k.startswith("WANDB_") and k != "WANDB_SERVICE"}
    async with DiscordStandIn(token=TOKEN) as standin:
        env = subprocess_env(
            standin,
            {
                **wandb_env,
                "WANDB_ENTITY": "team",
                "WANDB_PROJECT": "proj",
                "ADJUTANT_STATE_DIR": str(state),
                "ADJUTANT_EXPERIMENT_SCRIPT": str(QUADRATIC),
                "ADJUTANT_TEST_OUT": str(out),
                "ADJUTANT_MAX_CONCURRENT": "2",
                "HOME": str(tmp_path),
            },
        )
        bot = await start_standalone(standin, env, tmp_path)
        try:
            sweep_id = await start_search(standin, f"--parallel 1 --seed 5 {CONFIG}")
            await eventually(lambda: sum("end" in r for r in records(out)) >= 3, timeout=90, every=0.1)
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
            bot = await start_standalone(standin, env, tmp_path)
            await eventually(lambda: card_state(standin, sweep_id) == "finished", timeout=150, every=0.5)
            await eventually(lambda: bool(ended_messages(standin, sweep_id)), timeout=20)
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
                await asyncio.wait_for(bot.wait(), 20)
    with sqlite3.connect(state / "adjutant.sqlite3") as db:
        trials = db.execute("SELECT number, params, job_id FROM sweep_trials WHERE sweep_id=?", (sweep_id,)).fetchall()
        jobs = db.execute("SELECT id FROM jobs WHERE sweep_id=?", (sweep_id,)).fetchall()
    assert sorted(n for n, _, _ in trials) == [1, 2, 3, 4, 5, 6]
    assert len({p for _, p, _ in trials}) == 6, "no trial proposed twice"
    assert len(jobs) == 6 and {j for (j,) in jobs} == {j for _, _, j in trials}, "one job a trial"
    ran = records(out)
    assert len(ran) == 6 and len({r["job"] for r in ran}) == 6, "each trial ran once"
    assert sorted(json.loads(r["argv"][0])["x"] for r in ran) == sorted(json.loads(p)["x"] for _, p, _ in trials)
    assert len(wandb_standin.sweeps) == 1, "one W&B sweep across the restart"
    assert len(ended_messages(standin, sweep_id)) == 1, "told once"
    assert "**6** done" in card(standin, sweep_id)["embeds"][0]["description"], "the same card, edited to its end"


async def test_a_change_made_while_the_bot_was_down_reaches_the_same_card(
    start_adjutant,
    discord_standin: DiscordStandIn,
    wandb_standin: WandbStandIn,
    out: Path,  # noqa: F811
    base_env: dict[str, str],
) -> None:
    """The card shows what the database holds after a restart, even a change no running process ever showed."""
    grid = '{"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [0.1, 0.2, 0.3]}}}'
    async with start_adjutant(sweep_env()):
        sweep_id = await start_search(discord_standin, f"--parallel 1 {grid}")
        first = card(discord_standin, sweep_id)["id"]
    with sqlite3.connect(Path(base_env["ADJUTANT_STATE_DIR"]) / "adjutant.sqlite3") as db:
        db.execute("UPDATE sweeps SET state='paused', note='paused while the bot was down' WHERE id=?", (sweep_id,))
    async with start_adjutant(sweep_env()):
        await eventually(lambda: card_state(discord_standin, sweep_id) == "paused", timeout=20)
        now = card(discord_standin, sweep_id)
    assert now["id"] == first, "the same message, edited"
    assert "paused while the bot was down" in now["embeds"][0]["description"]
