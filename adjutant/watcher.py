"""The W&B run watcher: what changed in a project since the last poll, recorded exactly once.

Discord-free. Each poll asks W&B (one ``Runs`` query when nothing changed), compares each run with
what the database remembers (:func:`adjutant.runs.transitions`), and writes the new memory and the
announcements it causes (embed dicts, rendered purely) to the outbox in ONE transaction: each event
is queued exactly once, across restarts. Delivering the outbox is the adapter's job.

Every W&B call runs in the watcher's single worker thread, with a deadline; every SQLite call in a
thread too. Failures are recorded in :class:`PollHealth` and answered with exponential back-off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from adjutant import gpus, subscriptions
from adjutant.alerts import (
    AlertKind,
    Fn,
    Reading,
    RunHistory,
    WatchRule,
    alert_kind,
    evaluate,
    goal_of,
    muted,
    record_alert,
    rule_events,
)
from adjutant.clock import utcnow
from adjutant.gpus import UsageReport, Use
from adjutant.jobs import JobState
from adjutant.plots import render_chart
from adjutant.render import code_safe, format_duration, plain, truncate
from adjutant.run_render import event_embed
from adjutant.runs import (
    GpuIdleRule,
    RunInfo,
    RunMemory,
    RunState,
    gpu_utilisation,
    parse_wandb_time,
    progress,
    suggestions,
    transitions,
)
from adjutant.store import JobLink, Store
from adjutant.subscriptions import DM_PREFIX, Subscription
from adjutant.wandb_source import HistorySpec, ProjectNotFound, WandbSource, newest_created

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from adjutant.digest import Schedule

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The context of announcements found by the first poll after a start ("While I was offline:").
CATCH_UP = "catch-up"
#: Events of a run launched by an Adjutant job that the job's own end report covers.
JOB_REPORTED_EVENTS = frozenset({"finished", "crashed", "failed", "killed"})
MAX_BACKOFF_SECONDS = 15 * 60
#: A watched run is taken as deleted after W&B said it does not exist on this many polls in a row.
DELETED_AFTER_POLLS = 2
#: The z-score baseline (the project's last finished runs' summaries) is read at most once per this long.
BASELINE_EVERY = dt.timedelta(hours=1)
#: After a failed baseline read, the next try comes this much later.
BASELINE_RETRY = dt.timedelta(minutes=5)
#: Rows asked for a metric's history when its logging pace in a run is not known yet (the whole run, sampled).
FIRST_SAMPLES = 2000
#: Rows of the whole run's sampled history that diverging reads for the run's best.
WHOLE_RUN_SAMPLES = 1000


def alert_metric(event: str, rule: WatchRule | None, ranking: str) -> str | None:
    """The metric an alert's chart shows: the rule's, the non-finite one, else the ranking metric."""
    kind, _, subject = event.partition(":")
    if rule is not None:
        return rule.term.metric
    if kind == AlertKind.NONFINITE:
        return subject
    if kind == AlertKind.GPU_IDLE:
        return None
    return ranking


class PollContradiction(RuntimeError):
    """W&B's answer contradicts what Adjutant knows (a vanished project, every watched run missing): the poll
    counts as failed and nothing is forgotten."""


def describe_error(error: BaseException) -> str:
    """One line about a W&B failure, safe for chat (no traceback, no secrets)."""
    if isinstance(error, TimeoutError):
        return "W&B did not answer in time"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return truncate(f"{type(error).__name__}: {text}" if text else type(error).__name__, 300)


@dataclass
class PollHealth:
    """How polling is doing, for ``$status`` and the back-off."""

    last_success: float | None = None  # time.time()
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    next_attempt: float = 0.0  # time.monotonic()

    def succeeded(self) -> None:
        self.last_success = time.time()
        self.failures = 0
        self.next_attempt = 0.0

    def failed(self, error: BaseException, interval: float) -> float:
        """Record a failure; returns the back-off delay before the next attempt."""
        self.failures += 1
        self.last_error = describe_error(error)
        self.last_error_at = time.time()
        delay = min(interval * 2 ** (self.failures - 1), max(interval, MAX_BACKOFF_SECONDS))
        self.next_attempt = time.monotonic() + delay - interval  # the loop's own interval adds the rest
        return delay


@dataclass(frozen=True)
class WatchRules:
    """What the watcher announces and how it judges runs."""

    notify: Collection[str]
    stall_after: dt.timedelta
    metric: str
    nan_alerts: bool = True
    gpu_idle: GpuIdleRule | None = None
    #: The goal of ``metric`` (min or max): plateau and diverging read their direction from it for that metric
    #: (:func:`adjutant.alerts.goal_of`).
    goal: str = "min"
    #: A rule on history reads a matching running run's sampled history at most once per this many polls
    #: (ADJUTANT_HISTORY_POLLS), and only when the run logged something since.
    history_polls: int = 6

    def wants(self, event: str) -> bool:
        """Is ``event`` announced? No progress counts as a stall, progressing again as resumed; rules and GPU
        idle alerts are asked for by their own settings."""
        if event.startswith("nonfinite:"):
            return self.nan_alerts
        if event.startswith(("rule:", "gpu-idle")):
            return True
        return {"no-progress": "stalled", "progressing": "resumed"}.get(event, event) in self.notify


class Watcher:
    """Polls one W&B project and records its runs' transitions with their announcements."""

    def __init__(
        self,
        store: Store,
        source: WandbSource,
        rules: WatchRules,
        *,
        timeout: float,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store = store
        #: What time it is (UTC, aware) for the digests' schedule: real time, or a test's.
        self.clock = clock
        self.source = source
        self.rules = rules
        self.timeout = timeout
        self.project_key = f"{source.entity or ''}/{source.project}"
        #: The outboxes its announcements go to: the project's first channel's (named by the project key), then
        #: one per further channel watching the project (``key>channel``).
        self.destinations: tuple[str, ...] = (self.project_key,)
        #: When this watcher (this bot process) started: a digest due before it is posted late.
        self.started_at = clock()
        self.health = PollHealth()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adjutant-wandb")
        self._polled_once = False
        self._misses: dict[str, int] = {}
        #: When the last poll ended (time.monotonic()).
        self.last_poll_end = float("-inf")
        #: Summary metric names seen by polls (for autocomplete).
        self.metric_names: set[str] = set()
        #: The newest state of each running run seen by the polls (running runs come back every poll).
        self.latest: dict[str, RunInfo] = {}
        #: Each rule's last reading (rule id → run id, reading, when), for ``$watches``; this process's only.
        self.readings: dict[int, tuple[str, Reading, dt.datetime]] = {}
        #: Polls since this watcher started (the history reads' schedule counts them).
        self._polls = 0
        #: Per run: the poll of its last history read, its step then, and what was read (metrics and windows).
        self._history_marks: dict[str, tuple[int, float | None, tuple[Any, ...]]] = {}
        #: Per run and metric: steps between two logged values (learned from an answer) and whether it is exact.
        self._spacing: dict[tuple[str, str], tuple[float, bool]] = {}
        #: The z-score baseline: when it was read, of how many runs, their summaries (newest first).
        self._zscore_base: tuple[dt.datetime, int, list[dict[str, float]]] | None = None
        self._zscore_failed: dt.datetime | None = None

    @property
    def project_label(self) -> str:
        return self.source.path

    async def ask(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking W&B call in the W&B thread, with a deadline."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn, *args)
        return await asyncio.wait_for(future, timeout=self.timeout * 1.5 + 5)

    async def find(self, key: str) -> RunInfo | None:
        return await self.ask(self.source.find, key)

    async def fetch(self, run_id: str) -> RunInfo | None:
        """A run by its id, as W&B has it now (one request, nothing written to disk); None if W&B has no such run."""
        return await self.ask(self.source.fetch, run_id)

    async def knows(self, run_id: str) -> bool:
        """True if a poll has seen this run (so W&B knows it and its page exists)."""
        return await asyncio.to_thread(self.store.knows_run, self.project_key, run_id)

    async def known_names(self, limit: int = 5000) -> list[tuple[str, str]]:
        return await asyncio.to_thread(self.store.known_names, self.project_key, limit)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- digests --------------------------------------------------------------------------------
    async def make_digests(
        self,
        schedule: Schedule,
        zone: ZoneInfo,
        now: dt.datetime | None = None,
        *,
        metric: str,
        goal: str,
        usage: Callable[[dt.datetime, dt.datetime], UsageReport] | None = None,
    ) -> int:
        """Record each digest due for this project (periods closed since the digest was turned on, not recorded
        yet), each with its announcements in one transaction: exactly once per period. Returns how many.

        ``now``: the watcher's clock unless given; ``usage``: the jobs of a period, by default this project's own
        (a digest never lists another project's jobs)."""
        from adjutant.digest import LATE_AFTER, Digest, digest_embed, moments, period_runs  # only with digests on

        now = now or self.clock()
        usage = usage or self.project_usage
        since = await asyncio.to_thread(self._digest_since, now)
        made = 0
        for moment in moments(schedule, zone, since, now):
            key = f"digest:{moment.isoformat()}"
            if await asyncio.to_thread(self.store.get_meta, self.project_key, key) is not None:
                continue
            start = moment - schedule.length
            runs = period_runs(await self.ask(self.source.recent, None, 500), start, moment)
            top = await self.ask(self.source.best, metric, goal, 50)
            previous = next(
                (r for r in top if r.state == RunState.FINISHED and r.created_at is not None and r.created_at < start),
                None,
            )
            stalled = await asyncio.to_thread(self.store.stalled_between, self.project_key, start, moment)
            report = await asyncio.to_thread(usage, start, moment)
            late = moment < self.started_at or now - moment > LATE_AFTER  # the bot was down (or W&B) at the moment
            digest = Digest(self.project_label, start, moment, late, runs, metric, goal, previous, stalled, report)
            embed = digest_embed(digest)
            if await asyncio.to_thread(self._record_digest, key, embed, moment, now):
                made += 1
                log.info("digest of %s for %s recorded%s", self.project_label, moment, " (late)" if digest.late else "")
        return made

    def project_usage(self, start: dt.datetime, end: dt.datetime) -> UsageReport:
        """(thread) Jobs, job-hours and GPU-hours per member between ``start`` and ``end``, of this project's jobs
        only."""
        jobs = self.store.project_jobs(self.project_key, start)
        uses = [
            Use(j.requested_by_id, j.requested_by, j.project or "", j.gpus_used, j.started_at, j.ended_at)
            for j in jobs
            if j.started_at is not None
        ]
        return gpus.usage(uses, start, end)

    def _digest_since(self, now: dt.datetime) -> dt.datetime:
        """(thread) When digests were turned on for this project (periods before are not told)."""
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT value FROM meta WHERE project=? AND key='digest_since'", (self.project_key,)
            ).fetchone()
            if row is not None:
                return dt.datetime.fromisoformat(row["value"])
            self.store.set_meta(db, self.project_key, "digest_since", now.isoformat())
            return now

    def _record_digest(self, key: str, embed: dict[str, Any], moment: dt.datetime, now: dt.datetime) -> bool:
        """(thread) The period's record and its announcement to each of the project's channels, together, once."""
        with self.store.transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO meta (project, key, value) VALUES (?, ?, ?)",
                (self.project_key, key, now.isoformat()),
            ).rowcount
            if not inserted:
                return False
            for destination in self.destinations:
                self.store.enqueue(db, destination, f"digest-{moment:%Y%m%dT%H%M}", "digest", embed, None)
            return True

    # --- charts ---------------------------------------------------------------------------------
    async def chart(
        self, run_keys: tuple[str, ...], metrics: tuple[str, ...], log_scale: bool
    ) -> tuple[str | None, dict[str, Any] | None, bytes | None]:
        """(problem, None, None) or (None, embed, PNG) for the runs' metric histories."""
        runs: list[RunInfo] = []
        for key in run_keys:
            run = await self.find(key)
            if run is None:
                known = await self.known_names()
                close = suggestions(key, [name for pair in known for name in pair])
                hint = f" Did you mean {', '.join(f'`{code_safe(c)}`' for c in close)}?" if close else ""
                return f"No run `{code_safe(truncate(key, 100))}` in {plain(self.project_label)}.{hint}", None, None
            runs.append(run)
        return await self.chart_of(runs, metrics, log_scale)

    async def chart_of(
        self, runs: Sequence[RunInfo], metrics: tuple[str, ...], log_scale: bool
    ) -> tuple[str | None, dict[str, Any] | None, bytes | None]:
        """:meth:`chart` for runs already found (one history request per run and metric, nothing looked up again)."""
        data: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for run in runs:
            label = f"{run.name} ({run.id})"
            data[label] = {}
            for metric in metrics:
                data[label][metric] = await self.ask(self.source.history, run.id, metric, 1000)
        empty = [m for m in metrics if not any(series.get(m) for series in data.values())]
        if empty:
            available = await self.ask(self.source.history_keys, runs[0].id)
            names = ", ".join(f"`{code_safe(k)}`" for k in available[:30]) or "none yet"
            missing = ", ".join(f"`{code_safe(truncate(m, 60))}`" for m in empty)
            return (
                f"No history for {missing} in these runs. Metrics with history in `{runs[0].id}`: {names}.",
                None,
                None,
            )
        png = await asyncio.to_thread(render_chart, data, metrics, log_scale=log_scale, title=", ".join(metrics))
        lines = [f"[{plain(truncate(r.name, 80))}]({r.url}) (`{r.id}`, {r.state})" if r.url else r.id for r in runs]
        embed = {
            "title": truncate(f"{', '.join(metrics)}" + (" (log scale)" if log_scale else ""), 256),
            "description": truncate("\n".join(lines), 4096),
            "color": 0x9B59B6,
            "image": {"url": "attachment://plot.png"},
            "footer": {"text": self.project_label},
        }
        return None, embed, png

    # --- polling --------------------------------------------------------------------------------
    def due(self, interval: float) -> bool:
        """False while backing off after failures, and until ``interval`` (less a tenth) has passed since the
        last poll ended: after a slow poll, the loop's missed iterations must not become a burst of polls."""
        now = time.monotonic()
        return now >= self.health.next_attempt and now - self.last_poll_end >= interval * 0.9

    async def poll(self, interval: float) -> int | None:
        """One poll with health bookkeeping; returns how many announcements were queued (None: it failed)."""
        try:
            queued = await self.poll_once()
        except Exception as error:
            self.last_poll_end = time.monotonic()
            delay = self.health.failed(error, interval)
            log.warning(
                "W&B poll of %s failed (%d in a row): %s; next try in %.0fs",
                self.project_label,
                self.health.failures,
                self.health.last_error,
                delay,
            )
            return None
        self.last_poll_end = time.monotonic()
        self.health.succeeded()
        return queued

    async def poll_once(self) -> int:
        """Ask W&B, record transitions and their announcements. Returns how many were queued."""
        baseline = await asyncio.to_thread(self.store.get_meta, self.project_key, "baseline")
        if baseline is None:
            await self._baseline()
            self._polled_once = True
            return 0
        watched = await asyncio.to_thread(self.store.watched, self.project_key)
        since = parse_wandb_time(await asyncio.to_thread(self.store.get_meta, self.project_key, "watermark"))
        try:
            runs = await self.ask(self.source.changed_runs, watched, since, self.rules.gpu_idle is not None)
        except ProjectNotFound:
            known = await asyncio.to_thread(self.store.count_runs, self.project_key)
            if known:
                raise PollContradiction(
                    f"W&B answered that {self.project_label} does not exist, but it had {known} run(s); "
                    "not believing it: the next poll decides"
                ) from None
            runs = []  # the project appears with its first run
        runs, gone = await self._account_for_missing(runs, watched)
        context = None if self._polled_once else CATCH_UP
        rules = await asyncio.to_thread(self.store.rules, self.project_key)
        self._polls += 1
        histories = await self._read_histories(runs, rules)
        finished = await self._read_finished(runs, rules)
        queued = await asyncio.to_thread(
            self._record_changes, runs, gone, since, utcnow(), context, rules, histories, finished
        )
        self._polled_once = True
        return queued

    async def _account_for_missing(self, runs: list[RunInfo], watched: list[str]) -> tuple[list[RunInfo], list[str]]:
        """Watched runs missing from the answer: asked about one by one; a run counts as deleted only when W&B
        says so for that run itself on two polls in a row. An answer that loses every watched run while W&B
        still knows one of them is a failed poll."""
        seen = {run.id for run in runs}
        missing = [run_id for run_id in watched if run_id not in seen]
        for run_id in list(self._misses):
            if run_id not in missing:
                del self._misses[run_id]
        gone: list[str] = []
        for run_id in missing:
            found = await self.ask(self.source.fetch, run_id)
            if found is not None:
                if len(missing) == len(watched):
                    raise PollContradiction(
                        f"W&B's answer left out every watched run of {self.project_label}, yet it knows run "
                        f"{run_id}: not believing it; the next poll decides"
                    )
                runs.append(found)  # left out of the listing, but there: take its own answer
                self._misses.pop(run_id, None)
                continue
            self._misses[run_id] = self._misses.get(run_id, 0) + 1
            if self._misses[run_id] >= DELETED_AFTER_POLLS:
                gone.append(run_id)
                del self._misses[run_id]
        return runs, gone

    # --- rules on history and on other runs ----------------------------------------------------------
    async def _read_histories(self, runs: Sequence[RunInfo], rules: Sequence[WatchRule]) -> dict[str, RunHistory]:
        """The sampled histories the rules on history need this poll: for each running run a rule on history takes
        in, at most once per ``history_polls`` polls and only when it logged something since (its step moved) or
        the rules changed; all such runs in one request (per :data:`~adjutant.wandb_source.HISTORY_BATCH`). A run's
        window is read from the step where its last N values begin (learned from the previous answer: the pace of
        its logging), so an answer holds about 2N rows, exactly as logged; an answer W&B had to sample gives no
        reading (only a narrower range for the next read). A failed read is logged; the poll goes on."""
        running = {run.id for run in runs if run.state == RunState.RUNNING}  # every running run comes back each poll
        for run_id in [r for r in self._history_marks if r not in running]:
            del self._history_marks[run_id]
        for key in [k for k in self._spacing if k[0] not in running]:
            del self._spacing[key]
        on_history = [r for r in rules if r.term.needs_history]
        if not on_history:
            return {}
        asks: dict[str, list[HistorySpec]] = {}
        plans: dict[str, list[tuple[HistorySpec, int]]] = {}  # per run: each spec and its window (0: whole run)
        for run in runs:
            if run.id not in running:
                continue
            windows: dict[str, int] = {}
            whole: set[str] = set()
            for rule in on_history:
                if rule.applies_to(run):
                    term = rule.term
                    if term.fn is Fn.DIVERGING:
                        whole.add(term.metric)
                    else:
                        windows[term.metric] = max(windows.get(term.metric, 0), term.window)
            if not windows and not whole:
                continue
            step = progress(run)
            wanted = (tuple(sorted(windows.items())), tuple(sorted(whole)))
            mark = self._history_marks.get(run.id)
            if (
                mark is not None
                and mark[2] == wanted
                and (mark[1] == step or self._polls - mark[0] < self.rules.history_polls)
            ):
                continue
            plan = [(self._window_spec(run.id, metric, need, step), need) for metric, need in sorted(windows.items())]
            plan += [(HistorySpec(metric, WHOLE_RUN_SAMPLES), 0) for metric in sorted(whole)]
            plans[run.id] = plan
            asks[run.id] = [spec for spec, _ in plan]
            self._history_marks[run.id] = (self._polls, step, wanted)
        if not asks:
            return {}
        try:
            answers = await self.ask(self.source.sampled_histories, asks)
        except Exception as error:  # the rules on history wait for the next read; the poll itself goes on
            log.warning(
                "history read of %d run(s) of %s failed: %s", len(asks), self.project_label, describe_error(error)
            )
            return {}
        out: dict[str, RunHistory] = {}
        for run_id, plan in plans.items():
            rows = answers.get(run_id)
            if rows is None:
                continue
            tails: dict[str, list[float]] = {}
            extremes: dict[str, tuple[float, float]] = {}
            for (spec, need), points in zip(plan, rows, strict=False):
                values = [value for _, value in points]
                if need == 0:
                    if values:
                        extremes[spec.metric] = (min(values), max(values))
                    continue
                tail = self._learn_pace(run_id, spec, need, points)
                if tail is not None:
                    tails[spec.metric] = tail
            out[run_id] = RunHistory(tails, extremes)
        return out

    def _window_spec(self, run_id: str, metric: str, need: int, step: float | None) -> HistorySpec:
        """What to ask for a run's last ``need`` values of ``metric``: from about 2N values back at the pace learned
        (N back at a pace known from a sampled answer only, an upper bound), else the whole run."""
        pace = self._spacing.get((run_id, metric))
        if pace is None or step is None:
            return HistorySpec(metric, FIRST_SAMPLES)
        spacing, exact = pace
        back = need * spacing * (2 if exact else 1)
        return HistorySpec(metric, 4 * need, max(0, int(step - back)))

    def _learn_pace(
        self, run_id: str, spec: HistorySpec, need: int, points: Sequence[tuple[float, float]]
    ) -> list[float] | None:
        """An answer's values when it holds the last ``need`` values as logged (fewer rows than asked: W&B did not
        sample), else None; either way, what it says of the pace of the run's logging, for the next read."""
        key = (run_id, spec.metric)
        steps = [step for step, _ in points]
        if len(points) < spec.samples:  # every row of the range: exactly as logged
            if len(points) >= need:
                self._spacing[key] = (max((steps[-1] - steps[-need]) / max(need - 1, 1), 1.0), True)
                return [value for _, value in points]
            if spec.min_step:  # it logs more slowly than thought: the whole run next time
                self._spacing.pop(key, None)
            return None
        if len(points) >= 2:  # sampled: rows this far apart at most; a narrower range next time
            self._spacing[key] = (max((steps[-1] - steps[0]) / (len(points) - 1), 1.0), False)
        return None

    async def _read_finished(self, runs: Sequence[RunInfo], rules: Sequence[WatchRule]) -> dict[str, list[float]]:
        """Per metric of a z-score rule, its final values in the project's last finished runs that logged it
        (newest first), read at most once per :data:`BASELINE_EVERY` (on the watcher's clock), and only while a
        running run is under such a rule; more runs than the last read held read again."""
        scores = [r for r in rules if r.term.fn is Fn.ZSCORE]
        running = [run for run in runs if run.state == RunState.RUNNING]
        if not any(rule.applies_to(run) for rule in scores for run in running):
            return {}
        count = max(rule.term.runs_back for rule in scores)
        now = self.clock()
        cached = self._zscore_base
        stale = cached is None or now - cached[0] >= BASELINE_EVERY or cached[1] < count
        failed = self._zscore_failed
        if stale and (failed is None or now - failed >= BASELINE_RETRY):
            try:
                cached = self._zscore_base = (now, count, await self.ask(self.source.finished_summaries, count))
                self._zscore_failed = None
            except Exception as error:  # the last baseline (if any) serves until the next try
                log.warning("z-score baseline of %s not read: %s", self.project_label, describe_error(error))
                self._zscore_failed = now
        if cached is None:
            return {}
        metrics = {rule.term.metric for rule in scores}
        return {m: [s[m] for s in cached[2] if m in s] for m in metrics}

    async def _baseline(self) -> None:
        """First start on a project: remember every run silently (the connect message summarises them), one page
        at a time, so that memory holds one page, not the whole project. A crash half-way starts it again."""
        after: tuple[dt.datetime, frozenset[str]] | None = None
        watermark: dt.datetime | None = None
        total = 0
        while True:
            try:
                page, more = await self.ask(self.source.next_page, after)
            except ProjectNotFound:
                page, more = [], False
            if not page:
                break
            await asyncio.to_thread(self._record_page, page)
            total += len(page)
            watermark = newest_created(page, watermark)
            newest = max((r.created_at for r in page if r.created_at is not None), default=None)
            if newest is None or not more:  # the last page (or no creation times to page by)
                break
            same_moment = frozenset(r.id for r in page if r.created_at == newest)
            if after is not None and newest == after[0]:
                same_moment |= after[1]
            after = (newest, same_moment)
        await asyncio.to_thread(self._finish_baseline, watermark)
        log.info("first start on %s: recorded %d existing runs silently", self.project_label, total)

    def _announce(
        self,
        db: Any,
        run: RunInfo,
        event: str,
        memory: RunMemory,
        job: JobLink | None,
        rules: list[WatchRule],
        context: str | None,
        now: dt.datetime,
        subscribers: Sequence[Subscription] = (),
        *,
        channel: bool = True,
        readings: Mapping[int, Reading | None] | None = None,
    ) -> int:
        """Queue one event's announcement (an alert is recorded for its card's buttons unless it is muted), and a
        direct message to each member subscribed to it; with ``channel`` False, only the direct messages. Returns how
        many channel announcements were queued."""
        kind = alert_kind(event)
        rule = None
        if kind is AlertKind.RULE:
            rule = next((r for r in rules if f"rule:{r.id}" == event), None)
        alert_id = None
        if kind is not None and channel:
            if muted(db, self.project_key, run.id, kind, now):
                log.info("%s of run %s is muted; not announced", event, run.id)
                return 0
            alert_id = record_alert(
                db,
                self.project_key,
                kind,
                run_id=run.id,
                job_id=job.job_id if job is not None else None,
                metric=alert_metric(event, rule, self.rules.metric),
                step=progress(run),
                params=None if job is not None else run.public_config(),
                now=now,
            )
        reading = (readings or {}).get(rule.id) if rule is not None else None
        embed = event_embed(
            run,
            event,
            project=self.project_label,
            metric=self.rules.metric,
            now=now,
            memory=memory,
            rule=rule,
            reading=None if reading is None else reading.value,
        )
        if kind is AlertKind.GPU_IDLE and self.rules.gpu_idle is not None:
            utilisation = gpu_utilisation(run)
            embed["description"] += (
                f"\nEvery GPU under {self.rules.gpu_idle.percent:g}% (busiest: {utilisation:g}%) for"
                f" {format_duration((now - (memory.gpu_low_since or now)).total_seconds())}."
            )
        for subscriber in subscribers:
            if not subscriber.wants(event):
                continue
            mine = job is not None and job.requested_by_id == subscriber.user_id and event in JOB_REPORTED_EVENTS
            if mine and subscriptions.wants_mine(db, subscriber.user_id):
                continue  # `mine` sends them the job's end report: told once
            self.store.enqueue(
                db, f"{DM_PREFIX}{subscriber.user_id}", run.id, event, embed, context, subscription_id=subscriber.id
            )
        if not channel:
            return 0
        if job is not None:  # a job's story is told once, in its thread (or under its launch)
            self.store.enqueue(
                db, self.project_key, run.id, event, embed, context, job.message_id, job.thread_id, alert_id
            )
            return 1
        for destination in self.destinations:
            self.store.enqueue(db, destination, run.id, event, embed, context, None, None, alert_id)
        return len(self.destinations)

    def _read_rules(
        self,
        rules: Sequence[WatchRule],
        run: RunInfo,
        history: RunHistory | None,
        baseline: Mapping[str, Sequence[float]] | None,
        now: dt.datetime,
    ) -> dict[int, Reading | None]:
        """Each rule taking in this running run, read now (None: it cannot be told this poll); each reading is kept
        as the rule's last, for ``$watches``."""
        readings: dict[int, Reading | None] = {}
        for rule in rules:
            if not rule.applies_to(run):
                continue
            goal = goal_of(rule.term.metric, self.rules.metric, self.rules.goal)
            reading = evaluate(rule, run, history=history, baseline=baseline, goal=goal)
            readings[rule.id] = reading
            if reading is not None:
                self.readings[rule.id] = (run.id, reading, now)
        return readings

    def _record_page(self, runs: list[RunInfo]) -> None:
        now = utcnow()
        with self.store.transaction() as db:
            for run in runs:
                _, memory = transitions(None, run, now, self.rules.stall_after)
                self.store.remember(db, self.project_key, run, memory)

    def _finish_baseline(self, watermark: dt.datetime | None) -> None:
        with self.store.transaction() as db:
            if watermark is not None:
                self.store.set_meta(db, self.project_key, "watermark", watermark.isoformat())
            self.store.set_meta(db, self.project_key, "baseline", utcnow().isoformat())

    def _record_changes(
        self,
        runs: list[RunInfo],
        gone: list[str],
        since: dt.datetime | None,
        now: dt.datetime,
        context: str | None,
        rules: list[WatchRule] | None = None,
        histories: Mapping[str, RunHistory] | None = None,
        baseline: Mapping[str, Sequence[float]] | None = None,
    ) -> int:
        """(thread) Transitions since the last poll, recorded with their announcements in one transaction; the rules
        read with this poll's histories (per run) and z-score baseline."""
        ids = [r.id for r in runs]
        memories = self.store.memories(self.project_key, ids)
        jobs = self.store.job_messages(ids)
        if rules is None:
            rules = self.store.rules(self.project_key)
        hits = self.store.rule_hits(ids) if rules else {}
        for run in runs:
            self.metric_names.update(list(run.public_metrics())[:50])
            if run.state == RunState.RUNNING:
                self.latest[run.id] = run  # what a job's live status shows
            else:
                self.latest.pop(run.id, None)
        queued = 0
        ordered = sorted(runs, key=lambda r: (r.created_at or now, r.id))
        with self.store.transaction() as db:
            subscribers = subscriptions.of_project(db, self.project_key)
            for run in ordered:
                previous = memories.get(run.id)
                events, memory = transitions(
                    previous,
                    run,
                    now,
                    self.rules.stall_after,
                    nan_alerts=self.rules.nan_alerts,
                    gpu_idle=self.rules.gpu_idle,
                )
                if memory != previous:
                    self.store.remember(db, self.project_key, run, memory)
                readings: dict[int, Reading | None] = {}
                if rules and run.state == RunState.RUNNING:
                    readings = self._read_rules(rules, run, (histories or {}).get(run.id), baseline, now)
                    fired, hit, rearmed = rule_events(rules, run, hits.get(run.id, set()), readings)
                    events += fired
                    if hit or rearmed:
                        self.store.set_rule_hits(db, run.id, hit, rearmed)
                job = jobs.get(run.id)
                for event in events:
                    if not self.rules.wants(event):
                        continue
                    if job is not None and event in JOB_REPORTED_EVENTS:
                        # One story per run: the job's end report tells the channel how it ended. Subscribers hear of
                        # it as of any run of the project, unless Adjutant cancelled the job (W&B's later "crashed"
                        # or "killed" is the cancel's echo).
                        if job.state not in (JobState.CANCELLED, JobState.CANCELLING):
                            self._announce(db, run, event, memory, job, rules, context, now, subscribers, channel=False)
                        continue
                    if job is not None and job.over:
                        continue  # Adjutant ended the job: its run is not judged any more (stalled, no progress …)
                    queued += self._announce(
                        db, run, event, memory, job, rules, context, now, subscribers, readings=readings
                    )
            for run_id in gone:
                log.info("W&B says run %s of %s is gone (deleted); no longer watching it", run_id, self.project_label)
                self.store.forget_watch(db, self.project_key, run_id)
            watermark = newest_created(runs, since)
            if watermark is not None and watermark != since:
                self.store.set_meta(db, self.project_key, "watermark", watermark.isoformat())
        if queued:
            log.info("%d run event(s) to announce for %s", queued, self.project_label)
        return queued
