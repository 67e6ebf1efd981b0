"""Fault: the state folder's disk is full when a job ends (a small real tmpfs, filled to the last byte).
The supervisor keeps the exit code (in memory and in a side file reserved when the job started) and
records it when it can; the bot reports the real code, never "lost"."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cogs.test_experiments import fields, launch, wait_report
from tests.standins.discord_standin import DiscordStandIn


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MB filesystem (tmpfs) for the state folder."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if result.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {result.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> Path:
    """Write until the filesystem says it is full; returns the filler to delete later."""
    filler = disk / "filler"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


@pytest.fixture
def exits_7(tmp_path: Path) -> Path:
    script = tmp_path / "exits7.sh"
    script.write_text("#!/bin/sh\nsleep 3\nexit 7\n")  # prints nothing: a full disk cannot change its code
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("supervisor_killed", [False, True])
async def test_a_full_disk_keeps_the_exit_code(
    start_adjutant, discord_standin: DiscordStandIn, small_disk: Path, exits_7: Path, supervisor_killed: bool
) -> None:
    env = {"ADJUTANT_STATE_DIR": str(small_disk / "state"), "ADJUTANT_EXPERIMENT_SCRIPT": str(exits_7)}
    async with start_adjutant(env) as bot:
        job_id = await launch(discord_standin, '{"epochs": 1}')
        store = bot.get_cog("Experiments").services.jobs
        await asyncio.sleep(0.5)
        job = await asyncio.to_thread(store.get, job_id)
        assert job.state == "running"
        filler = fill(small_disk)
        await asyncio.sleep(14)  # the job ends at 3 s; the disk stays full for more than 10 s
        during = await asyncio.to_thread(store.get, job_id)
        assert during.state == "running", "the fault is real: the supervisor could not record the end"
        assert Path(job.log_path + ".exit").read_text().strip() == "7", "but the side file holds the exit code"
        if supervisor_killed:
            os.kill(job.supervisor_pid, signal.SIGKILL)  # and its memory of the exit code is gone too
            await asyncio.sleep(0.5)
        filler.unlink()
        done = await wait_report(discord_standin, job_id, timeout=30)
    assert done["embeds"][0]["title"] == f"❌ Experiment {job_id} failed"
    assert fields(done)["Exit code"] == "7"
