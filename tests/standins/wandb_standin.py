"""A local stand-in for W&B's GraphQL API that the real ``wandb.Api`` talks to (via WANDB_BASE_URL).

aiohttp + graphql-core on 127.0.0.1 (random port), served from its own thread and event loop so
it never shares the bot's loop. The schema is the subset the public API's read path uses (see
../shared/notes/wandb-protocol.md). A control API creates runs, logs history, changes states and
heartbeats, injects faults (HTTP errors, delays, garbage), and counts requests per operation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import graphql
from aiohttp import web

API_KEY = "local-" + "0123456789abcdef" * 3  # wandb checks 40+ chars client-side

SCHEMA = graphql.build_schema(
    """
    scalar JSONString
    scalar JSON
    scalar DateTime
    scalar Int64

    type Query {
      viewer: User
      project(name: String, entityName: String): Project
      model(name: String, entityName: String): Project
      serverInfo: ServerInfo
    }
    type Mutation {
      upsertBucket(input: UpsertBucketInput!): UpsertBucketPayload
      createRunFiles(input: CreateRunFilesInput!): CreateRunFilesPayload
    }
    input UpsertBucketInput {
      id: String name: String groupName: String modelName: String entityName: String description: String
      displayName: String notes: String config: JSONString commit: String host: String debug: Boolean
      jobProgram: String jobRepo: String jobType: String state: String sweep: String tags: [String!]
      summaryMetrics: JSONString
    }
    type UpsertBucketPayload { bucket: Run inserted: Boolean }
    input CreateRunFilesInput { entityName: String! projectName: String! runName: String! files: [String!]! }
    type CreateRunFilesPayload { runID: ID! uploadHeaders: [String!]! files: [RunFileUpload!]! }
    type RunFileUpload { name: String! uploadUrl: String }
    type Entity { id: ID! name: String! }
    type ServerInfo { features: [Feature!]! }
    type Feature { name: String! isEnabled: Boolean! }
    type User {
      id: ID! entity: String username: String email: String name: String admin: Boolean flags: JSONString
      deletedAt: DateTime teams: TeamConnection apiKeys: ApiKeyConnection
    }
    type TeamConnection { edges: [TeamEdge!]! }
    type TeamEdge { node: Team }
    type Team { name: String }
    type ApiKeyConnection { edges: [ApiKeyEdge!]! }
    type ApiKeyEdge { node: ApiKey }
    type ApiKey { id: ID! name: String description: String }
    type Project {
      id: ID! internalId: ID! name: String! entityName: String readOnly: Boolean entity: Entity
      runCount(filters: JSONString): Int!
      runs(filters: JSONString, after: String, first: Int, order: String): RunConnection
      run(name: String!): Run
      bucket(name: String!, missingOk: Boolean): Run
    }
    type RunConnection { edges: [RunEdge!]! pageInfo: PageInfo! totalCount: Int }
    type RunEdge { node: Run! cursor: String! }
    type PageInfo { endCursor: String hasNextPage: Boolean! startCursor: String hasPreviousPage: Boolean }
    type RunUser { name: String username: String }
    type Run {
      id: ID! name: String! displayName: String state: String tags: [String!]! group: String jobType: String
      sweepName: String commit: String readOnly: Boolean description: String notes: String
      historyLineCount: Int projectId: ID createdAt: DateTime heartbeatAt: DateTime user: RunUser
      config: JSONString summaryMetrics: JSONString systemMetrics: JSONString historyKeys: JSON
      sampledHistory(specs: [JSONString!]!): [JSON]
      history(samples: Int, minStep: Int64, maxStep: Int64): [String!]!
      parquetHistory(liveKeys: [String!]!): ParquetHistory
      project: Project
      logLineCount: Int eventsLineCount: Int historyTail: String eventsTail: String
      wandbConfig(keys: [String!]): JSONString
    }
    type ParquetHistory { parquetUrls: [String!]! liveData: [JSON!]! }
    """
)

STATES = ("running", "finished", "failed", "crashed", "killed", "pending", "preempting", "preempted")


def wandb_time(moment: dt.datetime) -> str:
    """W&B's timestamp shape: UTC, no zone designator, whole seconds."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0).isoformat()


def parse_time(value: str) -> dt.datetime:
    value = value.rstrip("Z")
    # accept partial strings like "2022-03-07T17"
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d"):
        with contextlib.suppress(ValueError):
            return dt.datetime.strptime(value.split("+")[0], fmt)
    raise ValueError(f"bad time {value!r}")


@dataclass
class FakeRun:
    """One run as the stand-in stores it."""

    name: str
    display_name: str
    state: str
    created_at: dt.datetime
    heartbeat_at: dt.datetime
    user: str = "alice"
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    #: The latest system metrics (``system.gpu.0.gpu`` …), as W&B's ``systemMetrics`` holds them.
    system: dict[str, Any] = field(default_factory=dict)
    storage_id: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(9)).decode())

    def field_value(self, key: str) -> Any:
        """The value a filter or order key refers to (None when absent)."""
        key = key.removesuffix(".value")
        if key in ("name", "id"):
            return self.name
        if key in ("displayName", "display_name"):
            return self.display_name
        if key == "state":
            return self.state
        if key in ("createdAt", "created_at"):
            return self.created_at
        if key in ("heartbeatAt", "heartbeat_at"):
            return self.heartbeat_at
        if key == "tags":
            return self.tags
        if key == "group":
            return self.group
        if key == "username":
            return self.user
        if key.startswith("config."):
            return self.config.get(key.removeprefix("config."))
        if key.startswith(("summary_metrics.", "summaryMetrics.")):
            return self.summary.get(key.split(".", 1)[1])
        return None


def _coerce(run_value: Any, filter_value: Any) -> Any:
    if isinstance(run_value, dt.datetime) and isinstance(filter_value, str):
        return parse_time(filter_value)
    if isinstance(run_value, dt.datetime) and isinstance(filter_value, int | float):
        raise ValueError("numeric createdAt filters are rejected by W&B (HTTP 500)")
    return filter_value


def _compare(op: str, value: Any, target: Any) -> bool:
    if op == "$exists":
        return (value is not None) == bool(target)
    if op == "$in":
        if isinstance(value, list):
            return any(v in target for v in value)
        return any(value == _coerce(value, t) for t in target)
    if op == "$nin":
        return not _compare("$in", value, target)
    if op == "$regex":
        return isinstance(value, str) and re.search(target, value) is not None
    target = _coerce(value, target)
    if op == "$eq":
        return value in target if isinstance(value, list) and not isinstance(target, list) else value == target
    if op == "$ne":
        return not _compare("$eq", value, target)
    if value is None:
        return False
    try:
        return {
            "$gt": lambda: value > target,
            "$gte": lambda: value >= target,
            "$lt": lambda: value < target,
            "$lte": lambda: value <= target,
        }[op]()
    except KeyError:
        raise ValueError(f"unsupported operator {op}") from None
    except TypeError:
        return False


def matches(run: FakeRun, query: dict[str, Any]) -> bool:
    """MongoDB-style filter evaluation, the subset W&B documents."""
    for key, condition in query.items():
        if key == "$and":
            if not all(matches(run, q) for q in condition):
                return False
        elif key == "$or":
            if not any(matches(run, q) for q in condition):
                return False
        elif key == "$nor":
            if any(matches(run, q) for q in condition):
                return False
        else:
            value = run.field_value(key)
            if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
                if not all(_compare(op, value, target) for op, target in condition.items()):
                    return False
            elif not _compare("$eq", value, condition):
                return False
    return True


class Fault:
    """What the next requests get instead of an answer."""

    def __init__(
        self,
        kind: str,
        times: int,
        status: int = 500,
        seconds: float = 0.0,
        payload: dict[str, Any] | None = None,
        project: str | None = None,
    ) -> None:
        self.kind, self.times, self.status, self.seconds = kind, times, status, seconds
        self.payload = payload
        #: Only requests naming this project (in their variables) meet the fault.
        self.project = project


class WandbStandIn:
    """The stand-in. ``with WandbStandIn() as wb: ...``; point wandb at ``wb.base_url``."""

    def __init__(self, entity: str = "team", project: str = "proj") -> None:
        self.entity = entity
        self.projects: dict[tuple[str, str], dict[str, FakeRun]] = {(entity, project): {}}
        self.default_project = project
        self.counts: Counter[str] = Counter()
        #: Bytes of the GraphQL answers' bodies, per operation (and ``__total__``), as sent (uncompressed).
        self.bytes_out: Counter[str] = Counter()
        #: Every GraphQL request since the last :meth:`reset_counts`: operation, query text and variables.
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self.clock_offset = dt.timedelta(0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._serial = 0
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WandbStandIn:
        self._thread = threading.Thread(target=self._serve, name="wandb-standin", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("W&B stand-in did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> WandbStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/graphql", self._graphql)
        app.router.add_post("/files/{entity}/{project}/{run}/file_stream", self._file_stream)
        app.router.add_put("/upload/{tail:.*}", self._upload)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    # --- control API (thread-safe) --------------------------------------------------------------
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) + self.clock_offset

    def runs(self, project: str | None = None) -> dict[str, FakeRun]:
        key = (self.entity, project or self.default_project)
        return self.projects.setdefault(key, {})

    def create_run(
        self,
        name: str | None = None,
        *,
        display_name: str | None = None,
        state: str = "running",
        created_at: dt.datetime | None = None,
        heartbeat_at: dt.datetime | None = None,
        config: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
        user: str = "alice",
        tags: list[str] | None = None,
        project: str | None = None,
    ) -> str:
        with self.lock:
            self._serial += 1
            name = name or f"run{self._serial:06d}"
            created = created_at or self.now()
            self.runs(project)[name] = FakeRun(
                name=name,
                display_name=display_name or f"run-{self._serial}",
                state=state,
                created_at=created,
                heartbeat_at=heartbeat_at or created,
                user=user,
                config=dict(config or {}),
                summary=dict(summary or {}),
                tags=list(tags or []),
            )
            return name

    def create_runs(
        self, count: int, *, state: str = "finished", project: str | None = None, **kwargs: Any
    ) -> list[str]:
        start = self.now() - dt.timedelta(seconds=count + 3600)
        return [
            self.create_run(state=state, created_at=start + dt.timedelta(seconds=i), project=project, **kwargs)
            for i in range(count)
        ]

    def update_run(self, name: str, *, project: str | None = None, **changes: Any) -> None:
        """Change ``state``, ``heartbeat_at``, ``summary``/``config``/``system`` (merged), ``display_name``,
        ``group``."""
        with self.lock:
            run = self.runs(project)[name]
            for key, value in changes.items():
                if key in ("summary", "config", "system"):
                    getattr(run, key).update(value)
                else:
                    setattr(run, key, value)
            if "heartbeat_at" not in changes and run.state == "running":
                run.heartbeat_at = self.now()

    def log(self, name: str, rows: list[dict[str, Any]], *, project: str | None = None) -> None:
        with self.lock:
            run = self.runs(project)[name]
            for row in rows:
                step = len(run.history)
                run.history.append({"_step": step, **row})
                run.summary.update({k: v for k, v in row.items() if not k.startswith("_")})
                run.summary["_step"] = step

    def fail(self, times: int, status: int = 500) -> None:
        with self.lock:
            self.faults.append(Fault("status", times, status=status))

    def hang(self, times: int, seconds: float, *, project: str | None = None) -> None:
        """The next ``times`` requests (about ``project`` only, if given) answer after ``seconds``."""
        with self.lock:
            self.faults.append(Fault("hang", times, seconds=seconds, project=project))

    def garbage(self, times: int) -> None:
        with self.lock:
            self.faults.append(Fault("garbage", times))

    def answer(self, times: int, payload: dict[str, Any]) -> None:
        """The next ``times`` requests get ``payload`` as their whole (HTTP 200) answer, e.g. ``{"data": None}``."""
        with self.lock:
            self.faults.append(Fault("answer", times, payload=payload))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.bytes_out.clear()
            self.requests.clear()

    # --- HTTP -----------------------------------------------------------------------------------
    async def _not_found(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="not found")

    def _take_fault(self, variables: dict[str, Any] | None = None) -> Fault | None:
        with self.lock:
            self.faults = [f for f in self.faults if f.times > 0]
            for fault in self.faults:
                if fault.project is not None and (variables or {}).get("project") != fault.project:
                    continue
                fault.times -= 1
                return fault
        return None

    async def _upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    async def _file_stream(self, request: web.Request) -> web.Response:
        """The trainer's stream: history rows, the summary, system metrics, and at the end ``complete`` with
        the exit code. Each post is a heartbeat. Python's JSON writes NaN/Infinity as bare tokens; so does the SDK."""
        body = json.loads(await request.read())
        key = (request.match_info["entity"], request.match_info["project"])
        with self.lock:
            self.counts["file_stream"] += 1
            run = self.projects.get(key, {}).get(request.match_info["run"])
            if run is None:
                return web.json_response({"error": "run not found"}, status=404)
            files = body.get("files") or {}
            for line in (files.get("wandb-history.jsonl") or {}).get("content") or []:
                row = json.loads(line)
                run.history.append(row)
                run.summary.update(
                    {k: v for k, v in row.items() if not k.startswith("_") or k in ("_step", "_runtime")}
                )
            for line in (files.get("wandb-summary.json") or {}).get("content") or []:
                run.summary.update(json.loads(line))
            for line in (files.get("wandb-events.jsonl") or {}).get("content") or []:
                run.system.update({k: v for k, v in json.loads(line).items() if k.startswith("system.")})
            if run.state == "running":
                run.heartbeat_at = self.now()
            if body.get("complete"):
                run.state = "finished" if body.get("exitcode") == 0 else "failed"
        return web.json_response({"exitcode": None, "limits": {}})

    async def _graphql(self, request: web.Request) -> web.Response:
        body = await request.json()
        query = body.get("query", "")
        operation = body.get("operationName") or _operation_name(query)
        with self.lock:
            self.counts[operation] += 1
            self.counts["__total__"] += 1
            self.requests.append((operation, query, dict(body.get("variables") or {})))
        auth = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"api:{API_KEY}".encode()).decode()
        if auth != expected:
            return web.json_response({"errors": [{"message": "user is not logged in"}]}, status=401)
        fault = self._take_fault(body.get("variables"))
        if fault is not None:
            if fault.kind == "status":
                return web.json_response({"errors": [{"message": "stand-in fault"}]}, status=fault.status)
            if fault.kind == "hang":
                await asyncio.sleep(fault.seconds)
            if fault.kind == "garbage":
                return web.Response(text="<html>502 Bad Gateway</html>", content_type="application/json")
            if fault.kind == "answer":
                return web.json_response(fault.payload)
        with self.lock:
            result = graphql.graphql_sync(
                SCHEMA,
                query,
                root_value=_Root(self),
                variable_values=body.get("variables") or {},
                operation_name=body.get("operationName") or None,
            )
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        text = json.dumps(payload)
        with self.lock:
            self.bytes_out[operation] += len(text.encode())
            self.bytes_out["__total__"] += len(text.encode())
        return web.Response(text=text, content_type="application/json")


def _operation_name(query: str) -> str:
    match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
    return match.group(1) if match else "anonymous"


class _Root:
    def __init__(self, server: WandbStandIn) -> None:
        self.server = server

    def viewer(self, info: Any) -> dict[str, Any]:
        return {
            "id": "VXNlcjox",
            "entity": self.server.entity,
            "username": self.server.entity,
            "email": "alice@example.com",
            "name": "Alice",
            "admin": False,
            "flags": "{}",
            "teams": {"edges": []},
            "apiKeys": {"edges": []},
        }

    def serverInfo(self, info: Any) -> dict[str, Any]:
        return {"features": []}

    # --- the trainer's write path (wandb.init / log / finish) -----------------------------------------
    def upsertBucket(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        server = self.server
        key = (input.get("entityName") or server.entity, input.get("modelName") or server.default_project)
        runs = server.projects.setdefault(key, {})
        name = input.get("name") or f"run{len(runs):06d}"
        inserted = name not in runs
        if inserted:
            runs[name] = FakeRun(
                name=name,
                display_name=input.get("displayName") or name,
                state="running",
                created_at=server.now(),
                heartbeat_at=server.now(),
                user=server.entity,
            )
        run = runs[name]
        if input.get("config"):
            config = json.loads(input["config"])
            run.config.update(
                {k: v.get("value") if isinstance(v, dict) else v for k, v in config.items() if k != "_wandb"}
            )
        if input.get("displayName"):
            run.display_name = input["displayName"]
        if input.get("groupName"):
            run.group = input["groupName"]
        if input.get("tags") is not None:
            run.tags = list(input["tags"])
        if input.get("summaryMetrics"):
            run.summary.update(json.loads(input["summaryMetrics"]))
        return {"bucket": _run_node(run, _Project(server, key)), "inserted": inserted}

    def createRunFiles(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        base = f"{self.server.base_url}/upload/{input['entityName']}/{input['projectName']}/{input['runName']}"
        return {
            "runID": input["runName"],
            "uploadHeaders": [],
            "files": [{"name": name, "uploadUrl": f"{base}/{name}"} for name in input["files"]],
        }

    def model(self, info: Any, name: str | None = None, entityName: str | None = None) -> _Project | None:
        return self.project(info, name, entityName)

    def project(self, info: Any, name: str | None = None, entityName: str | None = None) -> _Project | None:
        key = (entityName or self.server.entity, name or "")
        if key not in self.server.projects:
            return None
        return _Project(self.server, key)


class _Project:
    def __init__(self, server: WandbStandIn, key: tuple[str, str]) -> None:
        self.server = server
        self.key = key
        self.id = base64.b64encode(f"Project:{key[1]}".encode()).decode()
        self.internalId = str(abs(hash(key)) % 100000 + 1)  # projectId is read as an int
        self.entityName, self.name = key
        self.readOnly = False
        self.entity = {"id": base64.b64encode(f"Entity:{key[0]}".encode()).decode(), "name": key[0]}

    def _filtered(self, filters: str | None, order: str | None = None) -> list[FakeRun]:
        query = json.loads(filters) if filters else {}
        runs = [r for r in self.server.projects[self.key].values() if matches(r, query or {})]
        order = order or "+created_at"
        descending = order.startswith("-")
        key = order.lstrip("+-")
        present = [r for r in runs if r.field_value(key) is not None]
        missing = [r for r in runs if r.field_value(key) is None]
        present.sort(key=lambda r: (r.field_value(key), r.name), reverse=descending)
        return present + missing

    def runCount(self, info: Any, filters: str | None = None) -> int:
        return len(self._filtered(filters))

    def runs(
        self,
        info: Any,
        filters: str | None = None,
        after: str | None = None,
        first: int | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        ordered = self._filtered(filters, order)
        start = 0
        if after:
            names = [r.name for r in ordered]
            start = names.index(after) + 1 if after in names else len(ordered)
        first = first or 50
        page = ordered[start : start + first]
        edges = [{"node": _run_node(r, self), "cursor": r.name} for r in page]
        return {
            "edges": edges,
            "pageInfo": {
                "endCursor": page[-1].name if page else None,
                "hasNextPage": start + first < len(ordered),
                "startCursor": page[0].name if page else None,
                "hasPreviousPage": start > 0,
            },
            "totalCount": len(ordered),
        }

    def run(self, info: Any, name: str) -> dict[str, Any] | None:
        found = self.server.projects[self.key].get(name)
        return None if found is None else _run_node(found, self)

    def bucket(self, info: Any, name: str, missingOk: bool = False) -> dict[str, Any] | None:
        return self.run(info, name)


def _run_node(run: FakeRun, project: _Project) -> dict[str, Any]:
    def sampled_history(info: Any, specs: list[str]) -> list[list[dict[str, Any]]]:
        out = []
        for raw in specs:
            spec = json.loads(raw)
            keys = spec.get("keys") or []
            lo, hi = spec.get("minStep", 0), spec.get("maxStep")
            rows = [
                {k: row[k] for k in keys}
                for row in run.history
                if all(k in row for k in keys) and row["_step"] >= lo and (hi is None or row["_step"] <= hi)
            ]
            samples = spec.get("samples") or len(rows)
            if len(rows) > samples > 1:
                step = (len(rows) - 1) / (samples - 1)
                rows = [rows[round(i * step)] for i in range(samples)]
            out.append(rows)
        return out

    def history(
        info: Any, samples: int | None = None, minStep: int | None = None, maxStep: int | None = None
    ) -> list[str]:
        rows = [
            r
            for r in run.history
            if (minStep is None or r["_step"] >= minStep) and (maxStep is None or r["_step"] < maxStep)
        ]
        return [json.dumps(r) for r in rows[: samples or len(rows)]]

    keys = sorted({k for row in run.history for k in row})
    return {
        "id": run.storage_id,
        "name": run.name,
        "displayName": run.display_name,
        "state": run.state,
        "tags": run.tags,
        "group": run.group,
        "jobType": None,
        "sweepName": None,
        "commit": None,
        "readOnly": False,
        "description": None,
        "notes": None,
        "historyLineCount": len(run.history),
        "logLineCount": 0,
        "eventsLineCount": 0,
        "historyTail": json.dumps([json.dumps(r) for r in run.history[-10:]]),
        "eventsTail": "[]",
        "wandbConfig": lambda info, keys=None: json.dumps({}),
        "projectId": project.internalId,
        "createdAt": wandb_time(run.created_at.replace(tzinfo=dt.UTC)),
        "heartbeatAt": wandb_time(run.heartbeat_at.replace(tzinfo=dt.UTC)),
        "user": {"name": run.user, "username": run.user},
        "config": json.dumps({k: {"value": v, "desc": None} for k, v in run.config.items()}),
        "summaryMetrics": json.dumps(run.summary),
        "systemMetrics": json.dumps(run.system),
        "historyKeys": {
            "lastStep": len(run.history) - 1,
            "keys": {k: {"typeCounts": [{"type": "number", "count": len(run.history)}]} for k in keys},
        },
        "sampledHistory": sampled_history,
        "history": history,
        "parquetHistory": lambda info, liveKeys: {"parquetUrls": [], "liveData": []},
        "project": project,
    }
