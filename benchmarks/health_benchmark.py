"""What run health costs a poll: 50 running runs, with and without 20 watch rules (plus NaN, no-progress and GPU
idle checks), side by side in one run against the W&B stand-in (tests/standins).

Per configuration: W&B requests per idle poll, per poll in which 5 runs cross a rule, and wall time per poll.
The checks read only what the poll already returns, so the request counts must be equal.

    python benchmarks/health_benchmark.py [--runs 50] [--rules 20] [--polls 10]
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
from adjutant.runs import GpuIdleRule  # noqa: E402
from adjutant.settings import RUN_EVENTS  # noqa: E402
from adjutant.store import Store  # noqa: E402
from adjutant.wandb_source import WandbSource  # noqa: E402
from adjutant.watcher import Watcher, WatchRules  # noqa: E402
from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402


async def measure(server: WandbStandIn, folder: Path, *, runs: int, rules: int, polls: int) -> dict[str, float]:
    health = rules > 0
    watch = WatchRules(
        notify=frozenset(RUN_EVENTS),
        stall_after=dt.timedelta(minutes=30),
        metric="loss",
        nan_alerts=health,
        gpu_idle=GpuIdleRule(dt.timedelta(minutes=10)) if health else None,
    )
    store = Store(folder / "adjutant.sqlite3")
    watcher = Watcher(store, WandbSource("team", "proj", timeout=20), watch, timeout=20)
    await watcher.poll_once()  # baseline
    for index in range(rules):
        store.add_rule(watcher.project_key, parse_rule(f"metric_{index % 10} > {100 + index}"), 1, "bench")
    names = [
        server.create_run(
            state="running",
            summary={"_step": 1, "loss": 1.0, **{f"metric_{i}": float(i) for i in range(10)}},
        )
        for _ in range(runs)
    ]
    for name in names:
        server.update_run(name, system={"system.gpu.0.gpu": 80.0})
    await watcher.poll_once()  # the runs are seen once
    server.reset_counts()
    times = []
    for _ in range(polls):
        started = time.perf_counter()
        await watcher.poll_once()
        times.append(time.perf_counter() - started)
    idle_requests = server.counts["__total__"] / polls
    for name in names[:5]:  # 5 runs cross a rule: the alerts are recorded, still without another request
        server.update_run(name, summary={"metric_0": 1e6})
    server.reset_counts()
    queued = await watcher.poll_once()
    crossing_requests = server.counts["__total__"]
    await watcher.close()
    store.close()
    return {
        "idle_requests": idle_requests,
        "crossing_requests": crossing_requests,
        "queued": queued,
        "poll_ms": statistics.median(times) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--polls", type=int, default=10)
    args = parser.parse_args()
    results = {}
    configurations = (("without rules or health checks", 0), (f"with {args.rules} rules + health checks", args.rules))
    for label, rules in configurations:
        with tempfile.TemporaryDirectory() as folder, WandbStandIn(entity="team", project="proj") as server:
            os.environ.update(
                WANDB_BASE_URL=server.base_url,
                WANDB_API_KEY=API_KEY,
                WANDB_DIR=str(Path(folder) / "wandb"),
                WANDB_CONFIG_DIR=str(Path(folder) / "wandb-config"),
            )
            results[label] = await measure(server, Path(folder), runs=args.runs, rules=rules, polls=args.polls)
    print(f"{args.runs} running runs, {args.polls} polls each")
    print("| poller | requests per idle poll | requests when 5 runs cross a rule | alerts queued | ms per poll |")
    print("|---|---:|---:|---:|---:|")
    for label, r in results.items():
        print(
            f"| {label} | {r['idle_requests']:.1f} | {r['crossing_requests']:.0f} | {r['queued']:.0f} |"
            f" {r['poll_ms']:.1f} |"
        )
    base, health = results.values()
    print(
        f"ratio (with / without): requests {health['idle_requests'] / base['idle_requests']:.2f}x,"
        f" time {health['poll_ms'] / base['poll_ms']:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
