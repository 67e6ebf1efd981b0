"""Synchronous access to one W&B project through ``wandb``'s public API.

Every method blocks (``wandb.Api`` is synchronous and talks to a sidecar process), so callers run
them in a worker thread, never on the event loop. ``wandb`` itself is imported on first use, in
that thread, because the import alone takes a third of a second.

Cost discipline (see ../shared/notes/wandb-protocol.md): one ``Api`` for the process, reused; the entity is
passed as an override so no ``GetDefaultEntity`` is sent; listings are GraphQL queries of their own that ask for
the fields they use, in pages of exactly :data:`PAGE_SIZE` (one request per page); a poll reads a run's config
once, not every poll.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adjutant.runs import STATES, RunInfo, numeric, parse_wandb_time, to_wandb_filter_time

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


#: Serialises ``wandb.Api()`` construction across the projects' W&B threads.
_API_CREATION = threading.Lock()
#: Serialises the first import of wandb across threads (see :func:`import_wandb`).
_IMPORT = threading.Lock()


def import_wandb() -> Any:
    """The ``wandb`` module with its public API loaded, imported under one lock: two threads importing it for the
    first time at once (a project's poll and a sweep's creation) could see a partly initialised module ("cannot
    import name 'Sweeps' from partially initialized module"), and a failed import left ``wandb.apis.public``
    without its names for the rest of the process."""
    with _IMPORT:
        import wandb
        import wandb.apis.public  # loaded here, whole, before any thread uses it
    return wandb


class ProjectNotFound(LookupError):
    """The project does not exist (yet): W&B creates it when the first run logs to it."""


@dataclass(frozen=True)
class Snapshot:
    """What the connect message shows."""

    counts: dict[str, int]
    best: RunInfo | None
    running: list[RunInfo]


#: What a poll reads of every run it lists: enough to see whether anything changed.
CHANGE_FIELDS = "name state heartbeatAt"
#: What a poll reads of a run that moved (a heartbeat since the last poll) or is new: what the watcher decides on
#: (state, heartbeat, the summary: progress, the ranking metric, the rules' metrics and every metric for NaN) and
#: what may change while it runs (its name, tags, group); ``systemMetrics`` only for the GPU idle check.
POLL_FIELDS = "name displayName state heartbeatAt tags group summaryMetrics"
#: What a run's first sight adds: read once per run (when it is new to this process, or runs again).
DETAIL_FIELDS = "createdAt user { username name } config"
#: A listing without config or summary (the first start's pages).
LIGHT_FIELDS = "name displayName state createdAt heartbeatAt tags group user { username name }"
#: Everything a run card or a ranking shows.
FULL_FIELDS = f"{POLL_FIELDS} {DETAIL_FIELDS} systemMetrics"

RUNS_QUERY = """query Runs($project: String!, $entity: String!, $perPage: Int, $order: String%s) {
  project(name: $project, entityName: $entity) {%s
  }
}"""
CONNECTION = """
    %s: runs(filters: $%s, after: $%s, first: $perPage, order: $order) {
      edges { node { %s } }
      pageInfo { endCursor hasNextPage }
    }"""

#: At most this many runs' sampled histories are read in one request (each run an alias of its own).
HISTORY_BATCH = 20
HISTORY_QUERY = """query SampledHistories($project: String!, $entity: String!%s) {
  project(name: $project, entityName: $entity) {%s
  }
}"""

RUN_QUERY = """query Run($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $name) { %s } }
}"""


def runs_query(parts: Sequence[tuple[str, str]]) -> str:
    """One ``Runs`` request listing several connections (alias, fields), each with its filters and cursor."""
    declared = "".join(f", $f_{alias}: JSONString, $c_{alias}: String" for alias, _ in parts)
    connections = "".join(CONNECTION % (alias, f"f_{alias}", f"c_{alias}", fields) for alias, fields in parts)
    return RUNS_QUERY % (declared, connections)


@dataclass(frozen=True)
class HistorySpec:
    """One metric's sampled history to read of a run: at most ``samples`` rows (W&B samples evenly and keeps the
    first and last), from ``min_step`` (None: the whole run)."""

    metric: str
    samples: int
    min_step: int | None = None

    def json(self) -> str:
        spec: dict[str, Any] = {"keys": ["_step", self.metric], "samples": self.samples}
        if self.min_step is not None:
            spec["minStep"] = self.min_step
        return json.dumps(spec)


@dataclass(frozen=True)
class _Seen:
    """What the last poll knew of a run: everything read of it (merged), and its heartbeat."""

    node: dict[str, Any]
    heartbeat: dt.datetime | None


class WandbSource:
    """One W&B project. Thread-confined: use it from a single worker thread.

    Listings are GraphQL queries of their own (through the wandb client's connection), not ``api.runs``: they ask
    for the fields they use, and build no ``wandb`` ``Run`` objects (each of which creates a folder under
    ``WANDB_DIR``): watching a project writes nothing per run to disk."""

    def __init__(self, entity: str | None, project: str, *, timeout: float = 20.0) -> None:
        self.entity = entity
        self.project = project
        self.timeout = timeout
        self._api: Any = None
        self._app_url: str | None = None
        #: The runs of the last poll's answer: their once-read details (config, creation, user).
        self._seen: dict[str, _Seen] = {}

    def __repr__(self) -> str:
        return f"<WandbSource {self.path}>"

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}" if self.entity else self.project

    def api(self) -> Any:
        """The process's one ``wandb.Api`` (created on first use; reads WANDB_API_KEY/WANDB_BASE_URL)."""
        if self._api is None:
            wandb = import_wandb()
            overrides = {"entity": self.entity} if self.entity else {}
            with _API_CREATION:  # one project's thread at a time: wandb starts its shared service on first use
                self._api = wandb.Api(timeout=int(max(1, self.timeout)), overrides=overrides)
            if self.entity is None:
                self.entity = self._api.default_entity
        return self._api

    # --- raw GraphQL ----------------------------------------------------------------------------
    def _execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """One GraphQL request through the wandb client's own connection (wandb-core since 0.2x; its retries and
        timeout); returns the answer's ``data`` (``{}`` when W&B gave none)."""
        api = self.api()
        service = getattr(api, "_service_api", None)
        if service is not None:
            data = service.execute_graphql(query, {"entity": self.entity, "project": self.project, **variables})
        else:  # older wandb clients: the gql client
            from wandb_gql import gql  # type: ignore[import-not-found]

            data = api.client.execute(gql(query), variable_values={"entity": self.entity, "project": self.project,
                                                                   **variables})  # fmt: skip
        return data if isinstance(data, dict) else {}

    def _project(self, data: dict[str, Any]) -> dict[str, Any]:
        project = data.get("project")
        if not isinstance(project, dict):
            raise ProjectNotFound(self.path)
        return project

    def _listings(
        self,
        parts: dict[str, tuple[str, dict[str, Any]]],
        *,
        order: str = "+created_at",
        limit: int | None = None,
    ) -> Iterator[dict[str, tuple[list[dict[str, Any]], bool]]]:
        """Listings (alias → fields, filters), all in the first request, each continued on its own while W&B has
        more: per request, each listing's page (at most :data:`PAGE_SIZE` runs, ``limit`` in all) and whether W&B
        has more of it."""
        cursors: dict[str, str | None] = dict.fromkeys(parts)
        got = 0
        while cursors:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - got)
            query = runs_query([(alias, parts[alias][0]) for alias in cursors])
            variables: dict[str, Any] = {"perPage": size, "order": order}
            for alias, cursor in cursors.items():
                variables[f"f_{alias}"] = json.dumps(parts[alias][1] or {})
                variables[f"c_{alias}"] = cursor
            project = self._project(self._execute(query, variables))
            answer: dict[str, tuple[list[dict[str, Any]], bool]] = {}
            for alias in list(cursors):
                runs = project.get(alias) or {}
                edges = runs.get("edges") or ()
                nodes = [e["node"] for e in edges if isinstance(e, dict) and isinstance(e.get("node"), dict)]
                info = runs.get("pageInfo") or {}
                more = bool(info.get("hasNextPage")) and bool(nodes) and info.get("endCursor") is not None
                got += len(nodes)
                answer[alias] = (nodes, more)
                if more and (limit is None or got < limit):
                    cursors[alias] = info.get("endCursor")
                else:
                    del cursors[alias]
            yield answer

    def _pages(
        self, fields: str, filters: dict[str, Any] | None, *, order: str = "+created_at", limit: int | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """One listing's pages (see :meth:`_listings`)."""
        for answer in self._listings({"runs": (fields, filters or {})}, order=order, limit=limit):
            yield answer["runs"]

    def _nodes(
        self, fields: str, filters: dict[str, Any] | None, *, order: str = "+created_at", limit: int | None = None
    ) -> list[dict[str, Any]]:
        return self._all({"runs": (fields, filters or {})}, order=order, limit=limit)["runs"]

    def _all(
        self, parts: dict[str, tuple[str, dict[str, Any]]], *, order: str = "+created_at", limit: int | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Every page of each listing, without repeats (pages may overlap on very large projects, wandb#6614)."""
        out: dict[str, list[dict[str, Any]]] = {alias: [] for alias in parts}
        seen: dict[str, set[str]] = {alias: set() for alias in parts}
        for answer in self._listings(parts, order=order, limit=limit):
            for alias, (page, _) in answer.items():
                for node in page:
                    name = str(node.get("name") or "")
                    if name not in seen[alias]:
                        seen[alias].add(name)
                        out[alias].append(node)
        return out

    def _info(self, node: dict[str, Any]) -> RunInfo:
        return node_run_info(node, self._url(str(node.get("name") or "")))

    def _url(self, run_id: str) -> str | None:
        if self._app_url is None:
            service = getattr(self.api(), "_service_api", None)
            app_url = getattr(service, "app_url", None)
            self._app_url = app_url if isinstance(app_url, str) else ""
        if not self._app_url.startswith(("http://", "https://")) or not run_id:
            return None
        return f"{self._app_url.rstrip('/')}/{self.entity}/{self.project}/runs/{run_id}"

    # --- listings -------------------------------------------------------------------------------
    def _list(
        self, filters: dict[str, Any] | None, *, order: str = "+created_at", limit: int | None = None
    ) -> list[RunInfo]:
        return [self._info(node) for node in self._nodes(FULL_FIELDS, filters, order=order, limit=limit)]

    def next_page(
        self, after: tuple[dt.datetime, frozenset[str]] | None, size: int = PAGE_SIZE
    ) -> tuple[list[RunInfo], bool]:
        """One page of every run, oldest first, without config/summary: the runs created at or after ``after``'s
        moment that are not among its ids (keyset pagination, so each page is one request of exactly ``size``
        runs); and whether W&B has more. Each page is a new, small listing, so walking a 50,000-run project never
        holds more than one page."""
        filters: dict[str, Any] = {}
        if after is not None:
            filters = {"createdAt": {"$gte": to_wandb_filter_time(after[0])}}
            if after[1]:
                filters["name"] = {"$nin": sorted(after[1])}
        page, more = next(self._pages(LIGHT_FIELDS, filters, limit=size))  # ProjectNotFound: the watcher decides
        return [self._info(node) for node in page], more

    def changed_runs(self, watch_ids: Sequence[str], since: dt.datetime | None, system: bool = False) -> list[RunInfo]:
        """The runs running now, the runs last seen running, and the runs created since the watermark, in one
        request when nothing is new: each run's state and heartbeat, and in the same request, in full
        (:data:`POLL_FIELDS`, and ``systemMetrics`` with ``system``), the runs whose heartbeat moved since the last
        poll. A run that did not move is the one the last poll read (with its new state); a run new to this process
        or running again costs one more request, for all such runs together, which also reads its config, creation
        and user (once per run)."""
        clauses: list[dict[str, Any]] = [{"state": "running"}, {"state": "pending"}]
        if watch_ids:
            clauses.append({"name": {"$in": list(watch_ids)}})
        # $gte, not $gt: timestamps are whole seconds, so a run created in the watermark's second
        # could be missed; the runs seen again are de-duplicated by the caller's memory.
        clauses.append({"createdAt": {"$gte": to_wandb_filter_time(since or EPOCH)}})
        listed: dict[str, Any] = {"$or": clauses}
        fields = POLL_FIELDS + (" systemMetrics" if system else "")
        newest = max((s.heartbeat for s in self._seen.values() if s.heartbeat is not None), default=None)
        if newest is None:  # nothing read yet: every run in full
            parts = {"runs": (fields, listed)}
        else:
            # $gte: a heartbeat in the second of the newest one seen may have come after that poll's read
            moved = {"$and": [listed, {"heartbeatAt": {"$gte": to_wandb_filter_time(newest)}}]}
            parts = {"runs": (CHANGE_FIELDS, listed), "moved": (fields, moved)}
        answer = self._all(parts)  # ProjectNotFound: the watcher decides whether to believe it
        nodes, full = answer["runs"], {str(n.get("name")): n for n in answer.get("moved", answer["runs"])}
        wanted: list[str] = []
        for node in nodes:
            name = str(node.get("name"))
            seen = self._seen.get(name)
            if seen is None or (node.get("state") == "running" and seen.node.get("state") != "running"):
                wanted.append(name)  # new to this process, or running again: its details (and all else) once more
            elif name not in full and (
                node.get("heartbeatAt") != seen.node.get("heartbeatAt") or (system and "systemMetrics" not in seen.node)
            ):
                wanted.append(name)  # it moved, yet its heartbeat is older than the newest seen (W&B's clocks)
        for start in range(0, len(wanted), PAGE_SIZE):
            chunk = wanted[start : start + PAGE_SIZE]
            for node in self._nodes(f"{fields} {DETAIL_FIELDS}", {"name": {"$in": chunk}}):
                full[str(node.get("name"))] = node
        seen_now: dict[str, _Seen] = {}
        out: list[RunInfo] = []
        for node in nodes:
            name = str(node.get("name"))
            previous = self._seen.get(name)
            merged = {**(previous.node if previous is not None else {}), **full.get(name, {}), **node}
            if "config" in merged:  # its details were read (a run W&B lost between two requests is asked again)
                seen_now[name] = _Seen(merged, parse_wandb_time(merged.get("heartbeatAt")))
            out.append(self._info(merged))
        self._seen = seen_now
        return out

    def recent(self, state: str | None, count: int) -> list[RunInfo]:
        return self._list({"state": state} if state else None, order="-created_at", limit=count)

    def best(self, metric: str, goal: str, count: int) -> list[RunInfo]:
        key = f"summary_metrics.{metric}"
        order = ("+" if goal == "min" else "-") + key
        return self._list({key: {"$exists": True}}, order=order, limit=count)

    def counts_by_state(self) -> dict[str, int]:
        """Runs per state, in one request whatever the project's size."""
        names = {f"c{i}": str(state) for i, state in enumerate(STATES)}
        declared = ", ".join(f"${n}: JSONString" for n in names)
        counted = " ".join(f"{n}: runCount(filters: ${n})" for n in names)
        query = (
            f"query RunCounts($project: String!, $entity: String!, {declared}) "
            f"{{ project(name: $project, entityName: $entity) {{ {counted} }} }}"
        )
        project = self._project(self._execute(query, {n: json.dumps({"state": s}) for n, s in names.items()}))
        return {state: int(project.get(n) or 0) for n, state in names.items()}

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

    def fetch(self, run_id: str) -> RunInfo | None:
        """A run by its id in one request that builds no ``wandb`` object (so it writes nothing to disk); None when
        W&B says there is no such run (or no such project)."""
        project = self._execute(RUN_QUERY % FULL_FIELDS, {"name": run_id}).get("project")
        node = project.get("run") if isinstance(project, dict) else None
        return self._info(node) if isinstance(node, dict) else None

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

    def sampled_histories(
        self, asks: Mapping[str, Sequence[HistorySpec]]
    ) -> dict[str, list[list[tuple[float, float]]]]:
        """Several runs' sampled histories: per run id, per spec, its rows as (step, value), oldest first, the
        non-finite values left out. One request per :data:`HISTORY_BATCH` runs (each spec of a run in its one
        ``sampledHistory`` field); a run W&B does not know is left out of the answer."""
        out: dict[str, list[list[tuple[float, float]]]] = {}
        items = [(run_id, list(specs)) for run_id, specs in asks.items() if specs]
        for start in range(0, len(items), HISTORY_BATCH):
            chunk = items[start : start + HISTORY_BATCH]
            declared = "".join(f", $n{i}: String!, $s{i}: [JSONString!]!" for i in range(len(chunk)))
            fields = "".join(
                f"\n    r{i}: run(name: $n{i}) {{ sampledHistory(specs: $s{i}) }}" for i in range(len(chunk))
            )
            variables: dict[str, Any] = {}
            for i, (run_id, specs) in enumerate(chunk):
                variables[f"n{i}"] = run_id
                variables[f"s{i}"] = [spec.json() for spec in specs]
            project = self._project(self._execute(HISTORY_QUERY % (declared, fields), variables))
            for i, (run_id, specs) in enumerate(chunk):
                node = project.get(f"r{i}")
                answers = node.get("sampledHistory") if isinstance(node, dict) else None
                if not isinstance(answers, list):
                    continue
                answers = [*answers, *[None] * (len(specs) - len(answers))]
                out[run_id] = [_points(rows, spec.metric) for spec, rows in zip(specs, answers, strict=False)]
        return out

    def finished_summaries(self, count: int) -> list[dict[str, float]]:
        """The numeric summary metrics of the project's last ``count`` finished runs, newest first (one request)."""
        nodes = self._nodes("name summaryMetrics", {"state": "finished"}, order="-created_at", limit=count)
        return [node_run_info(node, None).public_metrics() for node in nodes]

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


def node_run_info(node: dict[str, Any], url: str | None) -> RunInfo:
    """A run as a GraphQL answer gives it (the fields asked for; the others are left empty)."""
    user = node.get("user") or {}
    return RunInfo(
        id=str(node.get("name") or ""),
        name=str(node.get("displayName") or node.get("name") or ""),
        state=str(node.get("state") or "unknown"),
        created_at=parse_wandb_time(node.get("createdAt")),
        heartbeat_at=parse_wandb_time(node.get("heartbeatAt")),
        user=(user.get("username") or user.get("name")) if isinstance(user, dict) else None,
        url=url,
        config=_unwrap_config(node.get("config")),
        summary=_json_dict(node.get("summaryMetrics")),
        system=_json_dict(node.get("systemMetrics")),
        tags=tuple(str(t) for t in node.get("tags") or ()),
        group=node.get("group"),
    )


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


def _points(rows: Any, metric: str) -> list[tuple[float, float]]:
    """A ``sampledHistory`` answer's rows as (step, value) in step order, rows without a finite value left out."""
    points = []
    for row in rows if isinstance(rows, list) else ():
        if not isinstance(row, dict):
            continue
        step, value = numeric(row.get("_step")), numeric(row.get(metric))
        if step is not None and value is not None:
            points.append((step, value))
    return sorted(points)


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
