"""Pure rendering of GPUs, usage, quotas, approval cards and the audit trail into embeds (dicts) and lines."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from adjutant.approvals import Approval, ApprovalState, AuditEntry
from adjutant.gpus import QuotaState, UsageReport
from adjutant.jobs import Job
from adjutant.nvml import GpuReading
from adjutant.render import code_safe, fit_embed, format_duration, paged_embeds, plain, truncate


def gpu_lines(
    pool: Sequence[int],
    holders: Mapping[int, Job],
    readings: Sequence[GpuReading] | None,
    now: dt.datetime,
    *,
    adjutant_pgids: set[int] | frozenset[int] = frozenset(),
    busy_mb: float = 1024,
) -> list[str]:
    """One line per GPU: free, or the job on it (its launcher, for how long); with NVML readings also
    utilisation, memory, temperature, and processes Adjutant did not start."""
    by_index = {r.index: r for r in readings or ()}
    lines = []
    for gpu in pool:
        job = holders.get(gpu)
        reading = by_index.get(gpu)
        if job is not None:
            who = plain(truncate(job.requested_by, 40))
            line = f"**GPU {gpu}** · `{job.id}` by {who} · {format_duration(job.duration(now))}"
        elif reading is not None and reading.memory_used_mb > busy_mb:
            line = f"**GPU {gpu}** · busy outside Adjutant"
        else:
            line = f"**GPU {gpu}** · free"
        if reading is not None:
            util = "?" if reading.utilization is None else f"{reading.utilization:.0f}%"
            temp = "" if reading.temperature is None else f" · {reading.temperature:.0f}°C"
            memory = f"{reading.memory_used_mb / 1024:.1f}/{reading.memory_total_mb / 1024:.0f} GiB"
            line += f" · {util} · {memory}{temp}"
            others = [p for p in reading.processes if p.pgid is None or p.pgid not in adjutant_pgids]
            if others:
                listed = ", ".join(f"pid {p.pid} ({p.used_mb / 1024:.1f} GiB)" for p in others[:3])
                more = f" and {len(others) - 3} more" if len(others) > 3 else ""
                line += f"\n  not Adjutant's: {listed}{more}"
        lines.append(line)
    return lines


def gpus_embed(lines: Sequence[str], *, free: int, queued: int, note: str | None = None) -> dict[str, Any]:
    description = "\n".join(lines) or "No GPUs are configured (ADJUTANT_GPUS)."
    embed: dict[str, Any] = {
        "title": f"🖥️ GPUs: {free} of {len(lines)} free · {queued} job(s) queued",
        "color": 0x2ECC71 if free else 0xF39C12,
        "description": truncate(description, 4000),
    }
    if note:
        embed["footer"] = {"text": truncate(note, 200)}
    return fit_embed(embed)


def usage_embed(report: UsageReport, period: str, *, member: str | None = None) -> dict[str, Any]:
    """Per member and per project: jobs, job-hours, GPU-hours; who used the most."""
    ranked = report.ranked()
    title = f"📊 Usage, last {period}" + (f": {plain(truncate(member, 60))}" if member else "")
    if not ranked:
        return {"title": title, "description": "No job ran in that period.", "color": 0x95A5A6}
    member_lines = [
        f"**{plain(truncate(name, 40))}** · {t.jobs} job(s) · {t.job_hours:.1f} job-h · {t.gpu_hours:.1f} GPU-h"
        for name, t in ranked[:15]
    ]
    project_lines = [
        f"**{plain(truncate(project, 40))}** · {t.jobs} job(s) · {t.job_hours:.1f} job-h · {t.gpu_hours:.1f} GPU-h"
        for project, t in sorted(report.projects.items(), key=lambda kv: -kv[1].gpu_hours)[:10]
    ]
    total = report.total
    top_name, top = ranked[0]
    fields = [
        {"name": "By member", "value": truncate("\n".join(member_lines), 1024), "inline": False},
        {"name": "By project", "value": truncate("\n".join(project_lines), 1024), "inline": False},
    ]
    if not member:
        share = f" ({top.gpu_hours / total.gpu_hours:.0%} of GPU-hours)" if total.gpu_hours > 0 else ""
        fields.append({"name": "Used the most", "value": f"{plain(truncate(top_name, 60))}{share}", "inline": False})
    return fit_embed(
        {
            "title": title,
            "description": f"{total.jobs} job(s) · {total.job_hours:.1f} job-hours · {total.gpu_hours:.1f} GPU-hours",
            "color": 0x3498DB,
            "fields": fields,
            "footer": {"text": "GPU-hours: run time times GPUs (Slurm: its elapsed time times the GPUs it was given)"},
        }
    )


def quota_warning(state: QuotaState) -> str:
    return (
        f"⚠️ You have used {state.used:.1f} of your {state.quota:g} GPU-hours this week ({state.fraction:.0%});"
        " launches are refused at 100 %."
    )


def quota_refusal(state: QuotaState, frees_at: dt.datetime) -> str:
    return (
        f"Not launched: you have used {state.used:.1f} of your {state.quota:g} GPU-hours over the last 7 days"
        f" (ADJUTANT_GPU_HOURS_PER_WEEK). It frees up <t:{int(frees_at.timestamp())}:R>"
        f" (<t:{int(frees_at.timestamp())}:f>), if your running jobs end now."
    )


def approval_card(approval: Approval, *, limit: int = 5) -> dict[str, Any]:
    """The card approvers act on: who asks, what, the cost in GPUs, why it needs approval, and the decision."""
    requests = approval.requests
    shown = [json.dumps(dict(r.params), ensure_ascii=False, sort_keys=True) for r in requests[:limit]]
    what = "\n".join(shown) + (f"\n… and {len(requests) - limit} more" if len(requests) > limit else "")
    look = {
        ApprovalState.PENDING: ("🛂 Approval needed", 0xF1C40F),
        ApprovalState.APPROVED: ("✅ Approved", 0x2ECC71),
        ApprovalState.REJECTED: ("🚫 Rejected", 0xE74C3C),
    }[approval.state]
    noun = "sweep" if approval.kind == "sweep" else "experiment"
    fields = [
        {"name": "Requested by", "value": plain(truncate(approval.requested_by, 100)), "inline": True},
        {"name": "Jobs", "value": str(approval.cells), "inline": True},
        {
            "name": "Cost",
            "value": f"{approval.gpus} GPU(s) per job, {approval.gpu_cost} in all",
            "inline": True,
        },
        {"name": "Why it waits", "value": plain(truncate(approval.why, 300)), "inline": False},
        {"name": "Hyperparameters", "value": f"```json\n{code_safe(truncate(what, 900))}\n```", "inline": False},
    ]
    if approval.state != ApprovalState.PENDING:
        by = plain(truncate(approval.decided_by or "?", 100))
        queued = ", ".join(f"`{j}`" for j in approval.job_ids[:10])
        value = f"by {by}" + (f"; queued {queued}" if queued else "")
        fields.append({"name": "Decision", "value": truncate(value, 1000), "inline": False})
    footer = "Approve / Reject: approvers only, never the requester" if approval.state == ApprovalState.PENDING else ""
    embed: dict[str, Any] = {
        "title": f"{look[0]}: {noun} request #{approval.id}",
        "color": look[1],
        "fields": fields,
    }
    if footer:
        embed["footer"] = {"text": footer}
    return fit_embed(embed)


def audit_embed(entries: Sequence[AuditEntry], *, member: str | None = None) -> dict[str, Any]:
    """The newest audit entries, one line each: when (Discord timestamp), who, what, on what."""
    lines = []
    for entry in entries:
        target = f" `{code_safe(truncate(entry.target, 40))}`" if entry.target else ""
        detail = f": {plain(truncate(entry.detail, 120))}" if entry.detail else ""
        where = f" in <#{entry.channel_id}>" if entry.channel_id else ""
        lines.append(
            f"<t:{int(entry.at.timestamp())}:f> **{plain(truncate(entry.actor, 40))}** {entry.action}{target}"
            f"{where}{detail}"
        )
    title = "🗂️ Audit trail" + (f": {plain(truncate(member, 60))}" if member else "")
    return fit_embed(
        {"title": title, "description": truncate("\n".join(lines) or "Nothing recorded yet.", 4000), "color": 0x7F8C8D}
    )


def audit_pages(
    entries: Sequence[AuditEntry], *, member: str | None = None, per_page: int = 15
) -> list[dict[str, Any]]:
    """``$audit`` as pages of ``per_page`` entries."""
    whole = audit_embed(entries, member=member)
    if len(entries) <= per_page:
        return [whole]
    lines = [line for entry in entries for line in audit_embed([entry])["description"].splitlines()]
    base = {k: v for k, v in whole.items() if k != "description"}
    return paged_embeds(base, lines, per_page=per_page)
