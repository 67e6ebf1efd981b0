"""The launch service: every launch door (``$experiment``, ``/experiment``, the launch form, ``$rerun``, Rerun with
edits, the context menu, an alert card's Rerun, ``$sweep``) is one call here, and so is every action on a job
(cancel, logs, rerun) with the rule of the job's own route. Discord-free: the cogs gather who asks and where
(:class:`Asker`), call one method, and render the outcome.

A door's path, in order: launching on in the route → who may (launch, or request) → options and hyperparameters
(parsed, schema defaults, valid JSON) → admission (GPUs, quota, approval thresholds) → recorded: a queued job, or a
request for an approver, audited in the same step. Nothing here waits for a backend; a rerun of a W&B run asks W&B
for its config, with the watcher's deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adjutant.access import may_launch, may_request, quota_exempt, refusal
from adjutant.admission import Admission, Request, Verdict, admit
from adjutant.approvals import Action, Approval, ApprovalStore
from adjutant.forms import form_keys
from adjutant.gpus import Commitment, QuotaState, committed_gpu_hours
from adjutant.hparams import (
    HParamsError,
    LaunchOptions,
    check_gpus,
    diff,
    expand_sweep,
    parse_hyperparameters,
    strip_fence,
    sweep_size,
    take_launch_options,
    to_argument,
    validate,
)
from adjutant.jobs import ACTIVE, Job, JobRequest, JobState
from adjutant.numbers import NumberError, parse_whole, shown
from adjutant.projects import ProjectRoute
from adjutant.render import code_safe, truncate
from adjutant.scheduler import GPU_POOL_BACKENDS, CancelOutcome, CancelResult, Scheduler
from adjutant.settings import Settings
from adjutant.watcher import Watcher, describe_error

if TYPE_CHECKING:
    from adjutant.sweeps.config import SweepConfig
    from adjutant.sweeps.service import SweepService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asker:
    """Who asks, and where: what the rules need, gathered once by the cog from the message or the interaction.

    ``user`` is the member as the access rules read it (``id``, ``roles`` with ``name``/``id``,
    ``guild_permissions``); ``route`` is the route of the channel asked in, resolved once; ``channel_id`` is that
    channel (a thread's parent: a job's story opens under its own acknowledgement, never inside another's thread).
    ``can_see`` says whether the member can see a route's channel (Discord's View Channel there)."""

    user: Any
    is_owner: bool
    route: ProjectRoute
    channel_id: int
    guild_id: int | None = None
    message_id: int | None = None
    can_see: Callable[[ProjectRoute], bool] = field(default=lambda route: False, repr=False)

    @property
    def id(self) -> int:
        return int(self.user.id)

    @property
    def name(self) -> str:
        return str(self.user)


@dataclass(frozen=True)
class Refused:
    """Nothing was recorded; ``text`` says why (for the asker only, where the door allows)."""

    text: str


@dataclass(frozen=True)
class Queued:
    """Jobs recorded (queued); the door acknowledges them. ``note`` goes above the acknowledgement."""

    jobs: list[Job]
    note: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Awaiting:
    """A request recorded for an approver (no job yet); the door posts its card and then calls
    :meth:`Launching.card_posted`."""

    approval: Approval
    text: str


@dataclass(frozen=True)
class SweepPlan:
    """A sweep checked and admitted, waiting for its requester's Confirm (``$sweep``'s preview)."""

    sweep_id: str
    combos: list[dict[str, Any]]
    route: ProjectRoute
    channel_id: int
    message_id: int | None
    requested_by_id: int
    requested_by: str
    gpus: int
    time_limit: float | None
    canary: bool
    warning: str | None
    #: Backend options asked with --memory / --cpus, for every cell.
    overrides: dict[str, str] = field(default_factory=dict)
    #: --priority and --preemptible, for every cell.
    priority: str = "normal"
    preemptible: bool = False


@dataclass(frozen=True)
class SearchPlan:
    """A sweep that searches (a W&B sweep configuration: Adjutant proposes the trials) or W&B's own agents on the
    team's queue, checked and admitted; ``$sweep`` waits for its requester's Confirm, ``$agents`` starts it."""

    kind: str  # "search" | "agents"
    config: SweepConfig | None  # search: the parsed configuration (its cap filled in when Adjutant set one)
    wandb_sweep: str | None  # agents: "entity/project/id"
    route: ProjectRoute
    channel_id: int
    message_id: int | None
    requested_by_id: int
    requested_by: str
    parallel: int
    seed: int | None
    #: The trials it runs at most (search: the grid's size or the cap; agents: the most agent jobs in all).
    trials: int | None
    #: Why there is a cap Adjutant chose (shown in the preview), or None.
    capped_by: str | None
    gpus: int
    time_limit: float | None
    #: The worst case the quota and approvals saw: trials (agents: agent jobs in all) times GPUs times the time limit.
    gpu_hours: float | None
    warning: str | None
    backend: str
    script: str
    overrides: dict[str, str] = field(default_factory=dict)
    priority: str = "normal"
    preemptible: bool = False

    @property
    def method(self) -> str:
        return self.config.method if self.config is not None else "agents"

    @property
    def where(self) -> str:
        """The W&B project (search) or sweep path (agents) it works in."""
        if self.wandb_sweep is not None:
            return self.wandb_sweep
        return "/".join(p for p in (self.route.entity, self.route.project) if p) or "(W&B's default project)"


@dataclass(frozen=True)
class SearchOptions:
    """``--parallel K`` and ``--seed N``, written among a sweep's options."""

    parallel: int | None = None
    seed: int | None = None

    @property
    def asked(self) -> bool:
        return self.parallel is not None or self.seed is not None


#: The most trials of one sweep that run at once (``--parallel``) and the most agents of ``$agents``.
MAX_PARALLEL = 64
#: The options with a value that ``take_launch_options`` knows (kept in place when the search options are taken).
_VALUED = ("--gpus", "--time", "--memory", "--cpus", "--priority")
#: The script of an agent job (shipped in the package, run by the bot's interpreter).
AGENT_SCRIPT = Path(__file__).resolve().parent / "sweeps" / "agent_job.py"
_SWEEP_PATH = re.compile(
    r"^(?:(?P<entity>[A-Za-z0-9_.-]{1,128})/(?P<project>[A-Za-z0-9_.-]{1,128})/)?(?P<id>[a-z0-9]{4,64})$"
)


#: A sweep's route when the one it was started in is gone: no channel (0 is no Discord id), no project, and only a
#: user who cannot exist may launch there. :meth:`Launching.sweep_route` returns it; rights and visibility refuse it.
GONE_ROUTE = ProjectRoute(channel=0, launch_users=(0,))


def take_search_options(text: str) -> tuple[SearchOptions, str]:
    """Take ``--parallel K`` and ``--seed N`` out of the options written before a sweep's configuration (the other
    options stay, in order, for :func:`adjutant.hparams.take_launch_options`)."""
    kept: list[str] = []
    found: dict[str, int] = {}
    rest = text.lstrip()
    while rest.startswith("--"):
        head, rest = _next_word(rest)
        word, _, value = head.partition("=")
        if word not in ("--parallel", "--seed"):
            kept.append(head)
            if word in _VALUED and not value and rest and not rest.startswith("--"):
                value, rest = _next_word(rest)
                kept.append(value)
            continue
        if not value:
            value, rest = _next_word(rest) if rest and not rest.startswith("--") else ("", rest)
        if not value:
            raise HParamsError(f"{word} needs a value, e.g. {word} {'2' if word == '--parallel' else '1234'}")
        try:
            if word == "--parallel":
                found["parallel"] = parse_whole(value, what="--parallel", low=1, high=MAX_PARALLEL)
            else:
                found["seed"] = parse_whole(value, what="--seed", low=0, high=2**31 - 1)
        except NumberError as error:
            raise HParamsError(str(error)) from None
    return SearchOptions(found.get("parallel"), found.get("seed")), " ".join([*kept, rest]).strip()


def _next_word(text: str) -> tuple[str, str]:
    parts = re.split(r"\s+", text.lstrip(), maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def sweep_configuration(body: str, *, grid_too: bool) -> SweepConfig | None:
    """A W&B sweep configuration (YAML or JSON, fenced or not), or with ``grid_too`` the JSON-lists shorthand as
    ``method: grid``; None: not a W&B configuration (the shorthand of today's ``$sweep``). Raises
    :class:`SweepConfigError` or :class:`HParamsError` naming what is wrong (a text too long is refused before it is
    parsed; one nested too deeply, or that YAML cannot build, is a sentence too). Blocking: parsing a long text takes
    a while, so callers on the event loop run it in a thread."""
    from adjutant.sweeps.config import SweepConfigError  # the sweeps' code is loaded when a sweep is first asked

    try:
        return _sweep_configuration(body, grid_too=grid_too)
    except (SweepConfigError, HParamsError):
        raise
    except RecursionError:
        raise SweepConfigError("the sweep configuration is nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as error:  # e.g. YAML's date 2001-13-45: "month must be in 1..12"
        raise SweepConfigError(f"the sweep configuration cannot be read: {truncate(str(error), 200)}") from None


def _sweep_configuration(body: str, *, grid_too: bool) -> SweepConfig | None:
    import yaml

    from adjutant.sweeps.config import MAX_TEXT, SweepConfigError, grid_config, is_sweep_config, parse_sweep_config

    text = strip_fence(body)
    if not text:
        return None
    if len(text) > MAX_TEXT:
        raise SweepConfigError(f"the sweep configuration is too long: {len(text):,} characters (at most {MAX_TEXT:,})")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        loaded = None  # not YAML: maybe the shorthand (a value YAML cannot build is a sentence: see above)
    if isinstance(loaded, dict) and is_sweep_config(loaded):
        return parse_sweep_config(text)
    if grid_too:
        return grid_config(parse_hyperparameters(body))
    return None


@dataclass(frozen=True)
class FormSource:
    """What a launch form starts from: its hyperparameters, where they come from, the GPUs and time limit."""

    params: dict[str, Any]
    origin: str
    gpus: int
    time_limit: float | None
    keys: list[str]


Outcome = Refused | Queued | Awaiting


class Launching:
    """The launch doors and the actions on a job, as rules over the scheduler, the approvals and the routes."""

    def __init__(
        self,
        settings: Settings,
        scheduler: Scheduler,
        approvals: ApprovalStore,
        *,
        quota_of: Callable[[int], tuple[QuotaState, dt.datetime] | None],
        watcher_of: Callable[[str | None, str | None], Watcher | None],
        schema: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.approvals = approvals
        self.quota_of = quota_of
        self.watcher_of = watcher_of
        #: The JSON schema of the hyperparameters (ADJUTANT_HPARAMS_SCHEMA), read by the cog when it loads.
        self.schema = schema
        self.routes: tuple[ProjectRoute, ...] = settings.routes

    # --- routes and rights ------------------------------------------------------------------------
    def route_of(self, job: Job) -> ProjectRoute:
        """The route a job was launched in: its recorded route, else (older rows) its channel, else its project,
        else the first route (the global rule)."""
        if job.route is not None:
            found = next((r for r in self.routes if str(r.channel) == job.route), None)
            if found is not None:
                return found
        found = next((r for r in self.routes if isinstance(r.channel, int) and r.channel == job.channel_id), None)
        if found is not None:
            return found
        same_project = [r for r in self.routes if r.project is not None and r.project == job.project]
        if len(same_project) == 1:
            return same_project[0]
        return self.routes[0]

    def backend_of(self, route: ProjectRoute) -> str:
        """Where a route's jobs run: its projects table's ``launcher``, else ADJUTANT_LAUNCHER."""
        return route.launcher or self.settings.launcher

    def launching_off(self, route: ProjectRoute) -> str | None:
        """Why launching is off in ``route``'s channel (and where it is on), or None when it is on there."""
        if route.experiment_script is not None:
            return None
        elsewhere = [r.channel_label() for r in self.routes if r.experiment_script is not None]
        if elsewhere:
            return f"Launching is off in this channel; it is on in {', '.join(elsewhere)}."
        return "Launching is off: this bot has no ADJUTANT_EXPERIMENT_SCRIPT (run_experiment_script)."

    def may_launch(self, asker: Asker, route: ProjectRoute | None = None) -> bool:
        """May the asker launch (and cancel, and act on jobs) under ``route``'s rule (default: where they ask)?"""
        return may_launch(asker.user, route or asker.route, is_owner=asker.is_owner)

    def sees(self, asker: Asker, job: Job) -> bool:
        """May the asker see ``job`` (its parameters, its log)? Only if they can see its route's channel."""
        route = self.route_of(job)
        return route == asker.route or asker.can_see(route)

    def visible(self, asker: Asker, jobs: Sequence[Job]) -> list[Job]:
        """The jobs of routes whose channel the asker can see (``$jobs``, autocomplete)."""
        seen: dict[ProjectRoute, bool] = {}
        out = []
        for job in jobs:
            route = self.route_of(job)
            if route not in seen:
                seen[route] = route == asker.route or asker.can_see(route)
            if seen[route]:
                out.append(job)
        return out

    async def job_for(self, asker: Asker, job_id: str) -> Job | None:
        """A job the asker may see, by id (None: no such job, or one of a channel they cannot see)."""
        job = await self.scheduler.get(job_id.strip().lower())
        return job if job is not None and self.sees(asker, job) else None

    async def audit(self, action: str, asker: Asker, *, target: str | None = None, detail: str | None = None) -> None:
        """Record who did (or was refused) what, where; a failure to record (a full disk) is logged only."""
        try:
            await asyncio.to_thread(
                self.approvals.record,
                Action(action),
                asker.id,
                asker.name,
                guild_id=asker.guild_id,
                channel_id=asker.channel_id,
                target=target,
                detail=None if detail is None else truncate(detail, 500),
            )
        except Exception:
            log.exception("could not record an audit entry (%s by %s)", action, asker.name)

    async def _admit(
        self,
        asker: Asker,
        what: str,
        gpus: int,
        jobs: int,
        time_limit: float | None,
        *,
        approval: str | None = None,
    ) -> Admission | Refused:
        """A sweep door's admission of its worst case: refused as the quota says; with ``approval`` (a search or an
        agents pool, which an approval cannot hold yet), one that needs an approver is refused with that sentence."""
        admission = await self.admission(asker, gpus, jobs, time_limit)
        if admission.verdict == Verdict.REFUSED:
            text = admission.text if admission.text != "not allowed" else refusal(asker.route)
            return await self.refuse(asker, what, text)
        if approval is not None and admission.verdict == Verdict.APPROVAL:
            return await self.refuse(asker, what, f"{approval} ({admission.text}): ask an approver to launch it.")
        return admission

    async def refuse(self, asker: Asker, what: str, text: str, *, target: str | None = None) -> Refused:
        """The one refusal path: logged, audited, answered."""
        log.warning("refused %s by %s (%d): %s", what, asker.name, asker.id, truncate(text, 200))
        await self.audit("refused", asker, target=target, detail=f"{what}: {text}")
        return Refused(text)

    async def gate(self, asker: Asker, what: str) -> Refused | None:
        """Every door's first check, for a cog that must know before doing slow work (fetching a ``$sweep`` file)."""
        return await self._gate(asker, what)

    async def _gate(self, asker: Asker, what: str) -> Refused | None:
        """Launching on where asked, and the asker may launch or request there."""
        off = self.launching_off(asker.route)
        if off is not None:
            return Refused(off)
        if not self.may_launch(asker) and not may_request(asker.user, self.settings):
            return await self.refuse(asker, what, refusal(asker.route))
        return None

    # --- options, hyperparameters, admission --------------------------------------------------------
    def default_time_limit(self) -> float | None:
        return None if self.settings.time_limit is None else self.settings.time_limit * 60

    def options(self, text: str, gpus: int | None = None, *, sweep: bool = False) -> tuple[LaunchOptions, str]:
        """``--gpus N`` / ``--time D`` (a sweep's ``--no-canary``) before the hyperparameters, or a slash command's
        ``gpus`` option; the defaults (ADJUTANT_GPUS_PER_JOB, ADJUTANT_TIME_LIMIT) filled in."""
        options, rest = take_launch_options(text, sweep=sweep)
        if gpus is not None:
            options = dataclasses.replace(options, gpus=check_gpus(gpus))
        limit = options.time_limit if options.time_limit is not None else self.default_time_limit()
        count = options.gpus if options.gpus is not None else self.settings.job_gpus
        return dataclasses.replace(options, gpus=count, time_limit=limit), rest

    def priority_refusal(self, asker: Asker, options: LaunchOptions) -> str | None:
        """Why the asker may not launch at ``--priority`` (ADJUTANT_PRIORITY_ROLES), or None: they may."""
        asked = options.priority or "normal"
        allowed = self.settings.priority_roles.get(asked)
        if not allowed or asker.is_owner or _has_any_role(asker.user, allowed):
            return None
        open_to_them = [
            c
            for c in ("high", "normal", "low")
            if not self.settings.priority_roles.get(c) or _has_any_role(asker.user, self.settings.priority_roles[c])
        ]
        most = f"you may use --priority {open_to_them[0]}" if open_to_them else "no priority class is open to you"
        return (
            f"Not launched: --priority {asked} is for the roles {', '.join(allowed)} (ADJUTANT_PRIORITY_ROLES); {most}."
        )

    def priority_of(self, options: LaunchOptions) -> dict[str, Any]:
        """The job's ``priority`` and ``preemptible`` (every low job is, with ADJUTANT_PREEMPT_LOW)."""
        priority = options.priority or "normal"
        return {
            "priority": priority,
            "preemptible": options.preemptible or (priority == "low" and self.settings.preempt_low),
        }

    def prepare(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Schema defaults filled in and checked; what reaches the script is always valid JSON."""
        prepared, defaults = (params, {}) if self.schema is None else validate(params, self.schema)
        try:
            to_argument(prepared)
        except ValueError as error:
            raise HParamsError(f"cannot be passed to the script as JSON: {error}") from None
        return prepared, defaults

    def request(self, asker: Asker, params: dict[str, Any], **extra: Any) -> JobRequest:
        """A launch under the asker's route: its script, its project (the run lands where the channel looks)."""
        route = asker.route
        assert route.experiment_script is not None
        return JobRequest(
            params=params,
            script=str(route.experiment_script),
            requested_by_id=asker.id,
            requested_by=asker.name,
            channel_id=asker.channel_id,
            message_id=asker.message_id,
            backend=self.backend_of(route),
            project=route.project,
            entity=route.entity,
            route=str(route.channel),
            **extra,
        )

    async def admission(self, asker: Asker, gpus: int, cells: int, time_limit: float | None = None) -> Admission:
        """Launch now, wait for an approver, or refuse (see :func:`adjutant.admission.admit`)."""
        quota = None
        committed = 0.0
        if self.settings.gpu_hours_per_week is not None and not quota_exempt(asker.user):
            quota = await asyncio.to_thread(self.quota_of, asker.id)
            mine = [
                j for j in await self.scheduler.jobs_in((JobState.QUEUED, *ACTIVE)) if j.requested_by_id == asker.id
            ]
            now = dt.datetime.now(dt.UTC)
            committed = committed_gpu_hours((Commitment(j.gpus, j.time_limit, j.started_at) for j in mine), now)
        pool = self.scheduler.gpus
        facts = Request(
            gpus=gpus,
            cells=cells,
            may_launch=self.may_launch(asker),
            may_request=may_request(asker.user, self.settings),
            pool_size=len(pool) if pool is not None and self.backend_of(asker.route) in GPU_POOL_BACKENDS else None,
            quota=quota[0] if quota else None,
            quota_frees_at=quota[1] if quota else None,
            hours_per_cell=None if time_limit is None else time_limit / 3600,
            committed=committed,
        )
        return admit(facts, approval_gpus=self.settings.approval_gpus, approval_jobs=self.settings.approval_jobs)

    async def _record(
        self,
        asker: Asker,
        request: JobRequest,
        admission: Admission,
        *,
        detail: str,
        note: str = "",
        defaults: dict[str, Any] | None = None,
    ) -> Outcome:
        """After the admission said launch or ask: the request for an approver, or the job queued; audited."""
        if admission.verdict == Verdict.REFUSED:
            text = admission.text if admission.text != "not allowed" else refusal(asker.route)
            return await self.refuse(asker, detail, text)
        if admission.verdict == Verdict.APPROVAL:
            return await self._ask_approval(asker, "experiment", [request], request.gpus, admission)
        job = await self.scheduler.enqueue(request)
        await self.audit("launch", asker, target=job.id, detail=detail)
        if admission.warning:
            note = f"{note}\n{admission.warning}".strip()
        return Queued([job], note, defaults or {})

    async def _ask_approval(
        self,
        asker: Asker,
        kind: str,
        requests: list[JobRequest],
        gpus: int,
        admission: Admission,
        *,
        canary: bool = False,
    ) -> Awaiting:
        approval = await asyncio.to_thread(
            self.approvals.add, kind, requests, gpus=gpus, why=admission.text, canary=canary
        )
        await self.audit("request", asker, target=f"#{approval.id}", detail=f"{kind}, {len(requests)} job(s)")
        text = f"Request #{approval.id} waits for an approver: nothing runs until one approves it."
        if admission.warning:
            text += "\n" + admission.warning
        return Awaiting(approval, text)

    async def card_posted(self, approval: Approval, card_id: int) -> None:
        await asyncio.to_thread(self.approvals.set_card, approval.id, card_id)

    # --- the doors ----------------------------------------------------------------------------------
    async def experiment(self, asker: Asker, text: str, gpus: int | None = None) -> Outcome:
        """``$experiment`` and ``/experiment`` with hyperparameters."""
        refused = await self._gate(asker, "launch")
        if refused is not None:
            return refused
        try:
            options, rest = self.options(text, gpus)
            params, defaults = self.prepare(parse_hyperparameters(rest))
        except HParamsError as error:
            return Refused(f"Not launched: {error}")
        assert options.gpus is not None
        capped = self.priority_refusal(asker, options)
        if capped is not None:
            return await self.refuse(asker, "launch", capped)
        admission = await self.admission(asker, options.gpus, 1, options.time_limit)
        request = self.request(
            asker,
            params,
            gpus=options.gpus,
            time_limit=options.time_limit,
            overrides=options.overrides(),
            **self.priority_of(options),
        )
        return await self._record(asker, request, admission, detail=to_argument(params), defaults=defaults)

    async def sweep(
        self, asker: Asker, text: str, gpus: int | None = None, *, attached: str | None = None
    ) -> Refused | Awaiting | SweepPlan | SearchPlan:
        """``$sweep``: a plan for the requester to confirm, or a request for an approver. A W&B sweep configuration
        (in the text, or ``attached``: an attached file's text) is a search (:class:`SearchPlan`); the JSON-lists
        shorthand is today's grid of jobs (with ``--parallel`` or ``--seed``, a search of ``method: grid``)."""
        refused = await self._gate(asker, "sweep")
        if refused is not None:
            return refused
        from adjutant.sweeps.config import SweepConfigError

        try:
            search, text = take_search_options(text)
            options, grid = self.options(text, gpus, sweep=True)
            if attached is not None:
                if grid.strip():
                    raise HParamsError("give the sweep configuration once: in the message or as a file, not both")
                grid = attached
            config = await asyncio.to_thread(sweep_configuration, grid, grid_too=search.asked)
        except (HParamsError, SweepConfigError) as error:
            return Refused(f"Not queued: {error}")
        if config is not None:
            return await self._search_plan(asker, config, options, search)
        try:
            canary = self.settings.canary_steps > 0 and options.canary
            parsed = parse_hyperparameters(grid)
            size = sweep_size(parsed)
            if size > self.settings.max_sweep:
                raise HParamsError(
                    f"that sweep has {size} combinations; the limit is {self.settings.max_sweep} (ADJUTANT_MAX_SWEEP)"
                )
            combos = [self.prepare(c)[0] for c in expand_sweep(parsed)]
        except HParamsError as error:
            return Refused(f"Not queued: {error}")
        except RecursionError:
            return Refused("Not queued: the hyperparameters are nested too deeply.")
        capped = self.priority_refusal(asker, options)
        if capped is not None:
            return await self.refuse(asker, "sweep", capped.replace("Not launched", "Not queued"))
        per_job = options.gpus or 0
        admission = await self._admit(asker, "sweep", per_job, len(combos), options.time_limit)
        if isinstance(admission, Refused):
            return admission
        sweep_id = "sweep-" + secrets.token_hex(3)
        plan = SweepPlan(
            sweep_id=sweep_id,
            combos=combos,
            route=asker.route,
            channel_id=asker.channel_id,
            message_id=asker.message_id,
            requested_by_id=asker.id,
            requested_by=asker.name,
            gpus=per_job,
            time_limit=options.time_limit,
            canary=canary,
            warning=admission.warning,
            overrides=options.overrides(),
            **self.priority_of(options),
        )
        if admission.verdict == Verdict.APPROVAL:
            requests = self._sweep_requests(plan, None)
            return await self._ask_approval(asker, "sweep", requests, per_job, admission, canary=canary)
        return plan

    def queue_width(self, route: ProjectRoute, gpus: int) -> int:
        """How many jobs of ``gpus`` GPUs the queue can run at once: ADJUTANT_MAX_CONCURRENT (default: one per GPU),
        and with a GPU pool no more than it holds."""
        width = self.scheduler.max_concurrent
        pool = self.scheduler.gpus
        if pool is not None and gpus > 0 and self.backend_of(route) in GPU_POOL_BACKENDS:
            width = min(width, max(1, len(pool) // gpus))
        return max(1, width)

    async def _search_plan(
        self, asker: Asker, config: SweepConfig, options: LaunchOptions, search: SearchOptions
    ) -> Refused | SearchPlan:
        """A W&B configuration checked: the trials (or the cap), parallelism, seed, the worst case admitted."""
        limit = self.settings.max_sweep
        trials = config.trial_count()
        capped_by = None
        if trials is None:
            trials = limit
            capped_by = (
                f"No run_cap in the configuration: Adjutant stops after {limit} trials (ADJUTANT_MAX_SWEEP);"
                " add run_cap to choose."
            )
            config = dataclasses.replace(config, run_cap=limit, raw={**config.raw, "run_cap": limit})
        elif trials > limit:
            what = "cells" if config.method == "grid" and config.run_cap is None else "trials (run_cap)"
            return Refused(
                f"Not queued: that sweep has {trials} {what}; the limit is {limit} (ADJUTANT_MAX_SWEEP)."
                + (" Add run_cap to run part of the grid." if config.method == "grid" else "")
            )
        capped = self.priority_refusal(asker, options)
        if capped is not None:
            return await self.refuse(asker, "sweep", capped.replace("Not launched", "Not queued"))
        per_job = options.gpus or 0
        parallel = search.parallel or self.queue_width(asker.route, per_job)
        parallel = max(1, min(parallel, trials))
        seed = search.seed if search.seed is not None else secrets.randbelow(2**31)
        admission = await self._admit(
            asker, "sweep", per_job, trials, options.time_limit, approval="Not queued: this sweep needs approval"
        )
        if isinstance(admission, Refused):
            return admission
        return self._plan(
            asker, "search", options, config=config, wandb_sweep=None, parallel=parallel, seed=seed,
            trials=trials, capped_by=capped_by, warning=admission.warning,
        )  # fmt: skip

    def _plan(
        self,
        asker: Asker,
        kind: str,
        options: LaunchOptions,
        *,
        config: SweepConfig | None,
        wandb_sweep: str | None,
        parallel: int,
        seed: int | None,
        trials: int | None,
        capped_by: str | None,
        warning: str | None,
    ) -> SearchPlan:
        per_job = options.gpus or 0
        hours = None if options.time_limit is None else options.time_limit / 3600
        jobs = trials if trials is not None else parallel
        assert asker.route.experiment_script is not None
        script = str(asker.route.experiment_script) if kind == "search" else str(AGENT_SCRIPT)
        return SearchPlan(
            kind=kind,
            config=config,
            wandb_sweep=wandb_sweep,
            route=asker.route,
            channel_id=asker.channel_id,
            message_id=asker.message_id,
            requested_by_id=asker.id,
            requested_by=asker.name,
            parallel=parallel,
            seed=seed,
            trials=trials,
            capped_by=capped_by,
            gpus=per_job,
            time_limit=options.time_limit,
            gpu_hours=None if hours is None else jobs * per_job * hours,
            warning=warning,
            backend=self.backend_of(asker.route),
            script=script,
            overrides=options.overrides(),
            **self.priority_of(options),
        )

    async def agents(
        self,
        asker: Asker,
        sweep: str,
        text: str = "",
        gpus: int | None = None,
    ) -> Refused | SearchPlan:
        """``$agents <sweep id or entity/project/id> [n] [--gpus N] [--time T]``: n agent jobs that keep taking
        trials from W&B's own controller; same gate, rights, priority and admission as ``$sweep``.

        Only a sweep of the asking channel's own W&B project (a bare id: that project), and only where its jobs run
        locally (an agent runs W&B's agent with the bot's interpreter). The pool's worst case is admitted: at most
        ADJUTANT_MAX_SWEEP agent jobs in all, since a finished agent is replaced while W&B has trials (the service
        makes no more than that, nor more than W&B's sweep has trials left). W&B is not asked before the answer."""
        refused = await self._gate(asker, "agents")
        if refused is not None:
            return refused
        backend = self.backend_of(asker.route)
        if backend != "local":
            return await self.refuse(
                asker,
                "agents",
                "Not started: W&B's agents run with the bot's own Python, on the bot's machine, so $agents works only"
                f" where jobs run locally; this channel's jobs run on {backend}. $sweep with the sweep's configuration"
                " runs each trial as a job there.",
            )
        path = sweep.strip().strip("`")
        match = _SWEEP_PATH.match(path)
        if match is None:
            return Refused(
                f"Not started: `{code_safe(truncate(path, 80))}` is not a W&B sweep id; give the id `wandb sweep`"
                " printed (8 letters and digits) or entity/project/id."
            )
        entity = asker.route.entity or self.settings.entity
        project = asker.route.project
        if not entity or not project:
            return Refused(
                "Not started: this channel has no W&B entity and project, and $agents runs only sweeps of the"
                " channel's own project (set the project's entity and project, or WANDB_ENTITY)."
            )
        if (match["entity"] or entity) != entity or (match["project"] or project) != project:
            return await self.refuse(
                asker,
                "agents",
                f"Not started: `{code_safe(truncate(path, 80))}` is not a sweep of this channel's W&B project"
                f" (`{code_safe(entity)}/{code_safe(project)}`); $agents runs only the channel's own sweeps.",
            )
        words = text.split()
        count_word = words.pop(0) if words and not words[0].startswith("--") else None
        try:
            options, rest = self.options(" ".join(words), gpus)
            if count_word is None and rest.strip():
                count_word, rest = rest.strip(), ""
            if rest.strip():
                raise HParamsError(f"unexpected {shown(rest)}; write $agents <sweep> [n] [--gpus N] [--time T]")
            count = (
                1
                if count_word is None
                else parse_whole(count_word, what="the number of agents", low=1, high=MAX_PARALLEL)
            )
        except (HParamsError, NumberError) as error:
            return Refused(f"Not started: {error}")
        capped = self.priority_refusal(asker, options)
        if capped is not None:
            return await self.refuse(asker, "agents", capped.replace("Not launched", "Not started"))
        wandb_path = f"{entity}/{project}/{match['id']}"
        jobs = self.settings.max_sweep
        capped_by = (
            f"At most {jobs} agent jobs in all (ADJUTANT_MAX_SWEEP): each takes one trial, and the quota and"
            " approvals count them all."
        )
        count = min(count, jobs)
        admission = await self._admit(
            asker,
            "agents",
            options.gpus or 0,
            jobs,
            options.time_limit,
            approval="Not started: these agents need approval",
        )
        if isinstance(admission, Refused):
            return admission
        # The reply of $agents says its warning: the cap goes first, so the asker reads how many jobs it may make.
        warning = "\n".join(line for line in (capped_by, admission.warning) if line)
        return self._plan(
            asker, "agents", options, config=None, wandb_sweep=wandb_path, parallel=count, seed=None,
            trials=jobs, capped_by=capped_by, warning=warning,
        )  # fmt: skip

    async def start_sweep(self, plan: SearchPlan, clicker: Asker, sweeps: SweepService) -> Refused | Any:
        """Confirmed (``$sweep``) or asked (``$agents``): rights checked again for the one who starts it, then the
        sweep recorded by the sweep service (nothing queued yet: its ``tick`` proposes the trials), audited."""
        if not self.may_launch(clicker, plan.route):
            return await self.refuse(clicker, "sweep confirmation", refusal(plan.route))
        from adjutant.sweeps.store import SweepLaunch

        row = await sweeps.create(
            kind=plan.kind,
            config=plan.config,
            wandb_sweep=plan.wandb_sweep,
            route=str(plan.route.channel),
            project=plan.route.project,
            entity=plan.route.entity,
            channel_id=plan.channel_id,
            requested_by_id=plan.requested_by_id,
            requested_by=plan.requested_by,
            parallel=plan.parallel,
            seed=plan.seed,
            max_jobs=plan.trials if plan.kind == "agents" else None,
            launch=SweepLaunch(
                script=plan.script,
                backend=plan.backend,
                gpus=plan.gpus,
                time_limit=plan.time_limit,
                priority=plan.priority,
                preemptible=plan.preemptible,
                overrides=dict(plan.overrides),
                # $agents: the only program W&B's agents may run here (the service checks the sweep's against it).
                experiment_script=(
                    str(plan.route.experiment_script)
                    if plan.kind == "agents" and plan.route.experiment_script is not None
                    else None
                ),
            ),
        )
        if plan.kind == "agents":
            trials = f"at most {plan.trials} agent jobs"
        else:
            trials = "until W&B has no more" if plan.trials is None else f"{plan.trials} trials"
        detail = f"{plan.kind} sweep, {plan.method}, {trials}, {plan.parallel} at once"
        await self.audit("launch", clicker, target=row.id, detail=detail)
        return row

    def sweep_route(self, route_id: str | None, channel_id: int | None = None) -> ProjectRoute:
        """The route a sweep was started in (its recorded route, else the route serving its channel now). When neither
        is configured any more: :data:`GONE_ROUTE`, under which nobody may control the sweep and nobody sees it (rights
        and visibility are judged under the sweep's own route, never another channel's)."""
        found = next((r for r in self.routes if str(r.channel) == route_id), None)
        if found is None:
            found = next((r for r in self.routes if isinstance(r.channel, int) and r.channel == channel_id), None)
        return found or GONE_ROUTE

    def sees_route(self, asker: Asker, route: ProjectRoute) -> bool:
        """May the asker see what happens under ``route`` (a sweep's card, trials, results)? Never a gone route's."""
        if route is GONE_ROUTE:
            return False
        return route == asker.route or asker.can_see(route)

    async def may_control_sweep(self, asker: Asker, route: ProjectRoute, what: str, sweep_id: str) -> Refused | None:
        """Pause / Resume / Stop of a sweep: launch rights under the sweep's own route (refused when it is gone)."""
        if route is GONE_ROUTE:
            return await self.refuse(
                asker,
                what,
                f"Sweep `{sweep_id}` was started in a channel Adjutant no longer serves (no projects table names it"
                " any more), so nobody can control it from Discord.",
                target=sweep_id,
            )
        if self.may_launch(asker, route):
            return None
        return await self.refuse(asker, what, refusal(route, what), target=sweep_id)

    def _sweep_requests(self, plan: SweepPlan, ack_id: int | None) -> list[JobRequest]:
        assert plan.route.experiment_script is not None
        return [
            JobRequest(
                params=combo,
                script=str(plan.route.experiment_script),
                requested_by_id=plan.requested_by_id,
                requested_by=plan.requested_by,
                channel_id=plan.channel_id,
                message_id=plan.message_id,
                backend=self.backend_of(plan.route),
                sweep_id=plan.sweep_id,
                ack_id=ack_id,
                project=plan.route.project,
                entity=plan.route.entity,
                route=str(plan.route.channel),
                gpus=plan.gpus,
                time_limit=plan.time_limit,
                overrides=plan.overrides,
                priority=plan.priority,
                preemptible=plan.preemptible,
            )
            for combo in plan.combos
        ]

    async def queue_sweep(self, plan: SweepPlan, clicker: Asker, ack_id: int | None) -> Refused | Queued:
        """The requester confirmed the preview: rights checked again at the click, then all cells in one
        transaction (all or none)."""
        if not self.may_launch(clicker, plan.route):
            return await self.refuse(clicker, "sweep confirmation", refusal(plan.route), target=plan.sweep_id)
        jobs = await self.scheduler.enqueue_many(self._sweep_requests(plan, ack_id), canary=plan.canary)
        await self.audit("launch", clicker, target=plan.sweep_id, detail=f"{len(jobs)} jobs")
        return Queued(jobs)

    async def rerun(self, asker: Asker, source: str, overrides: str = "", gpus: int | None = None) -> Outcome:
        """``$rerun <job or W&B run> [changes]``: a job the asker can see, or a run of their channel's project;
        launched where they ask, with that channel's script."""
        refused = await self._gate(asker, "rerun")
        if refused is not None:
            return refused
        try:
            asked, overrides = take_launch_options(overrides)
            if gpus is not None:
                asked = dataclasses.replace(asked, gpus=check_gpus(gpus))
            changes = parse_hyperparameters(overrides, allow_empty=True)
        except HParamsError as error:
            return Refused(f"Not launched: {error}")
        job = await self.job_for(asker, source)
        if job is not None:  # a rerun keeps its source's priority class unless asked otherwise
            asked = dataclasses.replace(
                asked, priority=asked.priority or job.priority, preemptible=asked.preemptible or job.preemptible
            )
        capped = self.priority_refusal(asker, asked)
        if capped is not None:
            return await self.refuse(asker, "rerun", capped)
        if job is not None:
            base, origin = dict(job.params), f"job `{job.id}`"
        else:
            found = await self._run_config(asker.route, source)
            if isinstance(found, Refused):
                return found
            base, origin = found
        try:
            params, defaults = self.prepare(parse_hyperparameters(json.dumps({**base, **changes})))
        except (HParamsError, ValueError) as error:
            return Refused(f"Not launched: {error}")
        count = asked.gpus if asked.gpus is not None else job.gpus if job is not None else self.settings.job_gpus
        limit = asked.time_limit or (job.time_limit if job is not None else None) or self.default_time_limit()
        admission = await self.admission(asker, count, 1, limit)
        kept = {k: v for k, v in (job.overrides if job is not None else {}).items() if k in ("mem", "cpus")}
        request = self.request(
            asker,
            params,
            gpus=count,
            time_limit=limit,
            overrides={**kept, **asked.overrides()},
            **self.priority_of(asked),
        )
        return await self._record(
            asker, request, admission, detail=f"rerun of {origin}", note=change_note(origin, base, params),
            defaults=defaults,
        )  # fmt: skip

    async def _run_config(self, route: ProjectRoute, run_id: str) -> tuple[dict[str, Any], str] | Refused:
        """A W&B run's config from the route's project (W&B asked with the watcher's deadline)."""
        shown = code_safe(truncate(run_id, 64))
        watcher = self.watcher_of(route.project, route.entity)
        if watcher is None:
            return Refused(f"No job `{shown}` (and W&B reporting is off).")
        try:
            run = await watcher.ask(watcher.source.find, run_id)
        except Exception as error:
            log.warning("W&B lookup of %s failed: %s", run_id, describe_error(error))
            return Refused(f"W&B did not answer: {describe_error(error)}. Try again in a minute.")
        if run is None:
            return Refused(f"No job or W&B run `{shown}`.")
        return dict(run.public_config()), f"W&B run `{code_safe(run.id)}`"

    async def form_source(
        self, asker: Asker, kind: str, source_id: str | None, *, prefix: str = "$"
    ) -> FormSource | Refused:
        """What the launch form opens with: a job (one the asker can see), a W&B run of their channel's project
        (W&B gets 2 s: the form must open within Discord's 3), or the asker's last job in this channel."""
        refused = await self._gate(asker, "launch form")
        if refused is not None:
            return refused
        recent = await self.scheduler.recent(50)  # one read: the form's keys and the asker's last job
        history = [job.params for job in recent]
        if kind == "job" and source_id is not None:
            job = await self.job_for(asker, source_id)
            if job is None:
                return Refused("That job is no longer known.")
            return self._form(dict(job.params), f"job `{job.id}`", job.gpus, job.time_limit, history)
        if kind == "run" and source_id is not None:
            watcher = self.watcher_of(asker.route.project, asker.route.entity)
            run = None if watcher is None else watcher.latest.get(source_id)
            if run is None and watcher is not None:
                try:
                    run = await asyncio.wait_for(watcher.find(source_id), 2.0)
                except Exception as error:
                    log.info("no run %s for a form: %s", source_id, error)
                    return Refused(f"W&B did not answer in time; try again, or `{prefix}rerun {code_safe(source_id)}`.")
            if run is None:
                return Refused(f"No W&B run `{code_safe(source_id)}`.")
            config = dict(run.public_config())
            return self._form(config, f"W&B run `{run.id}`", self.settings.job_gpus, self.default_time_limit(), history)
        mine = [j for j in recent if j.requested_by_id == asker.id]
        last = next((j for j in mine if j.channel_id == asker.channel_id), None)
        if last is not None:
            return self._form(dict(last.params), f"your last job `{last.id}`", last.gpus, last.time_limit, history)
        return self._form({}, "an empty form", self.settings.job_gpus, self.default_time_limit(), history)

    def _form(
        self, params: dict[str, Any], origin: str, gpus: int, limit: float | None, history: list[dict[str, Any]]
    ) -> FormSource:
        return FormSource(params, origin, gpus, limit, form_keys(params, history, self.schema))

    async def form(self, asker: Asker, source: FormSource, params: dict[str, Any]) -> Outcome:
        """A submitted launch form (``/experiment`` alone, Rerun with edits, the context menu): ``params`` are the
        form's, already applied to the source; checked, then the usual rules."""
        refused = await self._gate(asker, "launch form")
        if refused is not None:
            return refused
        try:
            prepared, defaults = self.prepare(params)
        except HParamsError as error:
            return Refused(f"Not launched: {error}")
        admission = await self.admission(asker, source.gpus, 1, source.time_limit)
        request = self.request(asker, prepared, gpus=source.gpus, time_limit=source.time_limit)
        note = change_note(source.origin, source.params, prepared, verb="From")
        return await self._record(
            asker, request, admission, detail=f"form, from {source.origin}", note=note, defaults=defaults
        )

    async def alert_rerun(
        self, asker: Asker, job: Job | None, params: dict[str, Any] | None, *, prefix: str = "$"
    ) -> Outcome:
        """An alert card's Rerun: the alert's job (rights under the job's route) or its run's config."""
        if job is not None and not self.may_launch(asker, self.route_of(job)):
            return await self.refuse(asker, "rerun from alert", refusal(self.route_of(job)), target=job.id)
        refused = await self._gate(asker, "rerun from alert")
        if refused is not None:
            return refused
        base = job.params if job is not None else params
        if base is None:
            return Refused("No hyperparameters are known for this run.")
        try:
            prepared, defaults = self.prepare(parse_hyperparameters(json.dumps(base)))
        except (HParamsError, ValueError) as error:
            return Refused(f"Not launched: {error}")
        count = job.gpus if job is not None else self.settings.job_gpus
        limit = (job.time_limit if job is not None else None) or self.default_time_limit()
        admission = await self.admission(asker, count, 1, limit)
        if admission.verdict == Verdict.APPROVAL:
            return Refused(f"This rerun needs an approver: use `{prefix}rerun`.")
        origin = f"job `{job.id}`" if job is not None else "the alert's run"
        request = self.request(asker, prepared, gpus=count, time_limit=limit)
        note = f"Rerun of {origin} with the same hyperparameters."
        return await self._record(asker, request, admission, detail="rerun from alert", note=note, defaults=defaults)

    # --- actions on a job ----------------------------------------------------------------------------
    async def cancel(self, asker: Asker, job_id: str) -> CancelResult | Refused:
        """Cancel under the rule of the job's own route (never the channel where it is asked)."""
        key = job_id.strip().lower()
        job = await self.job_for(asker, key)
        if job is None:  # no such job, or one of a channel the asker cannot see: "No job", and nothing happens
            return CancelResult(CancelOutcome.UNKNOWN, None)
        route = self.route_of(job)
        if not self.may_launch(asker, route):
            return await self.refuse(asker, "cancel", refusal(route), target=job.id)
        result = await self.scheduler.cancel(job.id, asker.name)
        await self.audit("cancel", asker, target=job.id, detail=result.outcome.value)
        return result

    async def may_act(self, asker: Asker, job: Job, what: str) -> Refused | None:
        """Rights for an action on ``job`` (alert card Stop, Retry canary, Resume/Drop): its route's rule."""
        route = self.route_of(job)
        if self.may_launch(asker, route):
            return None
        return await self.refuse(asker, what, refusal(route, what), target=job.id)


def _has_any_role(user: Any, names_or_ids: Sequence[str]) -> bool:
    """The member has one of these roles (by name or id)."""
    allowed = set(names_or_ids)
    return any(role.name in allowed or str(role.id) in allowed for role in getattr(user, "roles", None) or [])


def change_note(origin: str, base: dict[str, Any], params: dict[str, Any], *, verb: str = "Rerun of") -> str:
    """What changed against the source, as a diff block for the acknowledgement."""
    lines = diff(base, params)
    changed = "\n".join(lines) if lines else "(no changes)"
    return f"{verb} {origin}:\n```diff\n{code_safe(truncate(changed, 1500))}\n```"
