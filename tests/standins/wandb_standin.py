"""A local stand-in for W&B's GraphQL API that the real ``wandb.Api`` talks to (via WANDB_BASE_URL).

aiohttp + graphql-core on 127.0.0.1 (random port), served from its own thread and event loop so
it never shares the bot's loop. The schema is the subset the public API's read path uses (see
../shared/notes/wandb-protocol.md). A control API creates runs, logs history, changes states and
heartbeats, injects faults (HTTP errors, delays, garbage), and counts requests per operation.

Sweeps (../shared/notes/wandb-sweeps.md): ``UpsertSweep`` (create from a YAML config, or change the state by the
sweep's storage id), the reads (``GetSweep``/``GetSweepLegacy``/``SweepWithRuns``/``GetSweeps``/agents),
``CreateAgent`` and ``Heartbeat`` with a controller that hands out ``run`` commands (grid and random; bayes proposes
at random here), and ``UpsertBucket`` with ``sweep: <id>`` attaching a run to its sweep. It refuses what W&B refuses:
a bad config or state is a GraphQL error, a run naming an unknown sweep is a GraphQL error, and a heartbeat of an
agent whose sweep is unknown (or deleted) is HTTP 404.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import math
import random
import re
import secrets
import string
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import graphql
import yaml
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
      upsertSweep(input: UpsertSweepInput!): UpsertSweepPayload
      createAgent(input: CreateAgentInput!): CreateAgentPayload
      agentHeartbeat(input: AgentHeartbeatInput!): AgentHeartbeatPayload
    }
    input UpsertSweepInput {
      id: ID config: String description: String entityName: String projectName: String controller: JSONString
      launchScheduler: JSONString templateVariableValues: JSONString scheduler: JSONString state: String
      priorRunsFilters: JSONString displayName: String
    }
    type UpsertSweepPayload { sweep: Sweep configValidationWarnings: [String!]! inserted: Boolean }
    input CreateAgentInput {
      id: ID host: String! projectName: String entityName: String sweep: String! agentConfig: JSONString
    }
    type CreateAgentPayload { agent: Agent }
    input AgentHeartbeatInput { id: ID! metrics: JSONString runState: JSONString }
    type AgentHeartbeatPayload { agent: Agent commands: JSONString }
    type Agent {
      id: ID! name: String! host: String state: String totalRuns: Int createdAt: DateTime heartbeatAt: DateTime
    }
    type AgentConnection { edges: [AgentEdge!]! }
    type AgentEdge { node: Agent! }
    type Sweep {
      id: ID! name: String! displayName: String method: String state: String description: String bestLoss: Float
      config: String createdAt: DateTime updatedAt: DateTime heartbeatAt: DateTime runCount: Int
      runCountExpected: Int earlyStopJobRunning: Boolean controller: JSONString scheduler: JSONString
      project: Project
      runs(first: Int, after: String, order: String): RunConnection
      agents: AgentConnection
      agent(agentName: String!): Agent
    }
    type SweepConnection { edges: [SweepEdge!]! pageInfo: PageInfo! }
    type SweepEdge { node: Sweep! cursor: String! }
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
      sweep(sweepName: String!): Sweep
      sweeps(after: String, first: Int, filters: JSONString): SweepConnection
      totalSweeps: Int!
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
      exitcode: Int shouldStop: Boolean failed: Boolean stopped: Boolean running: Boolean
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
    #: The sweep it belongs to (its 8-character name), as ``Run.sweepName``.
    sweep: str | None = None
    #: The parameters the sweep's controller handed out with it (``{name: value}``), None if it handed out none.
    sweep_args: dict[str, Any] | None = None
    exitcode: int | None = None

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
        if key in ("sweep", "sweepName"):
            return self.sweep
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


# --- sweeps -------------------------------------------------------------------------------------------------------
SWEEP_STATES = ("RUNNING", "PAUSED", "FINISHED", "CANCELED")
SWEEP_METHODS = ("grid", "random", "bayes")
#: Top-level sweep config keys W&B knows; any other key is a ``configValidationWarnings`` entry, not a refusal.
SWEEP_KEYS = frozenset(
    {
        "method", "metric", "parameters", "run_cap", "early_terminate", "program", "command", "name",
        "description", "project", "entity", "controller", "job", "image_uri", "launch", "scheduler", "apiVersion",
    }
)  # fmt: skip
#: Distributions W&B's sweep config schema accepts, and whether each needs min/max bounds.
DISTRIBUTIONS = {
    "constant": False, "categorical": False, "int_uniform": True, "uniform": True, "q_uniform": True,
    "log_uniform": True, "q_log_uniform": True, "log_uniform_values": True, "q_log_uniform_values": True,
    "inv_log_uniform": True, "inv_log_uniform_values": True, "normal": False, "q_normal": False,
    "log_normal": False, "q_log_normal": False, "beta": False, "q_beta": False,
}  # fmt: skip
#: A run in one of these states is done with: a sweep waits for no such run.
RUN_ENDED = ("finished", "failed", "crashed", "killed", "preempted")


class SweepRefusal(Exception):
    """W&B refuses the request: a GraphQL error carrying this message (HTTP 200, ``errors``)."""


class HttpRefusal(Exception):
    """W&B answers the whole request with this HTTP status (the agent's heartbeat of an unknown sweep: 404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _sweep_name() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def _check_parameter(name: str, spec: Any, method: str) -> None:
    if not isinstance(spec, dict) or not spec:
        raise SweepRefusal(
            f"Invalid sweep config: parameter {name!r} must be a mapping (value, values or a distribution)"
        )
    if "parameters" in spec:
        if not isinstance(spec["parameters"], dict) or not spec["parameters"]:
            raise SweepRefusal(f"Invalid sweep config: nested parameters of {name!r} must be a non-empty mapping")
        for inner, inner_spec in spec["parameters"].items():
            _check_parameter(f"{name}.{inner}", inner_spec, method)
        return
    if "value" in spec:
        return
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SweepRefusal(f"Invalid sweep config: parameter {name!r}: values must be a non-empty list")
        probabilities = spec.get("probabilities")
        if probabilities is not None and (
            not isinstance(probabilities, list)
            or len(probabilities) != len(values)
            or not math.isclose(sum(probabilities), 1.0, abs_tol=1e-6)
        ):
            raise SweepRefusal(
                f"Invalid sweep config: parameter {name!r}: probabilities must match values and sum to 1"
            )
        return
    distribution = spec.get("distribution")
    if distribution is None and "min" in spec and "max" in spec:
        both_int = isinstance(spec["min"], int) and isinstance(spec["max"], int)
        distribution = "int_uniform" if both_int else "uniform"
    if distribution not in DISTRIBUTIONS:
        raise SweepRefusal(
            f"Invalid sweep config: parameter {name!r}: "
            + (f"unknown distribution {distribution!r}" if distribution else "needs value, values or a distribution")
        )
    if DISTRIBUTIONS[distribution]:
        low, high = spec.get("min"), spec.get("max")
        numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (low, high))
        if not numbers or low >= high:  # type: ignore[operator]
            raise SweepRefusal(f"Invalid sweep config: parameter {name!r}: {distribution} needs numbers min < max")
        if distribution.endswith("_values") and low <= 0:  # type: ignore[operator]
            raise SweepRefusal(f"Invalid sweep config: parameter {name!r}: {distribution} needs min > 0")
    if method == "grid" and distribution not in ("int_uniform", "q_uniform", "constant", "categorical"):
        raise SweepRefusal(
            f"Invalid sweep config: grid search needs discrete parameters; {name!r} has distribution {distribution}"
        )


def parse_sweep_config(text: str | None) -> tuple[dict[str, Any], list[str]]:
    """The sweep config W&B would accept from ``UpsertSweep``'s YAML string, and its validation warnings; a
    :class:`SweepRefusal` for what W&B refuses."""
    try:
        config = yaml.safe_load(text or "")
    except yaml.YAMLError as error:
        raise SweepRefusal(f"Invalid sweep config: malformed YAML: {error}") from None
    if not isinstance(config, dict):
        raise SweepRefusal("Invalid sweep config: the config must be a mapping")
    method = config.get("method")
    if method is None:
        raise SweepRefusal("Invalid sweep config: 'method' is a required property")
    if method not in SWEEP_METHODS:
        raise SweepRefusal(f"Invalid sweep config: unknown method {method!r} (one of grid, random, bayes)")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepRefusal("Invalid sweep config: 'parameters' is a required property (a non-empty mapping)")
    for name, spec in parameters.items():
        _check_parameter(str(name), spec, method)
    metric = config.get("metric")
    if metric is not None:
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
            raise SweepRefusal("Invalid sweep config: metric needs a name")
        if metric.get("goal", "minimize") not in ("minimize", "maximize"):
            raise SweepRefusal(f"Invalid sweep config: metric goal {metric.get('goal')!r} (minimize or maximize)")
    if method == "bayes" and metric is None:
        raise SweepRefusal('Invalid sweep config: bayesian search requires "metric" section')
    early = config.get("early_terminate")
    if early is not None:
        if not isinstance(early, dict) or early.get("type") != "hyperband":
            raise SweepRefusal("Invalid sweep config: early_terminate type must be hyperband")
        if "min_iter" not in early and "max_iter" not in early:
            raise SweepRefusal("Invalid sweep config: hyperband needs min_iter or max_iter")
        if metric is None:
            raise SweepRefusal('Invalid sweep config: early termination requires "metric" section')
    run_cap = config.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        raise SweepRefusal("Invalid sweep config: run_cap must be a positive integer")
    warnings = [
        f"Additional properties are not allowed ('{key}' was unexpected)" for key in config if key not in SWEEP_KEYS
    ]
    return config, warnings


def _grid_values(spec: dict[str, Any]) -> list[Any]:
    if "parameters" in spec:  # nested: every combination of the inner parameters, as one dict value
        inner = spec["parameters"]
        cells = itertools.product(*(_grid_values(inner[name]) for name in inner))
        return [dict(zip(inner, cell, strict=True)) for cell in cells]
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    low, high = spec["min"], spec["max"]
    if spec.get("distribution", "int_uniform") == "int_uniform":
        return list(range(int(low), int(high) + 1))
    q = spec.get("q", 1)
    return [low + i * q for i in range(int((high - low) // q) + 1)]


def _sample(spec: dict[str, Any], rng: random.Random) -> Any:
    """One draw from a parameter, the way W&B's random search reads its config."""
    if "parameters" in spec:
        return {name: _sample(inner, rng) for name, inner in spec["parameters"].items()}
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        if spec.get("probabilities"):
            return rng.choices(spec["values"], weights=spec["probabilities"])[0]
        return rng.choice(spec["values"])
    distribution = spec.get("distribution")
    low, high = spec.get("min"), spec.get("max")
    if distribution is None:
        distribution = "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    mu, sigma, q = spec.get("mu", 0.0), spec.get("sigma", 1.0), spec.get("q", 1)
    base = distribution.removeprefix("q_")
    if base == "int_uniform":
        return rng.randint(int(low), int(high))  # type: ignore[arg-type]
    if base == "uniform":
        value = rng.uniform(low, high)  # type: ignore[arg-type]
    elif base == "log_uniform":
        value = math.exp(rng.uniform(low, high))  # type: ignore[arg-type]
    elif base == "log_uniform_values":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))  # type: ignore[arg-type]
    elif base == "inv_log_uniform":
        value = math.exp(-rng.uniform(low, high))  # type: ignore[arg-type]
    elif base == "inv_log_uniform_values":
        value = 1 / math.exp(rng.uniform(math.log(1 / high), math.log(1 / low)))  # type: ignore[operator]
    elif base == "normal":
        value = rng.gauss(mu, sigma)
    elif base == "log_normal":
        value = math.exp(rng.gauss(mu, sigma))
    elif base == "beta":
        value = rng.betavariate(spec.get("a", 1.0), spec.get("b", 1.0))
    else:  # constant / categorical spelled as a distribution
        return spec.get("value", (spec.get("values") or [None])[0])
    if distribution.startswith("q_"):
        value = round(value / q) * q
    return value


@dataclass
class FakeAgent:
    """A sweep agent as ``CreateAgent`` registered it."""

    id: str
    name: str
    host: str
    sweep: tuple[str, str, str]  # (entity, project, sweep name)
    created_at: dt.datetime
    heartbeat_at: dt.datetime
    state: str = "RUNNING"
    runs: list[str] = field(default_factory=list)


@dataclass
class FakeSweep:
    """One sweep as the stand-in stores it."""

    name: str
    entity: str
    project: str
    config: dict[str, Any]
    config_yaml: str
    created_at: dt.datetime
    updated_at: dt.datetime
    state: str = "RUNNING"
    display_name: str | None = None
    description: str | None = None
    controller: dict[str, Any] | None = None
    storage_id: str = ""
    rng: random.Random = field(default_factory=random.Random)
    #: Every command the controller handed out: (agent id, command).
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(self.config["method"])

    @property
    def local_controller(self) -> bool:
        """Adjutant (or another local controller) proposes the runs: W&B's controller hands out none."""
        for source in (self.config.get("controller"), self.controller):
            if isinstance(source, dict) and source.get("type") == "local":
                return True
        return False

    def grid(self) -> list[dict[str, Any]]:
        params = self.config["parameters"]
        names = list(params)
        return [
            dict(zip(names, cell, strict=True)) for cell in itertools.product(*(_grid_values(params[n]) for n in names))
        ]

    def expected_runs(self) -> int | None:
        run_cap = self.config.get("run_cap")
        if self.method == "grid":
            size = len(self.grid())
            return size if run_cap is None else min(size, run_cap)
        return run_cap


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
        #: Sweeps by (entity, project, sweep name), and the agents ``CreateAgent`` registered, by agent id.
        self.sweeps: dict[tuple[str, str, str], FakeSweep] = {}
        self.agents: dict[str, FakeAgent] = {}

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

    # --- sweeps: control API (thread-safe) ------------------------------------------------------------------------
    def create_sweep(
        self,
        config: dict[str, Any] | str,
        *,
        project: str | None = None,
        controller: dict[str, Any] | None = None,
        state: str = "RUNNING",
    ) -> str:
        """A sweep, as ``wandb.sweep(config)`` would make it (same validation: :class:`SweepRefusal`); its name."""
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        with self.lock:
            sweep = self._add_sweep(self.entity, project or self.default_project, text, controller=controller)
            self.set_sweep_state(sweep.name, state, project=project)
            return sweep.name

    def sweep(self, name: str, *, project: str | None = None) -> FakeSweep:
        with self.lock:
            return self.sweeps[(self.entity, project or self.default_project, name)]

    def set_sweep_state(self, name: str, state: str, *, project: str | None = None) -> None:
        """RUNNING, PAUSED, FINISHED or CANCELED, as ``UpsertSweep {id, state}`` sets it."""
        if state not in SWEEP_STATES:
            raise ValueError(f"sweep state {state!r}")
        with self.lock:
            sweep = self.sweep(name, project=project)
            sweep.state, sweep.updated_at = state, self.now()

    def delete_sweep(self, name: str, *, project: str | None = None) -> None:
        """The sweep is gone (deleted in the UI): its agents' heartbeats get HTTP 404."""
        with self.lock:
            del self.sweeps[(self.entity, project or self.default_project, name)]

    def sweep_runs(self, name: str, *, project: str | None = None) -> list[FakeRun]:
        """The runs attached to the sweep, oldest first."""
        with self.lock:
            runs = self.runs(project).values()
            return sorted((r for r in runs if r.sweep == name), key=lambda r: (r.created_at, r.name))

    def handed_out(self, name: str, *, project: str | None = None) -> list[dict[str, Any]]:
        """The parameters of every ``run`` command the sweep's controller handed out, in order (``{k: v}``)."""
        with self.lock:
            commands = self.sweep(name, project=project).commands
            return [{k: v["value"] for k, v in c["args"].items()} for _, c in commands if c["type"] == "run"]

    def sweep_commands(self, name: str, *, project: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every command the sweep's controller answered a heartbeat with: (agent id, command)."""
        with self.lock:
            return list(self.sweep(name, project=project).commands)

    # --- sweeps: the server side --------------------------------------------------------------------------------------
    def _add_sweep(
        self,
        entity: str,
        project: str,
        text: str | None,
        *,
        controller: dict[str, Any] | None = None,
        display_name: str | None = None,
        description: str | None = None,
    ) -> FakeSweep:
        config, _ = parse_sweep_config(text)
        name = _sweep_name()
        while (entity, project, name) in self.sweeps:
            name = _sweep_name()
        self.projects.setdefault((entity, project), {})
        self._serial += 1
        sweep = FakeSweep(
            name=name,
            entity=entity,
            project=project,
            config=config,
            config_yaml=text or "",
            created_at=self.now(),
            updated_at=self.now(),
            display_name=display_name,
            description=description,
            controller=controller,
            storage_id=base64.b64encode(f"Sweep:{self._serial}".encode()).decode(),
            rng=random.Random(name),  # the same sweep name draws the same random trials
        )
        self.sweeps[(entity, project, name)] = sweep
        return sweep

    def _sweep_by_storage_id(self, storage_id: str) -> FakeSweep | None:
        return next((s for s in self.sweeps.values() if s.storage_id == storage_id), None)

    def _propose(self, sweep: FakeSweep) -> dict[str, Any] | None:
        """The next trial's parameters from W&B's controller, or None: the grid is exhausted or run_cap reached.
        Every run attached to the sweep counts (crashed ones too); a run's cell is the args handed out with it, or
        (a run the controller did not hand out) its config's values of the swept parameters. Numbers compare by
        value (``5 == 5.0``), so a cell the trainer's config spells ``5`` is the grid's ``5.0``."""
        runs = self.sweep_runs(sweep.name, project=sweep.project)
        run_cap = sweep.config.get("run_cap")
        if run_cap is not None and len(runs) >= run_cap:
            return None
        if sweep.method == "grid":
            params = list(sweep.config["parameters"])
            taken = [r.sweep_args if r.sweep_args is not None else {k: r.config.get(k) for k in params} for r in runs]
            return next((cell for cell in sweep.grid() if cell not in taken), None)
        # random, and bayes too: the stand-in's controller proposes bayes trials at random (no model of the
        # metric); what is under test is the protocol, not W&B's optimiser.
        return {name: _sample(spec, sweep.rng) for name, spec in sweep.config["parameters"].items()}

    def _finish_if_done(self, sweep: FakeSweep) -> None:
        """W&B's controller marks a RUNNING sweep FINISHED once it has nothing to propose and no run of it is
        still pending or running (unverified against the real service: when exactly it flips)."""
        if sweep.state != "RUNNING" or sweep.local_controller:
            return
        runs = self.sweep_runs(sweep.name, project=sweep.project)
        if all(r.state in RUN_ENDED for r in runs) and self._propose_is_exhausted(sweep):
            sweep.state, sweep.updated_at = "FINISHED", self.now()

    def _propose_is_exhausted(self, sweep: FakeSweep) -> bool:
        state = sweep.rng.getstate()  # asking must not consume a random draw
        try:
            return self._propose(sweep) is None
        finally:
            sweep.rng.setstate(state)

    def _heartbeat(self, agent_id: str, run_state: dict[str, Any]) -> list[dict[str, Any]]:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise HttpRefusal(404, f"agent {agent_id} not found")
        sweep = self.sweeps.get(agent.sweep)
        if sweep is None:
            raise HttpRefusal(404, f"sweep {'/'.join(agent.sweep)} not found")
        agent.heartbeat_at = self.now()
        alive = [run_id for run_id, live in run_state.items() if live]
        runs = self.runs(sweep.project)
        for name in agent.runs:  # a child gone without wandb.init(): W&B marks its run crashed (after a timeout)
            run = runs.get(name)
            if run is not None and run.state == "pending" and name not in alive:
                run.state = "crashed"
        commands: list[dict[str, Any]]
        if sweep.state == "CANCELED":
            commands = [{"type": "stop", "run_id": run_id} for run_id in alive] or [{"type": "exit"}]
        elif sweep.state in ("PAUSED", "FINISHED"):
            commands = [] if alive else [{"type": "exit"}]  # running trials finish; no new one
        elif alive or sweep.local_controller:
            commands = []  # one live run per agent; a local controller's sweep gets no proposals from W&B
        else:
            params = self._propose(sweep)
            if params is None:
                self._finish_if_done(sweep)
                commands = [{"type": "exit"}]
            else:
                commands = [self._hand_out(sweep, agent, params)]
        if any(c["type"] == "exit" for c in commands):
            agent.state = "FINISHED"
        sweep.commands.extend((agent.id, c) for c in commands)
        return commands

    def _hand_out(self, sweep: FakeSweep, agent: FakeAgent, params: dict[str, Any]) -> dict[str, Any]:
        """The server creates the run (pending) when it hands it out; the trainer's wandb.init upserts it."""
        runs = self.runs(sweep.project)
        name = _sweep_name()
        while name in runs:
            name = _sweep_name()
        self._serial += 1
        now = self.now()
        runs[name] = FakeRun(
            name=name,
            display_name=f"sweep-run-{self._serial}",
            state="pending",
            created_at=now,
            heartbeat_at=now,
            user=self.entity,
            config=dict(params),
            sweep=sweep.name,
            sweep_args=dict(params),
        )
        agent.runs.append(name)
        return {
            "type": "run",
            "run_id": name,
            "program": sweep.config.get("program"),
            "args": {k: {"value": v} for k, v in params.items()},
            "id": secrets.token_hex(4),
        }

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
                run.exitcode = body.get("exitcode")
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
        refusal = next(
            (e.original_error for e in result.errors or [] if isinstance(e.original_error, HttpRefusal)), None
        )
        if isinstance(refusal, HttpRefusal):
            return web.json_response({"errors": [{"message": str(refusal)}]}, status=refusal.status)
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
        sweep_name = input.get("sweep")  # null: unchanged (the second UpsertBucket of a sweep run sends null)
        if sweep_name and (key[0], key[1], sweep_name) not in server.sweeps:
            raise SweepRefusal(f"sweep {key[0]}/{key[1]}/{sweep_name} not found")
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
        if sweep_name:
            run.sweep = sweep_name
        if run.state == "pending":  # handed out by a sweep's controller; its trainer has started
            run.state = "running"
            run.heartbeat_at = server.now()
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

    # --- sweeps -----------------------------------------------------------------------------------------------------
    def upsertSweep(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        server = self.server
        warnings: list[str] = []
        if input.get("id"):  # a change to an existing sweep, by its storage id
            sweep = server._sweep_by_storage_id(input["id"])
            if sweep is None:
                raise SweepRefusal(f"sweep {input['id']} not found")
            state = input.get("state")
            if state is not None and state not in SWEEP_STATES:
                raise SweepRefusal(f"invalid sweep state {state!r}")
            if input.get("config"):
                sweep.config, warnings = parse_sweep_config(input["config"])
                sweep.config_yaml = input["config"]
            if state is not None:
                sweep.state = state
            for key, attribute in (("displayName", "display_name"), ("description", "description")):
                if input.get(key) is not None:
                    setattr(sweep, attribute, input[key])
            sweep.updated_at = server.now()
            inserted = False
        else:
            _, warnings = parse_sweep_config(input.get("config"))
            controller = json.loads(input["controller"]) if input.get("controller") else None
            sweep = server._add_sweep(
                input.get("entityName") or server.entity,
                input.get("projectName") or server.default_project,
                input.get("config"),
                controller=controller if isinstance(controller, dict) else None,
                display_name=input.get("displayName"),
                description=input.get("description"),
            )
            inserted = True
        project = _Project(server, (sweep.entity, sweep.project))
        return {"sweep": _sweep_node(sweep, project), "configValidationWarnings": warnings, "inserted": inserted}

    def createAgent(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        server = self.server
        key = (
            input.get("entityName") or server.entity,
            input.get("projectName") or server.default_project,
            input["sweep"],
        )
        if key not in server.sweeps:
            raise SweepRefusal(f"sweep {'/'.join(key)} not found")
        server._serial += 1
        agent = FakeAgent(
            id=base64.b64encode(f"Agent:{server._serial}".encode()).decode(),
            name=_sweep_name(),
            host=input["host"],
            sweep=key,
            created_at=server.now(),
            heartbeat_at=server.now(),
        )
        server.agents[agent.id] = agent
        return {"agent": _agent_node(agent)}

    def agentHeartbeat(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        run_state = json.loads(input.get("runState") or "{}")
        commands = self.server._heartbeat(input["id"], run_state if isinstance(run_state, dict) else {})
        return {"agent": _agent_node(self.server.agents[input["id"]]), "commands": json.dumps(commands)}

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

    def _sweeps(self) -> list[FakeSweep]:
        found = [s for (e, p, _), s in self.server.sweeps.items() if (e, p) == self.key]
        return sorted(found, key=lambda s: (s.created_at, s.name), reverse=True)

    def sweep(self, info: Any, sweepName: str) -> dict[str, Any] | None:
        found = self.server.sweeps.get((*self.key, sweepName))
        return None if found is None else _sweep_node(found, self)

    def totalSweeps(self, info: Any) -> int:
        return len(self._sweeps())

    def sweeps(
        self, info: Any, after: str | None = None, first: int | None = None, filters: str | None = None
    ) -> dict[str, Any]:
        if filters and json.loads(filters):
            raise SweepRefusal("sweep filters are not supported by this server")  # no SWEEPS_QUERY_FILTERING
        ordered = self._sweeps()
        names = [s.name for s in ordered]
        start = names.index(after) + 1 if after in names else 0
        first = first or 50
        page = ordered[start : start + first]
        return {
            "edges": [{"node": _sweep_node(s, self), "cursor": s.name} for s in page],
            "pageInfo": {
                "endCursor": page[-1].name if page else None,
                "hasNextPage": start + first < len(ordered),
                "startCursor": page[0].name if page else None,
                "hasPreviousPage": start > 0,
            },
        }


def _agent_node(agent: FakeAgent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "host": agent.host,
        "state": agent.state,
        "totalRuns": len(agent.runs),
        "createdAt": wandb_time(agent.created_at.replace(tzinfo=dt.UTC)),
        "heartbeatAt": wandb_time(agent.heartbeat_at.replace(tzinfo=dt.UTC)),
    }


def _sweep_node(sweep: FakeSweep, project: _Project) -> dict[str, Any]:
    server = project.server
    server._finish_if_done(sweep)
    runs = server.sweep_runs(sweep.name, project=sweep.project)
    metric = sweep.config.get("metric") or {}
    values = [
        r.summary[metric["name"]]
        for r in runs
        if metric
        and isinstance(r.summary.get(metric["name"]), int | float)
        and not math.isnan(r.summary[metric["name"]])
    ]
    # bestLoss: the best value of the metric so far (W&B's exact convention for maximize is unverified)
    best = (max if metric.get("goal") == "maximize" else min)(values) if values else None
    agents = [a for a in server.agents.values() if a.sweep == (sweep.entity, sweep.project, sweep.name)]

    def sweep_runs(info: Any, first: int | None = None, after: str | None = None, order: str | None = None) -> Any:
        return project.runs(
            info, filters=json.dumps({"sweep": sweep.name}), after=after, first=first or 1000, order=order
        )

    return {
        "id": sweep.storage_id,
        "name": sweep.name,
        "displayName": sweep.display_name,
        "method": sweep.method,
        "state": sweep.state,
        "description": sweep.description,
        "bestLoss": best,
        "config": sweep.config_yaml,
        "createdAt": wandb_time(sweep.created_at.replace(tzinfo=dt.UTC)),
        "updatedAt": wandb_time(sweep.updated_at.replace(tzinfo=dt.UTC)),
        "heartbeatAt": wandb_time(
            max([a.heartbeat_at for a in agents], default=sweep.updated_at).replace(tzinfo=dt.UTC)
        ),
        "runCount": len(runs),
        "runCountExpected": sweep.expected_runs(),
        "earlyStopJobRunning": False,
        "controller": json.dumps(sweep.controller) if sweep.controller else None,
        "scheduler": None,
        "project": project,
        "runs": sweep_runs,
        "agents": {"edges": [{"node": _agent_node(a)} for a in agents]},
        "agent": lambda info, agentName: next((_agent_node(a) for a in agents if agentName in (a.id, a.name)), None),
    }


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
        "sweepName": run.sweep,
        "exitcode": run.exitcode,
        "shouldStop": False,
        "failed": run.state == "failed",
        "stopped": run.state == "killed",
        "running": run.state == "running",
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
