"""End reports and W&B: 40 launches of a script that exits at once (8 slots), the bot watching a W&B project
(the W&B stand-in, served from this process); the time from posting the 40 `$experiment` until all 40 end
reports are in the Discord stand-in; this Adjutant against the previous release (commit a630974), each a real
`python -m adjutant` process, in the same run; against running the 40 scripts directly, 8 at a time.

- **W&B answering**: the stand-in answers at once. Goal: ≤ 3x running the scripts directly.
- **W&B slow**: every W&B request takes 20 s (from just before the launches). Goal: all 40 end reports within
  10 s. The previous release's count is taken at 10 s and at the cap (``--cap``).

    .venv/bin/python benchmarks/report_benchmark.py [--repeat 3] [--cap 30]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.launch_benchmark import Bot, direct, quick_script, until  # noqa: E402
from benchmarks.wandb_cost_benchmark import PREVIOUS, previous_tree  # noqa: E402
from tests.standins.discord_standin import DiscordStandIn  # noqa: E402
from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402

REPORT_TITLE = re.compile(r"Experiment (j[a-z0-9]{6}) (succeeded|failed)")


def reports(standin: DiscordStandIn) -> int:
    """End reports sent (an end report's title: "✅ Experiment j… succeeded"; its acknowledgement says "j…: ")."""
    found = [m for m in standin.sent() if m["embeds"] and REPORT_TITLE.search(m["embeds"][0].get("title", ""))]
    ids = [REPORT_TITLE.search(m["embeds"][0]["title"]).group(1) for m in found]  # type: ignore[union-attr]
    if len(set(ids)) != len(ids):
        raise AssertionError(f"a job reported twice: {sorted(ids)}")
    return len(ids)


async def run(code: Path | None, work: Path, label: str, slow: bool, cap: float) -> dict[str, float]:
    script = quick_script(work)
    state = work / f"state-{label}-{time.monotonic_ns()}"
    with WandbStandIn(entity="team", project="proj") as wandb:
        wandb.create_runs(50, state="finished", summary={"loss": 0.5})
        env = {
            "ADJUTANT_STATE_DIR": str(state),
            "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
            "ADJUTANT_MAX_CONCURRENT": "8",
            "ADJUTANT_POLL_SECONDS": "2",
            "WANDB_BASE_URL": wandb.base_url,
            "WANDB_API_KEY": API_KEY,
            "WANDB_ENTITY": "team",
            "WANDB_PROJECT": "proj",
            "WANDB_DIR": str(work / f"wandb-{label}"),
            "WANDB_CONFIG_DIR": str(work / "wandb-config"),
        }
        async with DiscordStandIn() as standin, Bot(standin, code, env):
            await until(lambda: wandb.counts["Runs"] >= 2, timeout=60)  # logged in; first start and a poll done
            await asyncio.sleep(1)
            if slow:
                wandb.hang(100_000, seconds=20.0)
            start = time.perf_counter()
            await asyncio.gather(*(standin.post(f'$experiment {{"n": {i}}}') for i in range(40)))
            at_10 = None
            while reports(standin) < 40 and time.perf_counter() - start < cap:
                if at_10 is None and time.perf_counter() - start >= 10:
                    at_10 = reports(standin)
                await asyncio.sleep(0.01)
            total = time.perf_counter() - start
            done = reports(standin)
            wandb.clear_faults()
    return {"s": total, "reported": done, "at 10 s": done if at_10 is None else at_10}


def spread(values: list[float], digits: int = 2) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{low:.{digits}f} / {mid:.{digits}f} / {high:.{digits}f}"


async def main_async(repeat: int, cap: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        bots = {"this Adjutant": None, f"previous ({PREVIOUS})": previous_tree(work / "previous")}
        floors = [direct(work) for _ in range(repeat)]
        print(f"\n### 40 launches of a script that exits at once, 8 slots; min / median / max over {repeat} runs\n")
        print("| W&B | runner | all 40 end reports (s) | x direct (median) | reports within 10 s |")
        print("| --- | --- | ---: | ---: | ---: |")
        print(f"| | the scripts directly, 8 at a time | {spread(floors, 3)} | 1.0 | |")
        for slow in (False, True):
            for name, code in bots.items():
                rows = [await run(code, work, name.split()[0], slow, cap) for _ in range(repeat)]
                took = [r["s"] for r in rows]
                finished = all(r["reported"] == 40 for r in rows)
                total = (
                    spread(took)
                    if finished
                    else f"not all within {cap:.0f} s ({spread([r['reported'] for r in rows], 0)})"
                )
                print(
                    f"| {'20 s per request' if slow else 'answering'} | {name} | {total} | "
                    f"{statistics.median(took) / statistics.median(floors):.1f} | "
                    f"{spread([r['at 10 s'] for r in rows], 0)} |",
                    flush=True,
                )
        print("\ngoals: ≤ 3x direct with W&B answering; all 40 end reports within 10 s with W&B at 20 s per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cap", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main_async(args.repeat, args.cap))


if __name__ == "__main__":
    main()
