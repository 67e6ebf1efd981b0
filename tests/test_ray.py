"""Runs the Ray launcher's tests (tests/ray) against a real Ray head inside a network namespace that has only
loopback: `unshare -n`, then `ip link set lo up`. Ray binds the machine's own network address even when told
127.0.0.1 (see the notes on Ray Jobs); in the namespace nothing can leave 127.0.0.1.

Also here, without a Ray head: what the launcher says when no Ray answers (one "Ray not reachable at …", never
the prefix twice)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from adjutant.jobs import Job, JobState, JobStore
from adjutant.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: tests/faults/test_job_env.py runs this one itself (each Ray test file runs once, in one namespace).
RUN_ELSEWHERE = ("tests/ray/test_job_env.py",)


def run_ray_tests(*pytest_args: str) -> int:
    """Run ``pytest *pytest_args`` in a fresh loopback-only network namespace; the number of tests that passed
    (the run fails the calling test if anything failed or was skipped)."""
    assert shutil.which("unshare") and shutil.which("ip"), "util-linux (unshare) and iproute2 (ip) are needed"
    command = 'ip link set lo up && exec "$0" -m pytest "$@" -q -p no:cacheprovider --timeout 300 -x'
    result = subprocess.run(
        ["unshare", "-n", "--", "bash", "-c", command, sys.executable, *pytest_args],
        cwd=ROOT,
        env={**os.environ, "ADJUTANT_RAY_NETNS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    counted = re.search(r"(\d+) passed", output)
    assert counted is not None and " skipped" not in output, output[-2000:]
    return int(counted[1])


def test_the_ray_launcher_against_a_real_ray_head_on_loopback_only() -> None:
    ignored = [f"--ignore={path}" for path in RUN_ELSEWHERE]
    assert run_ray_tests("tests/ray", *ignored) >= 5


# --- no Ray answers: the message says so once ------------------------------------------------------------------------


@pytest.fixture
def job(tmp_path: Path) -> Job:
    from tests.test_scheduler import request

    store = JobStore(tmp_path / "adjutant.sqlite3")
    try:
        added = store.add(request(), tmp_path)
    finally:
        store.close()
    return Job(**{**added.__dict__, "external_id": added.id, "backend": "ray"})


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()  # resets what waits in the backlog: the launcher's stuck thread ends


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    return port


def launch_errors(address: str, job: Job) -> list[str]:
    # Imported here, with the launcher: loading the extension (in another test of this worker) re-imports
    # adjutant.*, and the error class must be the one the launcher raises.
    from adjutant.launchers import LaunchError
    from adjutant.launchers.ray import RayLauncher

    messages = []
    for call in (lambda launcher: launcher.submit(job, {}), lambda launcher: launcher.refresh(job)):
        launcher = RayLauncher(Settings.from_env({"ADJUTANT_RAY_ADDRESS": address, "ADJUTANT_RAY_TIMEOUT": "2"}), "")
        with pytest.raises(LaunchError) as raised:
            call(launcher)
        messages.append(str(raised.value))
    launcher = RayLauncher(Settings.from_env({"ADJUTANT_RAY_ADDRESS": address, "ADJUTANT_RAY_TIMEOUT": "2"}), "")
    with pytest.raises(LaunchError) as raised:
        launcher.cancel(job)
    messages.append(str(raised.value))
    return messages


def test_a_closed_port_is_said_once(job: Job) -> None:
    address = f"http://127.0.0.1:{closed_port()}"
    for message in launch_errors(address, job):
        assert message.startswith(f"Ray not reachable at {address}: "), message
        assert message.count("Ray not reachable") == 1 and message.count(address) <= 2, message
        assert "Failed to connect" in message or "onnect" in message, message


def test_a_head_that_never_answers_is_said_once(job: Job, silent_port: int) -> None:
    address = f"http://127.0.0.1:{silent_port}"
    for message in launch_errors(address, job):
        assert message == f"Ray not reachable at {address}: no answer within 2s", message


# --- a pass asks Ray once ---------------------------------------------------------------------------------------------


class RecordedRay:
    """Ray's Jobs API as its records (``JobDetails``' fields); counts every call."""

    def __init__(self, details: list[SimpleNamespace]) -> None:
        self.details = details
        self.calls: Counter[str] = Counter()

    def list_jobs(self) -> list[SimpleNamespace]:
        self.calls["list_jobs"] += 1
        return list(self.details)

    def get_job_info(self, submission_id: str) -> SimpleNamespace:
        self.calls["get_job_info"] += 1
        for details in self.details:
            if details.submission_id == submission_id:
                return details
        raise RuntimeError(f"Job {submission_id} does not exist")

    def get_job_logs(self, submission_id: str) -> str:
        self.calls["get_job_logs"] += 1
        return f"training {submission_id}\n"


def ray_record(submission_id: str | None, status: str, code: int | None = None, message: str = "") -> SimpleNamespace:
    ended = status in ("SUCCEEDED", "FAILED", "STOPPED")
    return SimpleNamespace(
        submission_id=submission_id,
        status=status,
        message=message,
        driver_exit_code=code,
        start_time=1_765_100_000_000,
        end_time=1_765_100_005_000 if ended else None,
    )


def test_a_pass_asks_ray_once_with_list_jobs_and_hears_what_get_job_info_said(job: Job, tmp_path: Path) -> None:
    from adjutant.launchers.ray import RayLauncher

    rows = {
        "jrun": JobState.STARTING,
        "jok": JobState.RUNNING,
        "jfail": JobState.RUNNING,
        "jstop": JobState.CANCELLING,
        "jstopped": JobState.RUNNING,
        "jnode": JobState.RUNNING,
        "jgone": JobState.RUNNING,
    }
    jobs = [
        replace(job, id=key, external_id=key, state=state, log_path=str(tmp_path / f"{key}.log"))
        for key, state in rows.items()
    ]
    jobs.append(replace(job, id="jnew", external_id=None, state=JobState.STARTING))  # not submitted yet
    ray = RecordedRay(
        [
            ray_record("jrun", "RUNNING"),
            ray_record("jok", "SUCCEEDED", 0),
            ray_record("jfail", "FAILED", 3, "Job entrypoint command failed with exit code 3"),
            ray_record("jstop", "STOPPED"),
            ray_record("jstopped", "STOPPED"),
            ray_record("jnode", "FAILED", None, "Job supervisor actor died: the raylet on node 10.0.0.3 is dead"),
            ray_record(None, "SUCCEEDED", 0),  # a driver started outside the Jobs API: no submission id
            ray_record("jother", "RUNNING"),  # someone else's job
        ]
    )
    launcher = RayLauncher(Settings.from_env({"ADJUTANT_RAY_ADDRESS": "http://127.0.0.1:8265"}), "")
    launcher.client = lambda: ray  # type: ignore[method-assign]
    answers = launcher.refresh_all(jobs)
    assert ray.calls["list_jobs"] == 1 and ray.calls["get_job_info"] == 0, ray.calls
    assert set(answers) == {j.id for j in jobs} and answers["jnew"] is None
    said = {key: (a.state, a.exit_code, a.reason) if a else None for key, a in answers.items()}
    assert said == {
        "jrun": (JobState.RUNNING, None, None),
        "jok": (JobState.SUCCEEDED, 0, None),
        "jfail": (JobState.FAILED, 3, None),
        "jstop": (JobState.CANCELLED, None, None),
        "jstopped": (JobState.FAILED, None, "stopped on Ray, not by Adjutant"),
        "jnode": (JobState.LOST, None, "Ray: Job supervisor actor died: the raylet on node 10.0.0.3 is dead"),
        "jgone": (JobState.LOST, None, "Ray no longer knows job jgone"),
        "jnew": None,
    }
    for one in jobs[:-2]:  # the per-job path says the same
        assert launcher.refresh(one) == answers[one.id], one.id
    assert "training jok" in Path(jobs[1].log_path).read_text(), "the log is still copied"


def test_a_pass_that_cannot_reach_ray_says_so_once(job: Job) -> None:
    from adjutant.launchers import LaunchError
    from adjutant.launchers.ray import RayLauncher

    address = f"http://127.0.0.1:{closed_port()}"
    launcher = RayLauncher(Settings.from_env({"ADJUTANT_RAY_ADDRESS": address, "ADJUTANT_RAY_TIMEOUT": "2"}), "")
    with pytest.raises(LaunchError) as raised:
        launcher.refresh_all([job])
    message = str(raised.value)
    assert message.startswith(f"Ray not reachable at {address}: ") and message.count("Ray not reachable") == 1
