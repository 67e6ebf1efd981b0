"""Fault: the job supervisor goes away after taking a start request and before answering it (killed, or exiting just
as it was asked). The launcher asks once more, starting a supervisor again, and the job starts once; a supervisor
that never answers fails the start with a sentence. Real supervisor, real script, real SQLite file."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adjutant import supervisor
from adjutant.db.models import JobState
from adjutant.jobs import JobStore
from adjutant.launchers import LaunchError
from adjutant.launchers.local import LocalLauncher
from adjutant.settings import Settings
from tests.cogs.test_experiments import SCRIPT
from tests.test_scheduler import request


def impostor(address: bytes, answers: int) -> threading.Thread:
    """A 'supervisor' on the address that reads ``answers`` start requests and closes each without a word, then
    stops listening."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen(8)

    def serve() -> None:
        with server:
            for _ in range(answers):
                connection, _ = server.accept()
                with connection:
                    connection.recv(65536)  # the request, taken and dropped

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def starting_job(tmp_path: Path, out_dir: Path) -> tuple[JobStore, str, dict[str, str]]:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    job = store.add(replace(request(1), params={"sleep": 0}, script=str(SCRIPT), backend="local"), tmp_path / "logs")
    assert store.start(job.id)
    env = {"PATH": "/usr/bin:/bin", "ADJUTANT_JOB_ID": job.id, "ADJUTANT_TEST_OUT": str(out_dir)}
    return store, job.id, env


def test_a_supervisor_gone_before_answering_is_asked_again_and_the_job_starts_once(tmp_path, out_dir) -> None:
    store, job_id, env = starting_job(tmp_path, out_dir)
    launcher = LocalLauncher(Settings.from_env({}), str(tmp_path / "adjutant.sqlite3"))
    gone = impostor(supervisor.socket_name(launcher.db_path), answers=1)
    try:
        update = launcher.submit(store.get(job_id), env)
        gone.join(5)
        assert update.supervisor_pid, "the second ask reached a real supervisor, which started the job"
        deadline = time.monotonic() + 20
        while not (out_dir / f"{job_id}.json").exists():
            assert time.monotonic() < deadline, "the job never ran"
            time.sleep(0.05)
        row = store.get(job_id)
        assert row.state in (JobState.RUNNING, JobState.SUCCEEDED) and row.attempt == 1
    finally:
        store.close()


def test_a_supervisor_that_never_answers_fails_the_start_with_a_sentence(tmp_path, out_dir) -> None:
    store, job_id, env = starting_job(tmp_path, out_dir)
    launcher = LocalLauncher(Settings.from_env({}), str(tmp_path / "adjutant.sqlite3"))
    impostor(supervisor.socket_name(launcher.db_path), answers=2)
    try:
        with pytest.raises(LaunchError, match="the job supervisor did not answer: it closed the connection"):
            launcher.submit(store.get(job_id), env)
        assert not (out_dir / f"{job_id}.json").exists()
    finally:
        store.close()
