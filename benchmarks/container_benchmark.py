"""Container start overhead: a job in a Podman container against the same job as a plain local process.

The same job (tests/container/scripts/job.sh with ``{"act": "ok"}``: records its argument and environment, prints
two lines, exits 0) is run N times, one at a time, through each launcher, and timed from ``submit`` until the
launcher's answer says it ended (polled every 20 ms, the log copied):

- **local**: ``LocalLauncher`` (the job supervisor process runs the script; its end is read from the job's row);
- **container**: ``ContainerLauncher`` (``podman run -d`` of a busybox image imported locally, ``inspect`` until it
  exited, its log copied, its end kept and the container removed).

Also the bare runtime: ``podman run --rm <image> true`` against ``/bin/true`` as a subprocess. Needs root, podman
and runc (.ci/run installs them) and Debian's busybox-static package (downloaded into the tests' cache).

    .venv/bin/python benchmarks/container_benchmark.py [--runs 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adjutant.jobs import ENDED, Job, JobRequest, JobStore  # noqa: E402
from adjutant.launchers.container import ContainerLauncher  # noqa: E402
from adjutant.launchers.local import LocalLauncher  # noqa: E402
from adjutant.settings import Settings  # noqa: E402

SCRIPT = ROOT / "tests" / "container" / "scripts" / "job.sh"
CACHE = Path("/var/tmp/adjutant-container-test")
IMAGE = f"localhost/adjutant-benchmark-busybox:{os.getpid()}"


def build_image(work: Path) -> None:
    """The tests' busybox image (tests/container/conftest.py), under this benchmark's own name."""
    CACHE.mkdir(parents=True, exist_ok=True)
    if not list(CACHE.glob("busybox-static_*.deb")):
        subprocess.run(["apt-get", "download", "busybox-static"], cwd=CACHE, check=True, capture_output=True)
    deb = sorted(CACHE.glob("busybox-static_*.deb"))[-1]
    root = work / "root"
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    for applet in ("sh", "echo", "printf", "env", "sleep", "dd", "cat", "true"):
        (root / "bin" / applet).symlink_to("busybox")
    for empty in ("tmp", "proc", "sys", "dev", "etc"):
        (root / empty).mkdir(exist_ok=True)
    with tarfile.open(work / "rootfs.tar", "w") as tar:
        tar.add(root, arcname=".")
    subprocess.run(["podman", "import", "-q", str(work / "rootfs.tar"), IMAGE], check=True, capture_output=True)


def timed(run: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def job_for(store: JobStore, logs: Path, backend: str) -> Job:
    request = JobRequest(
        params={"act": "ok"},
        script=str(SCRIPT),
        requested_by_id=1,
        requested_by="bench",
        channel_id=None,
        message_id=None,
        backend=backend,
    )
    job = store.add(request, logs)
    assert store.start(job.id)
    started = store.get(job.id)
    assert started is not None
    return started


def run_local(store: JobStore, launcher: LocalLauncher, logs: Path, outputs: Path) -> None:
    job = job_for(store, logs, "local")
    (outputs / job.id).mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "ADJUTANT_JOB_ID": job.id, "ADJUTANT_OUTPUT_DIR": str(outputs / job.id)}
    launcher.submit(job, env)
    while (row := store.get(job.id)) is None or row.state not in ENDED:
        time.sleep(0.02)
    assert row.exit_code == 0, row


def run_container(store: JobStore, launcher: ContainerLauncher, logs: Path) -> None:
    job = job_for(store, logs, "container")
    update = launcher.submit(job, {"ADJUTANT_JOB_ID": job.id})
    job = dataclasses.replace(job, external_id=update.external_id)
    while (answer := launcher.refresh(job)) is None or answer.state not in ENDED:
        time.sleep(0.02)
    assert answer.exit_code == 0, answer


def row(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"| {name} | {len(times)} | {statistics.median(times):.3f} | {p95:.3f} | {max(times):.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("podman") is None:
        sys.exit("needs root and podman (apt-get install podman runc)")
    with tempfile.TemporaryDirectory(prefix="adjutant-container-bench-") as folder:
        work = Path(folder)
        conf = work / "containers.conf"
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        os.environ["CONTAINERS_CONF"] = str(conf)
        runtime_args = "--runtime runc" if shutil.which("runc") else ""
        build_image(work)
        state = work / "state"
        state.mkdir()
        db = state / "adjutant.sqlite3"
        store = JobStore(db)
        settings = Settings.from_env(
            {
                "ADJUTANT_STATE_DIR": str(state),
                "ADJUTANT_LAUNCHER": "container",
                "ADJUTANT_CONTAINER_RUNTIME": "podman",
                "ADJUTANT_CONTAINER_IMAGE": IMAGE,
                "ADJUTANT_CONTAINER_NETWORK": "none",
                "ADJUTANT_CONTAINER_ARGS": runtime_args,
            }
        )
        local = LocalLauncher(settings, str(db))
        container = ContainerLauncher(settings, str(db))
        try:
            run_local(store, local, state / "logs", work / "outputs")  # warm: the supervisor starts once
            run_container(store, container, state / "logs")  # warm: the image's layers in the page cache
            results = {
                "local job (supervisor)": timed(
                    lambda: run_local(store, local, state / "logs", work / "outputs"), args.runs
                ),
                "container job (podman)": timed(lambda: run_container(store, container, state / "logs"), args.runs),
                "/bin/true (subprocess)": timed(lambda: subprocess.run(["/bin/true"], check=True), args.runs),
                "podman run --rm true": timed(
                    lambda: subprocess.run(
                        ["podman", "run", "--rm", "--network", "none", *runtime_args.split(), IMAGE, "true"],
                        check=True,
                        capture_output=True,
                    ),
                    args.runs,
                ),
            }
        finally:
            store.close()
            subprocess.run(["podman", "rmi", "-f", IMAGE], capture_output=True, check=False)
    print("| what | runs | median (s) | p95 (s) | max (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, times in results.items():
        print(row(name, times))
    overhead = statistics.median(results["container job (podman)"]) - statistics.median(
        results["local job (supervisor)"]
    )
    print(f"\ncontainer overhead per job (median): {overhead:.3f} s")


if __name__ == "__main__":
    main()
