"""What watch rules over history cost a poll: 10 running runs that log a value between every two polls, with 5 rules on
history (avg, max, change, plateau, diverging) and one z-score rule, against the W&B stand-in (tests/standins),
side by side in one run with: no rules, the same rules read on every poll (ADJUTANT_HISTORY_POLLS=1), and the naive
way (each rule asking each run's history with the wandb client's ``run.history`` every poll).

Per configuration: W&B requests per poll while the runs log, per idle poll (nobody logs), sampled-history requests
and reads of one run's history per poll, and wall time per poll.

    python benchmarks/rules_benchmark.py [--runs 10] [--polls 30]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adjutant.alerts import parse_rule  # noqa: E402
from adjutant.settings import RUN_EVENTS  # noqa: E402
from adjutant.store import Store  # noqa: E402
from adjutant.wandb_source import WandbSource  # noqa: E402
from adjutant.watcher import Watcher, WatchRules  # noqa: E402
from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402

HISTORY_RULES = (
    "avg(loss, 5) > 9",
    "max(val_loss, 10) > 9",
    "change(loss, 10, 50) > 25%",
    "plateau(val_loss, 5)",
    "diverging(loss, 3)",
)
SCORE_RULE = "zscore(val_loss, 30) < -3"


async def measure(
    server: WandbStandIn, folder: Path, *, runs: int, polls: int, rules: bool, history_polls: int, naive: bool = False
) -> dict[str, float]:
    watch = WatchRules(
        notify=frozenset(RUN_EVENTS),
        stall_after=dt.timedelta(minutes=30),
        metric="loss",
        history_polls=history_polls,
    )
    store = Store(folder / "adjutant.sqlite3")
    source = WandbSource("team", "proj", timeout=20)
    watcher = Watcher(store, source, watch, timeout=20)
    server.create_runs(40, summary={"loss": 1.0, "val_loss": 1.2})  # finished runs: the z-score's baseline
    await watcher.poll_once()  # baseline
    if rules and not naive:
        for text in (*HISTORY_RULES, SCORE_RULE):
            store.add_rule(watcher.project_key, parse_rule(text), 1, "bench")
    names = [server.create_run(state="running") for _ in range(runs)]

    def log_all(count: int) -> None:
        for name in names:
            server.log(name, [{"loss": 2.0 - i / 1000, "val_loss": 2.1 - i / 1000} for i in range(count)])
            server.update_run(name, summary={})  # the heartbeat that comes with logging

    async def naive_reads() -> None:  # what each rule would ask without the watcher's schedule and batching
        for name in names:
            for text in HISTORY_RULES:
                metric = parse_rule(text).term.metric
                await watcher.ask(source.history, name, metric, 100)

    log_all(100)
    await watcher.poll_once()  # the runs are seen (and their history read) once
    if naive:
        await naive_reads()
    server.reset_counts()
    times = []
    for _ in range(polls):
        log_all(1)
        started = time.perf_counter()
        await watcher.poll_once()
        if naive:
            await naive_reads()
        times.append(time.perf_counter() - started)
    logging_requests = server.counts["__total__"] / polls
    history_requests = server.counts["SampledHistories"] / polls
    run_reads = sum(
        1 for operation, _, variables in server.requests if operation == "SampledHistories" for key in variables
        if key.startswith("n")
    ) / polls  # fmt: skip
    if naive:
        run_reads = server.counts["RunSampledHistory"] / polls
    server.reset_counts()
    for _ in range(polls):
        await watcher.poll_once()
        if naive:
            await naive_reads()
    idle_requests = server.counts["__total__"] / polls
    await watcher.close()
    store.close()
    return {
        "logging": logging_requests,
        "idle": idle_requests,
        "history": history_requests,
        "run_reads": run_reads,
        "poll_ms": statistics.median(times) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args()
    configurations = {  # (rules, ADJUTANT_HISTORY_POLLS, naive)
        "no rules": (False, 6, False),
        "5 history rules + 1 z-score, ADJUTANT_HISTORY_POLLS=6 (default)": (True, 6, False),
        "the same, ADJUTANT_HISTORY_POLLS=1": (True, 1, False),
        "naive: run.history per rule and run, every poll": (True, 6, True),
    }
    results = {}
    for label, (rules, history_polls, naive) in configurations.items():
        with tempfile.TemporaryDirectory() as folder, WandbStandIn(entity="team", project="proj") as server:
            os.environ.update(
                WANDB_BASE_URL=server.base_url,
                WANDB_API_KEY=API_KEY,
                WANDB_DIR=str(Path(folder) / "wandb"),
                WANDB_CONFIG_DIR=str(Path(folder) / "wandb-config"),
            )
            results[label] = await measure(
                server,
                Path(folder),
                runs=args.runs,
                polls=args.polls,
                rules=rules,
                history_polls=history_polls,
                naive=naive,
            )
    print(f"{args.runs} running runs logging between polls, {args.polls} polls each")
    print(
        "| configuration | requests per poll (runs logging) | requests per idle poll | sampled-history requests"
        " per poll | run histories read per poll | ms per poll |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        print(
            f"| {label} | {r['logging']:.2f} | {r['idle']:.2f} | {r['history']:.2f} | {r['run_reads']:.2f} |"
            f" {r['poll_ms']:.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
