"""What the launch doors say in words: a queued sweep, the outcome of a cancel (pure)."""

from __future__ import annotations

from adjutant.jobs import Job
from adjutant.render import code_safe, truncate
from adjutant.scheduler import CancelOutcome, CancelResult


def queued_text(jobs: list[Job]) -> str:
    """What a sweep's preview (or its approval) says once its jobs are queued."""
    ids = ", ".join(f"`{j.id}`" for j in jobs)
    return f"Queued {len(jobs)} experiment(s) of sweep `{jobs[0].sweep_id}`: {ids}"


def cancel_text(result: CancelResult, job_id: str, prefix: str, *, grace_seconds: float) -> str:
    """The answer to ``$cancel`` / a Cancel or Stop button."""
    job = result.job
    if result.outcome == CancelOutcome.UNKNOWN or job is None:
        return f"No job `{code_safe(truncate(job_id, 32))}`. `{prefix}jobs` lists them."
    if result.outcome == CancelOutcome.DEQUEUED:
        return f"Removed job `{job.id}` from the queue."
    if result.outcome == CancelOutcome.NOT_YET:
        return f"Could not cancel job `{job.id}` yet: {result.detail}. I will keep trying."
    if result.outcome == CancelOutcome.STOPPING:
        if job.backend == "slurm":
            return f"Stopping job `{job.id}`: scancel sent to Slurm job {job.external_id}."
        if job.backend == "ray":
            return f"Stopping job `{job.id}`: Ray was asked to stop it (SIGTERM, then SIGKILL from Ray)."
        return f"Stopping job `{job.id}`: SIGTERM sent, SIGKILL in {grace_seconds:g}s if it is still running."
    if result.outcome == CancelOutcome.ALREADY_CANCELLING:
        return f"Job `{job.id}` is already being cancelled."
    return f"Job `{job.id}` already ended ({job.state})."
