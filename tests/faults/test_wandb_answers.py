"""Faults: W&B answers that contradict what Adjutant knows (a project that vanished, no data at all). The
poll fails, nothing is forgotten, and the next poll tells what really happened, once."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from adjutant.settings import RUN_EVENTS
from adjutant.store import Store
from adjutant.wandb_source import WandbSource
from adjutant.watcher import Watcher, WatchRules
from tests.standins.wandb_standin import WandbStandIn

RULES = WatchRules(notify=frozenset(RUN_EVENTS), stall_after=dt.timedelta(minutes=30), metric="loss")


def events(watcher: Watcher) -> list[tuple[str, str]]:
    return [(i.run_id, i.event) for i in watcher.store.pending(watcher.project_key, 1000)]


@pytest.mark.parametrize("lie", [{"data": {"project": None}}, {"data": None}])
async def test_one_bad_answer_hides_no_crash_and_repeats_no_start(
    wandb_standin: WandbStandIn, tmp_path: Path, lie: dict
) -> None:
    wandb_standin.create_run("a", state="running")
    wandb_standin.create_run("b", state="running")
    watcher = Watcher(Store(tmp_path / "db"), WandbSource("team", "proj", timeout=5), RULES, timeout=5)
    await watcher.poll(1.0)  # baseline: a and b are watched
    wandb_standin.answer(1, lie)
    assert await watcher.poll(1.0) is None, "a contradicting answer is a failed poll"
    assert watcher.health.failures == 1 and "not believing it" in (watcher.health.last_error or "")
    assert await asyncio.to_thread(watcher.store.watched, watcher.project_key) == ["a", "b"]
    wandb_standin.update_run("a", state="crashed")  # meanwhile
    watcher.health.next_attempt = 0
    assert await watcher.poll(1.0) == 1
    assert events(watcher) == [("a", "crashed")], "the crash is told; b is not 'started' again"
    assert watcher.health.failures == 0
    await watcher.close()


async def test_a_run_is_deleted_only_after_w_and_b_says_so_twice(wandb_standin: WandbStandIn, tmp_path: Path) -> None:
    wandb_standin.create_run("a", state="running")
    wandb_standin.create_run("b", state="running")
    watcher = Watcher(Store(tmp_path / "db"), WandbSource("team", "proj", timeout=5), RULES, timeout=5)
    await watcher.poll(1.0)
    with wandb_standin.lock:
        del wandb_standin.runs()["b"]  # someone deletes run b in W&B
    assert await watcher.poll(1.0) == 0
    assert await asyncio.to_thread(watcher.store.watched, watcher.project_key) == ["a", "b"], "one poll is not enough"
    assert await watcher.poll(1.0) == 0
    assert await asyncio.to_thread(watcher.store.watched, watcher.project_key) == ["a"]
    wandb_standin.create_run("b", state="running")  # not a resurrection to announce twice: a new run by that id
    await watcher.poll(1.0)
    assert events(watcher) == [("b", "started")]
    await watcher.close()


async def test_every_watched_run_missing_while_w_and_b_knows_them_is_a_failed_poll(
    wandb_standin: WandbStandIn, tmp_path: Path
) -> None:
    wandb_standin.create_run("a", state="running")
    wandb_standin.create_run("b", state="running")
    watcher = Watcher(Store(tmp_path / "db"), WandbSource("team", "proj", timeout=5), RULES, timeout=5)
    await watcher.poll(1.0)
    wandb_standin.answer(1, {"data": {"project": {"runs": {"edges": [], "pageInfo": {"hasNextPage": False}}}}})
    assert await watcher.poll(1.0) is None
    assert "left out every watched run" in (watcher.health.last_error or "")
    await watcher.close()
