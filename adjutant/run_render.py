"""Pure rendering of W&B runs into Discord embeds (as dicts), always within Discord's limits."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from adjutant.alerts import PLATEAU_DELTA, Fn, WatchRule
from adjutant.render import (
    EMBED_DESCRIPTION_LIMIT,
    EMBED_FIELD_VALUE_LIMIT,
    code_safe,
    fit_embed,
    format_duration,
    format_number,
    link,
    paged_embeds,
    plain,
    plural,
    safe_url,
    truncate,
)
from adjutant.runs import RunInfo, RunMemory, nonfinite_metrics, state_label

COLOURS = {
    "started": 0x3498DB,
    "running": 0x3498DB,
    "finished": 0x2ECC71,
    "crashed": 0xE74C3C,
    "failed": 0xE74C3C,
    "killed": 0x95A5A6,
    "stalled": 0xF39C12,
    "resumed": 0x3498DB,
    "pending": 0x95A5A6,
    "preempted": 0xF39C12,
    "preempting": 0xF39C12,
    "summary": 0x9B59B6,
    "no-progress": 0xE67E22,
    "progressing": 0x3498DB,
    "nonfinite": 0xE74C3C,
    "rule": 0xE67E22,
    "gpu-idle": 0xE67E22,
}
ICONS = {
    "started": "▶️",
    "running": "▶️",
    "finished": "✅",
    "crashed": "💥",
    "failed": "❌",
    "killed": "⏹️",
    "stalled": "⏸️",
    "resumed": "⏯️",
    "pending": "⏳",
    "preempted": "⏏️",
    "preempting": "⏏️",
    "no-progress": "⏸️",
    "progressing": "▶️",
    "nonfinite": "⚠️",
    "rule": "🔔",
    "gpu-idle": "💤",
}
EVENT_WORDS = {
    "started": "started",
    "finished": "finished",
    "crashed": "crashed",
    "failed": "failed",
    "killed": "was killed",
    "stalled": "stalled",
    "resumed": "is alive again",
    "preempted": "was preempted",
    "no-progress": "makes no progress",
    "progressing": "is progressing again",
    "gpu-idle": "leaves its GPUs idle",
}
MAX_METRICS = 6


def _link(run: RunInfo) -> str:
    return link(truncate(run.name, 80), run.url)


def _value(value: Any, limit: int = 60) -> str:
    number = None if isinstance(value, bool) else value if isinstance(value, int | float) else None
    text = format_number(float(number)) if number is not None and number == number else json.dumps(value, default=str)
    return truncate(text, limit)


def config_block(config: Mapping[str, Any], limit: int = EMBED_FIELD_VALUE_LIMIT) -> str:
    """``key = value`` lines in a code block, cut visibly to ``limit`` characters."""
    lines = [f"{code_safe(truncate(str(k), 40))} = {code_safe(_value(v))}" for k, v in sorted(config.items())]
    body = "\n".join(lines) or "(empty)"
    return f"```\n{truncate(body, limit - 8)}\n```"


def metrics_text(run: RunInfo, metric: str, limit: int = MAX_METRICS) -> str:
    """The ranking metric first, then a few others, one per line."""
    metrics = run.public_metrics()
    ordered = ([metric] if metric in metrics else []) + sorted(k for k in metrics if k != metric)
    lines = [f"**{plain(truncate(k, 60))}**: {format_number(metrics[k])}" for k in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"… and {len(ordered) - limit} more")
    return "\n".join(lines)


def rule_words(rule: WatchRule, value: float | None) -> str:
    """What a rule read, in words after a run's name: "has avg(val_loss, 5) = 2.1 > 2", "has plateaued: …"."""
    term = rule.term
    metric = plain(truncate(term.metric, 100))
    shown = "?" if value is None else format_number(value)
    if term.fn is Fn.PLATEAU:
        improved = "?" if value is None else f"{value * 100:.2g}%"
        return (
            f"has plateaued: {metric} improved {improved} over its last {int(term.args[0])} values"
            f" (under {PLATEAU_DELTA * 100:g}%)"
        )
    if term.fn is Fn.DIVERGING:
        return f"is diverging: {metric} is {shown} times its best (over {term.args[0]:g} times)"
    if term.fn is Fn.CHANGE:
        change = "?" if value is None else f"{value * 100:+.3g}%"
        return f"has {plain(truncate(term.shown(), 120))} = {change} {rule.op} {rule.value * 100:g}%"
    return f"has {plain(truncate(term.shown(), 120))} = {shown} {rule.op} {format_number(rule.value)}"


def event_embed(
    run: RunInfo,
    event: str,
    *,
    project: str,
    metric: str,
    now: dt.datetime,
    memory: RunMemory | None = None,
    rule: WatchRule | None = None,
    reading: float | None = None,
) -> dict[str, Any]:
    """The announcement of one lifecycle event of ``run`` (``memory``: what was recorded with it; ``rule``:
    the watch rule a ``rule:<id>`` event is about, ``reading`` the value it read)."""
    kind, _, subject = event.partition(":")
    words = EVENT_WORDS.get(kind, kind)
    if kind == "nonfinite":
        shown = nonfinite_metrics(run).get(subject, "not a finite number")
        words = f"reports {plain(truncate(subject, 100))} = {shown}"
    elif kind == "rule" and rule is not None:
        words = rule_words(rule, run.metric(rule.metric) if reading is None else reading)
    title = f"{ICONS.get(kind, '•')} {plain(truncate(run.name, 200))} {words}"
    lines = [f"Run `{code_safe(truncate(run.id, 64))}`" + (f" by {plain(truncate(run.user, 64))}" if run.user else "")]
    runtime = run.runtime_seconds()
    if kind == "no-progress" and memory is not None and memory.step_since is not None:
        where = f"step {memory.step:g}" if memory.step is not None else "its last step"
        ago = format_duration((now - memory.step_since).total_seconds())
        lines.append(
            f"No progress since {where}, {ago} ago; its heartbeat is fresh (hung? a stuck data loader or NCCL?)."
        )
    elif kind == "progressing":
        lines.append("It is making progress again.")
    elif kind == "nonfinite":
        lines.append(f"`{code_safe(truncate(subject, 100))}` is not a finite number any more; the run goes on.")
    elif kind == "rule" and rule is not None:
        lines.append(
            f"Watch rule #{rule.id} (`{code_safe(truncate(rule.describe(), 200))}`, set by"
            f" {plain(truncate(rule.author, 64))}) fired; it fires again only after the value goes back and"
            " crosses again."
        )
    if event in ("finished", "crashed", "failed", "killed"):
        step = run.step()
        lines.append(f"Ran for {format_duration(runtime)}" + (f", {step + 1} steps" if step is not None else ""))
    elif event == "stalled" and run.heartbeat_at is not None:  # no heartbeat
        lines.append(
            f"No heartbeat for {format_duration((now - run.heartbeat_at).total_seconds())}; still marked running."
        )
    elif event == "resumed":
        lines.append("Heartbeats are arriving again.")
    elif event == "preempted":
        lines.append("Its machine was taken back (W&B says preempted); it is not a crash. A resume is told.")
    embed: dict[str, Any] = {
        "title": title,
        "description": "\n".join(lines),
        "color": COLOURS.get(kind, 0x95A5A6),
        "footer": {"text": project},
        "fields": [],
    }
    if safe_url(run.url):
        embed["url"] = safe_url(run.url)
    if run.created_at is not None:
        embed["timestamp"] = (run.heartbeat_at or run.created_at).isoformat()
    value = run.metric(metric)
    if value is not None:
        embed["fields"].append({"name": plain(truncate(metric, 200)), "value": format_number(value), "inline": True})
    others = metrics_text(run, metric)
    if others and event != "started":
        embed["fields"].append({"name": "Metrics", "value": others, "inline": False})
    config = run.public_config()
    if config:
        embed["fields"].append({"name": "Config", "value": config_block(config), "inline": False})
    if run.tags:
        tags = ", ".join(plain(truncate(t, 40)) for t in run.tags)
        embed["fields"].append({"name": "Tags", "value": truncate(tags, 256), "inline": False})
    return fit_embed(embed)


def summary_embed(
    *,
    project: str,
    counts: Mapping[str, int] | None,
    best: RunInfo | None,
    running: Sequence[RunInfo],
    metric: str,
    goal: str,
    missing: bool = False,
) -> dict[str, Any]:
    """The message on connect: runs by state, the best run, what is running now."""
    if missing:
        return fit_embed(
            {
                "title": f"Adjutant is online: {plain(project)}",
                "description": (
                    f"The W&B project `{code_safe(project)}` has no runs yet (or does not exist yet). "
                    "I will announce runs here as soon as they appear."
                ),
                "color": COLOURS["summary"],
            }
        )
    total = sum((counts or {}).values())
    parts = [f"{n:,} {plain(state)}" for state, n in (counts or {}).items() if n]
    lines = [f"**{plural(total, 'run')}**" + (f": {', '.join(parts)}" if parts else "")]
    if best is not None and best.metric(metric) is not None:
        value = best.metric(metric)
        assert value is not None
        lines.append(
            f"Best {plain(metric)} ({plain(goal)}): **{format_number(value)}**, {_link(best)} (`{code_safe(best.id)}`)"
        )
    elif total:
        lines.append(f"No run has a `{code_safe(metric)}` summary metric yet.")
    if running:
        shown = [f"{_link(r)} (`{code_safe(r.id)}`)" for r in running[:10]]
        more = f" and {len(running) - 10} more" if len(running) > 10 else ""
        lines.append(f"Running now: {', '.join(shown)}{more}")
    else:
        lines.append("Nothing is running now.")
    return fit_embed(
        {
            "title": f"Adjutant is online: {plain(project)}",
            "description": truncate("\n".join(lines), EMBED_DESCRIPTION_LIMIT),
            "color": COLOURS["summary"],
        }
    )


def runs_table_embed(
    runs: Sequence[RunInfo], *, project: str, state: str | None, metric: str, now: dt.datetime
) -> dict[str, Any]:
    """``$runs``: a compact table, newest first."""
    title = f"Latest {plain(state) + ' ' if state else ''}runs of {plain(project)}"
    if not runs:
        return fit_embed({"title": title, "description": "No runs match.", "color": COLOURS["summary"]})
    width = max(len(code_safe(truncate(r.name, 24))) for r in runs)
    header = f"{'state':<9} {'name':<{width}} {'id':<10} {code_safe(metric[:10]):>10} {'age':>7}"
    lines = [header]
    for r in runs:
        value = r.metric(metric)
        age = format_duration((now - r.created_at).total_seconds()) if r.created_at else "?"
        state = code_safe(r.state[:9])
        lines.append(
            f"{state:<9} {code_safe(truncate(r.name, 24)):<{width}} {code_safe(truncate(r.id, 10)):<10} "
            f"{(format_number(value) if value is not None else '-'):>10} {age:>7}"
        )
    body = truncate("\n".join(lines), EMBED_DESCRIPTION_LIMIT - 8)
    return fit_embed({"title": title, "description": f"```\n{body}\n```", "color": COLOURS["summary"]})


def runs_table_pages(
    runs: Sequence[RunInfo], *, project: str, state: str | None, metric: str, now: dt.datetime, per_page: int = 10
) -> list[dict[str, Any]]:
    """``$runs`` as pages of ``per_page`` rows (the header on each): nothing is cut."""
    whole = runs_table_embed(runs, project=project, state=state, metric=metric, now=now)
    if len(runs) <= per_page:
        return [whole]
    rows = whole["description"].removeprefix("```\n").removesuffix("\n```").split("\n")
    base = {k: v for k, v in whole.items() if k != "description"}
    return paged_embeds(base, rows[1:], per_page=per_page, head=rows[0], code=True)


def run_card_embed(run: RunInfo, *, project: str, metric: str, now: dt.datetime) -> dict[str, Any]:
    """``$run``: one run's status card."""
    runtime = run.runtime_seconds()
    if run.state == "running" and run.created_at is not None:
        runtime = (now - run.created_at).total_seconds()
    fields: list[dict[str, Any]] = [
        {
            "name": "State",
            "value": f"{ICONS.get(run.state, '')} {plain(truncate(state_label(run.state), 60))}",
            "inline": True,
        },
        {"name": "Runtime", "value": format_duration(runtime), "inline": True},
        {"name": "Step", "value": str(run.step()) if run.step() is not None else "-", "inline": True},
    ]
    metrics = metrics_text(run, metric, limit=12)
    if metrics:
        fields.append({"name": "Latest metrics", "value": metrics, "inline": False})
    config = run.public_config()
    if config:
        fields.append({"name": "Config", "value": config_block(config), "inline": False})
    description = f"Run `{code_safe(run.id)}`" + (f" by {plain(truncate(run.user, 64))}" if run.user else "")
    embed: dict[str, Any] = {
        "title": plain(truncate(run.name, 200)),
        "description": description,
        "color": COLOURS.get(run.state, 0x95A5A6),
        "fields": fields,
        "footer": {"text": project},
    }
    if safe_url(run.url):
        embed["url"] = safe_url(run.url)
    return fit_embed(embed)


def leaderboard_embed(runs: Sequence[RunInfo], *, project: str, metric: str, goal: str) -> dict[str, Any]:
    """``$best``: runs ranked by ``metric``."""
    lines = []
    for rank, run in enumerate(runs, 1):
        value = run.metric(metric)
        shown = format_number(value) if value is not None else "-"
        state = plain(truncate(state_label(run.state), 40))
        lines.append(f"{rank}. **{shown}** {_link(run)} (`{code_safe(truncate(run.id, 16))}`, {state})")
    return fit_embed(
        {
            "title": f"Best {plain(truncate(metric, 100))} ({plain(goal)}) in {plain(truncate(project, 100))}",
            "description": truncate("\n".join(lines), EMBED_DESCRIPTION_LIMIT),
            "color": COLOURS["summary"],
        }
    )
