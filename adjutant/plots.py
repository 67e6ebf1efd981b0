"""Metric charts as PNG bytes (matplotlib's Agg backend, no display, no pyplot global state).

Pure and blocking: callers run :func:`render_chart` in a worker thread. Each figure is a local
object, dropped when the function returns, so repeated plots do not accumulate memory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

MAX_POINTS = 2000  # per line; longer histories are thinned evenly (first and last points kept)

Series = Sequence[tuple[float, float]]


def downsample(points: Series, limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` evenly spaced points, keeping the first and the last."""
    clean = [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if len(clean) <= limit:
        return clean
    step = (len(clean) - 1) / (limit - 1)
    return [clean[round(i * step)] for i in range(limit)]


def render_chart(
    data: Mapping[str, Mapping[str, Series]],
    metrics: Sequence[str],
    *,
    log_scale: bool = False,
    title: str | None = None,
    small: bool = False,
    mark_step: float | None = None,
) -> bytes:
    """One panel per metric, one line per run (``data[run label][metric]`` = [(step, value)]); PNG bytes.

    ``mark_step``: the step an alert fired at, drawn as a dashed red line with the last point up to it marked."""
    from matplotlib.figure import Figure

    rows = max(1, len(metrics))
    width, height = (5.0, 2.4) if small else (9.0, 3.2 * rows + 0.6)
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.subplots(rows, 1, squeeze=False)[:, 0]
    for axis, metric in zip(axes, metrics, strict=False):
        drawn = 0
        for label, series in data.items():
            points = downsample(series.get(metric, ()))
            if log_scale:
                points = [(x, y) for x, y in points if y > 0]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            axis.plot(
                xs, ys, label=label[:60], linewidth=1.4 if not small else 1.2, marker="o" if len(xs) == 1 else None
            )
            drawn += 1
            if mark_step is not None:
                before = [(x, y) for x, y in points if x <= mark_step and y == y]
                if before:
                    axis.scatter([before[-1][0]], [before[-1][1]], color="red", zorder=3, s=30)
        if mark_step is not None and drawn:
            axis.axvline(mark_step, color="red", linestyle="--", linewidth=1, label="alert")
        axis.set_ylabel(metric[:40])
        axis.set_xlabel("step")
        axis.grid(True, alpha=0.3)
        if log_scale and drawn:
            axis.set_yscale("log")
        if drawn > 1 or (drawn == 1 and not small):
            axis.legend(fontsize="small", loc="best")
    if title:
        figure.suptitle(title[:120], fontsize="medium")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def render_bars(labels: Sequence[str], values: Sequence[float], *, title: str, unit: str) -> bytes:
    """A small horizontal bar chart (largest on top); PNG bytes."""
    from matplotlib.figure import Figure

    pairs = sorted(zip(labels, values, strict=True), key=lambda kv: kv[1])[-12:]
    height = 1.0 + 0.35 * max(1, len(pairs))
    figure = Figure(figsize=(6.0, height), dpi=100, layout="constrained")
    axis = figure.subplots()
    axis.barh([label[:30] for label, _ in pairs], [value for _, value in pairs], color="#3498db")
    axis.set_xlabel(unit)
    axis.grid(True, axis="x", alpha=0.3)
    figure.suptitle(title[:120], fontsize="medium")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
