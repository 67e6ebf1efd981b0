"""``$agents``: W&B's own controller on the team's queue. A 3-cell grid made with ``wandb.sweep`` against the W&B
stand-in's controller, ``$agents <id> 2``: each agent is an Adjutant job running ``wandb agent --count 1``, which runs
the sweep's program with ``${args_json}``; 3 trials, never more than 2 at once, each trial's script got one JSON
argument equal to what W&B handed out, each reported once, and the agents stop when the grid is exhausted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import wandb

from tests.cogs.test_sweeps import (
    QUADRATIC,
    card,
    card_messages,
    card_state,
    ended_messages,
    loop_turns,
    most_at_once,
    out,  # noqa: F401  # the fixture
    records,
    sweep_env,
)
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


@pytest.mark.timeout(300)
@pytest.mark.slow  # each trial costs W&B's agent one 5 s poll cycle at least: about 40 s
async def test_agents_2_on_a_3_cell_grid_runs_3_trials_at_most_2_at_once_and_stops(
    start_adjutant,
    discord_standin: DiscordStandIn,
    wandb_standin: WandbStandIn,
    out: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANDB_ENTITY", "team")  # wandb.sweep() sets them in os.environ: put back after the test
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = {
        "method": "grid",
        "program": str(QUADRATIC),
        "command": ["${env}", "${interpreter}", "${program}", "${args_json}"],
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [0.1, 0.5, 0.9]}, "steps": {"value": 3}, "step_seconds": {"value": 1.0}},
    }
    wandb_id = await asyncio.to_thread(wandb.sweep, config, entity="team", project="proj")
    async with start_adjutant(sweep_env(ADJUTANT_JOB_ENV="ADJUTANT_TEST_OUT")) as bot:
        count = len(discord_standin.sent())
        await discord_standin.post(f"$agents {wandb_id} 2 --time 10m")
        await eventually(lambda: bool(card_messages(discord_standin)), timeout=15)
        sweep_id = card_messages(discord_standin)[0]["embeds"][0]["title"].split("Sweep ")[1].split(" ·")[0]
        started = await discord_standin.wait_for_message(lambda m: "Agents for" in (m["content"] or ""), after=count)
        await eventually(lambda: card_state(discord_standin, sweep_id) == "finished", timeout=150, every=0.5)
        await eventually(lambda: bool(ended_messages(discord_standin, sweep_id)), timeout=15)
        scheduler = bot.get_cog("Experiments").scheduler
        await loop_turns(bot, 3)  # nothing more comes
        jobs = [j for j in await scheduler.recent(50) if j.sweep_id == sweep_id]
        await eventually(lambda: all(j.reported for j in jobs) if jobs else False, timeout=30)
    assert f"`team/proj/{wandb_id}`" in started["content"] and sweep_id in started["content"]
    handed = wandb_standin.handed_out(wandb_id)
    ran = records(out)
    assert len(handed) == 3 and len(ran) == 3, (handed, ran)
    assert sorted(json.dumps(h, sort_keys=True) for h in handed) == sorted(
        json.dumps(json.loads(r["argv"][0]), sort_keys=True) for r in ran
    ), "each trial's script got one JSON argument: what W&B handed out"
    assert all(len(r["argv"]) == 1 for r in ran)
    assert sorted(json.loads(r["argv"][0])["x"] for r in ran) == [0.1, 0.5, 0.9]
    assert most_at_once(ran) <= 2
    assert all(j.state in ("succeeded", "failed", "cancelled") for j in jobs), "no agent left running"
    assert 3 <= len(jobs) <= 5, "one job a trial, and at most the 2 agents that found nothing more"
    assert all(j.script.endswith("agent_job.py") for j in jobs)
    sweep = wandb_standin.sweep(wandb_id)
    assert len(wandb_standin.sweep_runs(wandb_id)) == 3 and sweep.state in ("RUNNING", "FINISHED")
    said = card(discord_standin, sweep_id)["embeds"][0]["description"]
    done = sum(j.state == "succeeded" for j in jobs)
    assert said.startswith(f"Agent jobs: **{done}** done · **0** running · **0** queued"), said
    for job in jobs:  # each agent's end report, once
        reports = [
            m for m in discord_standin.sent()
            if m["embeds"] and f"Experiment {job.id} " in m["embeds"][0].get("title", "")
            and not m["embeds"][0]["title"].startswith("🧪")
        ]  # fmt: skip
        assert len(reports) == 1, (job.id, job.state, len(reports))
