"""Chart rendering: a 100,000-step history, Adjutant's way against the naive way, in one run.

- adjutant: `adjutant.plots.render_chart`: thins each line to 2,000 points, draws on a
  `matplotlib.figure.Figure` (no pyplot global state), so the figure is freed when it returns;
- naive: every point drawn with `matplotlib.pyplot`, and the figure never closed (the usual
  notebook habit), which keeps every figure alive in pyplot's registry.

Prints the median render time and the growth of the process's memory over 30 renders.

    python benchmarks/plot_benchmark.py [--steps 100000] [--renders 30]
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib

matplotlib.use("Agg")

from adjutant.plots import render_chart


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive(data: dict, metric: str) -> bytes:
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(9, 3.8))
    for label, series in data.items():
        xs, ys = zip(*series[metric], strict=True)
        plt.plot(xs, ys, label=label)
    plt.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()  # the figure is never closed


def measure(render, renders: int) -> tuple[float, float, int]:
    times = []
    render()  # warm-up: imports and font cache
    start_rss = rss_mib()
    size = 0
    for _ in range(renders):
        start = time.perf_counter()
        size = len(render())
        times.append(time.perf_counter() - start)
    return statistics.median(times), rss_mib() - start_rss, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--renders", type=int, default=30)
    args = parser.parse_args()
    data = {
        f"run-{k}": {"loss": [(i, (k + 1) / (i + 1) + 0.001 * (i % 7)) for i in range(args.steps)]} for k in range(3)
    }
    ours = measure(lambda: render_chart(data, ["loss"], log_scale=True, title="loss"), args.renders)
    theirs = measure(lambda: naive(data, "loss"), args.renders)
    print(f"3 runs x {args.steps:,} steps, {args.renders} renders each")
    print("| renderer | median render (s) | memory growth over the renders (MiB) | PNG bytes |")
    print("| --- | ---: | ---: | ---: |")
    for name, (seconds, growth, size) in (("adjutant", ours), ("naive", theirs)):
        print(f"| {name} | {seconds:.3f} | {growth:.1f} | {size:,} |")
    print(f"| ratio naive/adjutant | {theirs[0] / ours[0]:.1f}x | | |")


if __name__ == "__main__":
    main()
