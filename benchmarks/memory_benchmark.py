"""Memory: the first start on a large project, and the supervisors of 8 running jobs; this Adjutant against the
previous release (the last commit before the scheduler service), in the same run.

- **first start**: a fresh process runs the watcher's first poll (the silent baseline) of a project of 1k,
  10k or 50k runs served by the W&B stand-in (in this process, so it is not counted), through the real
  wandb client, with wandb-core; its peak RSS (ru_maxrss) is reported. The previous release listed the
  whole project at once (WandbRuns.poll_once → all_runs); this one pages through it.
- **supervisors**: 8 local jobs that sleep; the RSS of the supervising process(es), summed: the previous
  release ran one `python -m adjutant.supervisor` per job, this one runs one supervisor for all jobs.

    .venv/bin/python benchmarks/memory_benchmark.py [--sizes 1000 10000 50000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.launch_benchmark import BASELINE, baseline_tree  # noqa: E402
from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402

FIRST_START = textwrap.dedent(
    """
    import asyncio, os, resource, sys, threading, time, datetime as dt
    from pathlib import Path
    state = Path(sys.argv[1])
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
    async def main():
        from adjutant.settings import Settings
        settings = Settings.from_env({"ADJUTANT_STATE_DIR": str(state), "WANDB_ENTITY": "team",
                                      "WANDB_PROJECT": "proj", "ADJUTANT_WANDB_TIMEOUT": "600"})
        try:
            from adjutant.services import Services  # this release
            services = await Services.open(settings)
            await services.watcher.poll_once()
        except ImportError:  # the previous release: the reporting cog did it
            import discord
            from discord.ext import commands
            from adjutant.cogs.wandb_runs import WandbRuns
            async with commands.Bot("$", intents=discord.Intents.default()) as bot:
                cog = WandbRuns(bot, settings)
                await cog.cog_load()
                await cog.poll_once()
    asyncio.run(main())
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, max(peak[0], family_rss()))
    """
)


def first_start_peak(code: Path | None, base_url: str, work: Path) -> tuple[float, float, int]:
    """Peak RSS (MB) of a process doing the first poll of the stand-in's project: its own, and with its
    children (wandb-core) sampled every 50 ms; and how many runs it remembered."""
    state = work / f"state-{time.monotonic_ns()}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")},
        "WANDB_BASE_URL": base_url,
        "WANDB_API_KEY": API_KEY,
        "WANDB_DIR": str(work),
        "WANDB_CONFIG_DIR": str(work / "config"),
        "PYTHONPATH": str(code) if code is not None else "",
    }
    result = subprocess.run(
        [sys.executable, "-c", FIRST_START, str(state)],
        env=env,
        cwd=work,  # not the source tree: the code on PYTHONPATH is the code measured
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    with sqlite3.connect(state / "adjutant.sqlite3") as db:
        remembered = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    shutil.rmtree(state, ignore_errors=True)
    own, family = result.stdout.strip().splitlines()[-1].split()
    return int(own) / 1024, int(family) / 1024, remembered


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def supervisors_rss(code: Path | None, work: Path) -> tuple[float, int]:
    """Total RSS (MB) of the processes supervising 8 sleeping local jobs, and how many there are."""
    script = work / "sleep.sh"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    state = work / f"state-sup-{time.monotonic_ns()}"
    driver = textwrap.dedent(
        f"""
        import asyncio, os, sys, time
        from pathlib import Path
        from adjutant.settings import Settings
        settings = Settings.from_env({{"ADJUTANT_STATE_DIR": "{state}", "ADJUTANT_EXPERIMENT_SCRIPT": "{script}",
                                       "ADJUTANT_MAX_CONCURRENT": "8"}})
        async def main():
            try:
                from adjutant.services import Services
                from adjutant.jobs import JobRequest
                services = await Services.open(settings)
                for i in range(8):
                    await services.scheduler.enqueue(JobRequest(params={{"i": i}}, script="{script}",
                        requested_by_id=1, requested_by="bench", channel_id=None, message_id=None))
                await asyncio.sleep(1)
                await services.scheduler.run_pass()
            except ImportError:
                from adjutant.jobs import JobStore, child_environment
                from adjutant.launchers import make_launcher
                store = JobStore(settings.state_dir / "adjutant.sqlite3")
                launcher = make_launcher("local", settings, str(store.path))
                for i in range(8):
                    job = store.add(params={{"i": i}}, script="{script}", requested_by_id=1, requested_by="b",
                                    channel_id=None, message_id=None, log_dir=settings.state_dir / "logs")
                    store.update(job.id, state="starting")
                    store.update(job.id, **launcher.submit(job, child_environment(os.environ, job)))
            await asyncio.sleep(3)
            print("ready", flush=True)
            await asyncio.sleep(6)
        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(code) if code is not None else ""}
    process = subprocess.Popen([sys.executable, "-c", driver], env=env, cwd=work, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.readline()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "supervisor" in cmdline and str(state) in cmdline:
            pids.append(int(entry.name))
    total = sum(rss_mb(pid) for pid in pids)
    if os.environ.get("BENCHMARK_DEBUG"):
        for pid in pids:
            print(pid, (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")), file=sys.stderr)
    process.wait()
    subprocess.run(["pkill", "-f", str(script)], check=False)
    return total, len(pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        old = baseline_tree(work / "baseline")
        bots = {"this Adjutant": None, f"previous ({BASELINE})": old}
        print("### first start: peak RSS of the process doing the baseline, alone / with wandb-core (MB)\n")
        print("| runs | " + " | ".join(bots) + " | ratio (with wandb-core) |\n| ---: | ---: | ---: | ---: |")
        for size in args.sizes:
            with WandbStandIn(entity="team", project="proj") as server:
                server.create_runs(size, state="finished", summary={"loss": 0.5, "acc": 0.9}, config={"lr": 0.1})
                peaks = {}
                for name, code in bots.items():
                    own, family, remembered = first_start_peak(code, server.base_url, work)
                    assert remembered == size, f"{name} remembered {remembered} of {size} runs"
                    peaks[name] = (own, family)
            (new, new_all), (prev, prev_all) = peaks.values()
            print(f"| {size:,} | {new:.0f} / {new_all:.0f} | {prev:.0f} / {prev_all:.0f} | {prev_all / new_all:.1f}x |")
        print("\n### 8 running local jobs: RSS of their supervision (MB)\n")
        print("| bot | processes | total RSS (MB) |\n| --- | ---: | ---: |")
        for name, code in bots.items():
            total, count = supervisors_rss(code, work)
            print(f"| {name} | {count} | {total:.1f} |")


if __name__ == "__main__":
    main()
