"""A job's end report leads with the scheduler's truth when W&B's label says something else (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from adjutant.job_render import end_embed, scheduler_truth
from adjutant.jobs import JobState
from tests.test_escaping import NOW, job_of, run_of


def ended(state: str = JobState.FAILED, **changes):
    return dataclasses.replace(job_of("x", state), **{"cancelled_by": None, "reason": None, **changes})


@pytest.mark.parametrize(
    ("job", "truth"),
    [
        (
            ended(external_state="TIMEOUT", backend="slurm", time_limit=4 * 3600.0),
            "stopped at its time limit (TIMEOUT at 4:00:00)",
        ),
        (ended(external_state="TIMEOUT", backend="slurm", time_limit=None), "stopped at its time limit (TIMEOUT)"),
        (ended(JobState.CANCELLED, cancelled_by="@ada"), "cancelled by @ada"),
        (ended(external_state="PREEMPTED", backend="slurm"), "preempted by the scheduler (PREEMPTED)"),
        (ended(external_state="OUT_OF_MEMORY", backend="slurm"), "out of memory (OUT_OF_MEMORY)"),
        (ended(JobState.CANCELLED, external_state="CANCELLED by 1000", backend="slurm"), "cancelled"),
        (ended(external_state="FAILED", backend="slurm"), None),
        (ended(JobState.SUCCEEDED, exit_code=0), None),
        (ended(), None),
    ],
)
def test_scheduler_truth(job, truth) -> None:
    assert scheduler_truth(job) == truth


def report(job, wandb_state: str | None):
    run = None if wandb_state is None else dataclasses.replace(run_of("r"), state=wandb_state)
    return end_embed(job, log_tail=[], run=run, run_url=None, metric="loss", now=NOW, prefix="$")


def test_a_timeout_leads_the_report_with_w_and_b_s_crashed_beside_it() -> None:
    embed = report(ended(external_state="TIMEOUT", backend="slurm", time_limit=60.0), "crashed")
    assert embed["description"] == "**Stopped at its time limit (TIMEOUT at 0:01:00)** (W&B says crashed)"


def test_a_cancel_names_who_and_w_and_b_s_killed() -> None:
    embed = report(ended(JobState.CANCELLED, cancelled_by="@ada"), "killed")
    assert embed["description"] == "**Cancelled by @ada** (W&B says killed)"


def test_without_a_run_the_truth_alone_and_without_a_truth_no_lead() -> None:
    assert report(ended(external_state="PREEMPTED", backend="slurm"), None)["description"] == (
        "**Preempted by the scheduler (PREEMPTED)**"
    )
    assert "description" not in report(ended(), "crashed")
    assert "description" not in report(ended(JobState.SUCCEEDED, exit_code=0), "finished")
