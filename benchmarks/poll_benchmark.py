"""Adjutant's W&B poller against the original Adjutant's naive one, side by side in one run.

Seeds the W&B stand-in (tests/standins) with 100, 1,000 and 10,000 runs and measures, per poller:
W&B requests per idle poll, requests per poll when 10 runs changed, the longest event-loop stall
during a poll (a lag probe ticking every 5 ms), and wall time per poll.

The naive poller is the original Adjutant's: list every run of the project (wandb's defaults:
per_page=50, lazy) on the event loop, and compare states with the previous listing.

    python benchmarks/poll_benchmark.py [--sizes 100 1000 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from adjutant.settings import Settings  # noqa: E402
from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402


class LagProbe:
    """Measures the longest gap between ticks of a 5 ms sleep loop: how long the event loop was blocked."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            now = loop.time()
            self.worst = max(self.worst, now - last - 0.005)
            last = now

    async def __aenter__(self) -> LagProbe:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.02)
        self.worst = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.02)
        assert self._task is not None
        self._task.cancel()


class NaivePoller:
    """The original Adjutant: every cycle, list all runs (on the event loop) and diff their states."""

    def __init__(self, path: str) -> None:
        import wandb

        self.api = wandb.Api(timeout=20)
        self.path = path
        self.states: dict[str, str] = {}

    async def poll_once(self) -> int:
        self.api.flush()
        runs = list(self.api.runs(self.path))
        changed = sum(1 for r in runs if self.states.get(r.id) not in (None, r.state))
        self.states = {r.id: r.state for r in runs}
        return changed


async def measure(poller, server: WandbStandIn, change: bool) -> tuple[int, float, float]:
    """(requests, worst loop stall in s, wall time in s) of one poll."""
    if change:
        running = [r.name for r in server.runs().values() if r.state == "running"][:10]
        for run_id in running:
            server.update_run(run_id, state="finished")
    server.reset_counts()
    async with LagProbe() as probe:
        start = time.perf_counter()
        await poller.poll_once()
        wall = time.perf_counter() - start
    return server.counts["__total__"], probe.worst, wall


async def bench_size(size: int, repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for kind in ("adjutant", "naive"):
        with WandbStandIn() as server:
            os.environ["WANDB_BASE_URL"] = server.base_url
            server.create_runs(size - 10 * (repeat + 1), state="finished", summary={"loss": 1.0})
            for _ in range(10 * (repeat + 1)):
                server.create_run(state="running", summary={"loss": 0.5})
            with tempfile.TemporaryDirectory() as state_dir:
                env = {"WANDB_ENTITY": "team", "WANDB_PROJECT": "proj", "ADJUTANT_STATE_DIR": state_dir}
                services = None
                if kind == "adjutant":
                    from adjutant.services import Services

                    services = await Services.open(Settings.from_env(env))
                    poller = services.watcher
                    await poller.poll_once()  # baseline
                else:
                    poller = NaivePoller("team/proj")
                await poller.poll_once()  # warm: first incremental poll
                idle = [await measure(poller, server, change=False) for _ in range(repeat)]
                changed = [await measure(poller, server, change=True) for _ in range(repeat)]
                if services is not None:
                    await services.close_if_unused()
        results[kind] = {
            "idle_requests": statistics.median(r[0] for r in idle),
            "changed_requests": statistics.median(r[0] for r in changed),
            "stall_ms": 1000 * max(r[1] for r in idle + changed),
            "idle_wall_ms": 1000 * statistics.median(r[2] for r in idle),
            "changed_wall_ms": 1000 * statistics.median(r[2] for r in changed),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["WANDB_API_KEY"] = API_KEY
    os.environ.setdefault("WANDB_DIR", tempfile.mkdtemp())
    rows = []
    for size in args.sizes:
        results = asyncio.run(bench_size(size, args.repeat))
        rows.append((size, results))
        print(f"done: {size} runs", file=sys.stderr)
    print(
        "| runs | poller | requests / idle poll | requests / poll, 10 changed | "
        "worst loop stall (ms) | wall / idle poll (ms) | wall / changed poll (ms) |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for size, results in rows:
        for kind in ("adjutant", "naive"):
            r = results[kind]
            print(
                f"| {size:,} | {kind} | {r['idle_requests']:g} | {r['changed_requests']:g} | "
                f"{r['stall_ms']:.1f} | {r['idle_wall_ms']:.0f} | {r['changed_wall_ms']:.0f} |"
            )
        a, n = results["adjutant"], results["naive"]
        print(
            f"| {size:,} | ratio naive/adjutant | {n['idle_requests'] / a['idle_requests']:.0f}x | "
            f"{n['changed_requests'] / a['changed_requests']:.0f}x | {n['stall_ms'] / max(a['stall_ms'], 0.1):.0f}x | "
            f"{n['idle_wall_ms'] / max(a['idle_wall_ms'], 0.1):.1f}x | "
            f"{n['changed_wall_ms'] / max(a['changed_wall_ms'], 0.1):.1f}x |"
        )


if __name__ == "__main__":
    main()
