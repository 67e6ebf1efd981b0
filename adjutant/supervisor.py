"""The job supervisor: ONE small process per state folder that runs every local job and records its end.

    python -I -S .../adjutant/supervisor.py DB_PATH

Started by the bot (the local launcher) in a session of its own, so it outlives restarts and crashes of
the bot; it exits by itself after IDLE_EXIT seconds without jobs. Standard library only: it is started
in isolated mode without site-packages, and one process serves all jobs (about 10 MB in all).

The bot talks to it over a Unix socket in the abstract namespace (no file; only the same user may
connect, checked with SO_PEERCRED), one JSON object per line:

    bot → supervisor   {"op": "start", "job": "j4k2m9x", "env": {...}}     the job's row says what to run
    supervisor → bot   {"started": "j4k2m9x", "pid": 1234, "supervisor": 99}   or {"error": "..."}
    supervisor → bot   {"ended": "j4k2m9x", "code": 0}                      later, on the same connection

The job's environment travels only over the socket (never to disk). The script runs as
``[script, params_json]`` (never a shell) in a new session and process group, output appended to the
job's log; cancelling signals that group (the bot does it). When a script ends, its exit code is
written first into a side file pre-allocated when it started (``<log>.exit``: no new disk blocks needed,
so a full disk cannot lose it), then into the job's row; a row that cannot be written (disk full, a
lock) keeps its update in memory and is retried every second until it succeeds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import selectors
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

#: Seconds without a running job or a connected bot after which the supervisor exits.
IDLE_EXIT = 30.0
#: Bytes reserved in each job's exit-code side file when the job starts.
EXIT_FILE_SIZE = 32


def socket_name(db_path: str) -> bytes:
    """The abstract socket address of the supervisor of a database (its path may be long; this is short)."""
    digest = hashlib.sha256(os.path.realpath(db_path).encode()).hexdigest()[:24]
    return b"\0adjutant-supervisor-" + digest.encode()


def exit_file(log_path: str) -> Path:
    return Path(log_path + ".exit")


def read_exit_file(log_path: str) -> int | None:
    """The exit code the supervisor wrote for a job, if it did."""
    try:
        text = exit_file(log_path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Supervisor:
    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.db = sqlite3.connect(db_path, timeout=5, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: as safe against crashes of any process, far fewer syncs
        self.children: dict[int, dict[str, Any]] = {}  # pid → job info
        self.clients: dict[socket.socket, bytes] = {}  # connection → unread input
        self.watchers: dict[str, socket.socket] = {}  # job id → the connection that started it
        self.pending: list[tuple[str, str, list[Any]]] = []  # row updates not written yet: (job, sql, args)
        self.selector = selectors.DefaultSelector()
        self.idle_since = time.monotonic()

    # --- the database, never lost -------------------------------------------------------------
    def write(self, job_id: str, **values: Any) -> None:
        sets = ", ".join(f"{key}=?" for key in values)
        self.pending.append((job_id, f"UPDATE jobs SET {sets} WHERE id=?", [*values.values(), job_id]))  # noqa: S608
        self.flush()

    def write_started(self, job_id: str, pid: int) -> None:
        """The script runs: its pid and group, and ``running``, unless a cancel came first (then the row keeps
        ``cancelling``: one statement, so a cancel is never overwritten)."""
        sql = (
            "UPDATE jobs SET pid=?, pgid=?, started_at=?, supervisor_pid=?,"
            " state=CASE WHEN state='starting' THEN 'running' ELSE state END WHERE id=?"
        )
        self.pending.append((job_id, sql, [pid, pid, _now(), os.getpid(), job_id]))
        self.flush()

    def flush(self) -> None:
        while self.pending:
            job_id, sql, args = self.pending[0]
            try:
                self.db.execute(sql, args)
            except sqlite3.Error as error:
                self.note(f"cannot record job {job_id} yet ({error}); retrying")
                return
            self.pending.pop(0)

    def note(self, text: str) -> None:
        with contextlib.suppress(OSError):
            sys.stderr.write(f"[adjutant supervisor {_now()}] {text}\n")
            sys.stderr.flush()

    # --- starting jobs --------------------------------------------------------------------------
    def start(self, job_id: str, env: dict[str, str]) -> dict[str, Any]:
        try:
            row = self.db.execute("SELECT state, script, params, log_path FROM jobs WHERE id=?", (job_id,)).fetchone()
        except sqlite3.Error as error:
            return {"error": f"cannot read job {job_id}: {error}"}
        if row is None:
            return {"error": f"no job {job_id}"}
        if any(info["job"] == job_id for info in self.children.values()):
            return {"error": f"job {job_id} is already running"}
        if row["state"] == "cancelling":  # cancelled before the script started: never start it
            self.write(job_id, state="cancelled", ended_at=_now())
            return {"ended": job_id, "code": None}
        if row["state"] != "starting":
            return {"error": f"job {job_id} is {row['state']}, not starting"}
        log_path, script, argument = row["log_path"], row["script"], row["params"]
        try:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            with exit_file(log_path).open("wb") as side:  # reserve the exit code's bytes now
                side.write(b" " * EXIT_FILE_SIZE)
            log = open(log_path, "ab", buffering=0)  # noqa: SIM115 (kept open for the child's lifetime)
        except OSError as error:
            reason = f"could not prepare the job's log in {Path(log_path).parent}: {error.strerror or error}"
            self.write(job_id, state="failed", reason=reason, ended_at=_now(), started_at=_now())
            return {"ended": job_id, "code": None}
        with contextlib.suppress(OSError):
            log.write(f"[adjutant {_now()}] job {job_id}: {script} {argument}\n".encode())
        try:
            child = subprocess.Popen(  # argv list: the argument is data, never shell code
                [script, argument],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(Path(script).parent),
                env=env,
                start_new_session=True,  # its own session and process group: cancel signals the group
                close_fds=True,
                preexec_fn=_default_signals,
            )
        except OSError as error:
            reason = f"could not start {script}: {error.strerror or error}"
            code = 126 if isinstance(error, PermissionError) else 127
            with contextlib.suppress(OSError):
                log.write(f"[adjutant {_now()}] {reason}\n".encode())
            log.close()
            self.record_end(job_id, log_path, code, reason=reason)
            return {"ended": job_id, "code": code}
        self.children[child.pid] = {"job": job_id, "log": log, "log_path": log_path, "popen": child}
        self.write_started(job_id, child.pid)
        # A cancel may have been asked while the script was starting.
        with contextlib.suppress(sqlite3.Error):
            state = self.db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()["state"]
            if state == "cancelling":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        return {"started": job_id, "pid": child.pid, "supervisor": os.getpid()}

    # --- ends -----------------------------------------------------------------------------------
    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            info = self.children.pop(pid, None)
            if info is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            info["popen"].returncode = code  # reaped here: the Popen object must not wait again
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            final = self.record_end(info["job"], info["log_path"], code)
            with contextlib.suppress(OSError):
                info["log"].write(f"[adjutant {_now()}] job {info['job']} ended: {how} ({final})\n".encode())
            info["log"].close()
            self.tell(info["job"], {"ended": info["job"], "code": code})

    def record_end(self, job_id: str, log_path: str, code: int, reason: str | None = None) -> str:
        with contextlib.suppress(OSError), exit_file(log_path).open("r+b") as side:
            side.write(f"{code}\n".encode().ljust(EXIT_FILE_SIZE))  # in place: no new blocks on a full disk
        state = None
        with contextlib.suppress(sqlite3.Error):
            state = self.db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()["state"]
        final = "cancelled" if state == "cancelling" else "succeeded" if code == 0 else "failed"
        values: dict[str, Any] = {"state": final, "exit_code": code, "ended_at": _now()}
        if reason:
            values.update(reason=reason, started_at=_now())
        self.write(job_id, **values)
        return final

    # --- the socket -----------------------------------------------------------------------------
    def tell(self, job_id: str, message: dict[str, Any]) -> None:
        connection = self.watchers.pop(job_id, None)
        if connection is not None:
            self.send(connection, message)

    def send(self, connection: socket.socket, message: dict[str, Any]) -> None:
        try:
            connection.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            self.drop(connection)

    def drop(self, connection: socket.socket) -> None:
        self.clients.pop(connection, None)
        for job_id, watcher in list(self.watchers.items()):
            if watcher is connection:
                del self.watchers[job_id]
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(connection)
        connection.close()

    def accept(self, server: socket.socket) -> None:
        connection, _ = server.accept()
        credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", credentials)
        if uid != os.getuid():  # only the bot's own user may start jobs
            connection.close()
            return
        connection.setblocking(False)
        self.clients[connection] = b""
        self.selector.register(connection, selectors.EVENT_READ, "client")

    def receive(self, connection: socket.socket) -> None:
        try:
            data = connection.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(connection)
            return
        buffer = self.clients[connection] + data
        *lines, rest = buffer.split(b"\n")
        self.clients[connection] = rest
        for line in lines:
            try:
                request = json.loads(line)
                job_id, env = str(request["job"]), {str(k): str(v) for k, v in dict(request["env"]).items()}
            except (ValueError, KeyError, TypeError):
                self.send(connection, {"error": "bad request"})
                continue
            answer = self.start(job_id, env)
            if "started" in answer:
                self.watchers[job_id] = connection
            self.send(connection, answer)

    # --- the loop -------------------------------------------------------------------------------
    def serve(self, server: socket.socket) -> None:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in IGNORED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # jobs run on; the bot cancels them through their groups
        self.selector.register(server, selectors.EVENT_READ, "server")
        self.selector.register(wake_read, selectors.EVENT_READ, "signal")
        while True:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "server":
                    self.accept(server)
                elif key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 4096)
                else:
                    self.receive(cast("socket.socket", key.fileobj))  # registered as "client" in accept()
            self.reap()
            self.flush()
            if self.children or self.clients or self.pending:
                self.idle_since = time.monotonic()
            elif time.monotonic() - self.idle_since > IDLE_EXIT:
                return


#: The signals the supervisor ignores; ignored dispositions survive exec, so each job gets them back.
IGNORED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _default_signals() -> None:
    """(in the job's process, before exec) SIGTERM, SIGINT and SIGHUP as a script expects them: a cancel's
    SIGTERM must stop it, not wait for the SIGKILL after the grace period."""
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -I -S supervisor.py DB_PATH\n")
        return 2
    db_path = args[0]
    lock = open(db_path + ".supervisor.lock", "a")  # noqa: SIM115 (held for the process's lifetime)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another supervisor serves this folder
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(socket_name(db_path))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return 0
        raise
    server.listen(64)
    server.setblocking(False)
    Supervisor(db_path).serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
