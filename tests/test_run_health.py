"""Run health (the part of issue 12 built so far): runs that keep their heartbeat but make no progress, and
metrics that turn NaN or infinite, found from what the poll already returns, each told once, across restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path

import pytest

from adjutant.runs import RunInfo, RunMemory, nonfinite_metrics, transitions
from adjutant.settings import RUN_EVENTS
from adjutant.store import Store
from adjutant.wandb_source import WandbSource
from adjutant.watcher import Watcher, WatchRules
from tests.standins.wandb_standin import WandbStandIn

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
STALL = dt.timedelta(minutes=5)


def running(step: float | None, at: dt.datetime = NOW, **summary: object) -> RunInfo:
    """A running run whose heartbeat is fresh at ``at``."""
    values = dict(summary)
    if step is not None:
        values["_step"] = step
    return RunInfo(id="r", name="n", state="running", heartbeat_at=at, summary=values)


def test_no_progress_is_told_once_and_progress_again_once() -> None:
    seen: list[str] = []
    memory: RunMemory | None = None
    timeline = [(0, 10), (2, 10), (6, 10), (7, 10), (8, 11), (9, 12), (20, 12), (21, 12)]  # (minutes, step)
    for minutes, step in timeline:
        at = NOW + dt.timedelta(minutes=minutes)
        events, memory = transitions(memory, running(step, at), at, STALL)
        seen += [(minutes, e) for e in events]
    assert seen == [(0, "started"), (6, "no-progress"), (8, "progressing"), (20, "no-progress")]


def test_runtime_is_the_fallback_and_no_progress_metric_means_no_judgement() -> None:
    memory = None
    for minutes in (0, 10, 20):
        at = NOW + dt.timedelta(minutes=minutes)
        events, memory = transitions(memory, running(None, at), at, STALL)
        assert "no-progress" not in events  # nothing to judge progress by
    later = NOW + dt.timedelta(minutes=6)
    _, memory = transitions(None, running(None, NOW, _runtime=30.0), NOW, STALL)
    events, _ = transitions(memory, running(None, later, _runtime=30.0), later, STALL)
    assert events == ["no-progress"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "NaN", "nan", "Infinity", "-Infinity"])
def test_non_finite_metrics_in_every_form_are_told_once_per_run_and_metric(value: object) -> None:
    events, memory = transitions(None, running(1, loss=value, acc=0.5), NOW, STALL)
    assert events == ["started", "nonfinite:loss"]
    events, memory = transitions(memory, running(2, loss=value, acc=0.5), NOW, STALL)
    assert events == []
    events, memory = transitions(memory, running(3, loss=value, acc=value), NOW, STALL)
    assert events == ["nonfinite:acc"]
    assert transitions(memory, running(4, loss=value), NOW, STALL, nan_alerts=False)[0] == []
    assert nonfinite_metrics(running(1, _loss=value, text="fine")) == {}


def rules(minutes: float) -> WatchRules:
    return WatchRules(notify=frozenset(RUN_EVENTS), stall_after=dt.timedelta(minutes=minutes), metric="loss")


async def test_a_hung_run_and_a_nan_are_told_once_across_a_restart(wandb_standin: WandbStandIn, tmp_path: Path) -> None:
    watcher = Watcher(Store(tmp_path / "db"), WandbSource("team", "proj", timeout=5), rules(0.02), timeout=5)
    await watcher.poll_once()  # baseline
    wandb_standin.create_run("hung", state="running", summary={"_step": 7, "loss": 0.5})
    await watcher.poll_once()
    wandb_standin.reset_counts()
    for _ in range(3):  # 1.2 s > 0.02 min; the heartbeat stays fresh, the step does not move
        await asyncio.sleep(0.6)
        wandb_standin.update_run("hung", heartbeat_at=wandb_standin.now())
        await watcher.poll_once()
    assert wandb_standin.counts["__total__"] == 3, "one request per idle poll: health checks cost nothing"
    wandb_standin.update_run("hung", summary={"_step": 7, "loss": "NaN"}, heartbeat_at=wandb_standin.now())
    await watcher.poll_once()
    await watcher.close()
    again = Watcher(Store(tmp_path / "db"), WandbSource("team", "proj", timeout=5), rules(0.02), timeout=5)
    for _ in range(2):  # a restart: nothing is told twice
        wandb_standin.update_run("hung", heartbeat_at=wandb_standin.now())
        await again.poll_once()
    wandb_standin.update_run("hung", summary={"_step": 8, "loss": "NaN"}, heartbeat_at=wandb_standin.now())
    await again.poll_once()
    items = again.store.pending(again.project_key, 100)
    assert [i.event for i in items] == ["started", "no-progress", "nonfinite:loss", "progressing"]
    hung = next(i for i in items if i.event == "no-progress")
    assert "No progress since step 7" in hung.payload["description"]
    assert next(i for i in items if i.event == "nonfinite:loss").payload["title"].endswith("reports loss = NaN")
    await again.close()


TRAINER = Path(__file__).resolve().parent / "scripts" / "wandb_trainer.py"


@pytest.mark.slow  # a real wandb client in a training process, waiting out wandb-core's 15 s heartbeat: about 45 s
async def test_a_real_wandb_trainer_nan_then_hung_then_moving_is_told_once_each_across_a_restart(
    wandb_standin: WandbStandIn, tmp_path: Path
) -> None:
    """The real wandb client in a training process: it logs a NaN loss, then hangs with its heartbeat going,
    then moves again and finishes. Each is told once; a restart of the watcher in the middle repeats nothing.
    wandb-core sends a heartbeat every 15 s while nothing is logged, so the stall time here is 24 s."""
    mark = tmp_path / "hanging"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(TRAINER_MARK=str(mark), WANDB_SILENT="true", WANDB_ENTITY="team", WANDB_PROJECT="proj")
    params = '{"steps": 3, "nan": true, "hang": 90, "wait_go": true, "after": 2, "linger": 60}'
    database = tmp_path / "db"
    watcher = Watcher(Store(database), WandbSource("team", "proj", timeout=10), rules(0.4), timeout=10)
    await watcher.poll_once()  # baseline
    trainer = await asyncio.create_subprocess_exec(sys.executable, str(TRAINER), params, env=env)
    try:

        async def poll_until(watcher: Watcher, event: str, timeout: float = 60) -> list[str]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                await watcher.poll_once()
                events = [i.event for i in watcher.store.pending(watcher.project_key, 100)]
                if event in events or loop.time() > deadline:
                    return events
                await asyncio.sleep(0.5)

        events = await poll_until(watcher, "no-progress")
        assert mark.exists(), "the trainer is hanging"
        assert events == ["started", "nonfinite:loss", "no-progress"], events
        await watcher.close()
        watcher = Watcher(Store(database), WandbSource("team", "proj", timeout=10), rules(0.4), timeout=10)
        for _ in range(3):  # restarted while the run still hangs, heartbeat fresh: nothing new, no "stalled"
            await watcher.poll_once()
            await asyncio.sleep(0.5)
        assert [i.event for i in watcher.store.pending(watcher.project_key, 100)] == events
        (tmp_path / "hanging.go").touch()
        events = await poll_until(watcher, "progressing")
        assert events[-1] == "progressing" and "finished" not in events, events
        (tmp_path / "hanging.done").touch()
        events = await poll_until(watcher, "finished")
        assert events == ["started", "nonfinite:loss", "no-progress", "progressing", "finished"], events
        assert await asyncio.wait_for(trainer.wait(), 60) == 0
    finally:
        if trainer.returncode is None:
            trainer.kill()
            await trainer.wait()
        await watcher.close()
