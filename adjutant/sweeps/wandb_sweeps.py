"""The only sweep code that calls wandb (issue 23). Blocking: the sweep service runs every method through
``asyncio.to_thread``; ``wandb`` is imported on first use, in that thread.

What it sends (wandb 0.31, see ../shared/notes/wandb-sweeps.md), per call:

- :meth:`WandbSweeps.create`: ``wandb.sweep()`` (public API): ``Viewer`` + ``UpsertSweep``, once per search sweep;
- :meth:`WandbSweeps.find`: ``api.project(p, entity=e).sweeps()`` (``GetSweeps`` + one ``GetSweep`` per sweep),
  only after a creation whose answer was lost;
- :meth:`WandbSweeps.set_state`: ``SweepWithRuns`` + ``UpsertSweep state`` (wandb's internal helper, as
  ``wandb sweep --pause/--resume/--stop/--cancel`` does: there is no public setter), best effort;
- :meth:`WandbSweeps.runs`: one ``Runs`` request for any number of runs (their state, step and metric);
- :meth:`WandbSweeps.history`: a run's sampled history of one metric (``Run`` + ``SampledHistory``), for hyperband;
- :meth:`WandbSweeps.sweep`: ``GetSweep`` (state, run count, expected run count), for agents;
- :meth:`WandbSweeps.sweep` also gives the sweep's configuration (its ``program`` and ``command``: what an agent
  would run, checked by the service before it queues one);
- :meth:`WandbSweeps.in_flight`: one ``Runs`` request: how many of the sweep's runs are pending or running (agents:
  how many of its agent jobs hold a trial already).

The API key and base URL are the bot's own (``WANDB_API_KEY``/``WANDB_BASE_URL``, read by ``wandb.Api`` as
:class:`adjutant.wandb_source.WandbSource` does); one ``Api`` per entity, reused.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from adjutant.wandb_source import _API_CREATION, import_wandb

#: ``wandb.sweep`` sets WANDB_ENTITY/WANDB_PROJECT in the process environment and prints: one creation at a time.
_CREATION = threading.Lock()
#: At most this many runs in flight are counted (one page: one request).
IN_FLIGHT_PAGE = 200
#: The variables ``wandb.sweep`` changes in ``os.environ`` (restored after it: jobs inherit the bot's environment).
_SWEEP_SETS = ("WANDB_ENTITY", "WANDB_PROJECT")


@dataclass(frozen=True)
class RunReading:
    """What W&B says of one run: its state, its last step (the summary's ``_step``, or its history's line count less
    one when that is further) and its metric's summary value (None: not logged)."""

    run_id: str
    state: str | None
    step: float | None
    value: float | None


@dataclass(frozen=True)
class WandbSweepInfo:
    """A W&B sweep as read back: its state (``RUNNING``, ``PAUSED``, ``FINISHED``, ``CANCELED`` …), how many runs it
    has, and how many its controller expects (None: unbounded, e.g. random without ``run_cap``)."""

    state: str
    run_count: int
    expected: int | None
    #: Its configuration as W&B holds it (``program``, ``command`` …); None when it could not be read as a mapping.
    config: Mapping[str, Any] | None = field(default=None, compare=False)


def split_path(path: str) -> tuple[str | None, str | None, str]:
    """``entity/project/id`` → (entity, project, id); ``project/id`` and ``id`` leave the rest None."""
    parts = [part for part in path.strip().strip("/").split("/") if part]
    if not parts:
        raise ValueError("an empty sweep path")
    if len(parts) >= 3 and parts[-2] == "sweeps":  # a URL's tail: entity/project/sweeps/id
        parts = [*parts[:-2], parts[-1]]
    parts = parts[-3:]
    return (*([None] * (3 - len(parts))), *parts)  # type: ignore[return-value]


@contextlib.contextmanager
def _environment_kept(names: Sequence[str]) -> Iterator[None]:
    """Put ``names`` back in ``os.environ`` as they were (set or unset) after the block."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _sweep_config(text: Any) -> dict[str, Any] | None:
    """A W&B sweep's ``config`` (a YAML string; a mapping as is), or None when it is not a mapping."""
    if isinstance(text, Mapping):
        return dict(text)
    if not isinstance(text, str):
        return None
    import yaml

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return dict(loaded) if isinstance(loaded, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class WandbSweeps:
    """Blocking access to W&B's sweeps for the sweep service (thread-safe: each entity's ``Api`` is created once)."""

    def __init__(self, *, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self._apis: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def api(self, entity: str | None) -> Any:
        """The ``wandb.Api`` for ``entity`` (created on first use)."""
        with self._lock:
            if entity not in self._apis:
                wandb = import_wandb()
                overrides = {"entity": entity} if entity else {}
                with _API_CREATION:
                    self._apis[entity] = wandb.Api(timeout=int(max(1, self.timeout)), overrides=overrides)
            return self._apis[entity]

    def create(self, entity: str | None, project: str | None, config: Mapping[str, Any]) -> str:
        """Create the W&B sweep of a search sweep (with ``controller: {type: local}``, so W&B's controller proposes
        nothing: Adjutant does) in ``entity/project``; its id. ``wandb.sweep`` prints the id and sets WANDB_ENTITY and
        WANDB_PROJECT in the process: its output is swallowed and the environment restored.

        Known risk: until it is restored, another thread reading ``os.environ`` sees the sweep's entity and project
        (wandb's own ``_upsert_sweep`` sets them too, so calling it instead would not help). A job's environment
        names its own project and entity (:func:`adjutant.jobs.child_environment`), so a job started meanwhile
        still reports where it should; only its fallbacks could read them."""
        wandb = import_wandb()
        body = {**dict(config), "controller": {"type": "local"}}
        with _CREATION, _environment_kept(_SWEEP_SETS), contextlib.redirect_stdout(io.StringIO()):
            sweep_id = wandb.sweep(body, entity=entity, project=project)
        if not isinstance(sweep_id, str) or not sweep_id:
            raise RuntimeError("W&B gave no sweep id")
        return sweep_id

    def find(self, entity: str | None, project: str | None, marker: str) -> str | None:
        """The id of the project's W&B sweep whose name is ``marker`` or whose description carries it (a creation
        whose answer was lost), or None. ``api.project(p, entity=e).sweeps()``: 1 + one request per sweep."""
        api = self.api(entity)
        for found in api.project(project, entity=entity).sweeps():
            attrs = getattr(found, "_attrs", {}) or {}
            config = _sweep_config(attrs.get("config")) or {}
            names = (attrs.get("displayName"), config.get("name"), attrs.get("description"), config.get("description"))
            if any(isinstance(name, str) and marker in name for name in names):
                return str(found.id)
        return None

    def set_state(self, entity: str | None, project: str | None, sweep_id: str, state: str) -> None:
        """Set the W&B sweep's state (``RUNNING``, ``PAUSED``, ``FINISHED``, ``CANCELED``). There is no public API
        for it: this is wandb's internal ``_set_sweep_state``, what ``wandb sweep --pause/--resume/--stop/--cancel``
        calls (it refuses what the CLI refuses, e.g. pausing a finished sweep: an exception)."""
        import_wandb()
        from wandb.apis.public.sweeps import _set_sweep_state

        api = self.api(entity)
        with _environment_kept(_SWEEP_SETS):
            _set_sweep_state(api, sweep_id, cast(Any, state), entity=entity, project=project)

    def runs(
        self, entity: str | None, project: str | None, run_ids: Sequence[str], metric: str | None
    ) -> dict[str, RunReading]:
        """The given runs' state, last step and ``metric`` summary value, in ONE request (runs W&B does not know are
        left out)."""
        ids = sorted(set(run_ids))
        if not ids:
            return {}
        api = self.api(entity)
        api.flush()  # wandb.Api keeps every listing it made (by path and filters): the same ask would read the old one
        path = f"{entity}/{project}" if entity else str(project)
        found: dict[str, RunReading] = {}
        listing = api.runs(path, filters={"name": {"$in": ids}}, per_page=len(ids), lazy=False)
        for run in listing:
            summary = dict(run.summary_metrics or {})
            value = _number(summary.get(metric)) if metric else None
            step = _number(summary.get("_step"))
            lines = _number(getattr(run, "history_line_count", None))  # a running run's summary may lag its history
            if lines is not None and lines > 0 and (step is None or lines - 1 > step):
                step = lines - 1
            found[str(run.id)] = RunReading(
                str(run.id),
                str(run.state) if run.state else None,
                step,
                None if value is None or math.isnan(value) else value,
            )
            if len(found) >= len(ids):
                break  # never ask for a second page
        return found

    def history(
        self, entity: str | None, project: str | None, run_id: str, metric: str, samples: int = 500
    ) -> list[tuple[float, float]]:
        """A run's sampled history of ``metric`` as (step, value), steps ascending (server-side sampled)."""
        api = self.api(entity)
        api.flush()  # and every run it read
        path = f"{entity}/{project}/{run_id}" if entity else f"{project}/{run_id}"
        rows = api.run(path).history(keys=[metric], samples=samples, pandas=False)
        points = []
        for row in rows or []:
            step, value = _number(row.get("_step")), _number(row.get(metric))
            if step is not None and value is not None:
                points.append((step, value))
        return sorted(points)

    def sweep(self, path: str) -> WandbSweepInfo:
        """A W&B sweep (``entity/project/id``) read afresh: its state, run count and expected run count."""
        entity, project, sweep_id = split_path(path)
        api = self.api(entity)
        full = "/".join(part for part in (entity, project, sweep_id) if part)
        found = api.sweep(full)
        attrs = found.load(force=True)
        expected = attrs.get("runCountExpected")
        return WandbSweepInfo(
            state=str(attrs.get("state") or "").upper(),
            run_count=int(attrs.get("runCount") or 0),
            expected=int(expected) if isinstance(expected, int | float) and expected > 0 else None,
            config=_sweep_config(attrs.get("config")),
        )

    def in_flight(self, path: str) -> int:
        """How many runs of a W&B sweep (``entity/project/id``) are pending or running, in one request."""
        entity, project, sweep_id = split_path(path)
        api = self.api(entity)
        api.flush()
        where = f"{entity}/{project}" if entity else str(project)
        filters = {"sweep": sweep_id, "state": {"$in": ["pending", "running"]}}
        listing = api.runs(where, filters=filters, per_page=IN_FLIGHT_PAGE)
        return sum(1 for _ in itertools.islice(listing, IN_FLIGHT_PAGE))
