"""What following active Slurm jobs costs a scheduler pass: one ``scontrol show job`` per job (the previous way,
``Launcher.refresh_all``'s default loop over ``refresh``) against one batched ``squeue`` for all of them (plus one
``sacct`` for jobs the controller forgot), side by side in one run.

The Slurm commands are fake executables first on PATH (``squeue``, ``sacct``, ``scontrol``: small ``/bin/sh``
scripts) that sleep like a real controller's answer (``--latency``, 20 ms by default), print what the real
single-node Slurm prints for running jobs, and append their name to a file, which counts the calls. Each pass is a
real :meth:`Scheduler.run_pass` over a real SQLite file holding 1, 10 and 50 running Slurm jobs; every batched pass
is a fresh batch (the rate limit set to 0: the worst case); the last column gives the calls a minute at the bot's
real cadence (a pass a second, or back to back when a pass takes longer; at most one batch every ``BATCH_SECONDS``).

    python benchmarks/refresh_benchmark.py [--sizes 1 10 50] [--passes 10] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adjutant.jobs import ACTIVE, Job, JobRequest, JobState, JobStore, JobUpdate  # noqa: E402
from adjutant.launchers import Launcher  # noqa: E402
from adjutant.launchers.slurm import BATCH_SECONDS, SlurmLauncher  # noqa: E402
from adjutant.scheduler import Scheduler  # noqa: E402
from adjutant.settings import Settings  # noqa: E402

#: The fake Slurm commands: each counts itself, waits like a controller, then answers as Slurm 22.05 did.
FAKES = {
    "squeue": r"""#!/bin/sh
echo squeue >> "$FAKE_SLURM_CALLS"
sleep "$FAKE_SLURM_LATENCY"
ids=""; previous=""
for arg in "$@"; do [ "$previous" = "-j" ] && ids="$arg"; previous="$arg"; done
IFS=,
for id in $ids; do echo "$id|RUNNING|None|0|2026-12-07T10:00:00|2026-12-07T11:00:00|cpu=1,node=1,billing=1|"; done
""",
    "scontrol": r"""#!/bin/sh
echo scontrol >> "$FAKE_SLURM_CALLS"
sleep "$FAKE_SLURM_LATENCY"
for id in "$@"; do :; done
echo "JobId=$id JobName=adjutant-x UserId=root(0) JobState=RUNNING Reason=None ExitCode=0:0 RunTime=00:00:05" \
  "TimeLimit=UNLIMITED StartTime=2026-12-07T10:00:00 EndTime=Unknown Partition=debug AllocTRES=cpu=1,node=1,billing=1"
""",
    "sacct": r"""#!/bin/sh
echo sacct >> "$FAKE_SLURM_CALLS"
sleep "$FAKE_SLURM_LATENCY"
""",
}


class PerJobSlurm(SlurmLauncher):
    """The previous way: each active job asked on its own (``scontrol show job``, then ``sacct`` if forgotten)."""

    def refresh_all(self, jobs: Sequence[Job]) -> dict[str, JobUpdate | None]:
        return Launcher.refresh_all(self, jobs)


def install_fakes(folder: Path, latency: float) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, text in FAKES.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    calls = folder / "calls.txt"
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    os.environ["FAKE_SLURM_CALLS"] = str(calls)
    os.environ["FAKE_SLURM_LATENCY"] = f"{latency:g}"
    return calls


def seed(store: JobStore, folder: Path, count: int) -> None:
    """``count`` Slurm jobs running as Slurm last said (nothing changes: a pass only looks)."""
    for n in range(count):
        request = JobRequest(
            params={"n": n},
            script="/bin/true",
            requested_by_id=1,
            requested_by="bench",
            channel_id=10,
            message_id=20,
            backend="slurm",
        )
        job = store.add(request, folder / "logs")
        store.update(
            job.id,
            state=JobState.RUNNING,
            external_id=str(1000 + n),
            external_state="RUNNING",
            started_at="2026-12-07T10:00:00.000+00:00",
        )


async def measure(folder: Path, calls: Path, launcher: SlurmLauncher, count: int, passes: int) -> dict[str, float]:
    store = JobStore(folder / f"{type(launcher).__name__}-{count}.sqlite3")
    seed(store, folder, count)
    scheduler = Scheduler(
        store,
        lambda backend: launcher,
        log_dir=folder / "logs",
        max_concurrent=count,
        cancel_grace_seconds=30,
        environment=lambda job: {},
    )
    await scheduler.run_pass()  # the first pass of a process also looks for unsubmitted jobs: not timed
    await asyncio.to_thread(calls.write_text, "")
    walls = []
    for _ in range(passes):
        started = time.perf_counter()
        await scheduler.run_pass()
        walls.append(time.perf_counter() - started)
    assert len(store.where(ACTIVE)) == count and not scheduler.backend_errors, scheduler.backend_errors
    await scheduler.close()
    store.close()
    counted = Counter((await asyncio.to_thread(calls.read_text)).split())
    return {
        "calls": sum(counted.values()) / passes,
        "scontrol": counted["scontrol"] / passes,
        "squeue": counted["squeue"] / passes,
        "sacct": counted["sacct"] / passes,
        "wall_ms": statistics.median(walls) * 1000,
    }


async def main(sizes: Sequence[int], passes: int, latency: float) -> None:
    with tempfile.TemporaryDirectory(prefix="refresh-bench-") as tmp:
        folder = Path(tmp)
        calls = install_fakes(folder, latency)
        settings = Settings.from_env({})
        print(f"fake controller latency {latency * 1000:g} ms per call; {passes} passes per row; wall = median\n")
        print(
            "| active jobs | refresh | calls / pass | scontrol / squeue / sacct per pass | wall / pass (ms)"
            " | calls / minute |"
        )
        print("| ---: | --- | ---: | --- | ---: | ---: |")
        for count in sizes:
            per_job = PerJobSlurm(settings, "")
            batched = SlurmLauncher(settings, "")
            batched.batch_seconds = 0  # a fresh batch every pass: the worst case
            old = await measure(folder, calls, per_job, count, passes)
            new = await measure(folder, calls, batched, count, passes)
            per_minute_old = old["calls"] * 60 / max(1.0, old["wall_ms"] / 1000)  # passes back to back when slower
            per_minute_new = new["calls"] * 60 / max(BATCH_SECONDS, 1.0)  # one batch per BATCH_SECONDS
            for name, row, minute in (("per job", old, per_minute_old), ("batched", new, per_minute_new)):
                split = f"{row['scontrol']:g} / {row['squeue']:g} / {row['sacct']:g}"
                print(f"| {count} | {name} | {row['calls']:g} | {split} | {row['wall_ms']:.1f} | {minute:.0f} |")
            print(
                f"| {count} | ratio per job/batched | {old['calls'] / new['calls']:.0f}x | |"
                f" {old['wall_ms'] / new['wall_ms']:.1f}x | {per_minute_old / per_minute_new:.0f}x |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds each fake Slurm command sleeps")
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.passes, args.latency))
