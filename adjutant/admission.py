"""Whether a launch runs now, waits for an approver, or is refused: GPUs, quota, approval thresholds (pure).

The cogs gather the facts (the member's rights, their quota, the size of the request) and render the answer;
the rule lives here, once, for ``$experiment``, ``$sweep`` and ``$rerun``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum, StrEnum

from adjutant.gpus import QuotaState
from adjutant.usage_render import (
    quota_needs_time_limit,
    quota_refusal,
    quota_warning,
    quota_worst_case_refusal,
    quota_worst_case_warning,
)


class Verdict(StrEnum):
    LAUNCH = "launch"
    APPROVAL = "approval"
    REFUSED = "refused"


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    #: Refused: why (for the chat). Approval: why it waits (for the card).
    text: str = ""
    #: A note for the acknowledgement (the quota at 80 %).
    warning: str | None = None


class Unset(Enum):
    """The type of :data:`UNSET`."""

    UNSET = "unset"


#: A fact the caller did not give (a caller older than the rule that needs it).
UNSET = Unset.UNSET
#: Slack for float sums when comparing GPU-hours (a request of exactly what is left fits).
EPSILON = 1e-9


@dataclass(frozen=True)
class Request:
    """What is asked, and by whom (the facts the rule needs)."""

    gpus: int  # per job
    cells: int  # jobs
    may_launch: bool
    may_request: bool
    #: GPUs this machine hands out (ADJUTANT_GPUS), when the jobs run here; None when not counted.
    pool_size: int | None
    quota: QuotaState | None = None
    quota_frees_at: dt.datetime | None = None
    #: Hours each job may run: its own time limit (``--time``), else ADJUTANT_TIME_LIMIT; None when it has none.
    #: With a quota, the request's worst case (cells x GPUs x these hours) must fit in what is left. UNSET (the
    #: default, for callers that predate the rule): only the quota already used is checked.
    hours_per_cell: float | Unset | None = UNSET
    #: GPU-hours the member's queued and running jobs may still use up to their time limits
    #: (:func:`adjutant.gpus.committed_gpu_hours`): not left for this request.
    committed: float = 0.0

    @property
    def worst_case(self) -> float | None:
        """GPU-hours this request may use at most (None: unbounded, or not given)."""
        if isinstance(self.hours_per_cell, Unset) or self.hours_per_cell is None:
            return 0.0 if self.gpus == 0 or self.cells == 0 else None
        return self.cells * self.gpus * self.hours_per_cell


def admit(request: Request, *, approval_gpus: int | None, approval_jobs: int | None) -> Admission:
    """The rule: refuse what cannot run (more GPUs than exist, over quota); an approver for requests from members
    who may only request, and above ADJUTANT_APPROVAL_GPUS / ADJUTANT_APPROVAL_JOBS; else launch."""
    if not (request.may_launch or request.may_request):
        return Admission(Verdict.REFUSED, "not allowed")
    if request.pool_size is not None and request.gpus > request.pool_size:
        return Admission(
            Verdict.REFUSED,
            f"Not launched: it asks for {request.gpus} GPUs per job; this machine has {request.pool_size}"
            " (ADJUTANT_GPUS).",
        )
    quota = request.quota
    if quota is not None and quota.exceeded:
        assert request.quota_frees_at is not None
        return Admission(Verdict.REFUSED, quota_refusal(quota, request.quota_frees_at))
    warning = quota_warning(quota) if quota is not None and quota.warn else None
    if quota is not None and not isinstance(request.hours_per_cell, Unset):
        refusal, warning = _within_quota(request, quota)
        if refusal is not None:
            return Admission(Verdict.REFUSED, refusal)
    reasons = []
    if not request.may_launch:
        reasons.append("the requester may request launches but not launch (ADJUTANT_REQUEST_ROLES)")
    if approval_gpus is not None and request.gpus > approval_gpus:
        reasons.append(f"{request.gpus} GPUs per job is above {approval_gpus} (ADJUTANT_APPROVAL_GPUS)")
    if approval_jobs is not None and request.cells > approval_jobs:
        reasons.append(f"{request.cells} jobs is above {approval_jobs} (ADJUTANT_APPROVAL_JOBS)")
    if reasons:
        return Admission(Verdict.APPROVAL, "; ".join(reasons), warning)
    return Admission(Verdict.LAUNCH, "", warning)


def _within_quota(request: Request, quota: QuotaState) -> tuple[str | None, str | None]:
    """(refusal, warning) of the worst-case rule: a request that uses GPUs needs a time limit, and cells x GPUs x
    that limit must fit in the quota left after what is used and what queued and running jobs may still use."""
    worst = request.worst_case
    if worst is None:
        return quota_needs_time_limit(quota.quota), None
    left = quota.quota - quota.used - request.committed
    if worst > 0 and worst > left + EPSILON:
        hours = request.hours_per_cell
        assert isinstance(hours, float | int)
        refusal = quota_worst_case_refusal(
            quota, cells=request.cells, gpus=request.gpus, hours_per_cell=float(hours), committed=request.committed
        )
        return refusal, None
    reach = quota.used + request.committed + worst
    if quota.quota > 0 and reach / quota.quota >= 0.8:
        if worst > 0 or request.committed > 0:
            return None, quota_worst_case_warning(quota, worst=worst, committed=request.committed)
        return None, quota_warning(quota)
    return None, None
