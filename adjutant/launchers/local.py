"""Jobs on this machine, run by one supervisor process per state folder (:mod:`adjutant.supervisor`).

The supervisor records each script's start and end in the job's row; this launcher makes sure it runs,
hands it a job and the job's environment over its socket, notices when it vanished, and signals the
script's process group to cancel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from adjutant import supervisor
from adjutant.jobs import Job, JobState, JobUpdate, iso, process_alive, signal_group, utcnow
from adjutant.launchers import Launcher, LaunchError

log = logging.getLogger(__name__)

#: A job marked starting whose supervisor is not recorded yet gets this long before it counts as lost.
STARTING_GRACE = dt.timedelta(seconds=60)
#: How long to wait for a supervisor that was just started to listen.
SUPERVISOR_START_SECONDS = 10.0
#: The supervisor's own environment: it needs nothing (each job's comes over the socket), least of all secrets.
SUPERVISOR_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ")


class _NoAnswer(Exception):
    """The supervisor went away before it answered a start."""


class LocalLauncher(Launcher):
    """Start jobs through the state folder's supervisor; follow them through their rows."""

    name = "local"
    preempts = True

    def _connect(self) -> socket.socket:
        """A connection to the supervisor, starting it if none runs."""
        address = supervisor.socket_name(self.db_path)
        started = False
        deadline = time.monotonic() + SUPERVISOR_START_SECONDS
        while True:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                connection.connect(address)
                return connection
            except OSError:
                connection.close()
            if not started:
                self._start_supervisor()
                started = True
            if time.monotonic() > deadline:
                raise LaunchError(f"the job supervisor did not start within {SUPERVISOR_START_SECONDS:g}s")
            time.sleep(0.02)

    def _start_supervisor(self) -> None:
        # Started as a plain stdlib script in isolated mode without site-packages (-I -S): it lives as long as
        # the jobs do, and loads neither adjutant's dependencies nor any .pth hook.
        argv = [sys.executable, "-I", "-S", supervisor.__file__, self.db_path]
        env = {key: os.environ[key] for key in SUPERVISOR_ENV_KEEP if key in os.environ}
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # outlives the bot; the bot's SIGINT/SIGTERM never reaches it
                close_fds=True,
            )
        except OSError as error:
            raise LaunchError(f"could not start the job supervisor: {error}") from error
        threading.Thread(target=process.wait, name=f"reap-supervisor-{process.pid}", daemon=True).start()

    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        """Ask the supervisor to start the job. A supervisor that goes away before answering (killed, or exiting
        just as it was asked) is asked once more, started again if need be: it starts a job only while its row says
        ``starting``, so a start whose answer was lost is never doubled."""
        try:
            return self._submit_once(job, env)
        except _NoAnswer as error:
            log.warning("job %s: the job supervisor did not answer (%s); asking again", job.id, error)
        try:
            return self._submit_once(job, env)
        except _NoAnswer as error:
            raise LaunchError(f"the job supervisor did not answer: {error}") from None

    def _submit_once(self, job: Job, env: dict[str, str]) -> JobUpdate:
        connection = self._connect()
        try:
            connection.settimeout(30)
            connection.sendall(json.dumps({"op": "start", "job": job.id, "env": env}).encode() + b"\n")
            reader = connection.makefile("rb")
            line = reader.readline()
            if not line:
                raise _NoAnswer("it closed the connection")
            answer = json.loads(line)
        except OSError as error:
            connection.close()
            raise _NoAnswer(str(error)) from error
        except ValueError as error:
            connection.close()
            raise LaunchError(f"the job supervisor did not answer: {error}") from error
        if "error" in answer:
            connection.close()
            raise LaunchError(f"the job supervisor refused: {answer['error']}")
        if "started" not in answer:  # ended at once (could not start, or cancelled first): its row says how
            connection.close()
            self._changed()
            return JobUpdate()
        # Keep the connection: the supervisor says on it when the job ends, so the slot is filled at once.
        threading.Thread(target=self._await_end, args=(connection, reader), name=f"await-{job.id}", daemon=True).start()
        return JobUpdate(supervisor_pid=int(answer["supervisor"]))

    def _await_end(self, connection: socket.socket, reader: object) -> None:
        with contextlib.suppress(OSError, ValueError):
            connection.settimeout(None)
            reader.readline()  # type: ignore[attr-defined]  # {"ended": ...}, or EOF if the supervisor died
        connection.close()
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def refresh(self, job: Job) -> JobUpdate | None:
        if process_alive(job.supervisor_pid, self.db_path):
            return None
        if job.supervisor_pid is None and utcnow() - job.created_at < STARTING_GRACE:
            # Being handed to the supervisor (also when a cancel came first): its answer is on the way.
            return None
        code = supervisor.read_exit_file(job.log_path)
        if code is not None:  # it ended, but its row could not be written (a full disk); the side file kept it
            state = (
                JobState.CANCELLED
                if job.state == JobState.CANCELLING
                else JobState.SUCCEEDED
                if code == 0
                else JobState.FAILED
            )
            return JobUpdate(state=state, exit_code=code, ended_at=iso())
        if job.supervisor_pid is None:
            reason = "the bot stopped while starting it; launch it again"
        else:
            reason = (
                f"its supervisor process ({job.supervisor_pid}) is gone without recording how the script "
                "ended (machine restart or kill -9?)"
            )
        return JobUpdate(state=JobState.LOST, reason=reason, ended_at=iso())

    def cancel(self, job: Job) -> None:
        signal_group(job.pgid, signal.SIGTERM)

    # --- preemption (ADJUTANT_PREEMPT_SIGNAL, then SIGTERM after the grace, then SIGKILL) -------------------------
    @property
    def preempt_grace_seconds(self) -> float:
        """Seconds between the preemption signal and SIGTERM (ADJUTANT_PREEMPT_GRACE_SECONDS)."""
        return float(self.settings.preempt_grace_seconds)

    @property
    def preempt_signal(self) -> signal.Signals:
        return signal.Signals[f"SIG{self.settings.preempt_signal}"]

    def preempt(self, job: Job) -> bool:
        """Ask the job's process group to save a checkpoint and exit (its row already records the decision); False
        when the group is gone."""
        return signal_group(job.pgid, self.preempt_signal)

    def escalate(self, job: Job) -> None:
        signal_group(job.pgid, signal.SIGKILL)
