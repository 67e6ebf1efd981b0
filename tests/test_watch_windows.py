"""Watch rules over windows and over other runs (issue 24, item 1): the parser and the evaluators on their own, then
the watcher with the real wandb client against the W&B stand-in (real SQLite, no bot): each rule fires once per
episode and re-arms after recovery, and the W&B requests stay within the budget (counted at the stand-in)."""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
from pathlib import Path

import pytest

from adjutant.alerts import (
    PLATEAU_DELTA,
    Fn,
    Op,
    Reading,
    RuleError,
    RunHistory,
    Term,
    WatchRule,
    evaluate,
    goal_of,
    parse_rule,
    parse_term,
    rule_events,
)
from adjutant.cogs.rules import last_reading
from adjutant.run_render import rule_words
from adjutant.runs import RunInfo
from adjutant.settings import RUN_EVENTS
from adjutant.store import Store
from adjutant.wandb_source import HistorySpec, WandbSource
from adjutant.watcher import BASELINE_EVERY, Watcher, WatchRules
from tests.standins.wandb_standin import WandbStandIn

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


# --- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "stored", "op", "value", "scope", "described"),
    [
        ("avg(val_loss, 5) > 2", "avg(val_loss,5)", Op.GT, 2.0, "all", "avg(val_loss, 5) > 2 (all runs)"),
        ("min(loss,3)<0.1 tag:x", "min(loss,3)", Op.LT, 0.1, "tag:x", "min(loss, 3) < 0.1 (tag x)"),
        ("MAX(gpu, 10) >= 99 group:g", "max(gpu,10)", Op.GE, 99.0, "group:g", "max(gpu, 10) >= 99 (group g)"),
        ("last(acc, 4) <= 0.5 r1", "last(acc,4)", Op.LE, 0.5, "r1", "last(acc, 4) <= 0.5 (run r1)"),
        (
            "change(loss, 10, 50) > 25%",
            "change(loss,10,50)",
            Op.GT,
            0.25,
            "all",
            "change(loss, 10, 50) > 25% (all runs)",
        ),
        ("change(loss,1,2) < -10%", "change(loss,1,2)", Op.LT, -0.1, "all", "change(loss, 1, 2) < -10% (all runs)"),
        (
            "zscore(accuracy, 30) < -2",
            "zscore(accuracy,30)",
            Op.LT,
            -2.0,
            "all",
            "zscore(accuracy, 30) < -2 (all runs)",
        ),
        ("plateau(val_loss, 5)", "plateau(val_loss,5)", Op.LT, PLATEAU_DELTA, "all", "plateau(val_loss, 5) (all runs)"),
        ("diverging(loss, 3) tag:big", "diverging(loss,3)", Op.GT, 3.0, "tag:big", "diverging(loss, 3) (tag big)"),
        ("diverging(loss, 2.5)", "diverging(loss,2.5)", Op.GT, 2.5, "all", "diverging(loss, 2.5) (all runs)"),
        ("val_loss > 2", "val_loss", Op.GT, 2.0, "all", "val_loss > 2 (all runs)"),
        ("acc(top1) > 0.5", "acc(top1)", Op.GT, 0.5, "all", "acc(top1) > 0.5 (all runs)"),  # a name, not a function
    ],
)
def test_each_form_parses_and_reads_back_as_typed(
    text: str, stored: str, op: Op, value: float, scope: str, described: str
) -> None:
    spec = parse_rule(text)
    assert (spec.metric, spec.op, spec.value, spec.scope) == (stored, op, pytest.approx(value), scope)
    assert spec.describe() == described
    assert parse_term(stored).text() == stored  # what the store keeps reads back as the same term


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mean(val_loss, 5) > 2", "unknown function 'mean': use avg, min, max, last, change, zscore, plateau or"),
        ("foo(a, 1, 2) < 3", "unknown function 'foo'"),
        ("avg(val_loss, 1) > 2", "N in avg(<metric>, N) must be a whole number from 2 to 500, not '1'"),
        ("avg(val_loss, 501) > 2", "from 2 to 500, not '501'"),
        ("zscore(acc, 0) < -2", "N in zscore(<metric>, N) must be a whole number from 2 to 500"),
        ("plateau(loss, 2.5)", "N in plateau(<metric>, N) must be a whole number"),
        ("avg(val_loss, \u0665) > 2", "(type the digits 0-9)"),  # Arabic-Indic five is not 5
        ("avg(val_loss) > 2", "avg takes 2 arguments: avg(<metric>, N)"),
        ("change(loss, 10) > 5%", "change takes 3 arguments: change(<metric>, A, B)"),
        ("change(loss, 50, 10) > 5%", "B in change(<metric>, A, B) (more than A) must be a whole number from 51 to"),
        ("change(loss, 0, 10) > 5%", "A in change(<metric>, A, B) must be a whole number from 1 to 499"),
        ("change(loss, 10, 50) > 25", "give a percentage like 25%, not '25'"),
        ("avg(loss, 5) > 2%", "a percentage is for change(<metric>, A, B) only"),
        ("avg(loss, 5)", "compare avg(loss, 5) with <, <=, > or >= and a value"),
        ("avg(loss, 5) = 2", "compare avg(loss, 5) with <, <=, > or >= and a value"),
        ("avg(loss, 5) > nan", "finite number"),
        ("plateau(loss, 5) < 1", "plateau decides by itself: give no comparison"),
        ("diverging(loss, 1)", "the factor of diverging must be above 1 and at most 1000, not 1"),
        ("diverging(loss, 3000)", "at most 1000"),
        ("diverging(loss, x)", "the factor of diverging must be a number"),
        ("avg(, 5) > 2", "name the metric"),
        ("avg(val loss, 5) > 2", "the metric name 'val loss' has a space"),
        ("avg(@everyone, 5) > 2", "without control characters, ` or @"),
        ("avg(loss, 5) > 2 group:", "say which group"),
        ("plateau(loss, 5) tag:a tag:b", "give one scope"),
    ],
)
def test_refusals_name_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        parse_rule(text)


def test_a_stored_column_that_is_not_a_function_call_stays_a_metric_name() -> None:
    assert parse_term("val_loss") == Term("val_loss")
    assert parse_term("avg(loss,5) x") == Term("avg(loss,5) x")
    assert parse_term("avg(loss,five)") == Term("avg(loss,five)")
    assert parse_term("avg(loss,5)") == Term("loss", Fn.AVG, (5.0,))


def test_goal_is_the_routes_for_its_metric_else_min_for_loss_like_names() -> None:
    assert goal_of("score", "score", "min") == "min"  # the route's own metric: its goal, whatever the name
    assert goal_of("val_loss", "acc", "max") == "min"
    assert goal_of("train/error_rate", "acc", "max") == "min"
    assert goal_of("val/perplexity", "acc", "max") == "min"
    assert goal_of("accuracy", "loss", "min") == "max"
    assert goal_of("lossless_ratio", "loss", "min") == "max"  # a word that only begins with "loss"


# --- evaluating -------------------------------------------------------------------------------------
def running(run_id: str = "r", **summary: float) -> RunInfo:
    return RunInfo(id=run_id, name=f"name-{run_id}", state="running", summary=dict(summary))


def rule(text: str, rule_id: int = 1) -> WatchRule:
    spec = parse_rule(text)
    return WatchRule(spec.metric, spec.op, spec.value, spec.scope, rule_id, 7, "ada")


def pair(reading: Reading | None) -> tuple[float, bool] | None:
    """A reading as a tuple, to compare with pytest.approx."""
    return None if reading is None else (reading.value, reading.crossed)


def tail(metric: str, *values: float) -> RunHistory:
    return RunHistory({metric: values}, {})


@pytest.mark.parametrize(
    ("text", "values", "value", "crossed"),
    [
        ("avg(val_loss, 5) > 2", (9.0, 2.1, 2.2, 2.2, 2.1, 1.9), 2.1, True),
        ("avg(val_loss, 5) > 2", (2.0, 2.0, 2.0, 2.0, 2.0), 2.0, False),
        ("min(val_loss, 3) > 1", (0.5, 1.2, 1.1, 1.3), 1.1, True),
        ("max(val_loss, 3) < 1", (5.0, 0.2, 0.9, 0.3), 0.9, True),
        ("last(acc, 3) > 0.5", (0.1, 0.6, 0.7, 0.8), 0.6, True),  # each of the last 3 is above: the least shown
        ("last(acc, 3) > 0.5", (0.6, 0.4, 0.7, 0.8), 0.4, False),
        ("last(acc, 3) < 0.5", (0.1, 0.2, 0.6), 0.6, False),
        ("change(loss, 2, 4) > 25%", (1.0, 1.0, 1.5, 1.5), 0.2, False),  # 1.5 against 1.25: +20 %
        ("change(loss, 1, 4) > 25%", (1.0, 1.0, 1.0, 2.0), 0.6, True),  # 2 against 1.25: +60 %
        ("change(loss, 2, 4) < -10%", (2.0, 2.0, 1.0, 1.0), -1 / 3, True),
    ],
)
def test_window_rules_read_the_last_values(text: str, values: tuple[float, ...], value: float, crossed: bool) -> None:
    read = evaluate(rule(text), running(), history=tail(rule(text).term.metric, *values))
    assert pair(read) == (pytest.approx(value), crossed)


def test_a_window_rule_without_enough_values_or_history_tells_nothing() -> None:
    assert evaluate(rule("avg(val_loss, 5) > 2"), running(), history=tail("val_loss", 3.0, 3.0)) is None
    assert evaluate(rule("avg(val_loss, 5) > 2"), running(val_loss=3.0)) is None  # no history read this poll
    assert evaluate(rule("change(loss, 1, 2) > 5%"), running(), history=tail("loss", 0.0, 0.0)) is None
    assert evaluate(rule("val_loss > 2"), running(val_loss=3.0)) == Reading(3.0, True)  # summary rules as before


def test_plateau_reads_improvement_in_the_goals_direction() -> None:
    flat = (1.0, 1.001, 0.999, 1.0005, 0.9995, 1.0)  # within ±0.1 %
    read = evaluate(rule("plateau(loss, 5)"), running(), history=tail("loss", *flat), goal="min")
    assert read is not None and read.crossed and read.value < PLATEAU_DELTA
    falling = (2.0, 1.8, 1.6, 1.4, 1.2)
    read = evaluate(rule("plateau(loss, 5)"), running(), history=tail("loss", *falling), goal="min")
    assert pair(read) == (pytest.approx(0.4), False)
    read = evaluate(rule("plateau(acc, 5)"), running(), history=tail("acc", *falling), goal="max")
    assert read is not None and read.crossed, "a falling accuracy has not improved"
    rising = (0.5, 0.6, 0.7, 0.8, 0.9)
    read = evaluate(rule("plateau(acc, 5)"), running(), history=tail("acc", *rising), goal="max")
    assert pair(read) == (pytest.approx(0.8), False)


def test_diverging_compares_the_latest_value_with_the_runs_best() -> None:
    history = RunHistory({}, {"loss": (0.5, 4.0)})
    assert evaluate(rule("diverging(loss, 3)"), running(loss=1.6), history=history) == Reading(3.2, True)
    assert evaluate(rule("diverging(loss, 3)"), running(loss=1.4), history=history) == Reading(2.8, False)
    assert evaluate(rule("diverging(loss, 3)"), running(loss=0.1), history=history) == Reading(1.0, False)  # new best
    maximise = RunHistory({}, {"acc": (0.1, 0.9)})
    assert evaluate(rule("diverging(acc, 3)"), running(acc=0.2), history=maximise, goal="max") == Reading(4.5, True)
    negative = RunHistory({}, {"loss": (-1.0, 2.0)})
    assert evaluate(rule("diverging(loss, 3)"), running(loss=2.0), history=negative) is None  # no ratio to a best ≤ 0


def test_zscore_compares_with_the_finished_runs_values() -> None:
    values = [0.78, 0.82] * 15
    mean, spread = statistics.fmean(values), statistics.stdev(values)
    base = {"accuracy": values + [0.0] * 10}  # older runs beyond the 30 asked for are not counted
    low = evaluate(rule("zscore(accuracy, 30) < -2"), running(accuracy=mean - 2.5 * spread), baseline=base)
    assert pair(low) == (pytest.approx(-2.5), True)
    near = evaluate(rule("zscore(accuracy, 30) < -2"), running(accuracy=mean - spread), baseline=base)
    assert pair(near) == (pytest.approx(-1.0), False)
    assert evaluate(rule("zscore(accuracy, 30) < -2"), running(accuracy=0.1), baseline={"accuracy": [0.5]}) is None
    assert evaluate(rule("zscore(accuracy, 30) < -2"), running(accuracy=0.1), baseline={"accuracy": [0.5, 0.5]}) is None


def test_readings_fire_once_and_rearm_after_recovery() -> None:
    rules = [rule("avg(val_loss, 5) > 2", 1)]
    run = running()
    events, fired, _ = rule_events(rules, run, set(), {1: Reading(2.1, True)})
    assert events == ["rule:1"] and fired == {1}
    assert rule_events(rules, run, {1}, {1: Reading(2.2, True)}) == ([], set(), set())  # still past: nothing
    assert rule_events(rules, run, {1}, {1: None}) == ([], set(), set())  # not read this poll: nothing changes
    assert rule_events(rules, run, {1}, {1: Reading(1.5, False)}) == ([], set(), {1})  # recovered: re-armed


def test_words_on_the_card_and_in_watches() -> None:
    assert rule_words(rule("avg(val_loss, 5) > 2"), 2.1) == "has avg(val\\_loss, 5) = 2.1 > 2"
    assert rule_words(rule("change(loss, 10, 50) > 25%"), 0.31) == "has change(loss, 10, 50) = +31% > 25%"
    assert rule_words(rule("plateau(loss, 5)"), 0.002).startswith("has plateaued: loss improved 0.2% over its last 5")
    assert rule_words(rule("diverging(loss, 3)"), 3.2) == "is diverging: loss is 3.2 times its best (over 3 times)"
    assert last_reading(rule("avg(val_loss, 5) > 2"), None, NOW) == "not read yet"
    shown = last_reading(rule("avg(val_loss, 5) > 2"), ("r1", Reading(2.1, True), NOW - dt.timedelta(minutes=3)), NOW)
    assert shown.startswith("last 2.1 (run `r1`, 3") and shown.endswith("ago), crossed")


# --- against the W&B stand-in -----------------------------------------------------------------------
class Clock:
    """The watcher's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def watcher_on(path: Path, *, history_polls: int = 1, clock: Clock | None = None, goal: str = "min") -> Watcher:
    rules = WatchRules(
        notify=frozenset(RUN_EVENTS),
        stall_after=dt.timedelta(minutes=30),
        metric="loss",
        goal=goal,
        history_polls=history_polls,
    )
    return Watcher(Store(path), WandbSource("team", "proj", timeout=5), rules, timeout=5, clock=clock or Clock())


def told(watcher: Watcher) -> list[tuple[str, str]]:
    return [(i.run_id, i.event) for i in watcher.store.pending(watcher.project_key, 1000) if i.event != "started"]


def add(watcher: Watcher, text: str) -> WatchRule:
    stored = watcher.store.add_rule(watcher.project_key, parse_rule(text), 1, "ada")
    assert stored is not None
    return stored


def log(server: WandbStandIn, run_id: str, metric: str, *values: float) -> None:
    """The run logs values (one row each) and heartbeats, as a training loop does."""
    server.log(run_id, [{metric: v} for v in values])
    server.update_run(run_id, summary={})  # the heartbeat that comes with logging


async def test_avg_over_five_fires_once_where_the_latest_value_does_not_and_rearms(
    wandb_standin: WandbStandIn, tmp_path: Path
) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()  # baseline
    window = add(watcher, "avg(val_loss, 5) > 2")
    latest = add(watcher, "val_loss > 2")
    wandb_standin.create_run("a", state="running")
    log(wandb_standin, "a", "val_loss", 3.0, 2.8, 2.1, 2.2, 2.2, 2.1, 1.9)  # the last 5 average 2.1; the latest 1.9
    await watcher.poll_once()
    await watcher.poll_once()
    assert told(watcher) == [("a", f"rule:{window.id}")]
    card = watcher.store.pending(watcher.project_key, 100)[-1]
    assert "avg(val\\_loss, 5) = 2.1 > 2" in card.payload["title"]
    alert = watcher.store.alert(card.alert_id or 0)
    assert alert is not None and alert.metric == "val_loss"  # the card's chart shows the metric itself
    assert pair(watcher.readings[window.id][1]) == (pytest.approx(2.1), True)
    assert watcher.readings[latest.id][1] == Reading(1.9, False)
    log(wandb_standin, "a", "val_loss", 2.0)  # the window still past (2.08): the same episode
    await watcher.poll_once()
    assert len(told(watcher)) == 1
    log(wandb_standin, "a", "val_loss", 1.5, 1.5, 1.5, 1.5, 1.5)  # recovered: re-armed, nothing said
    await watcher.poll_once()
    assert len(told(watcher)) == 1 and watcher.readings[window.id][1].crossed is False
    log(wandb_standin, "a", "val_loss", 1.9, 2.5, 2.5, 2.5, 2.5)  # a new episode (the latest value 2.5 too)
    await watcher.poll_once()
    assert told(watcher)[1:] == [("a", f"rule:{window.id}"), ("a", f"rule:{latest.id}")]
    await watcher.close()


async def test_a_flat_loss_gives_one_plateau_alert(wandb_standin: WandbStandIn, tmp_path: Path) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    plateau = add(watcher, "plateau(loss, 5)")
    wandb_standin.create_run("p", state="running")
    log(wandb_standin, "p", "loss", 3.0, 2.5, 2.0, 1.6, 1.3)  # converging: no plateau
    await watcher.poll_once()
    assert told(watcher) == []
    log(wandb_standin, "p", "loss", 1.0, 1.001, 0.999, 1.0005, 0.9995, 1.0)  # flat within ±0.1 % for 6 values
    for _ in range(3):
        await watcher.poll_once()
        log(wandb_standin, "p", "loss", 1.0)
    assert told(watcher) == [("p", f"rule:{plateau.id}")]
    await watcher.close()


async def test_zscore_against_the_last_30_finished_runs(wandb_standin: WandbStandIn, tmp_path: Path) -> None:
    values = [0.78, 0.82] * 15
    mean, spread = statistics.fmean(values), statistics.stdev(values)
    start = wandb_standin.now() - dt.timedelta(days=1)
    for i in range(5):  # older finished runs, far off: not among the last 30
        wandb_standin.create_run(
            state="finished", created_at=start + dt.timedelta(minutes=i), summary={"accuracy": 0.0}
        )
    for i, value in enumerate(values):
        at = start + dt.timedelta(hours=1, minutes=i)
        wandb_standin.create_run(state="finished", created_at=at, summary={"accuracy": value})
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    score = add(watcher, "zscore(accuracy, 30) < -2")
    wandb_standin.create_run("low", state="running", summary={"accuracy": mean - 2.5 * spread})
    wandb_standin.create_run("near", state="running", summary={"accuracy": mean - spread})
    for _ in range(3):
        await watcher.poll_once()
    assert told(watcher) == [("low", f"rule:{score.id}")]
    card = next(i for i in watcher.store.pending(watcher.project_key, 100) if i.event == f"rule:{score.id}")
    assert "zscore(accuracy, 30) = -2.5 < -2" in card.payload["title"]
    await watcher.close()


async def test_diverging_fires_once_when_the_loss_runs_away(wandb_standin: WandbStandIn, tmp_path: Path) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    diverging = add(watcher, "diverging(loss, 3)")
    wandb_standin.create_run("d", state="running")
    log(wandb_standin, "d", "loss", 2.0, 1.0, 0.5, 0.6)
    await watcher.poll_once()
    log(wandb_standin, "d", "loss", 1.2, 1.8)  # 3.6 times its best
    await watcher.poll_once()
    log(wandb_standin, "d", "loss", 2.5)
    await watcher.poll_once()
    assert told(watcher) == [("d", f"rule:{diverging.id}")]
    await watcher.close()


def history_reads(server: WandbStandIn) -> list[str]:
    """The run ids each sampled-history request asked about, one entry per run and request."""
    return [
        value for operation, _, variables in server.requests if operation == "SampledHistories"
        for key, value in variables.items() if re.fullmatch(r"n\d+", key)
    ]  # fmt: skip


def baseline_reads(server: WandbStandIn) -> int:
    return sum(
        1 for operation, _, variables in server.requests
        if operation == "Runs" and json.loads(variables.get("f_runs") or "{}") == {"state": "finished"}
    )  # fmt: skip


async def test_the_request_budget_holds(wandb_standin: WandbStandIn, tmp_path: Path) -> None:
    clock = Clock()
    watcher = watcher_on(tmp_path / "db", history_polls=6, clock=clock)
    wandb_standin.create_runs(3, summary={"loss": 1.0})  # finished runs: the z-score baseline
    await watcher.poll_once()
    for text in ("avg(loss, 5) > 9", "max(loss, 10) > 9", "change(loss, 5, 20) > 50%", "plateau(loss, 5)"):
        add(watcher, text)
    add(watcher, "diverging(loss, 50)")
    add(watcher, "zscore(loss, 30) < -9")
    names = [wandb_standin.create_run(state="running") for _ in range(10)]
    for name in names:
        log(wandb_standin, name, "loss", *[2.0 - i / 100 for i in range(30)])
    await watcher.poll_once()  # the runs are seen (and their history read) once
    wandb_standin.reset_counts()
    polls = 12
    for _ in range(polls):  # every run logs between every two polls
        for name in names:
            log(wandb_standin, name, "loss", 1.5)
        await watcher.poll_once()
        clock.now += dt.timedelta(minutes=1)
    reads = history_reads(wandb_standin)
    assert wandb_standin.counts["SampledHistories"] == polls // 6, "all runs' histories in one request"
    assert sorted(reads) == sorted(names * (polls // 6)), "one read per run per 6 polls"
    assert wandb_standin.counts["__total__"] == polls + polls // 6, "else one listing per poll"
    assert baseline_reads(wandb_standin) == 0, "the z-score baseline was read with the rule, once an hour"
    wandb_standin.reset_counts()
    for _ in range(polls):  # nobody logs: an idle poll is one request, however many rules
        await watcher.poll_once()
    assert wandb_standin.counts["__total__"] == polls
    clock.now += BASELINE_EVERY
    wandb_standin.reset_counts()
    await watcher.poll_once()
    assert baseline_reads(wandb_standin) == 1 and wandb_standin.counts["__total__"] == 2
    await watcher.close()


async def test_the_window_is_read_from_where_the_last_values_begin(wandb_standin: WandbStandIn, tmp_path: Path) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    add(watcher, "avg(loss, 5) > 9")
    wandb_standin.create_run("long", state="running")
    log(wandb_standin, "long", "loss", *[1.0] * 5000)  # more rows than one answer holds: W&B samples them
    await watcher.poll_once()  # the whole run, sampled: no reading yet, but the pace is learned
    assert watcher.readings == {}
    log(wandb_standin, "long", "loss", 2.0)
    wandb_standin.reset_counts()
    await watcher.poll_once()
    spec = json.loads(wandb_standin.requests[-1][2]["s0"][0])
    assert spec["minStep"] >= 4990 - 5 * 3 and spec["samples"] == 20  # about the last 5 values' steps, not the run
    assert len(watcher.readings) == 1 and next(iter(watcher.readings.values()))[1].value == pytest.approx(1.2)
    await watcher.close()


async def test_sampled_histories_reads_several_runs_in_one_request(wandb_standin: WandbStandIn) -> None:
    wandb_standin.create_run("x", state="running")
    wandb_standin.create_run("y", state="running")
    wandb_standin.log("x", [{"loss": 3.0}, {"acc": 0.5}, {"loss": "NaN"}, {"loss": 1.0}])
    wandb_standin.log("y", [{"loss": 9.0}])
    source = WandbSource("team", "proj", timeout=5)
    source.api()  # the client's own first requests (Viewer)
    wandb_standin.reset_counts()
    asks = {
        "x": [HistorySpec("loss", 10), HistorySpec("acc", 10), HistorySpec("loss", 10, min_step=3)],
        "y": [HistorySpec("loss", 10)],
        "nope": [HistorySpec("loss", 10)],
    }
    answer = source.sampled_histories(asks)
    assert answer == {"x": [[(0.0, 3.0), (3.0, 1.0)], [(1.0, 0.5)], [(3.0, 1.0)]], "y": [[(0.0, 9.0)]]}
    assert wandb_standin.counts["__total__"] == 1
