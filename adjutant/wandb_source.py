"""Synchronous access to one W&B project through ``wandb``'s public API.

Every method blocks (``wandb.Api`` is synchronous and talks to a sidecar process), so callers run
them in a worker thread, never on the event loop. ``wandb`` itself is imported on first use, in
that thread, because the import alone takes a third of a second.

Cost discipline (see ../shared/notes/wandb-protocol.md): one ``Api`` for the process, reused and
flushed each cycle; the entity is passed as an override so no ``GetDefaultEntity`` is sent;
listings that read config/summary use ``lazy=False`` to avoid one request per run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from adjutant.runs import STATES, RunInfo, parse_wandb_time, to_wandb_filter_time

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


#: Serialises ``wandb.Api()`` construction across the projects' W&B threads.
_API_CREATION = threading.Lock()


class ProjectNotFound(LookupError):
    """The project does not exist (yet): W&B creates it when the first run logs to it."""


@dataclass(frozen=True)
class Snapshot:
    """What the connect message shows."""

    counts: dict[str, int]
    best: RunInfo | None
    running: list[RunInfo]


class WandbSource:
    """One W&B project. Thread-confined: use it from a single worker thread."""

    def __init__(self, entity: str | None, project: str, *, timeout: float = 20.0) -> None:
        self.entity = entity
        self.project = project
        self.timeout = timeout
        self._api: Any = None

    def __repr__(self) -> str:
        return f"<WandbSource {self.path}>"

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}" if self.entity else self.project

    def api(self) -> Any:
        """The process's one ``wandb.Api`` (created on first use; reads WANDB_API_KEY/WANDB_BASE_URL)."""
        if self._api is None:
            import wandb

            overrides = {"entity": self.entity} if self.entity else {}
            with _API_CREATION:  # one project's thread at a time: wandb starts its shared service on first use
                self._api = wandb.Api(timeout=int(max(1, self.timeout)), overrides=overrides)
            if self.entity is None:
                self.entity = self._api.default_entity
        return self._api

    # --- listings -------------------------------------------------------------------------------
    def _list(
        self, filters: dict[str, Any] | None, *, order: str = "+created_at", limit: int | None = None, full: bool = True
    ) -> list[RunInfo]:
        api = self.api()
        api.flush()  # the client caches listings by (path, filters, order); a poller must not see stale data
        per_page = min(PAGE_SIZE, limit) if limit else PAGE_SIZE
        runs = api.runs(self.path, filters=filters or {}, order=order, per_page=per_page, lazy=not full)
        out: list[RunInfo] = []
        seen: set[str] = set()
        try:
            for run in runs:
                info = to_run_info(run, full=full)
                if info.id in seen:  # pages may overlap on very large projects (wandb#6614)
                    continue
                seen.add(info.id)
                out.append(info)
                if limit is not None and len(out) >= limit:
                    break
        except ValueError as error:
            if "Could not find project" in str(error):
                raise ProjectNotFound(self.path) from None
            raise
        return out

    def next_page(self, after: tuple[dt.datetime, frozenset[str]] | None, size: int = PAGE_SIZE) -> list[RunInfo]:
        """One page of every run, oldest first, without config/summary: the runs created at or after ``after``'s
        moment that are not among its ids (keyset pagination). Each page is a new, small listing, so walking a
        50,000-run project never holds more than one page (wandb's paginator keeps every run it has loaded)."""
        filters: dict[str, Any] = {}
        if after is not None:
            filters = {"createdAt": {"$gte": to_wandb_filter_time(after[0])}}
        page = self._list(filters, full=False, limit=size + (len(after[1]) if after else 0))
        if after is not None:
            page = [run for run in page if run.id not in after[1]]
        return page[:size]

    def changed_runs(self, watch_ids: Sequence[str], since: dt.datetime | None) -> list[RunInfo]:
        """One query: runs running now, runs last seen running, and runs created since the watermark."""
        clauses: list[dict[str, Any]] = [{"state": "running"}, {"state": "pending"}]
        if watch_ids:
            clauses.append({"name": {"$in": list(watch_ids)}})
        # $gte, not $gt: timestamps are whole seconds, so a run created in the watermark's second
        # could be missed; the runs seen again are de-duplicated by the caller's memory.
        clauses.append({"createdAt": {"$gte": to_wandb_filter_time(since or EPOCH)}})
        return self._list({"$or": clauses})  # ProjectNotFound: the watcher decides whether to believe it

    def recent(self, state: str | None, count: int) -> list[RunInfo]:
        return self._list({"state": state} if state else None, order="-created_at", limit=count)

    def best(self, metric: str, goal: str, count: int) -> list[RunInfo]:
        key = f"summary_metrics.{metric}"
        order = ("+" if goal == "min" else "-") + key
        return self._list({key: {"$exists": True}}, order=order, limit=count)

    def counts_by_state(self) -> dict[str, int]:
        """Runs per state; one small request per state, whatever the project's size."""
        api = self.api()
        counts: dict[str, int] = {}
        try:
            for state in STATES:
                counts[str(state)] = len(api.runs(self.path, filters={"state": state}, per_page=1))
        except ValueError as error:
            if "Could not find project" in str(error):
                raise ProjectNotFound(self.path) from None
            raise
        return counts

    def snapshot(self, metric: str, goal: str) -> Snapshot:
        """Counts by state, the best run and the running ones: a constant number of requests."""
        counts = self.counts_by_state()
        best = self.best(metric, goal, 1) if sum(counts.values()) else []
        running = self.recent("running", 25) if counts.get("running") else []
        return Snapshot(counts, best[0] if best else None, running)

    def lookup(self, run_id: str) -> RunInfo | None:
        """A run by its id; None when W&B says there is no such run."""
        api = self.api()
        api.flush()
        try:
            return to_run_info(api.run(f"{self.path}/{run_id}"), full=True)
        except Exception as error:  # wandb raises CommError (or ValueError) for a missing run
            if "Could not find" not in str(error) and "not found" not in str(error).lower():
                raise
        return None

    def find(self, key: str) -> RunInfo | None:
        """A run by id, else by display name (the newest of that name)."""
        if all(c.isalnum() or c in "-_" for c in key):
            found = self.lookup(key)
            if found is not None:
                return found
        by_name = self._list({"displayName": key}, order="-created_at", limit=1)
        return by_name[0] if by_name else None

    def history(self, run_id: str, metric: str, samples: int = 1000) -> list[tuple[float, float]]:
        """The run's sampled history of ``metric`` as (step, value), server-side downsampled (never a full scan)."""
        api = self.api()
        run = api.run(f"{self.path}/{run_id}")
        rows = run.history(keys=[metric], samples=samples, pandas=False)
        points = []
        for row in rows or []:
            step, value = row.get("_step"), row.get(metric)
            if isinstance(step, int | float) and isinstance(value, int | float) and not isinstance(value, bool):
                points.append((float(step), float(value)))
        return points

    def history_keys(self, run_id: str) -> list[str]:
        """Metric names the run has logged history for."""
        run = self.api().run(f"{self.path}/{run_id}")
        keys = (run._attrs.get("historyKeys") or {}).get("keys") or {}
        return sorted(k for k in keys if isinstance(k, str) and not k.startswith("_"))

    def metric_names(self, sample: int = 20) -> list[str]:
        """Summary metric names seen in the latest runs (for suggestions)."""
        names: dict[str, None] = {}
        for run in self.recent(None, sample):
            names.update(dict.fromkeys(run.public_metrics()))
        return sorted(names)


def to_run_info(run: Any, *, full: bool) -> RunInfo:
    """Convert a ``wandb.apis.public.Run`` without triggering extra requests."""
    attrs: dict[str, Any] = getattr(run, "_attrs", {}) or {}
    user = attrs.get("user") or {}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    system: dict[str, Any] = {}
    if full:
        config = _unwrap_config(attrs.get("config"))
        summary = _json_dict(attrs.get("summaryMetrics"))
        system = _json_dict(attrs.get("systemMetrics"))
    return RunInfo(
        id=str(getattr(run, "id", attrs.get("name", ""))),
        name=str(attrs.get("displayName") or getattr(run, "name", "") or attrs.get("name", "")),
        state=str(attrs.get("state") or "unknown"),
        created_at=parse_wandb_time(attrs.get("createdAt")),
        heartbeat_at=parse_wandb_time(attrs.get("heartbeatAt")),
        user=(user.get("username") or user.get("name")) if isinstance(user, dict) else None,
        url=_safe_url(run),
        config=config,
        summary=summary,
        system=system,
        tags=tuple(str(t) for t in attrs.get("tags") or ()),
        group=attrs.get("group"),
    )


def _safe_url(run: Any) -> str | None:
    try:
        url = run.url
    except Exception:  # a garbage answer may leave the run without entity/project
        return None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def _json_dict(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def _unwrap_config(raw: Any) -> dict[str, Any]:
    """W&B stores config as ``{"lr": {"value": 0.1, "desc": null}, "_wandb": {...}}``."""
    out = {}
    for key, value in _json_dict(raw).items():
        if key in ("_wandb", "wandb_version"):
            continue
        out[key] = value.get("value") if isinstance(value, dict) and "value" in value else value
    return out


def newest_created(runs: Iterable[RunInfo], current: dt.datetime | None) -> dt.datetime | None:
    """The createdAt watermark after seeing ``runs``."""
    moments = [r.created_at for r in runs if r.created_at is not None]
    if current is not None:
        moments.append(current)
    return max(moments) if moments else None
