"""A state folder written by the previous release (10a2ed2, before the database package) opens with this one and
loses nothing: every row keeps its values, the columns added since get their defaults, the database is at the
current schema version, and opening it again changes nothing.

The previous release's own stores write the folder, in a subprocess that imports that release's ``adjutant``
package, taken from git. Without that commit in the repository's history (a shallow clone), the same folder is
rebuilt from ``tests/data/state_10a2ed2.sql``, the dump of one such run (``python tests/test_db_upgrade.py`` writes it
again).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from adjutant.approvals import ApprovalState, ApprovalStore
from adjutant.db import SCHEMA_VERSION, Database
from adjutant.db.models import JobState, SweepHold
from adjutant.jobs import JobStore
from adjutant.store import STATUS_CARDS, Store

PREVIOUS = "10a2ed2"
ROOT = Path(__file__).resolve().parent.parent
DUMP = Path(__file__).resolve().parent / "data" / f"state_{PREVIOUS}.sql"

#: Run with the previous release's package first on the path: its stores write a state folder with a bit of
#: everything (jobs in several states, a held sweep, approvals decided and pending, the audit trail, run memory,
#: meta and a status card, the outbox, a watch rule and its hit, an alert and a mute, subscriptions).
WRITER = r"""
import datetime as dt, sys
from pathlib import Path
import adjutant
assert Path(adjutant.__file__).resolve().is_relative_to(Path(sys.argv[2]).resolve()), adjutant.__file__
from adjutant import subscriptions
from adjutant.alerts import AlertKind, enqueue_announcement, mute, parse_rule, record_alert, alert_from_row
from adjutant.approvals import Action, ApprovalStore
from adjutant.jobs import JobRequest, JobState, JobStore, JobUpdate
from adjutant.runs import RunInfo, RunMemory
from adjutant.store import Store

folder = Path(sys.argv[1])
path, logs = folder / "adjutant.sqlite3", folder / "logs"
jobs, runs, approvals = JobStore(path), Store(path), ApprovalStore(path)
T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)

def request(**extra):
    base = dict(params={"lr": 0.1}, script="/srv/train.sh", requested_by_id=11, requested_by="ada", channel_id=100,
                message_id=200, project="proj", entity="team", gpus=1, time_limit=3600.0)
    return JobRequest(**{**base, **extra})

done = jobs.add(request(), logs)
jobs.start(done.id, [0])
jobs.record_news(done.id, JobUpdate(state=JobState.RUNNING, started_at=T0.isoformat(), supervisor_pid=4242))
T1 = (T0 + dt.timedelta(hours=1)).isoformat()
jobs.record_news(done.id, JobUpdate(state=JobState.SUCCEEDED, exit_code=0, ended_at=T1))
jobs.update(done.id, thread_id=300, acked=1)
running = jobs.add(request(params={"lr": 0.2}, backend="slurm"), logs)
jobs.start(running.id)
news = JobUpdate(state=JobState.RUNNING, external_id="777", external_state="RUNNING", started_at=T0.isoformat())
jobs.record_news(running.id, news)
queued = jobs.add(request(params={"lr": 0.3}, gpus=0), logs)
cells = jobs.add_many([request(params={"lr": x}, sweep_id="sweep-1") for x in (1, 2, 3)], logs, canary=True)
failed = jobs.add(request(params={"lr": 9}, sweep_id="sweep-2"), logs)
jobs.add(request(params={"lr": 8}, sweep_id="sweep-2"), logs)
jobs.start(failed.id)
news = JobUpdate(state=JobState.FAILED, exit_code=1, reason="boom", started_at=T0.isoformat(), ended_at=T1)
jobs.record_news(failed.id, news)
jobs.hold_sweep(jobs.get(failed.id), "exit 1", {"description": "{held} held"}, T0)

pending = approvals.add("experiment", [request(gpus=4)], gpus=4, why="more than 2 GPUs")
approvals.set_card(pending.id, 500)
cells = [request(params={"lr": x}, sweep_id="sweep-3") for x in (5, 6)]
approved = approvals.add("sweep", cells, gpus=1, why="2 cells", canary=True)
approvals.decide(approved.id, True, 12, "bo", logs)
rejected = approvals.add("experiment", [request()], gpus=1, why="requester")
approvals.decide(rejected.id, False, 12, "bo", logs)
approvals.record(Action.LAUNCH, 11, "ada", guild_id=1, channel_id=100, target=done.id, detail="lr=0.1")

rule = runs.add_rule("team/proj", parse_rule("val_loss > 2"), 11, "ada")
with runs.transaction() as db:
    run = RunInfo("run1", "bright-sky-1", "running", created_at=T0)
    runs.remember(db, "team/proj", run, RunMemory("running", step=10.0, step_since=T0, nonfinite=frozenset({"loss"})))
    runs.set_meta(db, "team/proj", "watermark", T0.isoformat())
    runs.set_rule_hits(db, "run1", {rule.id}, set())
    alert_id = record_alert(
        db, "team/proj", AlertKind.RULE, run_id="run1", job_id=done.id, metric="val_loss", step=10.0,
        params={"lr": 0.1}, now=T0,
    )
    enqueue_announcement(db, "team/proj", "run1", "rule:1", {"title": "val_loss > 2"}, "ctx", 200, 300, alert_id)
    enqueue_announcement(db, "dm:11", "run1", "finished", {"title": "done"}, None)
    subscriptions.add(db, 11, "team/proj", ["finished", "alerts"])
    subscriptions.add(db, 12, "", ["mine"])
    mute(db, alert_from_row(db.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()), T0)
runs.set_status_card(100, {"message_id": 900, "shown": "x"})
for store in (jobs, runs, approvals):
    store.close()
"""


def previous_release_available() -> bool:
    found = subprocess.run(["git", "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], cwd=ROOT, capture_output=True)
    return found.returncode == 0


def write_with_previous_release(folder: Path, work: Path) -> None:
    """The previous release's stores write ``folder`` (its package exported from git into ``work``)."""
    archive = subprocess.run(["git", "archive", PREVIOUS, "adjutant"], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(work, filter="data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ADJUTANT_"))}
    env["PYTHONPATH"] = str(work)
    # From ``work``: ``python -c`` puts the current folder first on the path (here, the new package's checkout).
    subprocess.run([sys.executable, "-c", WRITER, str(folder), str(work)], cwd=work, env=env, check=True, timeout=120)


def previous_state(folder: Path, work: Path) -> None:
    if previous_release_available():
        write_with_previous_release(folder, work)
    else:
        with sqlite3.connect(folder / "adjutant.sqlite3") as db:
            db.executescript(DUMP.read_text(encoding="utf-8"))


def everything(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by rowid, read without Adjutant's code."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: [dict(r) for r in db.execute(f"SELECT rowid AS _rowid, * FROM {t} ORDER BY rowid")] for t in tables}


@pytest.fixture
def old_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    previous_state(folder, tmp_path / "previous")
    return folder


def test_the_previous_release_wrote_what_this_test_relies_on(old_folder: Path) -> None:
    before = everything(old_folder / "adjutant.sqlite3")
    with sqlite3.connect(old_folder / "adjutant.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0  # no numbering yet
        jobs_columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
        outbox_columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        approvals_columns = {r[1] for r in db.execute("PRAGMA table_info(approvals)")}
    assert "route" not in jobs_columns and "subscription_id" not in outbox_columns
    assert "announced" not in approvals_columns  # columns added since: the upgrade must add them
    counts = {table: len(rows) for table, rows in before.items()}
    assert counts["jobs"] == 10 and counts["approvals"] == 3 and counts["audit"] == 1
    for table in ("runs", "meta", "outbox", "watch_rules", "rule_hits", "alerts", "subscriptions", "mutes"):
        assert counts[table] >= 1, table
    assert counts["sweep_holds"] == 3  # a canary sweep, a held sweep, an approved canary sweep


def test_a_previous_release_state_folder_loses_nothing(old_folder: Path) -> None:
    path = old_folder / "adjutant.sqlite3"
    before = everything(path)
    database = Database(path)
    after = everything(path)
    assert database.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert set(after) - set(before) == {"sweeps", "sweep_trials"}, "migration 5 adds the sweep tables, nothing else"
    assert not after["sweeps"] and not after["sweep_trials"]
    added = {
        "jobs": {
            "route": None,
            # migration 3: priority classes and preemption
            "priority": "normal",
            "preemptible": 0,
            "preempted_at": None,
            "preempted_by": None,
            "preempt_term_at": None,
            "preemptions": 0,
            # migration 5: a sweep trial's W&B sweep
            "wandb_sweep_id": None,
        },
        "outbox": {"subscription_id": None},
        "approvals": {"announced": 1},
        # migration 4: alert actions (ADJUTANT_ALERT_POLICY); alerts from before never act
        "alerts": {"action_state": "none", "action_at": None, "action_note": None},
    }
    for table, rows in before.items():
        assert len(after[table]) == len(rows), table
        for old, new in zip(rows, after[table], strict=True):
            assert {k: new[k] for k in old} == old, (table, old)  # every value as it was
            assert {k: v for k, v in new.items() if k not in old} == added.get(table, {}), table  # and the defaults

    # The new stores read them.
    jobs, runs, approvals = JobStore(database), Store(database), ApprovalStore(database)
    states = sorted(j.state for j in jobs.recent(100))
    assert states.count(JobState.QUEUED) == 7 and JobState.SUCCEEDED in states and JobState.FAILED in states
    done = next(j for j in jobs.recent(100) if j.state == JobState.SUCCEEDED)
    assert (done.params, done.gpu_ids, done.thread_id, done.exit_code, done.route) == ({"lr": 0.1}, (0,), 300, 0, None)
    assert done.duration() == 3600.0
    assert [j.params["lr"] for j in jobs.canary_sweeps()] == [1, 5]  # sweep-1 and the approved sweep-3
    assert jobs.decide_sweep("sweep-2", SweepHold.RESUMED, "admin", dt.datetime.now(dt.UTC)) == (SweepHold.HELD, 1)
    assert [a.state for a in approvals.pending()] == [ApprovalState.PENDING]
    assert approvals.unannounced(dt.datetime.now(dt.UTC)) == []  # old decisions were told
    approved = next(a for a in map(approvals.get, (1, 2, 3)) if a and a.state == ApprovalState.APPROVED)
    assert len(approvals.jobs_of(approved)) == 2
    assert [e.detail for e in approvals.entries()] == ["lr=0.1"]
    assert [(r.metric, r.value) for r in runs.rules("team/proj")] == [("val_loss", 2.0)]
    assert runs.watched("team/proj") == ["run1"]
    assert runs.memories("team/proj", ["run1"])["run1"].nonfinite == frozenset({"loss"})
    assert [i.event for i in runs.pending("team/proj")] == ["rule:1"]
    assert [i.subscription_id for i in runs.pending("dm:11")] == [None]
    assert [s.events for s in runs.member_subscriptions(11)] == [("finished", "alerts")]
    assert runs.status_cards() == {100: {"message_id": 900, "shown": "x"}}
    assert runs.get_meta(STATUS_CARDS, "100") is not None
    database.close()


def test_opening_an_upgraded_folder_again_changes_nothing(old_folder: Path) -> None:
    path = old_folder / "adjutant.sqlite3"
    Database(path).close()
    once = everything(path)
    schema = sqlite3.connect(path).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    again = Database(path)
    assert again.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    again.close()
    assert everything(path) == once
    assert sqlite3.connect(path).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema


@pytest.mark.skipif(not previous_release_available(), reason=f"needs commit {PREVIOUS} in the git history")
def test_the_stored_dump_matches_the_previous_releases_layout(tmp_path: Path) -> None:
    """The dump used without git history has the layout the previous release makes (tables and columns)."""
    folder = tmp_path / "state"
    folder.mkdir()
    write_with_previous_release(folder, tmp_path / "previous")
    from_dump = tmp_path / "dump.sqlite3"
    with sqlite3.connect(from_dump) as db:
        db.executescript(DUMP.read_text(encoding="utf-8"))

    def layout(path: Path) -> dict[str, list[tuple[Any, ...]]]:
        with sqlite3.connect(path) as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            return {n: [tuple(r) for r in db.execute(f"PRAGMA table_info({n})")] for n in names}

    assert layout(folder / "adjutant.sqlite3") == layout(from_dump)
    assert {t: len(r) for t, r in everything(folder / "adjutant.sqlite3").items()} == {
        t: len(r) for t, r in everything(from_dump).items()
    }


if __name__ == "__main__":  # write the dump again: python tests/test_db_upgrade.py
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch) / "state"
        state.mkdir()
        write_with_previous_release(state, Path(scratch) / "previous")
        with sqlite3.connect(state / "adjutant.sqlite3") as source:
            DUMP.parent.mkdir(exist_ok=True)
            DUMP.write_text("\n".join(source.iterdump()) + "\n", encoding="utf-8")
    print(f"wrote {DUMP}")
