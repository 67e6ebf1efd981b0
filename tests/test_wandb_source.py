"""What watching a W&B project asks and keeps: the real wandb client against the W&B stand-in, looking at the
GraphQL requests it receives."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

from adjutant.settings import RUN_EVENTS
from adjutant.store import Store
from adjutant.wandb_source import PAGE_SIZE, WandbSource
from adjutant.watcher import Watcher, WatchRules
from tests.standins.wandb_standin import WandbStandIn

RULES = WatchRules(notify=frozenset(RUN_EVENTS), stall_after=dt.timedelta(minutes=30), metric="loss")
CONFIG = {"lr": 0.001, "batch_size": 64, "optimizer": "adamw", "seed": 7}


def watcher_on(path: Path) -> Watcher:
    return Watcher(Store(path), WandbSource("team", "proj", timeout=10), RULES, timeout=10)


def asked_for_config(standin: WandbStandIn) -> list[str]:
    """The operations since the last reset whose query selects a run's config."""
    return [operation for operation, query, _ in standin.requests if "config" in query.split()]


def outbox(watcher: Watcher) -> list[tuple[str, str]]:
    return [(i.run_id, i.event) for i in watcher.store.pending(watcher.project_key, 1000)]


async def test_a_running_runs_config_is_read_once_not_on_every_poll(wandb_standin: WandbStandIn, tmp_path) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()  # first start
    quiet = wandb_standin.now() - dt.timedelta(minutes=5)
    wandb_standin.create_run(
        "a", state="running", config=CONFIG, summary={"loss": 0.5, "_step": 3}, created_at=quiet, heartbeat_at=quiet
    )
    wandb_standin.reset_counts()
    await watcher.poll_once()
    assert asked_for_config(wandb_standin), "a run new to Adjutant: its config is read"
    assert watcher.latest["a"].config == CONFIG

    wandb_standin.reset_counts()
    for _ in range(3):  # nothing changed
        await watcher.poll_once()
    assert wandb_standin.counts["__total__"] == 3, "one request per idle poll"
    assert asked_for_config(wandb_standin) == [], "a running run's config is not read again"
    assert "summaryMetrics" not in wandb_standin.requests[-1][1].split("moved:")[0], "nor its summary, unchanged"
    assert wandb_standin.bytes_out["__total__"] < 3 * 1000

    wandb_standin.reset_counts()
    wandb_standin.update_run("a", summary={"loss": 0.25, "_step": 4}, heartbeat_at=wandb_standin.now())
    await watcher.poll_once()  # it logged: read in full, in the same one request, still without its config
    assert wandb_standin.counts["__total__"] == 1 and asked_for_config(wandb_standin) == []
    assert watcher.latest["a"].metric("loss") == 0.25 and watcher.latest["a"].step() == 4
    assert watcher.latest["a"].config == CONFIG, "what was read once is kept"

    wandb_standin.update_run("a", state="finished")
    await watcher.poll_once()
    finished = next(i for i in watcher.store.pending(watcher.project_key, 100) if i.event == "finished")
    config = next(f["value"] for f in finished.payload["fields"] if f["name"] == "Config")
    assert 'optimizer = "adamw"' in config, "the announcement still shows the config"

    wandb_standin.reset_counts()
    wandb_standin.update_run("a", state="running", config={"resumed": True})  # resumed: its config may have changed
    await watcher.poll_once()
    assert asked_for_config(wandb_standin), "a run running again: its config is read again"
    assert watcher.latest["a"].config == {**CONFIG, "resumed": True}
    await watcher.close()


async def test_a_restarted_process_reads_each_running_runs_config_once(wandb_standin: WandbStandIn, tmp_path) -> None:
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()
    for name in ("a", "b"):
        wandb_standin.create_run(name, state="running", config=CONFIG)
    await watcher.poll_once()
    await watcher.close()
    again = watcher_on(tmp_path / "db")  # a new process
    wandb_standin.reset_counts()
    await again.poll_once()
    assert wandb_standin.counts["Runs"] == 2, "the poll, then both runs' details in one request"
    assert {r.config["optimizer"] for r in again.latest.values()} == {"adamw"}
    wandb_standin.reset_counts()
    await again.poll_once()
    assert asked_for_config(wandb_standin) == [] and wandb_standin.counts["__total__"] == 1
    await again.close()


async def test_first_start_reads_pages_of_exactly_the_page_size(wandb_standin: WandbStandIn, tmp_path) -> None:
    """2,500 runs, 700 of them created in the same second across the first page's end: 3 requests of at most
    1,000 runs each, and every run remembered once."""
    start = wandb_standin.now() - dt.timedelta(hours=2)
    for i in range(2500):
        moment = start + dt.timedelta(seconds=min(i, 600) if i < 1300 else i)  # runs 600..1299 share a second
        wandb_standin.create_run(f"r{i:05d}", state="finished", created_at=moment)
    watcher = watcher_on(tmp_path / "db")
    wandb_standin.reset_counts()
    await watcher.poll_once()
    pages = [variables for operation, _, variables in wandb_standin.requests if operation == "Runs"]
    assert len(pages) == 3, "one request per 1,000 runs"
    assert all(variables["perPage"] == PAGE_SIZE for variables in pages)
    assert set(wandb_standin.counts) == {"Viewer", "Runs", "__total__"}, "and nothing else (the key check aside)"
    assert await asyncio.to_thread(watcher.store.count_runs, watcher.project_key) == 2500
    await watcher.close()


async def test_watching_a_project_writes_nothing_per_run(wandb_standin: WandbStandIn, tmp_path) -> None:
    wandb_standin.create_runs(50, state="finished", summary={"loss": 0.5})
    watcher = watcher_on(tmp_path / "db")
    await watcher.poll_once()  # first start
    for i in range(5):
        wandb_standin.create_run(f"live{i}", state="running", config=CONFIG)
    await watcher.poll_once()
    wandb_standin.update_run("live0", state="crashed")
    await watcher.poll_once()
    assert await watcher.fetch("live1") is not None
    await watcher.ask(watcher.source.snapshot, "loss", "min")
    written = [Path(root, name) for root, dirs, files in os.walk(os.environ["WANDB_DIR"]) for name in dirs + files]
    runs = set(wandb_standin.runs())
    assert not [path for path in written if set(path.parts) & runs], written
    await watcher.close()
