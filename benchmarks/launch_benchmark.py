"""Launching under load: this Adjutant against the previous one (the last commit before the scheduler
service), both run as real `python -m adjutant` processes against the Discord stand-in.

Scenarios (each run for both bots, in the same run):

- **slow-slurm**: the Slurm launcher with `scontrol` slowed to 1 s (a wrapper first on PATH, in front of
  the real single-node Slurm of tests/slurm/cluster.sh) and 8 active jobs; then 20 more launches, one
  at a time: the time from posting `$experiment` to the acknowledgement.
- **throughput**: 40 launches of a script that exits at once, posted back to back, with
  ADJUTANT_MAX_CONCURRENT=8: the time until all 40 have ended, and how many of the 8 slots were busy
  (sampled every 10 ms from the jobs table) while work was waiting; against running the 40 scripts
  directly, 8 at a time.
- **ack-under-load**: Discord's per-channel limits (5 creates and 5 edits per 5 s per channel) on the
  stand-in; 20 jobs end together (their end reports, acknowledgement edits and status edits go out),
  and one more `$experiment` is posted at that moment: the time to its acknowledgement.

    bash tests/slurm/cluster.sh start   # for slow-slurm (skipped when sbatch is missing)
    .venv/bin/python benchmarks/launch_benchmark.py [--only SCENARIO]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.standins.discord_standin import DiscordStandIn  # noqa: E402

#: The previous approach: the last commit before the scheduler service (the reply awaited tick()).
BASELINE = "cdcdcf8"
SITE = ROOT / "tests" / "standins" / "site"


def baseline_tree(folder: Path) -> Path:
    """The previous Adjutant's package, laid out as installed (cogs/ as adjutant/cogs)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BASELINE, "adjutant", "cogs"], capture_output=True, check=True
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    link = folder / "adjutant" / "cogs"
    if link.is_symlink():  # releases from this round on keep adjutant/cogs as a link to cogs/ (for mypy)
        link.unlink()
    shutil.move(str(folder / "cogs"), str(link))
    return folder


class Bot:
    """``python -m adjutant`` as a process, pointed at the stand-in."""

    def __init__(self, standin: DiscordStandIn, code: Path | None, env: dict[str, str], path_prefix: str = "") -> None:
        pythonpath = [str(SITE)] + ([str(code)] if code is not None else [])
        self.env = {
            "PATH": path_prefix + os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "ADJUTANT_TEST_DISCORD_BASE": standin.base,
            "ADJUTANT_TEST_DISCORD_GATEWAY": standin.gateway_url,
            "DISCORD_TOKEN": standin.token,
            "WANDB_MODE": "disabled",
            **env,
        }
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Bot:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "adjutant",
            "--log-level",
            os.environ.get("BENCHMARK_LOG_LEVEL", "WARNING"),
            env=self.env,
            cwd=tempfile.gettempdir(),
            stdout=subprocess.DEVNULL,
            stderr=None if os.environ.get("BENCHMARK_LOG_LEVEL") else subprocess.DEVNULL,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        await self.process.wait()


async def until(condition: Callable[[], bool], timeout: float = 60) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met")
        await asyncio.sleep(0.01)


def acked(standin: DiscordStandIn, posted: int) -> bool:
    return any(str((m.get("message_reference") or {}).get("message_id")) == str(posted) for m in standin.sent())


async def launch(standin: DiscordStandIn, params: str) -> float:
    """Post `$experiment params` and return the seconds until the bot answered it."""
    start = time.perf_counter()
    posted = await standin.post(f"$experiment {params}")
    await until(lambda: acked(standin, posted), timeout=120)
    return time.perf_counter() - start


def jobs_by_state(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    except sqlite3.Error:
        return {}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- scenarios ------------------------------------------------------------------------------------------


async def slow_slurm(code: Path | None, work: Path) -> dict[str, float]:
    wrappers = work / "bin"
    wrappers.mkdir(exist_ok=True)
    (wrappers / "scontrol").write_text('#!/bin/sh\nsleep 1\nexec /usr/bin/scontrol "$@"\n')
    (wrappers / "scontrol").chmod(0o755)
    script = work / "sleep.sh"
    script.write_text("#!/bin/sh\nsleep 600\n")
    script.chmod(0o755)
    state = work / "state-slurm"
    env = {
        "ADJUTANT_STATE_DIR": str(state),
        "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
        "ADJUTANT_LAUNCHER": "slurm",
        "ADJUTANT_MAX_CONCURRENT": "8",
    }
    async with DiscordStandIn() as standin, Bot(standin, code, env, path_prefix=f"{wrappers}{os.pathsep}"):
        await asyncio.sleep(3)  # logged in
        for i in range(8):
            await launch(standin, f'{{"warm": {i}}}')
        await until(lambda: jobs_by_state(state / "adjutant.sqlite3").get("queued", 0) == 0, timeout=300)
        latencies = [await launch(standin, f'{{"seed": {i}}}') for i in range(20)]
    await asyncio.to_thread(subprocess.run, ["scancel", "-u", "root"], capture_output=True, check=False)
    return {"p50 ms": percentile(latencies, 0.5) * 1000, "p95 ms": percentile(latencies, 0.95) * 1000}


def quick_script(work: Path) -> Path:
    script = work / "quick.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return script


async def throughput(code: Path | None, work: Path, label: str) -> dict[str, float]:
    script = quick_script(work)
    state = work / f"state-throughput-{label}"
    db = state / "adjutant.sqlite3"
    env = {"ADJUTANT_STATE_DIR": str(state), "ADJUTANT_EXPERIMENT_SCRIPT": str(script), "ADJUTANT_MAX_CONCURRENT": "8"}
    busy: list[int] = []
    recorded: float | None = None
    async with DiscordStandIn() as standin, Bot(standin, code, env):
        await asyncio.sleep(3)
        start = time.perf_counter()
        posts = [asyncio.create_task(standin.post(f'$experiment {{"n": {i}}}')) for i in range(40)]
        await asyncio.gather(*posts)
        while True:
            states = await asyncio.to_thread(jobs_by_state, db)
            ended = sum(states.get(s, 0) for s in ("succeeded", "failed", "cancelled", "lost"))
            if ended >= 40:
                break
            if states.get("queued", 0) > 0:  # recorded jobs waiting for a slot
                busy.append(sum(states.get(s, 0) for s in ("starting", "running", "cancelling")))
            if sum(states.values()) == 40 and recorded is None:
                recorded = time.perf_counter() - start
            await asyncio.sleep(0.01)
            if time.perf_counter() - start > 300:
                raise TimeoutError("40 jobs did not end in 300 s")
        total = time.perf_counter() - start
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT created_at, started_at FROM jobs WHERE started_at IS NOT NULL").fetchall()
    waits = [(dt.datetime.fromisoformat(s) - dt.datetime.fromisoformat(c)).total_seconds() * 1000 for c, s in rows]
    return {
        "total s": total,
        "after the last was recorded s": total - (recorded or total),
        "mean busy slots while work waits": statistics.mean(busy) if busy else float("nan"),
        "wait p50 ms": percentile(waits, 0.5),
        "wait max ms": max(waits),
    }


def direct(work: Path) -> float:
    """The 40 scripts run directly, 8 at a time: the floor."""
    script = quick_script(work)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: subprocess.run([str(script), f'{{"n": {i}}}'], check=True), range(40)))
    return time.perf_counter() - start


async def ack_under_load(code: Path | None, work: Path, label: str) -> dict[str, float]:
    barrier = work / f"go-{label}"
    script = work / f"wait-{label}.sh"
    script.write_text(f"#!/bin/sh\nwhile [ ! -e {barrier} ]; do sleep 0.05; done\nexit 0\n")
    script.chmod(0o755)
    state = work / f"state-load-{label}"
    env = {
        "ADJUTANT_STATE_DIR": str(state),
        "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
        "ADJUTANT_MAX_CONCURRENT": "21",
    }
    async with DiscordStandIn() as standin, Bot(standin, code, env):
        await asyncio.sleep(3)
        for i in range(20):
            await launch(standin, f'{{"n": {i}}}')
        await until(lambda: jobs_by_state(state / "adjutant.sqlite3").get("running", 0) == 20, timeout=120)
        standin.rate_limit = (5, 5.0)  # Discord's per-channel limits from now on
        barrier.touch()  # 20 jobs end together
        await until(lambda: sum(jobs_by_state(state / "adjutant.sqlite3").get(s, 0) for s in ("succeeded",)) == 20)
        await asyncio.sleep(0.5)  # their end reports and edits are being sent
        latency = await launch(standin, '{"n": 99}')
    return {"ack s": latency}


async def main_async(only: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        old = baseline_tree(work / "baseline")
        bots = {"this Adjutant": None, f"previous ({BASELINE})": old}
        if only in (None, "slow-slurm"):
            if shutil.which("sbatch") is None:
                print("slow-slurm: skipped (no sbatch; run tests/slurm/cluster.sh start)")
            else:
                print("\n### slow-slurm: acknowledgement with scontrol at 1 s and 8 active Slurm jobs\n")
                print("| bot | p50 (ms) | p95 (ms) |\n| --- | ---: | ---: |")
                rows = {}
                for name, code in bots.items():
                    (work / name.split()[0]).mkdir(exist_ok=True)
                    rows[name] = await slow_slurm(code, work / name.split()[0])
                for name, row in rows.items():
                    print(f"| {name} | {row['p50 ms']:.0f} | {row['p95 ms']:.0f} |")
                new, prev = rows.values()
                p50, p95 = prev["p50 ms"] / new["p50 ms"], prev["p95 ms"] / new["p95 ms"]
                print(f"| ratio previous/this | {p50:.0f}x | {p95:.0f}x |")
        if only in (None, "throughput"):
            print("\n### throughput: 40 launches of a script that exits at once, 8 slots\n")
            floor = direct(work)
            print(
                "| runner | total (s) | x direct | from the 40th recorded to all ended (s) | "
                "mean busy slots while recorded jobs wait | recorded → started p50 / max (ms) |\n"
                "| --- | ---: | ---: | ---: | ---: | ---: |"
            )
            print(f"| the scripts directly, 8 at a time | {floor:.2f} | 1.0 | | 8 | |")
            for name, code in bots.items():
                row = await throughput(code, work, name.split()[0])
                print(
                    f"| {name} | {row['total s']:.2f} | {row['total s'] / floor:.1f} | "
                    f"{row['after the last was recorded s']:.2f} | {row['mean busy slots while work waits']:.1f} | "
                    f"{row['wait p50 ms']:.0f} / {row['wait max ms']:.0f} |"
                )
        if only in (None, "ack-under-load"):
            print("\n### ack-under-load: one launch while 20 jobs' reports and edits go out (Discord's limits)\n")
            print("| bot | acknowledgement (s) |\n| --- | ---: |")
            for name, code in bots.items():
                row = await ack_under_load(code, work, name.split()[0])
                print(f"| {name} | {row['ack s']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["slow-slurm", "throughput", "ack-under-load"])
    args = parser.parse_args()
    asyncio.run(main_async(args.only))


if __name__ == "__main__":
    main()
