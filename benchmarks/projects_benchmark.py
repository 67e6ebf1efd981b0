"""One Adjutant for 10 W&B projects against 10 separate single-project bots, side by side in one run.

The W&B stand-in (tests/standins) holds 10 projects of 1,000 runs each (5 running per project). Both setups do the
same thing: a silent baseline of every project, then idle polls of all 10 projects every cycle. Measured per setup:
W&B requests per idle cycle, the event loop's worst stall during the cycles (a lag probe ticking every 5 ms), the
time a cycle takes, and the resident memory of all the processes involved (with their wandb-core helpers).

    python benchmarks/projects_benchmark.py [--projects 10] [--runs 1000] [--cycles 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adjutant.settings import RUN_EVENTS  # noqa: E402
from adjutant.store import Store  # noqa: E402
from adjutant.wandb_source import WandbSource  # noqa: E402
from adjutant.watcher import Watcher, WatchRules  # noqa: E402
from benchmarks.poll_benchmark import LagProbe  # noqa: E402
from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402

RULES = WatchRules(notify=frozenset(RUN_EVENTS), stall_after=dt.timedelta(minutes=30), metric="loss")


def family_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants (MB)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid and child not in family]
        family.update(children)
        frontier += children
    total = 0
    for pid in family:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def run_watchers(
    projects: list[str], folder: Path, cycles: int, interval: float, ready: Callable[[], Awaitable[None]]
) -> dict[str, float]:
    """What one bot does: one watcher per project (each its own W&B thread), polled concurrently each cycle.
    ``ready()`` is awaited between the setup (baselines, first polls) and the idle cycles."""
    store = Store(folder / "adjutant.sqlite3")
    watchers = [Watcher(store, WandbSource("team", p, timeout=30), RULES, timeout=30) for p in projects]
    await asyncio.gather(*(w.poll_once() for w in watchers))  # baselines
    await asyncio.gather(*(w.poll_once() for w in watchers))  # first incremental polls
    await ready()
    times = []
    async with LagProbe() as probe:
        for _ in range(cycles):
            started = time.perf_counter()
            await asyncio.gather(*(w.poll_once() for w in watchers))
            times.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, interval - times[-1]))
        worst = probe.worst
    rss = family_rss_mb(os.getpid())
    for watcher in watchers:
        await watcher.close()
    store.close()
    return {"worst_stall_ms": worst * 1000, "cycle_ms": sorted(times)[len(times) // 2] * 1000, "rss_mb": rss}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--one-bot", nargs=2, metavar=("PROJECT", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_bot:  # a child: one single-project bot; says when its setup is done, waits for the go
        project, folder = args.one_bot

        async def ready() -> None:
            (Path(folder) / "ready").touch()
            while not (Path(folder).parent / "go").exists():  # noqa: ASYNC110 (a file from another process)
                await asyncio.sleep(0.05)

        result = await run_watchers([project], Path(folder), args.cycles, 2.0, ready)
        print(json.dumps(result))
        return
    names = [f"project{i}" for i in range(args.projects)]
    with tempfile.TemporaryDirectory() as work, WandbStandIn(entity="team", project=names[0]) as server:
        os.environ.update(
            WANDB_BASE_URL=server.base_url,
            WANDB_API_KEY=API_KEY,
            WANDB_DIR=str(Path(work) / "wandb"),
            WANDB_CONFIG_DIR=str(Path(work) / "wandb-config"),
        )
        for name in names:
            server.projects.setdefault(("team", name), {})
            server.create_runs(args.runs - 5, state="finished", project=name, summary={"loss": 1.0})
            for _ in range(5):
                server.create_run(state="running", project=name, summary={"loss": 0.5})
        results = {}

        one = Path(work) / "one"
        one.mkdir()

        async def reset() -> None:
            server.reset_counts()

        adjutant = await run_watchers(names, one, args.cycles, 2.0, reset)
        idle = server.counts["__total__"] / args.cycles
        results[f"one Adjutant, {args.projects} projects"] = {**adjutant, "idle_requests": idle}

        folders = [Path(work) / f"bot{i}" for i in range(args.projects)]
        for folder in folders:
            folder.mkdir()
        server.reset_counts()
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--one-bot",
                name,
                str(folder),
                "--cycles",
                str(args.cycles),
                stdout=subprocess.PIPE,
                env={**os.environ},
            )
            for name, folder in zip(names, folders, strict=True)
        ]
        peak = 0.0
        waits = [asyncio.create_task(child.communicate()) for child in children]
        while not all((folder / "ready").exists() for folder in folders):  # noqa: ASYNC110 (files of children)
            await asyncio.sleep(0.05)
        server.reset_counts()
        (Path(work) / "go").touch()
        while not all(w.done() for w in waits):
            peak = max(peak, sum(family_rss_mb(child.pid) for child in children if child.returncode is None))
            await asyncio.sleep(0.5)
        outputs = [json.loads((await w)[0].decode().strip().splitlines()[-1]) for w in waits]
        idle_bots = server.counts["__total__"] / args.cycles
        results[f"{args.projects} single-project bots"] = {
            "idle_requests": idle_bots,
            "worst_stall_ms": max(o["worst_stall_ms"] for o in outputs),
            "cycle_ms": max(o["cycle_ms"] for o in outputs),
            "rss_mb": peak,
        }
    print(f"{args.projects} projects x {args.runs} runs (5 running each), {args.cycles} idle cycles")
    print("| setup | W&B requests per idle cycle | worst event-loop stall (ms) | cycle (ms, median) | memory (MB) |")
    print("|---|---:|---:|---:|---:|")
    for label, r in results.items():
        print(
            f"| {label} | {r['idle_requests']:.1f} | {r['worst_stall_ms']:.1f} | {r['cycle_ms']:.0f} |"
            f" {r['rss_mb']:.0f} |"
        )
    one_bot, many = results.values()
    print(
        f"ratio (one Adjutant / separate bots): requests {one_bot['idle_requests'] / many['idle_requests']:.2f}x,"
        f" memory {one_bot['rss_mb'] / many['rss_mb']:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
