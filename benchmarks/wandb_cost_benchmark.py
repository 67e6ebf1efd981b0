"""What watching a W&B project costs: bytes and requests per idle poll, and the first start on a large project;
this Adjutant against the previous release (commit a630974), each in its own process against the same W&B stand-in
(served from this process, not counted), through the real wandb client (wandb-core), in the same run.

- **idle poll**: a project of 1,000 finished runs and R running runs (8-key configs, a 5-key summary, no heartbeat
  for 10 minutes); the watcher does its first start, one poll (the running runs are new to the process), then idle
  polls (nothing changed), then polls before each of which every running run heartbeated and logged a step (a
  live project): requests and answer bytes (the GraphQL bodies as sent, uncompressed) per poll. Goal: ≤ 40 KB and
  ≤ 1 request per idle poll with 334 running runs.
- **first start**: a project of N finished runs; a fresh process does the first start (the silent baseline):
  `Runs` requests and their bytes, wall time to recorded, peak RSS with wandb-core (sampled every 50 ms), and
  what it left under WANDB_DIR (files and folders). Goals: ≤ 1 request per 1,000 runs; ≤ 150 MB; nothing per run.

    .venv/bin/python benchmarks/wandb_cost_benchmark.py [--running 20 334] [--sizes 1000 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402

#: The previous release.
PREVIOUS = "a630974"

CONFIG = {
    "learning_rate": 0.0003,
    "batch_size": 128,
    "epochs": 90,
    "optimizer": "adamw",
    "architecture": "resnet50",
    "dataset": "imagenet-1k",
    "seed": 1234,
    "weight_decay": 0.05,
}
SUMMARY = {"loss": 0.4321, "acc": 0.8765, "_step": 1200, "_runtime": 3600.5, "_timestamp": 1767780000.25}

DRIVER = textwrap.dedent(
    """
    import asyncio, os, resource, sys, threading, time
    from pathlib import Path
    state = Path(sys.argv[1])
    polls = int(sys.argv[2])
    peak = [0]
    def family_rss():  # this process and its children (wandb-core), in kB
        me, total = os.getpid(), 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(entry.name) != me and int(fields[1]) != me:
                    continue
                status = (entry / "status").read_text()
            except (OSError, IndexError, ValueError):
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total
    def sample():
        while True:
            peak[0] = max(peak[0], family_rss())
            time.sleep(0.05)
    threading.Thread(target=sample, daemon=True).start()
    def step(name):  # tell the benchmark, wait for its go
        print(name, flush=True)
        sys.stdin.readline()
    async def main():
        from adjutant.services import Services
        from adjutant.settings import Settings
        settings = Settings.from_env({"ADJUTANT_STATE_DIR": str(state), "WANDB_ENTITY": "team",
                                      "WANDB_PROJECT": "proj", "ADJUTANT_WANDB_TIMEOUT": "600"})
        services = await Services.open(settings)
        watcher = services.watcher
        step("ready")
        started = time.perf_counter()
        await watcher.poll_once()  # the first start
        print(f"baseline {time.perf_counter() - started:.3f}", flush=True)
        step("recorded")
        if polls:
            await watcher.poll_once()  # the running runs are new to this process
            step("first-poll")
            for _ in range(polls):
                await watcher.poll_once()
            step("idle")
            for _ in range(polls):
                await watcher.poll_once()
                step("live")
    asyncio.run(main())
    print(f"peak {max(peak[0], family_rss())}", flush=True)
    """
)


def previous_tree(folder: Path) -> Path:
    """The previous release's package, laid out as installed (cogs/ as adjutant/cogs)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS, "adjutant", "cogs"], capture_output=True, check=True
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    link = folder / "adjutant" / "cogs"
    if link.is_symlink():
        link.unlink()
    shutil.move(str(folder / "cogs"), str(link))
    return folder


class Driver:
    """The driver in its own process (this release's code, or the previous one's on PYTHONPATH)."""

    def __init__(self, code: Path | None, base_url: str, work: Path, polls: int) -> None:
        self.wandb_dir = work / f"wandb-{time.monotonic_ns()}"
        self.wandb_dir.mkdir()
        self.state = work / f"state-{time.monotonic_ns()}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "ADJUTANT_"))},
            "WANDB_BASE_URL": base_url,
            "WANDB_API_KEY": API_KEY,
            "WANDB_DIR": str(self.wandb_dir),
            "WANDB_CONFIG_DIR": str(work / "config"),
            "PYTHONPATH": str(code if code is not None else ROOT),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(self.state), str(polls)],
            env=env,
            cwd=work,  # not the source tree: the code on PYTHONPATH is the code measured
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def until(self, word: str) -> str:
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the driver ended before {word!r} (exit {self.process.wait()})")
            if line.startswith(word):
                return line.strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def finish(self) -> int:
        self.go()
        peak = int(self.until("peak").split()[1])
        self.process.wait(60)
        shutil.rmtree(self.state, ignore_errors=True)
        return peak

    def left_on_disk(self) -> tuple[int, int]:
        """Folders and files under WANDB_DIR (wandb's own service files excepted)."""
        folders = files = 0
        for _, dirs, names in os.walk(self.wandb_dir):
            folders += len(dirs)
            files += len(names)
        return folders, files


def idle_poll(code: Path | None, work: Path, running: int, polls: int) -> dict[str, float]:
    with WandbStandIn(entity="team", project="proj") as server:
        server.create_runs(1000, state="finished", summary={"loss": 0.5, "acc": 0.9}, config=CONFIG)
        quiet = server.now() - dt.timedelta(minutes=10)  # no heartbeat for 10 minutes or more (the stall time is 30)
        names = [f"live{i:05d}" for i in range(running)]
        for i, name in enumerate(names):
            server.create_run(
                name,
                state="running",
                config={**CONFIG, "seed": i},
                summary=SUMMARY,
                created_at=quiet - dt.timedelta(seconds=i),
                heartbeat_at=quiet - dt.timedelta(seconds=i),
            )
        driver = Driver(code, server.base_url, work, polls)
        driver.until("ready")
        driver.go()
        driver.until("recorded")
        server.reset_counts()
        driver.go()
        driver.until("first-poll")
        first = server.counts["__total__"], server.bytes_out["__total__"]
        server.reset_counts()
        driver.go()
        driver.until("idle")
        requests, answered = server.counts["__total__"], server.bytes_out["__total__"]
        server.reset_counts()
        for poll in range(polls):  # every run heartbeats and logs a step between two polls
            for name in names:
                server.update_run(name, summary={"_step": 1201 + poll}, heartbeat_at=server.now())
            driver.go()
            driver.until("live")
        live_requests, live_answered = server.counts["__total__"], server.bytes_out["__total__"]
        driver.finish()
    return {
        "requests": requests / polls,
        "KB": answered / polls / 1000,
        "first requests": first[0],
        "first KB": first[1] / 1000,
        "live requests": live_requests / polls,
        "live KB": live_answered / polls / 1000,
    }


def first_start(code: Path | None, work: Path, size: int) -> dict[str, float]:
    with WandbStandIn(entity="team", project="proj") as server:
        server.create_runs(size, state="finished", summary={"loss": 0.5, "acc": 0.9}, config={"lr": 0.1})
        driver = Driver(code, server.base_url, work, 0)
        driver.until("ready")
        server.reset_counts()
        driver.go()
        seconds = float(driver.until("baseline").split()[1])
        requests, answered = server.counts["Runs"], server.bytes_out["__total__"]
        peak = driver.finish()
        folders, files = driver.left_on_disk()
        shutil.rmtree(driver.wandb_dir, ignore_errors=True)
    return {
        "requests": requests,
        "MB": answered / 1e6,
        "s": seconds,
        "RSS": peak / 1024,
        "dirs": folders,
        "files": files,
    }


def spread(values: list[float], digits: int = 1) -> str:
    """min / median / max."""
    low, mid, high = min(values), statistics.median(values), max(values)
    if low == high:
        return f"{mid:,.{digits}f}"
    return f"{low:,.{digits}f} / {mid:,.{digits}f} / {high:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--running", type=int, nargs="+", default=[20, 334])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 50000])
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["idle", "first-start"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        bots = {"this Adjutant": None, f"previous ({PREVIOUS})": previous_tree(work / "previous")}
        if args.only in (None, "idle"):
            print("\n### idle poll: per poll, min / median / max over", args.repeat, "runs\n")
            print(
                "| running runs | bot | idle poll: requests | idle poll: KB | every run logged: requests | "
                "every run logged: KB | the first poll after a start: requests / KB |"
            )
            print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
            for running in args.running:
                for name, code in bots.items():
                    rows = [idle_poll(code, work, running, args.polls) for _ in range(args.repeat)]
                    print(
                        f"| {running} | {name} | {spread([r['requests'] for r in rows])} | "
                        f"{spread([r['KB'] for r in rows])} | {spread([r['live requests'] for r in rows])} | "
                        f"{spread([r['live KB'] for r in rows])} | {spread([r['first requests'] for r in rows], 0)} / "
                        f"{spread([r['first KB'] for r in rows])} |",
                        flush=True,
                    )
            print("\ngoal: ≤ 40 KB and ≤ 1 request per idle poll with 334 running runs")
        if args.only in (None, "first-start"):
            print("\n### first start: min / median / max over", args.repeat, "runs\n")
            print("| runs | bot | Runs requests | MB answered | s to recorded | peak RSS with wandb-core (MB) |"
                  " left under WANDB_DIR: folders / files |")  # fmt: skip
            print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
            for size in args.sizes:
                for name, code in bots.items():
                    rows = [first_start(code, work, size) for _ in range(args.repeat)]
                    print(
                        f"| {size:,} | {name} | {spread([r['requests'] for r in rows], 0)} | "
                        f"{spread([r['MB'] for r in rows])} | {spread([r['s'] for r in rows])} | "
                        f"{spread([r['RSS'] for r in rows], 0)} | {spread([r['dirs'] for r in rows], 0)} / "
                        f"{spread([r['files'] for r in rows], 0)} |",
                        flush=True,
                    )
            print("\ngoal: ≤ 1 request per 1,000 runs; peak RSS ≤ 150 MB at 50,000; nothing written per run")


if __name__ == "__main__":
    main()
