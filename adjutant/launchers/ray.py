"""Ray Jobs: submit, follow, stop and read logs through Ray's own ``JobSubmissionClient``.

The Adjutant job id is Ray's ``submission_id``: before submitting, the launcher asks Ray whether it already knows
the id (a bot that died between submitting and recording comes back to the same job, never a second one). The
script runs where it is (no working directory is uploaded); the entrypoint is a shell line built with
``shlex.join``, so the script receives the JSON byte for byte as its one argument. Every call has a deadline and
runs in this launcher's own threads (the scheduler calls it from its worker thread, never the event loop). A scheduler
pass asks about all its Ray jobs with one ``list_jobs()`` (not one ``get_job_info`` per job).

The job's ``runtime_env.env_vars`` hold only :func:`~adjutant.launchers.job_environment` (Ray keeps them in the job's
record, and anyone who reaches the Jobs API reads them back). A :class:`LaunchError` is already a sentence for the
chat: it is passed on as it is, never wrapped in a second prefix.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from adjutant.jobs import ENDED, Job, JobState, JobUpdate, iso
from adjutant.launchers import Launcher, LaunchError, job_environment
from adjutant.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

INSTALL_HINT = "Ray support is not installed: pip install 'adjutant-discord[ray]'"
#: Ray's job states → Adjutant's (STOPPED becomes cancelled when Adjutant asked for it).
STATE_MAP = {
    "PENDING": JobState.STARTING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.CANCELLED,
}
#: At most this much of a job's Ray log is kept in its local log file per refresh (the rest comes next time).
LOG_CHUNK = 4 * 1024 * 1024


class RayLauncher(Launcher):
    """Jobs on a Ray cluster (ADJUTANT_RAY_ADDRESS: the dashboard's address)."""

    name = "ray"

    def __init__(self, settings: Settings, db_path: str) -> None:
        super().__init__(settings, db_path)
        self.address = settings.ray_address
        self.timeout = settings.ray_timeout
        self._client: Any = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="adjutant-ray")

    # --- calls with a deadline ------------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        future = self._pool.submit(fn, *args, **kwargs)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            raise LaunchError(f"Ray not reachable at {self.address}: no answer within {self.timeout:g}s") from None
        except (ConnectionError, OSError) as error:
            raise LaunchError(f"Ray not reachable at {self.address}: {_short(error)}") from None
        except RuntimeError:
            raise
        except Exception as error:  # requests' exceptions and Ray's own: one line for the chat
            if "connect" in type(error).__name__.lower() or "connection" in str(error).lower():
                raise LaunchError(f"Ray not reachable at {self.address}: {_short(error)}") from None
            raise LaunchError(f"Ray refused: {_short(error)}") from None

    def client(self) -> Any:
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise LaunchError(INSTALL_HINT) from None
            try:
                self._client = self._call(JobSubmissionClient, self.address)
            except LaunchError:
                raise
            except RuntimeError as error:
                raise LaunchError(f"Ray not reachable at {self.address}: {_short(error)}") from None
        return self._client

    def info(self, submission_id: str) -> Any | None:
        """Ray's record of a job, or None when Ray does not know it."""
        client = self.client()
        try:
            return self._call(client.get_job_info, submission_id)
        except LaunchError:
            raise
        except RuntimeError as error:
            if "does not exist" in str(error):
                return None
            raise LaunchError(f"Ray refused: {_short(error)}") from None

    # --- the launcher -------------------------------------------------------------------------
    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        if self.info(job.id) is None:  # never twice: the job id is Ray's submission id
            runtime_env = dict(self.settings.ray_runtime_env)
            allowed = job_environment(env, job, self.settings.job_env)  # never the bot's whole environment
            runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **allowed}
            options: dict[str, Any] = {}
            if job.gpus:  # the launch's own --gpus N
                options["entrypoint_num_gpus"] = job.gpus
            elif self.settings.ray_num_gpus is not None:
                options["entrypoint_num_gpus"] = self.settings.ray_num_gpus
            if self.settings.ray_num_cpus is not None:
                options["entrypoint_num_cpus"] = self.settings.ray_num_cpus
            client = self.client()
            try:
                self._call(
                    client.submit_job,
                    entrypoint=shlex.join([job.script, job.params_text]),
                    submission_id=job.id,
                    runtime_env=runtime_env,
                    metadata={"adjutant_job": job.id, "requested_by": job.requested_by[:100]},
                    **options,
                )
            except LaunchError:
                raise
            except RuntimeError as error:
                raise LaunchError(f"Ray refused the job: {_short(error)}") from None
            log.info("job %s submitted to Ray at %s", job.id, self.address)
        return JobUpdate(external_id=job.id, external_state="PENDING")

    def listed(self) -> dict[str, Any]:
        """Ray's records of all its jobs, by submission id: one ``list_jobs()``."""
        client = self.client()
        try:
            jobs = self._call(client.list_jobs)
        except LaunchError:
            raise
        except RuntimeError as error:
            raise LaunchError(f"Ray refused: {_short(error)}") from None
        return {details.submission_id: details for details in jobs if getattr(details, "submission_id", None)}

    def refresh_all(self, jobs: Sequence[Job]) -> dict[str, JobUpdate | None]:
        """All of a pass's Ray jobs with one ``list_jobs()`` (the submission id is the job id)."""
        if not any(job.external_id for job in jobs):
            return {job.id: None for job in jobs}
        known = self.listed()
        return {job.id: self._news(job, known.get(job.external_id)) if job.external_id else None for job in jobs}

    def refresh(self, job: Job) -> JobUpdate | None:
        """One job on its own (``get_job_info``); a pass asks :meth:`refresh_all` instead."""
        if not job.external_id:
            return None  # not submitted yet (its submission is recorded in the step that starts it)
        return self._news(job, self.info(job.external_id))

    def _news(self, job: Job, details: Any | None) -> JobUpdate | None:
        """What Ray's record of a submitted job (None: Ray does not know it) changes in its row; copies its log."""
        if details is None:
            return JobUpdate(state=JobState.LOST, reason=f"Ray no longer knows job {job.external_id}", ended_at=iso())
        self._copy_log(job)
        ray_state = str(getattr(details.status, "value", details.status))
        state = STATE_MAP.get(ray_state)
        external_state = ray_state if ray_state != job.external_state else None
        started = _ray_time(getattr(details, "start_time", None))
        if state in ENDED:
            self._copy_log(job)  # the last lines
            code = details.driver_exit_code
            reason = None
            if job.state == JobState.CANCELLING and state != JobState.SUCCEEDED:
                state = JobState.CANCELLED  # Ray says FAILED when the script died of the stop's SIGTERM first
            elif state == JobState.CANCELLED and job.state != JobState.CANCELLING:
                state, reason = JobState.FAILED, "stopped on Ray, not by Adjutant"
            elif state == JobState.FAILED and lost_on_ray(details.message or ""):
                state, reason = JobState.LOST, f"Ray: {(details.message or '').splitlines()[0][:300]}"
            elif state == JobState.FAILED and code is None:
                reason = f"Ray says: {(details.message or 'failed').splitlines()[0][:300]}"
            return JobUpdate(
                state=state,
                exit_code=code if code is not None else (0 if state == JobState.SUCCEEDED else None),
                ended_at=_ray_time(getattr(details, "end_time", None)) or iso(),
                started_at=started,
                reason=reason,
                external_state=external_state,
            )
        if state == JobState.RUNNING and job.state == JobState.STARTING:
            return JobUpdate(state=state, started_at=started or iso(), external_state=external_state)
        return JobUpdate(external_state=external_state) if external_state else None

    def cancel(self, job: Job) -> None:
        if not job.external_id:
            return
        client = self.client()
        try:
            self._call(client.stop_job, job.external_id)
        except LaunchError:
            raise
        except RuntimeError as error:
            raise LaunchError(f"Ray could not stop job {job.external_id}: {_short(error)}") from None

    def escalate(self, job: Job) -> None:
        """Ray sends SIGKILL itself after its own grace period; ask it to stop once more."""
        try:
            self.cancel(job)
        except LaunchError as error:
            log.warning("could not stop Ray job %s again: %s", job.id, error)

    def _copy_log(self, job: Job) -> None:
        """Append what Ray has of the job's log beyond the local copy (``$logs``, log alerts and end reports read
        the local file, whatever the backend)."""
        client = self.client()
        try:
            text = self._call(client.get_job_logs, job.external_id)
        except RuntimeError as error:  # LaunchError too
            log.info("no log of Ray job %s yet: %s", job.id, error)
            return
        data = text.encode("utf-8", "replace")
        path = Path(job.log_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            have = path.stat().st_size if path.exists() else 0
            if len(data) > have:
                with path.open("ab") as log_file:
                    log_file.write(data[have : have + LOG_CHUNK])
        except OSError as error:
            log.warning("cannot keep the log of Ray job %s: %s", job.id, error)


#: How Ray's job messages say that the job's node or its supervisor died (not the script): a lost job.
_LOST_ON_RAY = re.compile(r"(node|raylet)\b.*\b(died|dead|lost|failed)|job supervisor actor .*died|actor died", re.I)


def lost_on_ray(message: str) -> bool:
    """Did Ray end the job because its node (or the job's supervisor actor) died? Then it is lost, not failed."""
    return bool(_LOST_ON_RAY.search(message)) and "exit code" not in message.lower()


def _ray_time(millis: Any) -> str | None:
    if not isinstance(millis, int | float) or millis <= 0:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:300]
