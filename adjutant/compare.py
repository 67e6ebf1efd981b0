"""``$compare``: what differs between runs (config keys, summary metrics with deltas, runtime, state). Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adjutant.render import code_safe, fit_embed, format_duration, format_number, link, plain, truncate
from adjutant.runs import RunInfo

MAX_RUNS = 5
_MISSING = object()


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested keys as ``optimizer.lr``; lists and scalars are values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class Comparison:
    runs: list[RunInfo]
    #: (key, each run's value or None when it lacks the key), keys that differ, sorted.
    differing: list[tuple[str, list[Any]]]
    #: How many keys are equal across all runs.
    equal: int
    #: (metric, each run's value, each run's delta against the first), the ranking metric first.
    metrics: list[tuple[str, list[float | None], list[float | None]]]


def compare(runs: Sequence[RunInfo], metric: str) -> Comparison:
    configs = [flatten(run.public_config()) for run in runs]
    keys = sorted({key for config in configs for key in config})
    differing = []
    equal = 0
    for key in keys:
        values = [config.get(key, _MISSING) for config in configs]
        texts = {json.dumps(v, sort_keys=True, default=str) if v is not _MISSING else "\0missing" for v in values}
        if len(texts) == 1:
            equal += 1
        else:
            differing.append((key, [None if v is _MISSING else v for v in values]))
    names = sorted({name for run in runs for name in run.public_metrics()})
    ordered = ([metric] if metric in names else []) + [n for n in names if n != metric]
    metrics = []
    for name in ordered:
        values = [run.metric(name) for run in runs]
        base = values[0]
        deltas = [None if base is None or v is None else v - base for v in values]
        metrics.append((name, values, deltas))
    return Comparison(list(runs), differing, equal, metrics)


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _delta(delta: float | None) -> str:
    if delta is None or delta == 0:
        return ""
    return f" ({'+' if delta > 0 else '-'}{format_number(abs(delta))})"


def _table(header: list[str], rows: list[list[str]], width: int = 14) -> str:
    cells = [[truncate(code_safe(c), width) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def compare_embed(comparison: Comparison, *, project: str, metric: str, max_rows: int = 15) -> dict[str, Any]:
    """The comparison as one embed: runs (state, runtime), differing config side by side, metrics with deltas."""
    runs = comparison.runs
    labels = [chr(ord("A") + i) for i in range(len(runs))]
    run_lines = [
        f"**{label}** {link(truncate(r.name, 60), r.url)} (`{code_safe(truncate(r.id, 64))}`)"
        f" · {plain(truncate(r.state, 40))} · {format_duration(r.runtime_seconds())}"
        for label, r in zip(labels, runs, strict=True)
    ]
    fields: list[dict[str, Any]] = [{"name": "Runs", "value": truncate("\n".join(run_lines), 1024), "inline": False}]
    differing = comparison.differing
    if differing:
        rows = [[key, *(_value(v) for v in values)] for key, values in differing[:max_rows]]
        table = _table(["key", *labels], rows)
        more = f"\n… and {len(differing) - max_rows} more" if len(differing) > max_rows else ""
        fields.append(
            {
                "name": f"Config that differs ({len(differing)} key(s); {comparison.equal} equal in all)",
                "value": truncate(f"```\n{table}\n```{more}", 1024),
                "inline": False,
            }
        )
    else:
        fields.append(
            {"name": "Config", "value": f"The same in all runs ({comparison.equal} key(s)).", "inline": False}
        )
    if comparison.metrics:
        rows = [
            [name, *(_value(v) + _delta(d) for v, d in zip(values, deltas, strict=True))]
            for name, values, deltas in comparison.metrics[:max_rows]
        ]
        fields.append(
            {
                "name": f"Summary metrics (deltas against {labels[0]})",
                "value": truncate(f"```\n{_table(['metric', *labels], rows, width=20)}\n```", 1024),
                "inline": False,
            }
        )
    return fit_embed(
        {
            "title": f"Comparing {len(runs)} runs of {plain(truncate(project, 200))}",
            "color": 0x8E44AD,
            "fields": fields,
            "footer": {"text": f"chart: {metric}"},
        }
    )
