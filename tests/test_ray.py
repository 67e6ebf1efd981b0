"""Runs the Ray launcher's tests (tests/ray) against a real Ray head inside a network namespace that has only
loopback: `unshare -n`, then `ip link set lo up`. Ray binds the machine's own network address even when told
127.0.0.1 (see the notes on Ray Jobs); in the namespace nothing can leave 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_ray_launcher_against_a_real_ray_head_on_loopback_only() -> None:
    assert shutil.which("unshare") and shutil.which("ip"), "util-linux (unshare) and iproute2 (ip) are needed"
    command = 'ip link set lo up && exec "$0" -m pytest tests/ray -q -p no:cacheprovider --timeout 300 -x'
    result = subprocess.run(
        ["unshare", "-n", "--", "bash", "-c", command, sys.executable],
        cwd=ROOT,
        env={**os.environ, "ADJUTANT_RAY_NETNS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    counted = re.search(r"(\d+) passed", output)
    assert counted is not None and int(counted[1]) >= 5 and " skipped" not in output, output[-2000:]
