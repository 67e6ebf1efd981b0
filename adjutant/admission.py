"""Whether a launch runs now, waits for an approver, or is refused: GPUs, quota, approval thresholds (pure).

The cogs gather the facts (the member's rights, their quota, the size of the request) and render the answer;
the rule lives here, once, for ``$experiment``, ``$sweep`` and ``$rerun``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from adjutant.gpus import QuotaState
from adjutant.usage_render import quota_refusal, quota_warning


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
