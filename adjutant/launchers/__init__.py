"""Where experiment jobs run. One small interface, one file per backend.

A launcher is synchronous (it runs subprocesses or talks to a scheduler) and is called from a worker
thread. The job's row in SQLite is the truth; a launcher turns a queued job into a running one and
tells what changed since. To add a backend (Kubernetes Jobs, Ray Jobs, ...), write one module with
a :class:`Launcher` subclass and register it in :func:`make_launcher`.

A job on this machine gets the bot's environment without its secrets of Discord and wandb (its script needs PATH,
HOME and the rest to run here). A job on another machine (Slurm, Ray) gets only :func:`job_environment`: its ids, its
W&B run variables and the variables named in ``ADJUTANT_JOB_ENV``. Ray keeps that environment in each job's record,
readable by anyone who reaches its Jobs API; Slurm keeps it with the job on its controller.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence

from adjutant.jobs import Job, JobUpdate
from adjutant.settings import Settings

log = logging.getLogger(__name__)

#: What a job on another machine needs from Adjutant: its id, and the W&B run and project it reports to.
JOB_VARIABLES = (
    "ADJUTANT_JOB_ID",
    "WANDB_RUN_ID",
    "WANDB_RESUME",
    "WANDB_RUN_GROUP",
    "WANDB_TAGS",
    "WANDB_ENTITY",
    "WANDB_PROJECT",
    "WANDB_BASE_URL",
)
#: The GPUs Adjutant handed a job itself; only then are they the job's (a cluster sets its own).
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ADJUTANT_GPUS")
#: A sweep trial's W&B sweep (its run is attached to it); only a trial's (see Job.wandb_sweep_id).
SWEEP_VARIABLES = ("WANDB_SWEEP_ID",)
#: Never passed to a job, even when named: the bot's Discord token and its wandb-core socket.
NEVER_PASSED = frozenset({"DISCORD_TOKEN", "WANDB_SERVICE"})


def job_environment(env: Mapping[str, str], job: Job, named: Iterable[str] = ()) -> dict[str, str]:
    """(pure) The part of a job's environment ``env`` that may leave this machine: :data:`JOB_VARIABLES`, the GPU
    variables when Adjutant handed the job its GPUs, a sweep trial's :data:`SWEEP_VARIABLES`, and the variables
    ``named`` (``ADJUTANT_JOB_ENV``). Nothing else: not PATH, not HOME, not ``WANDB_API_KEY`` unless named, never
    :data:`NEVER_PASSED` or wandb's ``_WANDB*``.
    """
    names = [
        *JOB_VARIABLES,
        *(GPU_VARIABLES if job.gpu_ids else ()),
        *(SWEEP_VARIABLES if job.wandb_sweep_id else ()),
        *named,
    ]
    return {
        name: env[name]
        for name in dict.fromkeys(names)
        if name in env and name not in NEVER_PASSED and not name.startswith("_WANDB")
    }


class LaunchError(RuntimeError):
    """The backend refused or could not be reached; the message is for the chat."""


class Launcher(ABC):
    """Submit, follow and cancel jobs on one backend."""

    #: Stored in each job's ``backend`` column, so a restart with another setting still follows old jobs.
    name: str = ""
    #: Whether Adjutant preempts this backend's jobs itself (:meth:`preempt`); a cluster preempts its own.
    preempts: bool = False

    def __init__(self, settings: Settings, db_path: str) -> None:
        self.settings = settings
        self.db_path = db_path
        #: Called (from any thread) when the launcher learns by itself that a job may have ended, so the
        #: scheduler looks at once instead of at its next pass.
        self.on_change: Callable[[], None] | None = None

    def preempt(self, job: Job) -> bool:
        """Send a running job the preemption signal (ADJUTANT_PREEMPT_SIGNAL); True if it was sent. Only backends
        with ``preempts`` do; the others say no."""
        return False

    @abstractmethod
    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        """Start ``job`` (state ``starting``) with exactly ``env``; return what to record."""

    @abstractmethod
    def refresh(self, job: Job) -> JobUpdate | None:
        """What changed for an active job (a new state, an end, a loss), or None if nothing did.

        Raises :class:`LaunchError` when the backend cannot be asked now (nothing is changed then).
        """

    def refresh_all(self, jobs: Sequence[Job]) -> dict[str, JobUpdate | None]:
        """What changed for each of a pass's active ``jobs`` of this backend: job id → :meth:`refresh`'s answer.

        A backend that can answer for many jobs at once overrides this with one batched call (Slurm, Ray); the
        default asks :meth:`refresh` job by job. A job left out of the answer could not be checked this time (its
        row stays as it is; the reason is logged). Raises :class:`LaunchError` when the backend could be asked about
        none of them.
        """
        answers: dict[str, JobUpdate | None] = {}
        failed: LaunchError | None = None
        for job in jobs:
            try:
                answers[job.id] = self.refresh(job)
            except LaunchError as error:
                log.warning("cannot check job %s: %s", job.id, error)
                failed = error
        if failed is not None and not answers:
            raise failed
        return answers

    @abstractmethod
    def cancel(self, job: Job) -> None:
        """Ask the backend to stop ``job`` (its row already says ``cancelling``)."""

    def escalate(self, job: Job) -> None:  # noqa: B027 (optional hook)
        """The cancel grace period is over and the job still runs: force it (default: nothing)."""


def make_launcher(name: str, settings: Settings, db_path: str) -> Launcher:
    """The launcher called ``name`` (``local``, ``slurm``, ``ray`` or ``container``)."""
    if name == "local":
        from adjutant.launchers.local import LocalLauncher

        return LocalLauncher(settings, db_path)
    if name == "slurm":
        from adjutant.launchers.slurm import SlurmLauncher

        return SlurmLauncher(settings, db_path)
    if name == "ray":
        from adjutant.launchers.ray import RayLauncher

        return RayLauncher(settings, db_path)
    if name == "container":
        from adjutant.launchers.container import ContainerLauncher

        return ContainerLauncher(settings, db_path)
    raise LaunchError(f"unknown launcher {name!r}")
