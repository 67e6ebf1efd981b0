"""A big queue: one scheduler pass right after a job ended, with 1,000 queued jobs, against the naive queue read.

The real scheduler (SQLite file, the GPU rule on 8 GPUs, a launcher that accepts at once) with N queued jobs of 1, 2
or 4 GPUs and a time limit each. A job ends, then one pass is timed: it reads the queue, plans it
(:func:`adjutant.gpus.plan`) and starts what fits. Two stores, in the same run, on the same jobs:

- **adjutant**: :meth:`JobStore.queue`: the queue's columns only, a light record a row; the jobs that start are then
  read in full;
- **naive**: the same pass over a store whose queue read builds a full ``Job`` a queued row (``SELECT *``, the JSON
  columns parsed, the dates parsed): what the pass did before issue 27.

    python benchmarks/queue_benchmark.py [--sizes 200 1000 5000] [--passes 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adjutant.jobs import QUEUE_ORDER, Job, JobRequest, JobState, JobStore, JobUpdate  # noqa: E402
from adjutant.launchers import Launcher  # noqa: E402
from adjutant.scheduler import Scheduler  # noqa: E402
from adjutant.settings import Settings  # noqa: E402

GOAL_MS = 5.0


class AtOnce(Launcher):
    name = "local"

    def __init__(self) -> None:
        super().__init__(Settings.from_env({}), "")

    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        return JobUpdate(state=JobState.RUNNING, external_id="x")

    def refresh(self, job: Job) -> JobUpdate | None:
        return None

    def cancel(self, job: Job) -> None:
        pass


class NaiveStore(JobStore):
    """The queue read as it was: a full Job a queued row."""

    def queue(self, limit: int = 1000) -> list[Job]:  # type: ignore[override]
        sql = f"SELECT * FROM jobs WHERE state=? AND held=0 ORDER BY {QUEUE_ORDER} LIMIT ?"
        return [Job.from_row(r) for r in self.query(sql, (JobState.QUEUED, limit))]


async def pass_times(store_class: type[JobStore], n: int, passes: int, gpus: int = 8) -> list[float]:
    """Seconds of each of ``passes`` passes, each right after a running job ended, with ``n`` queued."""
    times = []
    with tempfile.TemporaryDirectory() as folder:
        store = store_class(Path(folder) / "adjutant.sqlite3")
        rng = random.Random(1)
        requests = [
            JobRequest({"i": i, "lr": 0.001, "model": "resnet50"}, "/bin/true", 1, "bench", 10, 20,
                       gpus=rng.choice([1, 2, 4]), time_limit=3600.0)
            for i in range(n + 4 * passes)  # the passes start some: the queue stays at least n long
        ]  # fmt: skip
        store.add_many(requests, Path(folder))
        scheduler = Scheduler(
            store,
            lambda backend: AtOnce(),
            log_dir=Path(folder),
            max_concurrent=10_000,
            cancel_grace_seconds=30,
            environment=lambda job: {},
            gpus=tuple(range(gpus)),
        )
        await scheduler.run_pass()  # the machine fills up
        for _ in range(passes):
            done = store.where((JobState.RUNNING,), 1)[0]
            store.update(done.id, state=JobState.SUCCEEDED)
            start = time.perf_counter()
            await scheduler.run_pass()
            times.append(time.perf_counter() - start)
        await scheduler.close()
        store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--passes", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each timing both stores, interleaved")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    print("| queued | queue read | pass after a job end (ms): min / median / max of the rounds' medians | x |")
    print("| ---: | --- | ---: | ---: |")
    for n in args.sizes:
        medians: dict[str, list[float]] = {"adjutant": [], "naive": []}
        for _ in range(args.rounds):
            for name, store_class in (("adjutant", JobStore), ("naive", NaiveStore)):
                medians[name].append(statistics.median(asyncio.run(pass_times(store_class, n, args.passes))) * 1000)
        light = statistics.median(medians["adjutant"])
        for name in ("adjutant", "naive"):
            low, mid, high = min(medians[name]), statistics.median(medians[name]), max(medians[name])
            ratio = mid / light
            print(f"| {n:,} | {name} | {low:.1f} / {mid:.1f} / {high:.1f} | {ratio:.1f}x |")
        goal = "met" if light <= GOAL_MS else "NOT met"
        print(f"| {n:,} | goal | <= {GOAL_MS:.0f} ms (issue 27, at 1,000 queued): {goal} | |")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
