"""Sweeps: the time from a free slot to the next trial's start, and W&B requests per trial, for the two ways a sweep
runs on the team's queue, in the same run, each a real ``python -m adjutant`` process against the Discord and W&B
stand-ins (served from this process), trials on the real wandb client (tests/scripts/quadratic.py):

- **adjutant search** (``$sweep`` with a W&B configuration): Adjutant proposes each trial as a slot frees;
- **W&B agents** (``$agents <id> 1``): each agent job runs ``wandb agent --count 1``; W&B's controller hands it the
  trial (the naive way: W&B's own agent, one 5 s poll cycle at least a trial).

One slot (``--parallel 1`` / one agent) and ``--trials`` trials of a grid. "free slot → next start" is from a trial
process's end to the next trial process's start (both written by the script itself); W&B requests are the W&B
stand-in's count over the whole sweep, split into the bot's own (the sweep service: create, state, values, steps,
the W&B sweep read; run reporting: polls every 5 s and end-report lookups), the trial processes' wandb clients, and
W&B's agents' own (registration, heartbeats, their start-up reads).

    .venv/bin/python benchmarks/sweep_benchmark.py [--trials 8]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.launch_benchmark import Bot, until  # noqa: E402
from tests.standins.discord_standin import DiscordStandIn  # noqa: E402
from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402

QUADRATIC = ROOT / "tests" / "scripts" / "quadratic.py"
#: What a trial process's wandb client sends (wandb.init, log, finish).
TRIAL_OPERATIONS = {
    "UpsertBucket",
    "CreateRunFiles",
    "file_stream",
    "RunResumeStatus",
    "OrganizationCoreWeaveOrganizationID",
}
#: What each `wandb agent` process sends: its registration and heartbeats, and at its start one Viewer and one
#: SweepWithRuns (to read the sweep's command); those two are counted once per CreateAgent.
AGENT_OPERATIONS = {"CreateAgent", "Heartbeat"}
AGENT_START = ("Viewer", "SweepWithRuns")


def split(counts: Counter[str]) -> tuple[int, int, int]:
    """(the bot's, the trials', the agents') requests: the bot's are the sweep service's (create, state, reads of
    values, steps and the W&B sweep) and run reporting's (polls, end-report lookups)."""
    trial = sum(n for op, n in counts.items() if op in TRIAL_OPERATIONS)
    agents = sum(n for op, n in counts.items() if op in AGENT_OPERATIONS)
    agents += sum(min(counts[op], counts["CreateAgent"]) for op in AGENT_START)
    total = sum(n for op, n in counts.items() if op != "__total__")  # file_stream is not in the stand-in's total
    return total - trial - agents, trial, agents


def card_state(standin: DiscordStandIn) -> str:
    for message in standin.sent():
        title = message["embeds"][0].get("title", "") if message["embeds"] else ""
        if " Sweep sweep-" in title:
            return title.rsplit("· ", 1)[-1]
    return ""


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in out.glob("*.json")]


def gaps(found: list[dict[str, Any]]) -> list[float]:
    """From each trial's end to the next trial's start (one slot: the trials run one after the other)."""
    ordered = sorted(found, key=lambda r: r["start"])
    return [b["start"] - a["end"] for a, b in itertools.pairwise(ordered) if "end" in a]


async def one(mode: str, trials: int, work: Path) -> dict[str, Any]:
    out = work / f"out-{mode}"
    out.mkdir()
    values = [round(0.1 * i, 2) for i in range(trials)]
    with WandbStandIn(entity="team", project="proj") as wandb:
        env = {
            "ADJUTANT_STATE_DIR": str(work / f"state-{mode}"),
            "ADJUTANT_EXPERIMENT_SCRIPT": str(QUADRATIC),
            "ADJUTANT_MAX_CONCURRENT": "4",
            "ADJUTANT_TEST_OUT": str(out),
            "ADJUTANT_POLL_SECONDS": "5",
            "WANDB_MODE": "online",
            "WANDB_SILENT": "true",
            "WANDB_BASE_URL": wandb.base_url,
            "WANDB_API_KEY": API_KEY,
            "WANDB_ENTITY": "team",
            "WANDB_PROJECT": "proj",
            "WANDB_DIR": str(work / f"wandb-{mode}"),
            "WANDB_CONFIG_DIR": str(work / "wandb-config"),
        }
        prefix = f"{Path(sys.executable).parent}{os.pathsep}"  # the agents' ${interpreter}: this venv's python
        async with DiscordStandIn() as standin, Bot(standin, None, env, path_prefix=prefix):
            await until(lambda: standin.connected.is_set(), timeout=60)
            await asyncio.sleep(3)
            wandb.reset_counts()
            start = time.perf_counter()
            if mode == "search":
                grid = json.dumps({"x": values})
                count = len(standin.sent())
                await standin.post(f"$sweep --parallel 1 {grid}")
                await until(lambda: any(standin.buttons(m) for m in standin.sent()[count:]), timeout=30)
                preview = next(m for m in standin.sent()[count:] if standin.buttons(m))
                await standin.click(preview, standin.buttons(preview)[0])
            else:
                config = {
                    "method": "grid",
                    "program": str(QUADRATIC),
                    "command": ["${env}", "${interpreter}", "${program}", "${args_json}"],
                    "metric": {"name": "loss", "goal": "minimize"},
                    "parameters": {"x": {"values": values}},
                }
                sweep = wandb.create_sweep(config)
                await standin.post(f"$agents team/proj/{sweep} 1")
            await until(lambda: card_state(standin) == "finished", timeout=60 + 30 * trials)
            total = time.perf_counter() - start
            counts = Counter(wandb.counts)
    found = records(out)
    if len(found) != trials:
        raise AssertionError(f"{mode}: {len(found)} trials ran, not {trials}")
    bot, trial, agents = split(counts)
    return {
        "gaps": gaps(found), "total": total, "bot": bot / trials, "trial": trial / trials, "agents": agents / trials,
        "counts": counts,
    }  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {mode: await one(mode, args.trials, Path(tmp)) for mode in ("search", "agents")}
    print(f"{args.trials} trials, one slot\n")
    print("| mode | free slot → next trial start, median (min-max) s | sweep wall s | W&B requests / trial: bot | "
          "the trial's wandb | W&B's agent |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode, found in results.items():
        spread = found["gaps"]
        label = "adjutant search" if mode == "search" else "W&B agents"
        print(
            f"| {label} | {statistics.median(spread):.2f} ({min(spread):.2f}-{max(spread):.2f}) | {found['total']:.1f}"
            f" | {found['bot']:.1f} | {found['trial']:.1f} | {found['agents']:.1f} |"
        )
    for mode, found in results.items():
        ops = ", ".join(f"{op} {n}" for op, n in sorted(found["counts"].items()) if op != "__total__")
        print(f"\n{mode}: {ops}")


if __name__ == "__main__":
    asyncio.run(main())
