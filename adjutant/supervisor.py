"""The job supervisor: ``python -m adjutant.supervisor DB_PATH JOB_ID``.

Started by the bot in a session of its own, so it outlives a restart or crash of the bot. It runs
the experiment script (``[script, params_json]``, never a shell) in a new process group with
stdout and stderr going to the job's log file, waits for it, and writes the exit code and end time
into the job's row. Cancelling signals the script's process group, not this process.

It imports nothing heavy: it lives as long as the training run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _connect(db_path: str) -> sqlite3.Connection:
    db = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


def _update(db: sqlite3.Connection, job_id: str, **values: object) -> None:
    sets = ", ".join(f"{k}=?" for k in values)
    for attempt in range(20):  # the bot may hold the write lock briefly
        try:
            db.execute(f"UPDATE jobs SET {sets} WHERE id=?", [*values.values(), job_id])  # noqa: S608
            return
        except sqlite3.OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.5)


def _log(handle: object, text: str) -> None:
    handle.write(f"[adjutant {_now()}] {text}\n".encode())  # type: ignore[attr-defined]
    handle.flush()  # type: ignore[attr-defined]


def run(db_path: str, job_id: str) -> int:
    """Run one job to its end; returns the script's exit code (negative: killed by that signal)."""
    db = _connect(db_path)
    row = db.execute("SELECT state, script, params, log_path FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row is not None and row["state"] == "cancelling":  # cancelled before the script started: never start it
        _update(db, job_id, state="cancelled", ended_at=_now())
        return 0
    if row is None or row["state"] != "starting":
        return 2
    log_path = Path(row["log_path"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    script = row["script"]
    argument = row["params"]  # the exact JSON text recorded at launch
    with log_path.open("ab", buffering=0) as log:
        _log(log, f"job {job_id}: {script} {argument}")
        try:
            child = subprocess.Popen(  # argv list: the argument is data, never shell code
                [script, argument],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(Path(script).parent),
                start_new_session=True,  # its own session and process group: cancel signals the group
                close_fds=True,
            )
        except OSError as error:
            reason = f"could not start {script}: {error.strerror or error}"
            _log(log, reason)
            code = 126 if isinstance(error, PermissionError) else 127
            _update(db, job_id, state="failed", exit_code=code, reason=reason, ended_at=_now(), started_at=_now())
            return code
        _update(
            db, job_id, state="running", pid=child.pid, pgid=child.pid, started_at=_now(), supervisor_pid=os.getpid()
        )

        def forward(signum: int, _frame: object) -> None:
            # Someone signalled the supervisor itself: pass it on to the job, and keep recording.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
        # A cancel may have been asked while the script was starting.
        state = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()["state"]
        if state == "cancelling":
            forward(signal.SIGTERM, None)
        code = child.wait()
        state = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()["state"]
        final = "cancelled" if state == "cancelling" else "succeeded" if code == 0 else "failed"
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        _log(log, f"job {job_id} ended: {how} ({final})")
        _update(db, job_id, state=final, exit_code=code, ended_at=_now())
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m adjutant.supervisor DB_PATH JOB_ID\n")
        return 2
    try:
        run(args[0], args[1])
    except Exception as error:  # the bot marks the job lost when this process dies without an end
        sys.stderr.write(f"adjutant supervisor failed: {json.dumps(str(error))}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
