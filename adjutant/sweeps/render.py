"""What a sweep looks like in chat (pure): the live card (an embed dict and which buttons it has), the preview before
Confirm, ``$sweeps`` lines, the end message, the CSV of every trial and the chart (PNG bytes; blocking: callers run
:func:`chart_png` in a worker thread, as :mod:`adjutant.plots` does).

It reads a sweep and its trials through the small protocols below (what the service's rows carry), and never
imports discord. Every text from a member or from W&B (parameter names and values, the metric's name, notes, names)
goes through :func:`adjutant.render.plain` or :func:`adjutant.render.code_safe`: nothing here can ping or format.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adjutant.job_render import wandb_run_url
from adjutant.render import (
    code_safe,
    fit_embed,
    format_duration,
    format_hours,
    format_number,
    link,
    plain,
    plural,
    safe_url,
    truncate,
)

#: The trial states a card counts, in the order it shows them, with their words.
TRIAL_WORDS: tuple[tuple[str, str], ...] = (
    ("done", "done"),
    ("running", "running"),
    ("queued", "queued"),
    ("failed", "failed"),
    ("stopped", "stopped early"),
    ("dropped", "dropped"),
)
#: A sweep's state → (icon, colour).
STATE_LOOK: dict[str, tuple[str, int]] = {
    "running": ("🔎", 0x3498DB),
    "paused": ("⏸️", 0xF39C12),
    "stopping": ("⏹️", 0xF39C12),
    "stopped": ("⏹️", 0x95A5A6),
    "finished": ("🏁", 0x2ECC71),
}
ENDED_STATES = frozenset({"stopped", "finished"})
#: The card's buttons: (action, label, style name). The custom id is ``adjutant:sweep:<action>:<sweep id>``.
BUTTONS: tuple[tuple[str, str, str], ...] = (
    ("pause", "Pause", "secondary"),
    ("resume", "Resume", "success"),
    ("stop", "Stop", "danger"),
)
CHART_NAME = "sweep.png"
CSV_LIMIT = 8 * 1024 * 1024  # below Discord's default 10 MiB per file


class TrialLike(Protocol):
    """What the card reads of a trial (the service's trial row)."""

    @property
    def number(self) -> int: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def state(self) -> str: ...
    @property
    def value(self) -> float | None: ...
    @property
    def rung(self) -> int | None: ...
    @property
    def wandb_run_id(self) -> str | None: ...
    @property
    def job_id(self) -> str | None: ...


class SweepLike(Protocol):
    """What the card reads of a sweep (the service's sweep row)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def method(self) -> str | None: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def parallel(self) -> int: ...
    @property
    def run_cap(self) -> int | None: ...
    @property
    def entity(self) -> str | None: ...
    @property
    def project(self) -> str | None: ...
    @property
    def wandb_sweep_id(self) -> str | None: ...
    @property
    def requested_by(self) -> str: ...
    @property
    def note(self) -> str | None: ...


@dataclass(frozen=True)
class Goal:
    """The sweep's metric: its name and whether lower is better."""

    name: str
    minimize: bool = True

    def better(self, a: float, b: float) -> bool:
        return a < b if self.minimize else a > b

    def sort_key(self, value: float | None) -> tuple[int, float]:
        """Best first, trials without a value last."""
        if value is None or not math.isfinite(value):
            return (1, 0.0)
        return (0, value if self.minimize else -value)


def goal_of(config: Mapping[str, Any] | str | None) -> Goal | None:
    """The metric of a W&B sweep configuration (a mapping, or its JSON/YAML text as stored), or None."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return None
    if not isinstance(config, Mapping):
        return None
    metric = config.get("metric")
    if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str) or not metric["name"]:
        return None
    return Goal(metric["name"], str(metric.get("goal", "minimize")).lower() != "maximize")


def counts(trials: Iterable[TrialLike]) -> dict[str, int]:
    """How many trials are in each state (every state of :data:`TRIAL_WORDS`, zeros included)."""
    found = {state: 0 for state, _ in TRIAL_WORDS}
    for trial in trials:
        key = str(trial.state).lower()
        found[key] = found.get(key, 0) + 1
    return found


def best(trials: Iterable[TrialLike], goal: Goal | None) -> TrialLike | None:
    """The best trial with a finite value (ties: the earlier trial), or None."""
    if goal is None:
        return None
    found: TrialLike | None = None
    for trial in sorted(trials, key=lambda t: t.number):
        value = trial.value
        if value is None or not math.isfinite(value):
            continue
        if found is None or goal.better(value, found.value):  # type: ignore[arg-type]  # found.value is finite
            found = trial
    return found


def params_text(params: Mapping[str, Any], limit: int = 300) -> str:
    """``lr=0.001, batch_size=32`` escaped for a place that renders markdown."""
    parts = []
    for key, value in params.items():
        shown = format_number(value) if isinstance(value, float) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}={shown.strip(chr(34)) if isinstance(value, str) else shown}")
    return plain(truncate(", ".join(parts) or "(no parameters)", limit))


def sweep_url(base_url: str | None, entity: str | None, project: str | None, sweep_id: str | None) -> str | None:
    """The W&B sweep's page (the public cloud's API host maps to wandb.ai)."""
    if not sweep_id:
        return None
    runs = wandb_run_url(base_url, entity, project, "x")
    return None if runs is None else f"{runs.removesuffix('/runs/x')}/sweeps/{sweep_id}"


def title(sweep: SweepLike) -> str:
    icon, _ = STATE_LOOK.get(str(sweep.state).lower(), ("🔎", 0x3498DB))
    what = "W&B agents" if sweep.kind == "agents" else str(sweep.method or "sweep")
    return truncate(f"{icon} Sweep {sweep.id} · {what} · {str(sweep.state).lower()}", 256)


def count_line(found: Mapping[str, int], total: int | None) -> str:
    """``3 done · 2 running · 1 queued · 0 failed · 1 stopped early`` (``of 12`` when the total is known)."""
    parts = [f"**{found.get(state, 0)}** {word}" for state, word in TRIAL_WORDS if state != "dropped"]
    if found.get("dropped"):
        parts.append(f"**{found['dropped']}** dropped")
    line = " · ".join(parts)
    return f"{line} (of {total})" if total else line


def card(
    sweep: SweepLike,
    trials: Sequence[TrialLike],
    *,
    goal: Goal | None,
    base_url: str | None = None,
    chart: bool = False,
    prefix: str = "$",
) -> dict[str, Any]:
    """The live card: counts, the best trial so far (metric, parameters, W&B link), the chart when there is one."""
    state = str(sweep.state).lower()
    _, colour = STATE_LOOK.get(state, ("🔎", 0x3498DB))
    found = counts(trials)
    lines = [count_line(found, sweep.run_cap)]
    if sweep.kind == "agents":  # its rows are agent jobs: each takes one trial from W&B, or finds none left
        lines[0] = "Agent jobs: " + lines[0]
        where = f"{sweep.entity}/{sweep.project}/{sweep.wandb_sweep_id}" if sweep.wandb_sweep_id else "?"
        lines.append(f"W&B's controller hands out the trials of `{code_safe(where)}`; {sweep.parallel} agent(s).")
    else:
        seed = "" if sweep.seed is None else f", seed {sweep.seed}"
        method = plain(str(sweep.method or "?"))
        lines.append(f"Adjutant proposes the trials ({method}{seed}), {sweep.parallel} at a time.")
    top = best(trials, goal)
    fields: list[dict[str, Any]] = []
    if goal is not None:
        arrow = "lowest" if goal.minimize else "highest"
        if top is None:
            value = f"No trial has reported `{code_safe(truncate(goal.name, 80))}` yet ({arrow} wins)."
        else:
            url = _run_url(base_url, sweep, top)
            run = link(f"trial {top.number}", url) if url else f"trial {top.number}"
            number = format_number(top.value) if top.value is not None else "?"
            value = (
                f"`{code_safe(truncate(goal.name, 80))}` = **{number}** ({arrow} wins), {run}\n"
                f"{params_text(top.params, 700)}"
            )
        fields.append({"name": "Best so far", "value": truncate(value, 1024), "inline": False})
    recent = _recent_lines(trials, goal, base_url, sweep)
    if recent:
        fields.append({"name": "Latest trials", "value": truncate("\n".join(recent), 1024), "inline": False})
    if sweep.note:
        lines.append(plain(truncate(str(sweep.note), 500)))
    if state in ENDED_STATES:
        lines.append(f"`{prefix}results {sweep.id}` gives every trial as a CSV.")
    embed: dict[str, Any] = {
        "title": title(sweep),
        "description": "\n".join(lines),
        "color": colour,
        "fields": fields,
        "footer": {"text": truncate(f"Requested by {sweep.requested_by}", 200)},
    }
    url = sweep_url(base_url, sweep.entity, sweep.project, sweep.wandb_sweep_id)
    if url and safe_url(url):
        embed["url"] = safe_url(url)
    if chart:
        embed["image"] = {"url": f"attachment://{CHART_NAME}"}
    return fit_embed(embed)


def _run_url(base_url: str | None, sweep: SweepLike, trial: TrialLike) -> str | None:
    if not trial.wandb_run_id:
        return None
    return wandb_run_url(base_url, sweep.entity, sweep.project, trial.wandb_run_id)


def _recent_lines(trials: Sequence[TrialLike], goal: Goal | None, base_url: str | None, sweep: SweepLike) -> list[str]:
    """The last five trials, newest first: number, state, value, parameters."""
    out = []
    for trial in sorted(trials, key=lambda t: -t.number)[:5]:
        state = str(trial.state).lower()
        words = dict(TRIAL_WORDS).get(state, state)
        if state == "stopped" and trial.rung is not None:
            words = f"stopped early (hyperband, rung {trial.rung})"
        value = "" if trial.value is None or goal is None else f" · {format_number(trial.value)}"
        out.append(f"{trial.number}. {plain(words)}{value} · {params_text(trial.params, 120)}")
    return out


def buttons(state: str) -> list[tuple[str, str, str, bool]]:
    """The card's buttons (action, label, style, disabled); none once the sweep ended."""
    state = str(state).lower()
    if state in ENDED_STATES:
        return []
    disabled = {"pause": state != "running", "resume": state != "paused", "stop": state == "stopping"}
    return [(action, label, style, disabled[action]) for action, label, style in BUTTONS]


def custom_id(action: str, sweep_id: str) -> str:
    return f"adjutant:sweep:{action}:{sweep_id}"


# --- the preview ---------------------------------------------------------------------------------------------


def preview(
    *,
    kind: str,
    method: str,
    space: Sequence[str],
    trials: int | None,
    capped_by: str | None,
    parallel: int,
    seed: int | None,
    gpus: int,
    time_limit: float | None,
    gpu_hours: float | None,
    where: str,
    metric: Goal | None,
    early_terminate: str | None = None,
) -> dict[str, Any]:
    """What ``$sweep`` (a W&B configuration) and ``$agents`` show before anything runs."""
    lines = []
    if kind == "agents":
        head = f"W&B agents: {plural(parallel, 'agent')}"
        lines.append(f"W&B's controller hands out the trials of `{code_safe(where)}`; each agent is one job.")
    else:
        count = "trials: no cap" if trials is None else plural(trials, "trial")
        head = f"Sweep: {plain(method)}, {count}"
        lines.append(f"W&B project: `{code_safe(where)}` (one W&B sweep; every trial's run is attached to it).")
    if capped_by:
        lines.append(plain(capped_by))
    if metric is not None:
        lines.append(
            f"Metric: `{code_safe(truncate(metric.name, 80))}` ({'minimize' if metric.minimize else 'maximize'})"
        )
    if early_terminate:
        lines.append(f"Early termination: {plain(early_terminate)}")
    if space:
        shown = [f"• {plain(truncate(line, 150))}" for line in space[:15]]
        if len(space) > 15:
            shown.append(f"… and {len(space) - 15} more")
        lines.append("Space:\n" + "\n".join(shown))
    at_once = f"{parallel} at a time" if kind != "agents" else f"at most {parallel} at once"
    seed_text = "" if seed is None else f" · seed {seed} (the same seed gives the same trials)"
    lines.append(f"Parallel: {at_once}{seed_text}")
    per_job = f"{gpus} GPU(s) per trial" if gpus else "no GPU"
    limit = "no time limit" if time_limit is None else f"time limit {format_duration(time_limit)}"
    worst = "unbounded (no time limit)" if gpu_hours is None else format_hours(gpu_hours)
    if gpus == 0:
        worst = "none (no GPU)"
    lines.append(f"{per_job} · {limit} · worst case {worst}")
    return fit_embed({"title": truncate(head, 256), "description": "\n".join(lines), "color": 0x3498DB})


# --- lists, results, the end ---------------------------------------------------------------------------------


def list_line(sweep: SweepLike, trials: Sequence[TrialLike] | None, goal: Goal | None, where: str) -> str:
    """One ``$sweeps`` line: id, method, state, progress, best, channel."""
    what = "agents" if sweep.kind == "agents" else plain(str(sweep.method or "?"))
    parts = [f"`{sweep.id}`", what, str(sweep.state).lower()]
    if trials is not None:
        found = counts(trials)
        total = f"/{sweep.run_cap}" if sweep.run_cap else ""
        parts.append(f"{found['done']}{total} done")
        top = best(trials, goal)
        if top is not None and goal is not None and top.value is not None:
            parts.append(f"best {plain(truncate(goal.name, 40))} {format_number(top.value)}")
    parts.append(where)
    return " · ".join(parts)


def ended_text(sweep: SweepLike, trials: Sequence[TrialLike], goal: Goal | None, mention: str | None) -> str:
    """What the requester is told once, when the sweep ends: how it ended and the best trial."""
    state = str(sweep.state).lower()
    found = counts(trials)
    verb = "finished" if state == "finished" else "was stopped" if state == "stopped" else f"ended ({state})"
    noun = "agent job" if sweep.kind == "agents" else "trial"
    head = f"{mention + ' ' if mention else ''}Sweep `{sweep.id}` {verb}: {plural(len(trials), noun)}"
    extra = [f"{found[s]} {w}" for s, w in TRIAL_WORDS if found.get(s) and s != "done"]
    head += f" ({found['done']} done{', ' + ', '.join(extra) if extra else ''})."
    top = best(trials, goal)
    if top is not None and goal is not None and top.value is not None:
        head += (
            f"\nBest: trial {top.number}, `{code_safe(truncate(goal.name, 80))}` = {format_number(top.value)}"
            f" with {params_text(top.params, 600)}"
        )
    elif goal is not None:
        head += f"\nNo trial reported `{code_safe(truncate(goal.name, 80))}`."
    if sweep.note:
        head += "\n" + plain(truncate(str(sweep.note), 300))
    return truncate(head, 2000)


def ended_embed(
    sweep: SweepLike,
    trials: Sequence[TrialLike],
    goal: Goal | None,
    *,
    base_url: str | None = None,
    where: str = "",
    project: str = "",
    prefix: str = "$",
) -> dict[str, Any]:
    """A subscriber's direct message, once, when a sweep of their project ends: how it ended (stopped, finished, its
    target reached, as the sweep's note says), the counts, the best trial (metric, parameters, W&B link) and the
    sweep's id. ``where``: the card's channel as a mention (``<#id>``: a link, never a ping)."""
    state = str(sweep.state).lower()
    icon, colour = STATE_LOOK.get(state, ("🔎", 0x3498DB))
    verb = "finished" if state == "finished" else "was stopped" if state == "stopped" else f"ended ({plain(state)})"
    found = counts(trials)
    noun = "agent job" if sweep.kind == "agents" else "trial"
    extra = [f"{found[s]} {w}" for s, w in TRIAL_WORDS if found.get(s) and s != "done"]
    lines = [
        f"{plural(len(trials), noun)}: {found['done']} done{', ' + ', '.join(extra) if extra else ''}."
        + (f" Its card is in {where}." if where else "")
    ]
    if sweep.note:
        lines.append(plain(truncate(str(sweep.note), 500)))
    lines.append(f"`{prefix}results {sweep.id}` gives every trial as a CSV.")
    fields: list[dict[str, Any]] = []
    top = best(trials, goal)
    if goal is not None:
        arrow = "lowest" if goal.minimize else "highest"
        metric = f"`{code_safe(truncate(goal.name, 80))}`"
        if top is None or top.value is None:
            value = f"No trial reported {metric}."
        else:
            url = _run_url(base_url, sweep, top)
            run = link(f"trial {top.number}", url) if url else f"trial {top.number}"
            value = f"{metric} = **{format_number(top.value)}** ({arrow} wins), {run}\n{params_text(top.params, 700)}"
        fields.append({"name": "Best trial", "value": truncate(value, 1024), "inline": False})
    footer = (
        f"Sweeps of {project} · requested by {sweep.requested_by}" if project else f"Requested by {sweep.requested_by}"
    )
    embed: dict[str, Any] = {
        "title": truncate(f"{icon} Sweep {sweep.id} {verb}", 256),
        "description": "\n".join(lines),
        "color": colour,
        "fields": fields,
        "footer": {"text": truncate(footer, 200)},
    }
    url = sweep_url(base_url, sweep.entity, sweep.project, sweep.wandb_sweep_id)
    if url and safe_url(url):
        embed["url"] = safe_url(url)
    return fit_embed(embed)


def runtime(started: dt.datetime | str | None, ended: dt.datetime | str | None) -> float | None:
    """Seconds between two times (ISO text or datetimes), or None."""
    try:
        start = dt.datetime.fromisoformat(started) if isinstance(started, str) else started
        end = dt.datetime.fromisoformat(ended) if isinstance(ended, str) else ended
    except ValueError:
        return None
    if start is None or end is None:
        return None
    if (start.tzinfo is None) != (end.tzinfo is None):
        return None
    return max(0.0, (end - start).total_seconds())


def csv_bytes(
    trials: Sequence[TrialLike], goal: Goal | None, runtimes: Mapping[int, float | None] | None = None
) -> bytes:
    """Every trial as CSV, best first (by the goal; trials without a value after, by number): trial, state,
    metric, runtime in seconds, job, W&B run, then one column per parameter. Cells that a spreadsheet would run as a
    formula are quoted with a leading apostrophe."""
    keys = sorted({key for trial in trials for key in trial.params})
    metric = goal.name if goal is not None else "metric"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([_cell(cell) for cell in ["trial", "state", metric, "runtime_s", "job", "wandb_run", *keys]])
    ordered = sorted(
        trials, key=lambda t: (goal.sort_key(t.value) if goal is not None else (0, 0.0), t.number)
    )  # fmt: skip
    size = len(buffer.getvalue().encode("utf-8"))
    for trial in ordered:
        seconds = (runtimes or {}).get(trial.number)
        row = [
            trial.number,
            str(trial.state).lower(),
            "" if trial.value is None else repr(float(trial.value)),
            "" if seconds is None else f"{seconds:.1f}",
            trial.job_id or "",
            trial.wandb_run_id or "",
        ]
        for key in keys:
            value = trial.params.get(key, "")
            row.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow([_cell(cell) for cell in row])
        size += len(line.getvalue().encode("utf-8"))
        if size > CSV_LIMIT:
            break  # whole rows only: the worst trials are the ones left out
        buffer.write(line.getvalue())
    return buffer.getvalue().encode("utf-8")


def _cell(value: Any) -> Any:
    """A spreadsheet never runs a cell as a formula (CSV injection): text starting with = + - @ is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


# --- the chart -----------------------------------------------------------------------------------------------


def important_params(trials: Sequence[TrialLike], goal: Goal | None, limit: int = 2) -> list[str]:
    """The parameters that matter most for the metric, by the absolute rank correlation (Spearman) of their value
    with the metric over the trials with a value; a categorical parameter by the share of variance between its
    values (correlation ratio). At most ``limit``, only parameters with two values or more."""
    if goal is None:
        return []
    valued = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    if len(valued) < 3:
        return []
    metric = [float(t.value) for t in valued]  # type: ignore[arg-type]
    scores: list[tuple[float, str]] = []
    keys = sorted({k for t in valued for k in t.params})
    for key in keys:
        values = [t.params.get(key) for t in valued]
        if len({json.dumps(v, sort_keys=True) for v in values}) < 2:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            score = abs(_spearman([float(v) for v in values], metric))  # type: ignore[arg-type]
        else:
            score = _eta([json.dumps(v, sort_keys=True) for v in values], metric)
        if math.isfinite(score):
            scores.append((score, key))
    scores.sort(key=lambda s: (-s[0], s[1]))
    return [key for _, key in scores[:limit]]


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return 0.0 if vx == 0 or vy == 0 else cov / (vx * vy)


def _eta(groups: Sequence[str], ys: Sequence[float]) -> float:
    mean = sum(ys) / len(ys)
    total = sum((y - mean) ** 2 for y in ys)
    if total == 0:
        return 0.0
    by: dict[str, list[float]] = {}
    for g, y in zip(groups, ys, strict=True):
        by.setdefault(g, []).append(y)
    between = sum(len(v) * (sum(v) / len(v) - mean) ** 2 for v in by.values())
    return math.sqrt(between / total)


def chart_png(trials: Sequence[TrialLike], goal: Goal | None) -> bytes | None:
    """(blocking) The card's chart: the metric of each trial in order (with the best so far), and the metric
    against each of the most important parameters. None while no trial has a value."""
    if goal is None:
        return None
    valued = sorted((t for t in trials if t.value is not None and math.isfinite(t.value)), key=lambda t: t.number)
    if not valued:
        return None
    from matplotlib.figure import Figure

    params = important_params(trials, goal)
    panels = 1 + len(params)
    figure = Figure(figsize=(3.6 * panels, 3.0), dpi=100, layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    xs = [t.number for t in valued]
    ys = [float(t.value) for t in valued]  # type: ignore[arg-type]
    first = axes[0]
    first.scatter(xs, ys, s=18, color="#3498db", zorder=3)
    running: list[float] = []
    for y in ys:
        running.append(y if not running or goal.better(y, running[-1]) else running[-1])
    first.step(xs, running, where="post", color="#2ecc71", linewidth=1.4, label="best so far")
    first.set_xlabel("trial")
    first.set_ylabel(goal.name[:40])
    first.grid(True, alpha=0.3)
    first.legend(fontsize="small", loc="best")
    for axis, key in zip(axes[1:], params, strict=True):
        values = [t.params.get(key) for t in valued]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            numbers = [float(v) for v in values]  # type: ignore[arg-type]
            axis.scatter(numbers, ys, s=18, color="#9b59b6", zorder=3)
            positive = all(n > 0 for n in numbers)
            if positive and max(numbers) / min(numbers) >= 100:
                axis.set_xscale("log")
        else:
            labels = sorted({json.dumps(v, sort_keys=True) for v in values})
            index = {label: i for i, label in enumerate(labels)}
            axis.scatter([index[json.dumps(v, sort_keys=True)] for v in values], ys, s=18, color="#9b59b6", zorder=3)
            axis.set_xticks(range(len(labels)), [label.strip('"')[:12] for label in labels], fontsize="small")
        axis.set_xlabel(key[:40])
        axis.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
