"""Jobs on this machine: a supervisor process per job (:mod:`adjutant.supervisor`)."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import threading

from adjutant import supervisor
from adjutant.jobs import Job, JobState, JobUpdate, iso, process_alive, signal_group, utcnow
from adjutant.launchers import Launcher, LaunchError

#: A job marked starting whose supervisor is not recorded yet gets this long before it counts as lost.
STARTING_GRACE = dt.timedelta(seconds=60)


class LocalLauncher(Launcher):
    """The supervisor records the script's start and end in the job's row; this launcher only starts
    it, notices when it vanished, and signals the script's process group."""

    name = "local"

    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        # The supervisor lives as long as the training: it is started as a plain stdlib script in isolated
        # mode without site-packages (-I -S), so it loads neither adjutant's dependencies nor any .pth hook.
        argv = [sys.executable, "-I", "-S", supervisor.__file__, self.db_path, job.id]
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
        # Reap it if it ends while the bot runs; if the bot ends first, it is re-parented and goes on.
        threading.Thread(target=self._reap, args=(process,), name=f"reap-{process.pid}", daemon=True).start()
        return JobUpdate(supervisor_pid=process.pid)

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        if self.on_change is not None:
            self.on_change()  # the job has ended (its row says how): let the scheduler fill the slot now

    def refresh(self, job: Job) -> JobUpdate | None:
        if process_alive(job.supervisor_pid, job.id):
            return None
        if job.state == JobState.STARTING and job.supervisor_pid is None and utcnow() - job.created_at < STARTING_GRACE:
            return None
        if job.supervisor_pid is None:
            reason = "the bot stopped while starting it; launch it again"
        else:
            reason = (
                f"its supervisor process ({job.supervisor_pid}) is gone without recording how the script "
                "ended (machine restart or kill -9?)"
            )
        return JobUpdate(state=JobState.LOST, reason=reason, ended_at=iso())

    def cancel(self, job: Job) -> None:
        signal_group(job.pgid, signal.SIGTERM)  # the supervisor forwards it too if the script is starting

    def escalate(self, job: Job) -> None:
        signal_group(job.pgid, signal.SIGKILL)
