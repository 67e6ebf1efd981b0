"""Pure rendering of GPUs, usage, quotas, approval cards and the audit trail into embeds (dicts) and lines."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adjutant.approvals import ApprovalState
from adjutant.job_render import priority_text
from adjutant.numbers import shown
from adjutant.render import code_safe, fit_embed, format_duration, format_hours, paged_embeds, plain, plural, truncate

if TYPE_CHECKING:  # annotations only: NVML's module is imported where GPUs are read (ADJUTANT_GPUS=auto)
    from adjutant.approvals import Approval, AuditEntry
    from adjutant.gpus import QuotaState, Tally, UsageReport
    from adjutant.jobs import Job
    from adjutant.nvml import GpuReading


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
            if job.priority != "normal" or job.preemptible:
                line += f" · {priority_text(job)}"
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
    member_lines = [f"**{plain(truncate(name, 40))}** · {_tally(t)}" for name, t in ranked[:15]]
    project_lines = [
        f"**{plain(truncate(project, 40))}** · {_tally(t)}"
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
            "description": " · ".join(
                [plural(total.jobs, "job"), format_hours(total.job_hours, "job"), format_hours(total.gpu_hours)]
            ),
            "color": 0x3498DB,
            "fields": fields,
            "footer": {"text": "GPU-hours: run time times GPUs (Slurm: its elapsed time times the GPUs it was given)"},
        }
    )


def _tally(t: Tally) -> str:
    """``3 job(s) · 1.5 job-h · 6.0 GPU-h`` (minutes or seconds when hours would read 0.0)."""
    return f"{t.jobs} job(s) · {format_hours(t.job_hours, 'job', short=True)} · {format_hours(t.gpu_hours, short=True)}"


def _reads_in_hours(hours: float) -> bool:
    return round(hours, 1) > 0


def quota_text(quota: float) -> str:
    """A quota as configured (``10 GPU-hours``), with its size in minutes or seconds when hours read 0.0
    (``0.01 GPU-hours (36 GPU-seconds)``)."""
    hours = f"{quota:g} GPU-hour{'' if quota == 1 else 's'}"
    return hours if _reads_in_hours(quota) or quota <= 0 else f"{hours} ({format_hours(quota)})"


def used_text(used: float, quota: float) -> str:
    """How much of a quota is used: a bare number of hours beside a quota in hours (``8.5`` of 10 GPU-hours), else
    with its unit in minutes or seconds (``20 GPU-seconds``); never ``0.0`` for a use that is not zero."""
    if _reads_in_hours(quota) and (used <= 0 or _reads_in_hours(used)):
        return f"{used:.1f}" if used > 0 else "0"
    return format_hours(used)


def quota_warning(state: QuotaState) -> str:
    return (
        f"⚠️ You have used {used_text(state.used, state.quota)} of your {quota_text(state.quota)} this week"
        f" ({state.fraction:.0%}); launches are refused at 100 %."
    )


def quota_refusal(state: QuotaState, frees_at: dt.datetime) -> str:
    return (
        f"Not launched: you have used {used_text(state.used, state.quota)} of your {quota_text(state.quota)} over"
        f" the last 7 days (ADJUTANT_GPU_HOURS_PER_WEEK). It frees up <t:{int(frees_at.timestamp())}:R>"
        f" (<t:{int(frees_at.timestamp())}:f>), if your running jobs end now."
    )


TIMES = " \N{MULTIPLICATION SIGN} "


def worst_case_text(cells: int, gpus: int, hours_per_cell: float) -> str:
    """``8 jobs x 4 GPUs x 1h 00m = 32.0 GPU-hours`` (one job: ``4 GPUs x 1h 00m = 4.0 GPU-hours``, with the
    multiplication sign): what a request may use at most."""
    worst = cells * gpus * hours_per_cell
    parts = ([plural(cells, "job")] if cells != 1 else []) + [
        plural(gpus, "GPU"),
        format_duration(hours_per_cell * 3600),
    ]
    return f"{TIMES.join(parts)} = {format_hours(worst)}"


def quota_worst_case_refusal(
    state: QuotaState, *, cells: int, gpus: int, hours_per_cell: float, committed: float = 0.0
) -> str:
    """A request whose worst case (every job running to its time limit) does not fit in what is left of the quota:
    names the worst case, what is left, and how to ask for less."""
    left = max(0.0, state.quota - state.used - committed)
    what = "this sweep" if cells > 1 else "this job"
    held = f", and your queued and running jobs may still use {format_hours(committed)}" if committed > 0 else ""
    shorter = "fewer jobs, fewer GPUs or a shorter --time" if cells > 1 else "fewer GPUs or a shorter --time"
    return (
        f"Not launched: {what} may use up to {worst_case_text(cells, gpus, hours_per_cell)} (every job running to"
        f" its time limit); you have {format_hours(left)} left of your {quota_text(state.quota)} over the last 7 days"
        f" (ADJUTANT_GPU_HOURS_PER_WEEK; used {used_text(state.used, state.quota)}{held}). Ask for {shorter}."
    )


def quota_needs_time_limit(quota: float) -> str:
    """A member with a quota asked for GPUs without a time limit, and there is no default to apply."""
    return (
        f"Not launched: you have a GPU quota of {quota_text(quota)} per 7 days (ADJUTANT_GPU_HOURS_PER_WEEK), so every"
        " job that uses GPUs needs a time limit, and there is no default (ADJUTANT_TIME_LIMIT is not set). Add one"
        " before the hyperparameters, e.g. `--time 2h`, or ask an administrator to set ADJUTANT_TIME_LIMIT."
    )


def quota_worst_case_warning(state: QuotaState, *, worst: float, committed: float = 0.0) -> str:
    """The request fits, but may bring the member to 80 % or more of their quota."""
    reach = state.used + committed + worst
    share = reach / state.quota if state.quota > 0 else 1.0
    return (
        f"⚠️ You have used {used_text(state.used, state.quota)} of your {quota_text(state.quota)} this week; with"
        f" this request you may reach {used_text(reach, state.quota)} ({share:.0%}). Launches that may go over 100 %"
        " are refused."
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
        ApprovalState.WITHDRAWN: ("↩️ Withdrawn", 0x95A5A6),
        ApprovalState.EXPIRED: ("⌛ Expired", 0x95A5A6),
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
    footer = (
        "Approve / Reject: approvers only, never the requester; Withdraw: the requester"
        if approval.state == ApprovalState.PENDING
        else ""
    )
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


# --- $usage arguments ----------------------------------------------------------------------------

#: The periods ``$usage`` knows, in days.
USAGE_PERIODS: dict[str, int] = {"day": 1, "week": 7, "month": 30}
_MENTION = r"<@!?([0-9]{15,20})>"  # compiled on first use (re's cache)


@dataclass(frozen=True)
class UsageQuery:
    """``$usage [day|week|month] [member]``: the period (``week`` unless given) and the member word, if any."""

    period: str
    member: str | None
    period_given: bool = False


def parse_usage_args(words: Sequence[str]) -> UsageQuery:
    """Words in any order: ``day``/``week``/``month`` (any case) is the period, any other word the member (a mention,
    an id, a name, ``@name``). :class:`ValueError` for two periods or two members, saying which words."""
    period: str | None = None
    member: str | None = None
    for word in words:
        lowered = word.lower()
        if lowered in USAGE_PERIODS:
            if period is not None and period != lowered:
                raise ValueError(f"give one period (day, week or month), not both {period} and {lowered}")
            period = lowered
        elif member is None:
            member = word
        else:
            raise ValueError(
                f"give at most one member: {shown(member, 40)} and {shown(word, 40)} are two"
                f" (a period is day, week or month)"
            )
    return UsageQuery(period or "week", member, period is not None)


def mentioned_id(word: str) -> int | None:
    """The member id of ``<@123…>``, ``<@!123…>`` or a bare id (ASCII digits only), else None."""
    match = re.fullmatch(_MENTION, word)
    if match:
        return int(match[1])
    return int(word) if re.fullmatch(r"[0-9]{15,20}", word) else None


def matching_members(word: str, members: Iterable[tuple[int, Sequence[str | None]]]) -> list[int]:
    """Ids of the members ``word`` names: by mention or id, else by any of their names (user name, global name,
    server nickname), case-insensitive, with or without a leading ``@``. Several ids: the name is ambiguous."""
    wanted = mentioned_id(word)
    if wanted is not None:
        return [member_id for member_id, _ in members if member_id == wanted]
    name = word.removeprefix("@").casefold()
    return [member_id for member_id, names in members if any(n and n.casefold() == name for n in names)]


def usage_member_unknown(query: UsageQuery, *, prefix: str = "$") -> str:
    """The answer when no member matches ``query.member``: a word that could have been meant as a period says so."""
    assert query.member is not None
    word = shown(query.member, 40)
    usage_line = f"Usage: `{prefix}usage [day|week|month] [member]`."
    if not query.period_given and mentioned_id(query.member) is None and not query.member.startswith("@"):
        return f"{word} is neither a period (day, week or month) nor a member of this server. {usage_line}"
    return f"No member of this server is named {word}. {usage_line}"


def usage_member_ambiguous(query: UsageQuery, count: int, *, prefix: str = "$") -> str:
    assert query.member is not None
    return (
        f"{count} members are named {shown(query.member, 40)}: mention the one you mean"
        f" (`{prefix}usage {query.period} @name`)."
    )
