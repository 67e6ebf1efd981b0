"""GPUs as the unit of work: the queue rule against strict FIFO, in the same run, on the same jobs.

Part 1 (the policy): 200 jobs of 1, 2 or 4 GPUs arrive in a fixed order (a seeded Poisson stream offering 1.2 times
what 8 GPUs can do) on 8 GPUs. Each job runs for its own time and declares a time limit above it (1.1 to 2 times,
rounded up to 15 minutes, as people do). A discrete-event simulation calls Adjutant's own rule,
``adjutant.gpus.plan``, at every arrival and end: once with backfilling (Adjutant's rule), once strict FIFO.
Measured: GPU utilisation while work was waiting (GPU-seconds used / GPU-seconds available during the time the queue
was not empty), the makespan, waits (mean, p95, and the longest wait of a 4-GPU job: starvation would show there).

Part 2 (the cost): the real scheduler (SQLite, a launcher that accepts at once) with 200 queued jobs and 8 GPUs: the
time of one pass that plans them, against the same pass counting jobs (no ADJUTANT_GPUS).

    python benchmarks/gpu_benchmark.py [--jobs 200] [--gpus 8] [--seed 2026]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adjutant.gpus import Holding, Waiting, plan  # noqa: E402
from adjutant.jobs import Job, JobRequest, JobState, JobStore, JobUpdate  # noqa: E402
from adjutant.launchers import Launcher  # noqa: E402
from adjutant.scheduler import Scheduler  # noqa: E402
from adjutant.settings import Settings  # noqa: E402


@dataclass(frozen=True)
class SimJob:
    arrives: float
    gpus: int
    runtime: float
    limit: float


def workload(n: int, gpus: int, seed: int) -> list[SimJob]:
    rng = random.Random(seed)
    sizes = rng.choices([1, 2, 4], weights=[5, 3, 2], k=n)
    runtimes = [min(8 * 3600.0, rng.lognormvariate(math.log(1800), 0.8)) for _ in range(n)]
    mean_work = statistics.mean(s * r for s, r in zip(sizes, runtimes, strict=True))
    gap = mean_work / (gpus * 1.2)  # 1.2 times the machine's capacity is offered
    now, jobs = 0.0, []
    for size, runtime in zip(sizes, runtimes, strict=True):
        now += rng.expovariate(1 / gap)
        limit = math.ceil(runtime * rng.uniform(1.1, 2.0) / 900) * 900
        jobs.append(SimJob(now, size, runtime, limit))
    return jobs


def simulate(jobs: list[SimJob], gpus: int, *, backfill: bool) -> dict[str, float]:
    arrivals = sorted(range(len(jobs)), key=lambda i: jobs[i].arrives)
    queue: list[int] = []
    running: dict[int, tuple[tuple[int, ...], float, float]] = {}  # job -> (ids, end, limit end)
    free = set(range(gpus))
    started: dict[int, float] = {}
    now, next_arrival = 0.0, 0
    busy_while_waiting = waiting_time = 0.0
    while next_arrival < len(arrivals) or queue or running:
        holdings = [Holding(len(ids), limit_end) for ids, _, limit_end in running.values()]
        waiting = [Waiting(str(i), jobs[i].gpus, jobs[i].limit) for i in queue]
        for job_id, ids in plan(waiting, free, holdings, now, slots=10_000, backfill=backfill).starts:
            i = int(job_id)
            free -= set(ids)
            running[i] = (ids, now + jobs[i].runtime, now + jobs[i].limit)
            started[i] = now
            queue.remove(i)
        upcoming = [end for _, end, _ in running.values()]
        if next_arrival < len(arrivals):
            upcoming.append(jobs[arrivals[next_arrival]].arrives)
        later = min(upcoming)
        if queue:  # work waited during [now, later)
            used = sum(len(ids) for ids, _, _ in running.values())
            busy_while_waiting += used * (later - now)
            waiting_time += later - now
        now = later
        for i in [i for i, (_, end, _) in running.items() if end <= now]:
            free |= set(running.pop(i)[0])
        while next_arrival < len(arrivals) and jobs[arrivals[next_arrival]].arrives <= now:
            queue.append(arrivals[next_arrival])
            next_arrival += 1
    waits = [started[i] - jobs[i].arrives for i in range(len(jobs))]
    big = [started[i] - jobs[i].arrives for i in range(len(jobs)) if jobs[i].gpus == 4]
    return {
        "utilisation": busy_while_waiting / (gpus * waiting_time) if waiting_time else 1.0,
        "makespan_h": max(started[i] + jobs[i].runtime for i in range(len(jobs))) / 3600,
        "mean_wait_h": statistics.mean(waits) / 3600,
        "p95_wait_h": sorted(waits)[int(0.95 * len(waits))] / 3600,
        "max_wait_4gpu_h": max(big) / 3600 if big else 0.0,
    }


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


async def pass_time(n: int, gpus: int | None, *, after_end: bool, repeats: int = 20) -> float:
    """Median seconds of one scheduler pass over ``n`` queued jobs, with the GPU rule (``gpus``) or counting jobs:
    on a full machine (nothing can start), or ``after_end`` (a job just ended: plan the queue, start what fits)."""
    times = []
    with tempfile.TemporaryDirectory() as folder:
        store = JobStore(Path(folder) / "adjutant.sqlite3")
        rng = random.Random(1)
        requests = [
            JobRequest({"i": i}, "/bin/true", 1, "bench", None, None, gpus=rng.choice([1, 2, 4]), time_limit=3600.0)
            for i in range(n)
        ]
        store.add_many(requests, Path(folder))
        slots = 8 if gpus is None else 10_000
        scheduler = Scheduler(
            store,
            lambda backend: AtOnce(),
            log_dir=Path(folder),
            max_concurrent=slots,
            cancel_grace_seconds=30,
            environment=lambda job: {},
            gpus=None if gpus is None else tuple(range(gpus)),
        )
        await scheduler.run_pass()  # the machine fills up
        for _ in range(repeats):
            if after_end:  # a job ends: the pass plans the whole queue and starts what fits
                done = store.where((JobState.RUNNING,), 1)[0]
                store.update(done.id, state=JobState.SUCCEEDED)
            start = time.perf_counter()
            await scheduler.run_pass()
            times.append(time.perf_counter() - start)
        await scheduler.close()
        store.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    jobs = workload(args.jobs, args.gpus, args.seed)
    fifo = simulate(jobs, args.gpus, backfill=False)
    easy = simulate(jobs, args.gpus, backfill=True)
    print(
        f"{args.jobs} jobs (1/2/4 GPUs: {sum(j.gpus == 1 for j in jobs)}/{sum(j.gpus == 2 for j in jobs)}/"
        f"{sum(j.gpus == 4 for j in jobs)}) on {args.gpus} GPUs, seed {args.seed}"
    )
    print(f"{'':28}{'strict FIFO':>14}{'Adjutant':>14}{'ratio':>9}")
    for key, label in (
        ("utilisation", "GPU utilisation (waiting)"),
        ("makespan_h", "makespan (h)"),
        ("mean_wait_h", "mean wait (h)"),
        ("p95_wait_h", "p95 wait (h)"),
        ("max_wait_4gpu_h", "longest 4-GPU wait (h)"),
    ):
        ratio = easy[key] / fifo[key] if fifo[key] else float("nan")
        shown = (
            (f"{fifo[key]:.1%}", f"{easy[key]:.1%}")
            if key == "utilisation"
            else (f"{fifo[key]:.2f}", f"{easy[key]:.2f}")
        )
        print(f"{label:28}{shown[0]:>14}{shown[1]:>14}{ratio:>8.2f}x")
    for after_end, what in ((False, "machine full"), (True, "after a job ends")):
        counting = asyncio.run(pass_time(args.jobs, None, after_end=after_end))
        planned = asyncio.run(pass_time(args.jobs, args.gpus, after_end=after_end))
        print(
            f"scheduler pass, {args.jobs} queued, {what}: counting jobs {counting * 1000:.1f} ms,"
            f" GPU rule {planned * 1000:.1f} ms ({planned / counting:.2f}x)"
        )


if __name__ == "__main__":
    main()
