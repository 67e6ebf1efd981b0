"""The Ray launcher's tests run against a real Ray head, inside a network namespace that has only loopback (Ray binds
the machine's own address even when told 127.0.0.1). `tests/test_ray.py` starts this folder's tests in such a
namespace (`unshare -n`); collected anywhere else, they are left out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cogs.conftest import out_dir  # noqa: F401 (a fixture, re-exported)

IN_NAMESPACE = os.environ.get("ADJUTANT_RAY_NETNS") == "1"
if not IN_NAMESPACE:
    collect_ignore_glob = ["test_*.py"]

RAY = str(Path(sys.executable).parent / "ray")
ADDRESS = "http://127.0.0.1:8265"


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Ray head for the session (about 4 s to start), on loopback only; stopped afterwards."""
    # A busy machine starts a head slowly: give its control service (GCS) time, as Ray's own tests on CI do.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_gcs_rpc_server_reconnect_timeout_s": "240"}
    started = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            "--num-cpus=2",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            "--disable-usage-stats",
            f"--temp-dir={tmp_path_factory.mktemp('ray')}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 240
        while True:
            try:
                JobSubmissionClient(ADDRESS).list_jobs()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield ADDRESS
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
