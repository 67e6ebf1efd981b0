"""The pure run logic: transitions, argument parsing, suggestions, rate window."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from adjutant.ratelimit import RateWindow
from adjutant.runs import (
    RunInfo,
    RunMemory,
    parse_best_args,
    parse_runs_args,
    parse_wandb_time,
    state_label,
    suggestions,
    transitions,
)

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
STALL = dt.timedelta(minutes=30)


def run(state: str, heartbeat_minutes_ago: float = 0) -> RunInfo:
    return RunInfo(id="r", name="n", state=state, heartbeat_at=NOW - dt.timedelta(minutes=heartbeat_minutes_ago))


@pytest.mark.parametrize(
    ("previous", "current", "events", "memory"),
    [
        (None, run("running"), ["started"], RunMemory("running")),
        (None, run("running", 45), ["started", "stalled"], RunMemory("running", True)),
        (None, run("finished"), ["finished"], RunMemory("finished")),
        (None, run("pending"), [], RunMemory("pending")),
        (RunMemory("pending"), run("running"), ["started"], RunMemory("running")),
        (RunMemory("running"), run("running"), [], RunMemory("running")),
        (RunMemory("running"), run("crashed"), ["crashed"], RunMemory("crashed")),
        (RunMemory("running"), run("killed"), ["killed"], RunMemory("killed")),
        (RunMemory("running"), run("running", 31), ["stalled"], RunMemory("running", True)),
        (RunMemory("running", True), run("running", 40), [], RunMemory("running", True)),
        (RunMemory("running", True), run("running", 1), ["resumed"], RunMemory("running")),
        (RunMemory("running", True), run("crashed"), ["crashed"], RunMemory("crashed")),
        (RunMemory("finished"), run("running"), ["started"], RunMemory("running")),
        (RunMemory("finished"), run("finished"), [], RunMemory("finished")),
        (RunMemory("running"), run("preempting"), ["preempted"], RunMemory("preempting")),
        (RunMemory("running"), run("preempted"), ["preempted"], RunMemory("preempted")),
        (RunMemory("preempting"), run("preempted"), [], RunMemory("preempted")),
        (RunMemory("preempted"), run("running"), ["resumed"], RunMemory("running")),
        (RunMemory("preempting"), run("running"), ["resumed"], RunMemory("running")),
        (RunMemory("preempted"), run("crashed"), ["crashed"], RunMemory("crashed")),
        (None, run("preempted"), ["preempted"], RunMemory("preempted")),
    ],
)
def test_transitions(previous, current, events, memory) -> None:
    assert transitions(previous, current, NOW, STALL) == (events, memory)


def test_transitions_are_exactly_once_when_memory_is_kept() -> None:
    memory = None
    seen = []
    for state, ago in [("running", 0), ("running", 0), ("running", 45), ("running", 50), ("running", 0), ("failed", 0)]:
        events, memory = transitions(memory, run(state, ago), NOW, STALL)
        seen += events
    assert seen == ["started", "stalled", "resumed", "failed"]


def test_a_preemption_is_told_as_preempted_then_resumed_never_crashed() -> None:
    memory = None
    seen = []
    for state in ["running", "preempting", "preempting", "preempted", "preempted", "running", "running"]:
        events, memory = transitions(memory, run(state), NOW, STALL)
        seen += events
    assert seen == ["started", "preempted", "resumed"]


def test_state_label_shows_pending_as_waiting() -> None:
    assert state_label("pending") == "waiting (pending)"
    assert state_label("preempting") == "being preempted (preempting)"
    assert state_label("preempted") == "preempted"
    assert state_label("crashed") == "crashed"
    assert state_label("something-new") == "something-new"


def test_parse_wandb_time() -> None:
    assert parse_wandb_time("2026-01-07T10:00:00") == dt.datetime(2026, 1, 7, 10, tzinfo=dt.UTC)
    assert parse_wandb_time("2026-01-07T10:00:00Z") == dt.datetime(2026, 1, 7, 10, tzinfo=dt.UTC)
    assert parse_wandb_time("garbage") is None
    assert parse_wandb_time(None) is None


def test_parse_best_args() -> None:
    best = parse_best_args([], "loss", "min")
    assert (best.metric, best.goal, best.count) == ("loss", "min", 5)
    best = parse_best_args(["acc", "max", "3"], "loss", "min")
    assert (best.metric, best.goal, best.count) == ("acc", "max", 3)
    best = parse_best_args(["7", "MIN"], "acc", "max")
    assert (best.metric, best.goal, best.count) == ("acc", "min", 7)
    with pytest.raises(ValueError, match=re.escape("the number of runs must be a whole number from 1 to 25, not '0'")):
        parse_best_args(["0"], "loss", "min")
    with pytest.raises(ValueError, match="one metric name"):
        parse_best_args(["a", "b"], "loss", "min")
    for word in ("²", "٣", "-1", "1e3", "\uff13"):  # meant as a count, never taken as a metric name
        with pytest.raises(ValueError, match=re.escape(f"must be a whole number from 1 to 25, not {word!r}")):
            parse_best_args(["loss", word], "loss", "min")


def test_parse_runs_args() -> None:
    assert parse_runs_args([]) == parse_runs_args(["all"])
    query = parse_runs_args(["Crashed", "3"])
    assert (query.state, query.count) == ("crashed", 3)
    with pytest.raises(ValueError, match="neither a run state"):
        parse_runs_args(["sideways"])
    with pytest.raises(
        ValueError, match=re.escape("the number of runs must be a whole number from 1 to 25, not '100'")
    ):
        parse_runs_args(["100"])
    for word in ("²", "٣", "①", "-1", "1e3", "\uff13"):
        with pytest.raises(ValueError, match=re.escape(f"{word!r} is neither a run state")) as refused:
            parse_runs_args(["running", word])
        assert "the number of runs (a whole number from 1 to 25 in digits 0-9)" in str(refused.value)


def test_suggestions() -> None:
    assert suggestions("tiny-l", ["tiny-lr", "big-lr", "mid-lr"])[0] == "tiny-lr"
    assert suggestions("accuracy", ["acc", "loss"]) == ["acc"]
    assert suggestions("zzz", ["acc", "loss"]) == []
    assert "val_acc" in suggestions("val", ["val_acc", "loss"])


def test_rate_window() -> None:
    now = [0.0]
    window = RateWindow(4, 5.0, clock=lambda: now[0])
    for _ in range(4):
        assert window.delay() == 0
        window.record()
    assert window.delay() == pytest.approx(5.0)
    now[0] = 2.0
    assert window.delay() == pytest.approx(3.0)
    now[0] = 5.0
    assert window.delay() == 0
