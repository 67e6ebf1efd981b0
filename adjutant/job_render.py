"""Pure rendering of experiment jobs into embeds (dicts) within Discord's limits."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from adjutant.alerts import END_TAIL_CHARS, pattern_name
from adjutant.jobs import ACTIVE, Job, JobState
from adjutant.render import (
    code_safe,
    fit_embed,
    format_duration,
    format_number,
    paged_embeds,
    plain,
    plural,
    safe_url,
    truncate,
)
from adjutant.runs import RunInfo

STATE_LOOK: dict[str, tuple[str, int]] = {
    JobState.QUEUED: ("⏳", 0x95A5A6),
    JobState.STARTING: ("▶️", 0x3498DB),
    JobState.RUNNING: ("▶️", 0x3498DB),
    JobState.CANCELLING: ("⏹️", 0xF39C12),
    JobState.SUCCEEDED: ("✅", 0x2ECC71),
    JobState.FAILED: ("❌", 0xE74C3C),
    JobState.CANCELLED: ("⏹️", 0x95A5A6),
    JobState.LOST: ("❓", 0xE67E22),
}


def params_block(params: Mapping[str, Any], limit: int = 1000) -> str:
    """Hyperparameters as pretty JSON in a code block, cut visibly."""
    text = json.dumps(params, indent=2, ensure_ascii=False, sort_keys=True)
    return f"```json\n{code_safe(truncate(text, limit - 12))}\n```"


def wandb_run_url(base_url: str | None, entity: str | None, project: str | None, run_id: str) -> str | None:
    """The run's page, when the project is known. The public cloud's API host maps to wandb.ai."""
    if not project or not entity:
        return None
    base = (base_url or "https://api.wandb.ai").rstrip("/")
    if base in ("https://api.wandb.ai", "http://api.wandb.ai"):
        base = "https://wandb.ai"
    return f"{base}/{entity}/{project}/runs/{run_id}"


def ack_embed(job: Job, *, queued_ahead: int, prefix: str, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The reply to ``$experiment``: job id, who, the hyperparameters. ``prefix`` is how commands are typed
    (``$``, ``$adj ``, ``/``)."""
    where = "starting now" if queued_ahead <= 0 else f"queued; {plural(queued_ahead, 'job')} ahead"
    fields = [
        {"name": "Job", "value": f"`{code_safe(job.id)}`", "inline": True},
        {"name": "Launched by", "value": plain(truncate(job.requested_by, 100)), "inline": True},
        {"name": "W&B run id", "value": f"`{code_safe(job.wandb_run_id)}`", "inline": True},
        {"name": "Hyperparameters", "value": params_block(job.params), "inline": False},
    ]
    if job.gpus or job.time_limit:
        asks = [f"{job.gpus} GPU(s)"] if job.gpus else []
        if job.time_limit:
            asks.append(f"time limit {format_duration(job.time_limit)}")
        fields.insert(3, {"name": "Resources", "value": ", ".join(asks), "inline": True})
    if job.priority != "normal" or job.preemptible:
        fields.insert(3, {"name": "Priority", "value": priority_text(job), "inline": True})
    if defaults:
        fields.append({"name": "Defaults filled in", "value": params_block(defaults, 500), "inline": False})
    return fit_embed(
        {
            "title": f"🧪 Experiment {job.id}: {where}",
            "color": 0x3498DB,
            "fields": fields,
            "footer": {"text": f"{prefix}cancel {job.id} · {prefix}logs {job.id}"},
        }
    )


def status_embed(job: Job, *, run: RunInfo | None, metric: str, now: dt.datetime, prefix: str) -> dict[str, Any]:
    """The acknowledgement of a running job, kept up to date: state, elapsed time, step, latest metrics."""
    fields: list[dict[str, Any]] = [
        {"name": "Job", "value": f"`{job.id}`", "inline": True},
        {"name": "Launched by", "value": plain(truncate(job.requested_by, 100)), "inline": True},
        {"name": "Elapsed", "value": format_duration(job.duration(now)), "inline": True},
    ]
    if run is not None:
        step = run.step()
        shown = f"{plain(truncate(run.name, 80))} (`{code_safe(truncate(run.id, 64))}`)"
        fields.append({"name": "W&B run", "value": shown, "inline": True})
        fields.append({"name": "Step", "value": str(step) if step is not None else "-", "inline": True})
        metrics = run.public_metrics()
        ordered = ([metric] if metric in metrics else []) + sorted(k for k in metrics if k != metric)
        if ordered:
            lines = [f"**{plain(truncate(k, 60))}**: {format_number(metrics[k])}" for k in ordered[:8]]
            fields.append({"name": "Latest metrics", "value": "\n".join(lines), "inline": False})
    else:
        shown = f"`{code_safe(job.wandb_run_id)}` (not reported yet)"
        fields.append({"name": "W&B run", "value": shown, "inline": True})
    if job.external_id:
        where = f"{job.backend} job {job.external_id}" + (f": {job.external_state}" if job.external_state else "")
        fields.append({"name": "Scheduler", "value": plain(truncate(where, 200)), "inline": False})
    if job.gpu_ids:
        fields.append({"name": "GPUs", "value": ", ".join(str(g) for g in job.gpu_ids), "inline": True})
    fields.append({"name": "Hyperparameters", "value": params_block(job.params, 800), "inline": False})
    embed: dict[str, Any] = {
        "title": f"▶️ Experiment {job.id}: running",
        "color": 0x3498DB,
        "fields": fields,
        "footer": {"text": f"updated live · {prefix}cancel {job.id} · {prefix}logs {job.id}"},
    }
    if run is not None and safe_url(run.url):
        embed["url"] = safe_url(run.url)
    return fit_embed(embed)


def _clock_time(seconds: float) -> str:
    """A time limit as Slurm writes it: ``4:00:00``."""
    whole = int(max(0, seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


#: What the scheduler's own word for an end means, when W&B cannot know it (its run just stops: "crashed", "killed").
SCHEDULER_ENDS = {
    "PREEMPTED": "preempted by the scheduler (PREEMPTED)",
    "OUT_OF_MEMORY": "out of memory (OUT_OF_MEMORY)",
    "NODE_FAIL": "its node failed (NODE_FAIL)",
    "DEADLINE": "stopped at its deadline (DEADLINE)",
    "BOOT_FAIL": "its node did not boot (BOOT_FAIL)",
}


def scheduler_truth(job: Job) -> str | None:
    """How an ended job really ended, as its scheduler (or Adjutant) knows it and W&B's label cannot tell: cancelled by
    someone, stopped at its time limit, preempted, out of memory. None when the job's own state says it all."""
    word = (job.external_state or "").split(" ", 1)[0].strip().upper()
    if job.cancelled_by:
        return f"cancelled by {job.cancelled_by}"
    if word == "TIMEOUT":
        limit = f" at {_clock_time(job.time_limit)}" if job.time_limit else ""
        return f"stopped at its time limit (TIMEOUT{limit})"
    if word in SCHEDULER_ENDS:
        return SCHEDULER_ENDS[word]
    if word == "CANCELLED" or job.state == JobState.CANCELLED:
        return "cancelled"
    return None


def end_embed(
    job: Job,
    *,
    log_tail: Sequence[str],
    run: RunInfo | None,
    run_url: str | None,
    metric: str,
    now: dt.datetime,
    prefix: str,
) -> dict[str, Any]:
    """The one message that ends a job's story. ``run_url`` only when W&B knows the run.

    It leads with the scheduler's truth (:func:`scheduler_truth`) when W&B's label differs from it, W&B's label
    beside it: a Slurm job at its time limit is "stopped at its time limit (TIMEOUT at 4:00:00)" while W&B says
    crashed."""
    icon, colour = STATE_LOOK.get(job.state, ("•", 0x95A5A6))
    fields: list[dict[str, Any]] = []
    truth = scheduler_truth(job)
    if job.exit_code is not None:
        code = f"signal {-job.exit_code}" if job.exit_code < 0 else str(job.exit_code)
        fields.append({"name": "Exit code", "value": code, "inline": True})
    fields.append({"name": "Duration", "value": format_duration(job.duration(now)), "inline": True})
    fields.append({"name": "Launched by", "value": plain(truncate(job.requested_by, 100)), "inline": True})
    if job.cancelled_by:
        fields.append({"name": "Cancelled by", "value": plain(truncate(job.cancelled_by, 100)), "inline": True})
    run_url = safe_url(run_url)
    if run_url:
        link = f"[{plain(job.wandb_run_id)}]({run_url})"
    else:
        link = f"`{code_safe(job.wandb_run_id)}` (not seen in W&B)"
    if run is not None:
        link += f" ({plain(truncate(run.name, 80))}, {plain(truncate(run.state, 40))})"
    fields.append({"name": "W&B run", "value": link, "inline": True})
    if run is not None and run.metric(metric) is not None:
        value = run.metric(metric)
        assert value is not None
        fields.append({"name": plain(truncate(metric, 200)), "value": format_number(value), "inline": True})
    fields.append({"name": "Hyperparameters", "value": params_block(job.params, 800), "inline": False})
    if job.external_id:
        where = f"{job.backend} job {job.external_id}" + (f": {job.external_state}" if job.external_state else "")
        fields.append({"name": "Scheduler", "value": plain(truncate(where, 200)), "inline": False})
    if job.reason:
        fields.append({"name": "Why", "value": plain(truncate(job.reason, 1000)), "inline": False})
    if job.state in (JobState.FAILED, JobState.LOST) and log_tail:
        tail = code_safe("\n".join(log_tail))
        shown = truncate(tail[-END_TAIL_CHARS:], END_TAIL_CHARS)
        fields.append({"name": "End of the log", "value": f"```\n{shown}\n```", "inline": False})
    embed: dict[str, Any] = {
        "title": f"{icon} Experiment {job.id} {job.state}",
        "color": colour,
        "fields": fields,
        "footer": {"text": f"{prefix}logs {job.id} for the whole log"},
    }
    if truth is not None and (run is None or run.state != truth):
        beside = f" (W&B says {plain(truncate(run.state, 40))})" if run is not None else ""
        embed["description"] = f"**{plain(truncate(truth[0].upper() + truth[1:], 300))}**{beside}"
    if run_url:
        embed["url"] = run_url
    return fit_embed(embed)


def final_ack_embed(job: Job, *, report_url: str | None, now: dt.datetime) -> dict[str, Any]:
    """What a job's acknowledgement says once the job has ended: never "running" again."""
    icon, colour = STATE_LOOK.get(job.state, ("•", 0x95A5A6))
    fields: list[dict[str, Any]] = [
        {"name": "Job", "value": f"`{job.id}`", "inline": True},
        {"name": "Launched by", "value": plain(truncate(job.requested_by, 100)), "inline": True},
    ]
    if job.exit_code is not None:
        code = f"signal {-job.exit_code}" if job.exit_code < 0 else str(job.exit_code)
        fields.append({"name": "Exit code", "value": code, "inline": True})
    fields.append({"name": "Duration", "value": format_duration(job.duration(now)), "inline": True})
    fields.append({"name": "Hyperparameters", "value": params_block(job.params, 800), "inline": False})
    report_url = safe_url(report_url)
    report = f"[the end report]({report_url})" if report_url else "the end report below"
    return fit_embed(
        {
            "title": f"{icon} Experiment {job.id}: {job.state}",
            "description": f"This job has ended ({job.state}); see {report}.",
            "color": colour,
            "fields": fields,
        }
    )


def jobs_embed(
    active: Sequence[Job], queued: Sequence[Job], recent: Sequence[Job], now: dt.datetime, *, prefix: str
) -> dict[str, Any]:
    """``$jobs``: running, queued and recently ended jobs."""

    def line(job: Job) -> str:
        return _job_line(job, now)

    queued = queue_order(queued)
    fields = []
    for title, group in (("Running", active), ("Queued", queued), ("Recently ended", recent)):
        if group:
            fields.append({"name": f"{title} ({len(group)})", "value": truncate("\n".join(map(line, group)), 1024)})
    embed: dict[str, Any] = {"title": "Experiments", "color": 0x3498DB, "fields": fields}
    if not fields:
        embed["description"] = f'No jobs yet. Launch one with `{prefix}experiment {{"epochs": 1}}`.'
    return fit_embed(embed)


def jobs_pages(
    active: Sequence[Job], queued: Sequence[Job], recent: Sequence[Job], now: dt.datetime, *, prefix: str
) -> list[dict[str, Any]]:
    """``$jobs`` as pages when one embed cannot hold every running and queued job (nothing is cut)."""
    queued = queue_order(queued)
    whole = jobs_embed(active, queued, recent, now, prefix=prefix)
    if all(not f["value"].endswith("…") for f in whole.get("fields", [])) and len(queued) + len(active) <= 20:
        return [whole]
    lines = []
    for title, group in (("Running", active), ("Queued", queued), ("Recently ended", recent)):
        if group:
            lines.append(f"**{title} ({len(group)})**")
            lines += [_job_line(job, now) for job in group]
    return paged_embeds({"title": "Experiments", "color": 0x3498DB}, lines, per_page=15)


def priority_text(job: Job) -> str:
    """``high``, ``low, preemptible``, ``normal`` …; ``preempting`` while a preemption of it is under way."""
    words = [job.priority]
    if job.preemptible:
        words.append("preemptible")
    if job.preempted_at is not None and job.state in ACTIVE:
        words.append(f"being preempted for {job.preempted_by or '?'}")
    return ", ".join(words)


def queue_order(jobs: Sequence[Job]) -> list[Job]:
    """Queued jobs as the scheduler starts them: priority (high first), then arrival."""
    return sorted(jobs, key=lambda job: (-job.rank, job.seq))


def _job_line(job: Job, now: dt.datetime) -> str:
    icon, _ = STATE_LOOK.get(job.state, ("•", 0))
    params = truncate(json.dumps(job.params, ensure_ascii=False), 60)
    when = format_duration(job.duration(now)) if job.started_at else "-"
    tag = "" if job.priority == "normal" and not job.preemptible else f" · {priority_text(job)}"
    who = plain(truncate(job.requested_by, 32))
    return f"{icon} `{job.id}` {job.state}{tag} · {when} · {who} · `{code_safe(params)}`"


def sweep_preview(combos: Sequence[Mapping[str, Any]], *, cap: int, shown: int = 5) -> dict[str, Any]:
    lines = [
        f"{i}. `{code_safe(truncate(json.dumps(c, ensure_ascii=False), 150))}`" for i, c in enumerate(combos[:shown], 1)
    ]
    if len(combos) > shown:
        lines.append(f"… and {len(combos) - shown} more")
    return fit_embed(
        {
            "title": f"Sweep: {len(combos)} experiment(s)",
            "description": "\n".join(lines) + f"\n\nConfirm to queue them all (limit {cap}).",
            "color": 0x9B59B6,
        }
    )


def log_alert_embed(job: Job, pattern: str, line: str) -> dict[str, Any]:
    """A line of a job's log matched an alert pattern (told once per job and pattern)."""
    name = pattern_name(pattern)
    return {
        "title": truncate(f"🧾 Job {job.id} logged {plain(truncate(name, 100))}", 256),
        "description": (
            f"```\n{code_safe(truncate(line, 1000))}\n```\n"
            f"A log alert ({plain(truncate(name, 200))}, ADJUTANT_LOG_ALERTS); told once for this job."
        ),
        "color": 0xE74C3C,
        "footer": {"text": f"job {job.id} · W&B run {job.wandb_run_id}"},
    }


def queue_done_embed(jobs: Sequence[Job]) -> dict[str, Any]:
    """The member's last queued or running job ended: one line per job, and the count by outcome."""
    by_state: dict[str, list[Job]] = {}
    for job in jobs:
        by_state.setdefault(str(job.state), []).append(job)
    parts = []
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST):
        ended = by_state.get(state, [])
        if ended:
            ids = "" if state == JobState.SUCCEEDED else f" ({', '.join(j.id for j in ended[:5])})"
            parts.append(f"{len(ended)} {state}{ids}")
    lines = [f"{STATE_LOOK.get(j.state, ('•', 0))[0]} `{j.id}` {j.state}" for j in jobs[:20]]
    if len(jobs) > 20:
        lines.append(f"… and {len(jobs) - 20} more")
    failed = any(j.state != JobState.SUCCEEDED for j in jobs)
    return {
        "title": truncate(f"Your queue is done: {len(jobs)} jobs: {', '.join(parts)}", 256),
        "description": "\n".join(lines),
        "color": 0xE67E22 if failed else 0x2ECC71,
    }


def retry_embed(job: Job, why: str, *, retries: int) -> dict[str, Any]:
    """A job runs again: which attempt, and why (said in its thread)."""
    return {
        "title": truncate(f"🔁 Job {job.id}: attempt {job.attempt + 1} of {retries + 1 + job.preemptions}", 256),
        "description": truncate(
            f"Attempt {job.attempt} {why}. It runs again as the same job and the same W&B run"
            f" (`{job.wandb_run_id}`, resumed). ADJUTANT_RETRIES={retries}.",
            4096,
        ),
        "color": 0xF39C12,
        "footer": {"text": f"job {job.id}"},
    }


def preempted_embed(victim: Job, by: Job, *, grace: float, signal_name: str) -> dict[str, Any]:
    """The victim's thread: who preempted it, what it gets, and that it comes back by itself."""
    return {
        "title": truncate(f"⏏️ Job {victim.id} preempted by {by.id} ({by.priority})", 256),
        "description": truncate(
            f"`{by.id}` ({by.priority} priority, {by.requested_by}) needs the GPUs of this {victim.priority}-priority"
            f" preemptible job. It gets {signal_name} now, {format_duration(grace)} to save a checkpoint and exit,"
            f" then SIGTERM, then SIGKILL. It is queued again by itself as attempt {victim.attempt + 1}, the same W&B"
            f" run (`{victim.wandb_run_id}`, resumed), in its place; this is not a retry (ADJUTANT_RETRIES is"
            " untouched).",
            4096,
        ),
        "color": 0xF39C12,
        "footer": {"text": f"job {victim.id}"},
    }


def preempting_embed(by: Job, victims: Sequence[Job]) -> dict[str, Any]:
    """The preempting job's thread: whom it preempted for its GPUs."""
    names = ", ".join(f"`{v.id}` ({v.requested_by}, {v.priority})" for v in victims)
    return {
        "title": truncate(f"⏏️ Job {by.id} preempts {', '.join(v.id for v in victims)}", 256),
        "description": truncate(
            f"No GPUs were free for this {by.priority}-priority job: {names} preemptible, give them back and are"
            " queued again; this job starts when they have exited.",
            4096,
        ),
        "color": 0x3498DB,
        "footer": {"text": f"job {by.id}"},
    }


def sweep_held_embed(jobs: Sequence[Job], exit_code: int | None, line: str) -> dict[str, Any]:
    """Two cells of a sweep failed the same way: its queued cells wait for Resume or Drop ({held} is filled in)."""
    sweep = jobs[0].sweep_id or "?"
    cells = ", ".join(f"`{j.id}`" for j in jobs[:5])
    shown = f"```\n{code_safe(truncate(line, 500))}\n```" if line else "(no output)"
    return {
        "title": truncate(f"⏸️ Sweep {sweep} held: {len(jobs)} cells failed the same way", 256),
        "description": (
            f"{cells} ended with exit code {exit_code}, and the same last line:\n{shown}\n"
            "{held} queued cell(s) wait: **Resume** starts them, **Drop** cancels them."
        ),
        "color": 0xE74C3C,
        "footer": {"text": f"sweep {sweep}"},
    }


def canary_released_embed(canary: Job, why: str) -> dict[str, Any]:
    """A sweep's canary trains: the other cells start ({waiting} is filled in)."""
    return {
        "title": truncate(f"🐤 Sweep {canary.sweep_id}: canary {canary.id} {why}", 256),
        "description": "Starting the other {waiting} cell(s).",
        "color": 0x2ECC71,
        "footer": {"text": f"sweep {canary.sweep_id}"},
    }


#: Where a remediation's growth is capped, by backend.
LIMIT_NOTE = {"slurm": ", within the partition's limit"}


def remedy_embed(job: Job, slurm_state: str, option: str, old: str, new: str | None) -> dict[str, Any]:
    """Slurm ended a job for lack of time or memory: it runs once more with more (``new``), or, the second time,
    it does not (``new`` None)."""
    if new is None:
        return {
            "title": f"🛑 Job {job.id}: {plain(truncate(slurm_state, 100))} again",
            "description": f"It already ran once more with `{option}={old}`. Not submitting it again.",
            "color": 0xE74C3C,
            "footer": {"text": f"job {job.id}"},
        }
    return {
        "title": f"🩹 Job {job.id}: {plain(truncate(slurm_state, 100))}; running again with more",
        "description": f"`{option}` {old} → {new} (1.5 times{LIMIT_NOTE.get(job.backend, '')}):"
        f" attempt {job.attempt + 1}.",
        "color": 0xF39C12,
        "footer": {"text": f"job {job.id}"},
    }
