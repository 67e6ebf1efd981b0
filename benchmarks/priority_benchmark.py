"""Priority classes and preemption: the wait of ``high`` jobs, and what the machine's utilisation pays for it.

A seeded stream of 200 jobs of 1, 2 or 4 GPUs (the workload of ``gpu_benchmark.py``: Poisson arrivals offering 1.2
times what 8 GPUs can do, lognormal run times, declared time limits 1.1 to 2 times the run time) with priorities drawn
15 % high, 55 % normal, 30 % low runs in a discrete-event simulation that calls Adjutant's own rules at every arrival
and end, three ways:

- **EASY**: priority-less EASY backfilling (``adjutant.gpus.plan`` over the queue in arrival order);
- **priority**: the same rule over the queue in Adjutant's order, priority then arrival;
- **priority + preemption**: that, and when the first job of the queue cannot start for lack of GPUs, the victims
  ``adjutant.gpus.victims`` picks among running ``low`` jobs (all preemptible here) get the grace (90 s, their GPUs
  held, counted as used) and come back in their place with the work they had left (they saved a checkpoint).

Printed: mean and p95 wait per class, the makespan, and GPU utilisation while work was waiting (GPU-seconds held /
GPU-seconds available while the queue was not empty; held-but-wasted grace seconds counted as held) and overall
useful utilisation (job GPU-seconds / (GPUs x makespan)).

    python benchmarks/priority_benchmark.py [--jobs 200] [--gpus 8] [--seed 2026] [--grace 90]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_benchmark import SimJob, workload  # noqa: E402

from adjutant.gpus import Holding, Preemptible, Waiting, plan, victims  # noqa: E402
from adjutant.jobs import priority_rank  # noqa: E402

CLASSES = ("high", "normal", "low")


@dataclass
class Running:
    ids: tuple[int, ...]
    started: float
    end: float
    limit_end: float
    preempted_until: float | None = None  # a victim in its grace: its GPUs come free then


@dataclass
class Outcome:
    first_start: dict[int, float] = field(default_factory=dict)
    done: dict[int, float] = field(default_factory=dict)
    preemptions: int = 0
    held_while_waiting: float = 0.0
    waiting_time: float = 0.0


def simulate(jobs: list[SimJob], priorities: list[str], gpus: int, *, order: str, grace: float) -> dict[str, object]:
    """``order``: ``arrival`` (priority-less EASY), ``priority``, or ``preempt`` (priority and preemption)."""
    arrivals = sorted(range(len(jobs)), key=lambda i: jobs[i].arrives)
    left = {i: jobs[i].runtime for i in range(len(jobs))}  # work still to do (a victim keeps what it did)
    queue: list[int] = []
    running: dict[int, Running] = {}
    free = set(range(gpus))
    out = Outcome()
    now, next_arrival = 0.0, 0

    def ordered() -> list[int]:
        if order == "arrival":
            return sorted(queue, key=lambda i: jobs[i].arrives)
        return sorted(queue, key=lambda i: (-priority_rank(priorities[i]), jobs[i].arrives))

    while next_arrival < len(arrivals) or queue or running:
        waiting_ids = ordered()
        holdings = [Holding(len(r.ids), r.preempted_until or r.limit_end) for r in running.values()]
        waiting = [Waiting(str(i), jobs[i].gpus, jobs[i].limit - (jobs[i].runtime - left[i])) for i in waiting_ids]
        for job_id, ids in plan(waiting, free, holdings, now, slots=10_000).starts:
            i = int(job_id)
            free -= set(ids)
            limit_left = jobs[i].limit - (jobs[i].runtime - left[i])
            running[i] = Running(ids, now, now + left[i], now + limit_left)
            out.first_start.setdefault(i, now)
            queue.remove(i)
        in_flight = any(r.preempted_until is not None for r in running.values())
        head = next((i for i in ordered()), None)
        if order == "preempt" and head is not None and not in_flight and jobs[head].gpus > len(free):
            candidates = [
                Preemptible(str(i), len(r.ids), priority_rank(priorities[i]), r.started)
                for i, r in running.items()
                if priorities[i] == "low"
            ]
            for victim in victims(jobs[head].gpus - len(free), priority_rank(priorities[head]), candidates):
                r = running[int(victim)]
                done_so_far = now - r.started
                left[int(victim)] = max(0.0, left[int(victim)] - done_so_far)
                r.preempted_until = min(r.end, now + grace)
                out.preemptions += 1
        upcoming = [r.preempted_until if r.preempted_until is not None else r.end for r in running.values()]
        if next_arrival < len(arrivals):
            upcoming.append(jobs[arrivals[next_arrival]].arrives)
        later = min(upcoming)
        if queue:
            out.held_while_waiting += sum(len(r.ids) for r in running.values()) * (later - now)
            out.waiting_time += later - now
        now = later
        for i in [i for i, r in running.items() if (r.preempted_until or r.end) <= now]:
            r = running.pop(i)
            free |= set(r.ids)
            if r.preempted_until is not None and r.preempted_until < r.end:
                queue.append(i)  # back in its place (its arrival), with the work it had left
            else:
                out.done[i] = now
        while next_arrival < len(arrivals) and jobs[arrivals[next_arrival]].arrives <= now:
            queue.append(arrivals[next_arrival])
            next_arrival += 1

    waits = {c: [out.first_start[i] - jobs[i].arrives for i in range(len(jobs)) if priorities[i] == c] for c in CLASSES}
    makespan = max(out.done.values())
    useful = sum(j.gpus * j.runtime for j in jobs)
    return {
        "waits": waits,
        "makespan_h": makespan / 3600,
        "utilisation": out.held_while_waiting / (gpus * out.waiting_time) if out.waiting_time else 1.0,
        "useful": useful / (gpus * makespan),
        "preemptions": out.preemptions,
    }


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--grace", type=float, default=90.0)
    args = parser.parse_args()
    jobs = workload(args.jobs, args.gpus, args.seed)
    rng = random.Random(args.seed + 1)
    priorities = rng.choices(CLASSES, weights=[15, 55, 30], k=len(jobs))
    runs = {
        "EASY": simulate(jobs, priorities, args.gpus, order="arrival", grace=args.grace),
        "priority": simulate(jobs, priorities, args.gpus, order="priority", grace=args.grace),
        "priority + preemption": simulate(jobs, priorities, args.gpus, order="preempt", grace=args.grace),
    }
    counts = "/".join(str(priorities.count(c)) for c in CLASSES)
    print(f"{args.jobs} jobs (high/normal/low: {counts}) on {args.gpus} GPUs, seed {args.seed}, grace {args.grace:g}s")
    print()
    print("| | " + " | ".join(runs) + " |")
    print("| --- |" + " ---: |" * len(runs))
    for c in CLASSES:
        for stat, fn in (("mean", statistics.mean), ("p95", p95)):
            cells = [f"{fn(r['waits'][c]) / 3600:.2f}" for r in runs.values()]  # type: ignore[index]
            print(f"| {stat} wait, {c} (h) | " + " | ".join(cells) + " |")
    print("| makespan (h) | " + " | ".join(f"{r['makespan_h']:.2f}" for r in runs.values()) + " |")
    print(
        "| GPU utilisation while work waited | " + " | ".join(f"{r['utilisation']:.1%}" for r in runs.values()) + " |"
    )
    print(
        "| useful GPU utilisation (job work / makespan) | "
        + " | ".join(f"{r['useful']:.1%}" for r in runs.values())
        + " |"
    )
    print("| preemptions | " + " | ".join(str(r["preemptions"]) for r in runs.values()) + " |")
    base = runs["EASY"]
    for name, r in runs.items():
        if name == "EASY":
            continue
        high = p95(r["waits"]["high"]) / max(p95(base["waits"]["high"]), 1e-9)  # type: ignore[index]
        waited = float(r["utilisation"]) - float(base["utilisation"])  # type: ignore[arg-type]
        useful = float(r["useful"]) - float(base["useful"])  # type: ignore[arg-type]
        print(
            f"{name}: p95 wait of high jobs {high:.2f}x EASY's; utilisation while work waited {waited * 100:+.1f}"
            f" points, useful utilisation {useful * 100:+.1f} points"
        )


if __name__ == "__main__":
    main()
