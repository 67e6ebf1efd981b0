"""Run health alerts on their own: watch rules, GPU idle, mutes and log patterns, each told once per episode,
re-armed correctly, across restarts; no bot (the real wandb client against the W&B stand-in, real SQLite)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import pytest

from adjutant.alerts import (
    END_TAIL_CHARS,
    END_TAIL_LINES,
    JOBS_OUTBOX,
    AlertKind,
    AlertPolicy,
    Op,
    RuleError,
    RuleSpec,
    WatchRule,
    decide_action,
    parse_rule,
    pattern_name,
    record_alert,
    rule_events,
    scan_log,
    shown_in_tail,
)
from adjutant.jobs import JobState, JobStore, JobUpdate
from adjutant.runs import GpuIdleRule, RunInfo, transitions
from adjutant.scheduler import Scheduler
from adjutant.settings import RUN_EVENTS, ConfigError, Settings
from adjutant.store import Store
from adjutant.wandb_source import WandbSource
from adjutant.watcher import Watcher, WatchRules
from tests.standins.wandb_standin import WandbStandIn
from tests.test_scheduler import FakeLauncher, make, request, settle

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
STALL = dt.timedelta(minutes=30)


# --- parsing rules ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("val_loss > 2", RuleSpec("val_loss", Op.GT, 2.0)),
        ("val_loss>2", RuleSpec("val_loss", Op.GT, 2.0)),
        ("gpu_util < 10 group:sweep-7", RuleSpec("gpu_util", Op.LT, 10.0, "group:sweep-7")),
        ("train/acc >= 0.99 tag:baseline", RuleSpec("train/acc", Op.GE, 0.99, "tag:baseline")),
        ("loss <= -1e-3 abc123", RuleSpec("loss", Op.LE, -0.001, "abc123")),
        ("loss > 1 ALL", RuleSpec("loss", Op.GT, 1.0, "all")),
    ],
)
def test_rules_parse(text: str, expected: RuleSpec) -> None:
    assert parse_rule(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "give a rule"),
        ("val_loss = 2", "one of <, <=, >, >="),
        ("val_loss > two", "must be a number like 2, 0.5 or 1e-3, not 'two'"),
        ("val_loss > \u0663", "not '\u0663' (type the digits 0-9)"),  # Arabic-Indic three is not 3
        ("val_loss > nan", "finite number"),
        ("val_loss > inf", "finite number"),
        ("val_loss > 2 group:a group:b", "give one scope"),
        ("val_loss > 2 group:", "say which group"),
        ("@everyone > 2", "without control characters, ` or @"),
        ("loss > 2 " + "x" * 200, "at most 128 characters"),
    ],
)
def test_bad_rules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        parse_rule(text)


def run(run_id: str = "r", *, group: str | None = None, tags: tuple[str, ...] = (), **summary: object) -> RunInfo:
    return RunInfo(id=run_id, name=f"name-{run_id}", state="running", summary=summary, group=group, tags=tags)


def test_a_rule_fires_once_per_crossing_and_rearms_when_the_value_goes_back() -> None:
    rule = WatchRule("loss", Op.GT, 2.0, "all", id=7)
    hits: set[int] = set()
    told = []
    for value in (1.0, 2.5, 3.0, 1.5, 1.0, 2.1, None, 2.2):
        summary = {} if value is None else {"loss": value}
        events, fired, rearmed = rule_events([rule], RunInfo(id="r", name="n", state="running", summary=summary), hits)
        hits = (hits | fired) - rearmed
        told += events
    assert told == ["rule:7", "rule:7"], "crossed at 2.5, back at 1.5, crossed again at 2.1; a missing value is no news"


def test_rule_scopes() -> None:
    by_group = WatchRule("loss", Op.GT, 0, "group:sweep-7", id=1)
    by_tag = WatchRule("loss", Op.GT, 0, "tag:big", id=2)
    by_run = WatchRule("loss", Op.GT, 0, "abc", id=3)
    rules = [by_group, by_tag, by_run]
    assert rule_events(rules, run("abc", loss=1), set())[0] == ["rule:3"]
    assert rule_events(rules, run("x", group="sweep-7", tags=("big",), loss=1), set())[0] == ["rule:1", "rule:2"]
    assert rule_events(rules, run("x", group="sweep-8", loss=1), set())[0] == []


# --- GPU idle --------------------------------------------------------------------------------------
def test_gpu_idle_is_told_once_per_episode() -> None:
    rule = GpuIdleRule(dt.timedelta(minutes=10), percent=5)
    memory = None
    told = []
    # (minutes, utilisation of GPU 0, of GPU 1): idle only when every GPU is under 5 %
    timeline = [
        (0, 90, 90),
        (1, 2, 1),
        (5, 3, 80),
        (6, 1, 0),
        (12, 2, 2),
        (17, 0, 0),
        (18, 70, 0),
        (19, 1, 1),
        (30, 1, 1),
    ]
    for minutes, first, second in timeline:
        at = NOW + dt.timedelta(minutes=minutes)
        system = {"system.gpu.0.gpu": first, "system.gpu.1.gpu": second, "system.cpu": 100}
        info = RunInfo(id="r", name="n", state="running", heartbeat_at=at, summary={"_step": minutes}, system=system)
        events, memory = transitions(memory, info, at, STALL, gpu_idle=rule)
        told += [(minutes, e) for e in events if e == "gpu-idle"]
    assert told == [(17, "gpu-idle"), (30, "gpu-idle")], "idle from 6 to 18, then from 19 on"
    no_gpu = RunInfo(id="r", name="n", state="running", heartbeat_at=NOW, system={"system.cpu": 0})
    assert transitions(None, no_gpu, NOW, STALL, gpu_idle=rule)[1].gpu_low_since is None


# --- the watcher -----------------------------------------------------------------------------------
def watcher_on(path: Path, **options: object) -> Watcher:
    rules = WatchRules(notify=frozenset(RUN_EVENTS), stall_after=STALL, metric="loss", **options)  # type: ignore[arg-type]
    return Watcher(Store(path), WandbSource("team", "proj", timeout=5), rules, timeout=5)


def told(watcher: Watcher) -> list[tuple[str, str]]:
    return [(i.run_id, i.event) for i in watcher.store.pending(watcher.project_key, 1000) if i.event != "started"]


async def test_rules_fire_once_rearm_survive_a_restart_and_cost_no_request(
    wandb_standin: WandbStandIn, tmp_path: Path
) -> None:
    database = tmp_path / "db"
    watcher = watcher_on(database)
    await watcher.poll_once()  # baseline
    rule = watcher.store.add_rule(watcher.project_key, parse_rule("val_loss > 2"), 1, "admin")
    scoped = watcher.store.add_rule(watcher.project_key, parse_rule("acc < 0.1 group:g"), 1, "admin")
    assert rule is not None and scoped is not None
    wandb_standin.create_run("a", state="running", summary={"val_loss": 1.0, "acc": 0.05})
    wandb_standin.create_run("b", state="running", summary={"val_loss": 3.0, "acc": 0.05})
    wandb_standin.update_run("b", group="g")
    await watcher.poll_once()
    assert told(watcher) == [("b", f"rule:{rule.id}"), ("b", f"rule:{scoped.id}")]
    wandb_standin.reset_counts()
    for _ in range(3):
        await watcher.poll_once()
    assert wandb_standin.counts["__total__"] == 3, "rules read only what the poll returns: one request per poll"
    await watcher.close()

    again = watcher_on(database)  # a restart while run b is still past the rule: nothing repeats
    await again.poll_once()
    assert len(told(again)) == 2
    wandb_standin.update_run("b", summary={"val_loss": 1.5})  # back under: re-armed, nothing said
    await again.poll_once()
    wandb_standin.update_run("b", summary={"val_loss": 2.5})  # crosses again: told again
    await again.poll_once()
    assert told(again)[2:] == [("b", f"rule:{rule.id}")]
    card = again.store.pending(again.project_key, 100)[-1]
    assert card.alert_id is not None and "val\\_loss = 2.5 > 2" in card.payload["title"]  # the name as typed, escaped
    alert = again.store.alert(card.alert_id)
    assert alert is not None and alert.metric == "val_loss" and alert.run_id == "b"
    assert again.store.remove_rule(again.project_key, rule.id) is not None
    wandb_standin.update_run("b", summary={"val_loss": 1.0})
    await again.poll_once()
    wandb_standin.update_run("b", summary={"val_loss": 9.0})
    await again.poll_once()
    assert len(told(again)) == 3, "a removed rule fires no more"
    await again.close()


async def test_a_muted_run_kind_is_not_told_until_the_mute_ends(wandb_standin: WandbStandIn, tmp_path: Path) -> None:
    watcher = watcher_on(tmp_path / "db", gpu_idle=GpuIdleRule(dt.timedelta(seconds=0), 5))
    await watcher.poll_once()
    wandb_standin.create_run("a", state="running", summary={"loss": 1.0})
    await watcher.poll_once()
    wandb_standin.update_run("a", system={"system.gpu.0.gpu": 1})
    await watcher.poll_once()
    await watcher.poll_once()
    assert told(watcher) == [("a", "gpu-idle")], "once per episode"
    first = watcher.store.pending(watcher.project_key, 100)[-1]
    assert first.alert_id is not None and "Every GPU under 5%" in first.payload["description"]
    alert = watcher.store.alert(first.alert_id)
    assert alert is not None
    watcher.store.mute(alert, dt.datetime.now(dt.UTC))
    wandb_standin.update_run("a", system={"system.gpu.0.gpu": 90})  # busy again, then idle again: muted
    await watcher.poll_once()
    wandb_standin.update_run("a", system={"system.gpu.0.gpu": 0})
    await watcher.poll_once()
    wandb_standin.update_run("a", summary={"loss": float("nan")})  # another kind: not muted
    await watcher.poll_once()
    assert told(watcher) == [("a", "gpu-idle"), ("a", "nonfinite:loss")]
    await watcher.close()


# --- log patterns ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        (r"CUDA out of memory", "CUDA out of memory"),
        (r"NCCL.*[Tt]imeout", "an NCCL timeout"),
        (r"Traceback \(most recent call last\)", "a Python traceback"),
        (r"(?#a full disk)No space left on device", "a full disk"),
        (r"(?i)segmentation\s+fault", "segmentation fault"),
        (r"Killed\b|OOM", "Killed or OOM"),
        (r"^ERROR: (?:disk|quota) [Ee]xceeded{1}$", "ERROR: disk or quota exceeded"),
        (r"[0-9]+\.?", "a log pattern"),
    ],
)
def test_a_log_pattern_is_shown_by_a_name_not_its_syntax(pattern: str, name: str) -> None:
    """Issue 20: the card said `logged Traceback \\(most recent call last\\)`; people read words."""
    assert pattern_name(pattern) == name
    assert "\\" not in pattern_name(pattern) and len(pattern_name("x" * 500)) <= 100


def test_a_pattern_is_in_the_end_reports_tail_only_as_the_report_shows_it() -> None:
    traceback = ["Traceback (most recent call last):", '  File "train.py", line 3', "ValueError: boom"]
    assert shown_in_tail(r"Traceback \(most recent call last\)", ["training", *traceback])
    assert shown_in_tail(r"CUDA out of memory", ["RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"])
    assert not shown_in_tail(r"CUDA out of memory", traceback)
    scrolled = [traceback[0], *(f"step {i}" for i in range(END_TAIL_LINES))]
    assert not shown_in_tail(r"Traceback", scrolled), "more than the report's lines later: not in the report"
    long_lines = [traceback[0], "x" * END_TAIL_CHARS]
    assert not shown_in_tail(r"Traceback", long_lines), "cut by the report's character limit"
    assert not shown_in_tail(r"(unbalanced", traceback)


def test_scan_log_reads_whole_lines_and_tells_each_pattern_once() -> None:
    patterns = [re.compile(r"CUDA out of memory"), re.compile(r"NCCL.*[Tt]imeout")]
    data = b"epoch 1\n" + b"RuntimeError: CUDA out of memory. Tried\n" * 10_000 + b"NCCL watchdog tim"
    found, used = scan_log(data, patterns, set())
    assert found == [("CUDA out of memory", "RuntimeError: CUDA out of memory. Tried")]
    assert used == len(data) - len(b"NCCL watchdog tim"), "the unfinished line waits"
    found, used = scan_log(b"NCCL watchdog timeout\n", patterns, {"CUDA out of memory"})
    assert found == [("NCCL.*[Tt]imeout", "NCCL watchdog timeout")]
    assert scan_log(b"no newline at the end: NCCL Timeout", patterns, set(), final=True)[0][0][0] == "NCCL.*[Tt]imeout"


async def test_a_pattern_printed_10000_times_is_one_alert_across_restarts(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    runs = Store(tmp_path / "adjutant.sqlite3")
    launcher = FakeLauncher()
    patterns = ("CUDA out of memory", r"Traceback \(most recent call last\)")

    def scheduler() -> Scheduler:
        return make(store, launcher, tmp_path, slots=1, log_patterns=patterns)

    first = scheduler()
    job = await first.enqueue(request())
    await settle(first)
    log_path = Path(job.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        log_file.write(b"step 1\n" + b"torch.OutOfMemoryError: CUDA out of memory.\n" * 10_000)
    await first.run_pass()
    await first.run_pass()
    await first.close()
    second = scheduler()  # a restart reads on from where the first stopped
    with log_path.open("ab") as log_file:
        log_file.write(b"CUDA out of memory again\nTraceback (most recent call last):\n  File x\n")
    await second.run_pass()
    launcher.states[job.id] = JobUpdate(state=JobState.FAILED, exit_code=1)
    with log_path.open("ab") as log_file:
        log_file.write(b"Traceback (most recent call last):")
    await second.run_pass()
    await second.run_pass()
    items = runs.pending(JOBS_OUTBOX, 100)
    assert [i.event for i in items] == [
        "log:CUDA out of memory",
        r"log:Traceback \(most recent call last\)",
    ]
    assert "CUDA out of memory." in items[0].payload["description"]
    assert all(i.alert_id is not None and i.reply_to == 20 for i in items)
    alert = runs.alert(items[0].alert_id or 0)
    assert alert is not None and alert.job_id == job.id and alert.run_id == job.wandb_run_id
    assert store.logs_to_scan() == [], "an ended job's log is read to its end, then no more"
    await second.close()
    await asyncio.to_thread(store.close)
    runs.close()


# --- per-project alert policies (a [[projects]] table's alert_policy) --------------------------------------------
def test_a_projects_table_may_set_its_own_alert_policy_over_the_global_one(tmp_path: Path) -> None:
    config = tmp_path / "adjutant.toml"
    config.write_text(
        '[[projects]]\nproject = "mnist"\nchannel = "general"\nalert_policy = "gpu_idle=stop after 10, nan=notify"\n\n'
        '[[projects]]\nproject = "vision"\nchannel = "vision"\n'
    )
    env = {
        "ADJUTANT_CONFIG": str(config),
        "WANDB_ENTITY": "team",
        "ADJUTANT_ALERT_POLICY": "nan=stop, no-progress=stop",
    }
    settings = Settings.from_env(env)
    mnist, vision = settings.routes
    assert mnist.alert_policy == (("gpu-idle", 10.0), ("nonfinite", None)) and vision.alert_policy is None
    policy = AlertPolicy.for_routes(settings.alert_policy, settings.routes)
    assert policy.grace(AlertKind.GPU_IDLE, "team/mnist") == 10.0
    assert policy.grace(AlertKind.NONFINITE, "team/mnist") is None, "the table's notify replaces the global stop"
    assert policy.grace(AlertKind.NO_PROGRESS, "team/mnist") == 0.0, "a kind the table does not name: the global one"
    assert (
        policy.grace(AlertKind.GPU_IDLE, "team/vision") is None
        and policy.grace(AlertKind.NONFINITE, "team/vision") == 0.0
    )
    assert policy.grace(AlertKind.NONFINITE) == 0.0  # an alert of no project (a job's log): the global policy
    store = Store(tmp_path / "db")
    with store.transaction() as db:
        first = record_alert(db, "team/mnist", AlertKind.GPU_IDLE, run_id="r1", job_id="j1", now=NOW)
        second = record_alert(db, "team/vision", AlertKind.GPU_IDLE, run_id="r2", job_id="j2", now=NOW)
    alerts = [store.alert(first), store.alert(second)]
    with store.transaction() as db:
        mnist_alert, vision_alert = (decide_action(db, a, policy) for a in alerts if a is not None)
    assert mnist_alert.action_at == NOW + dt.timedelta(minutes=10) and mnist_alert.action_note == "stop after 10 min"
    assert vision_alert.action_at is None and vision_alert.action_note is None


def test_a_bad_alert_policy_in_the_projects_file_names_its_line(tmp_path: Path) -> None:
    config = tmp_path / "adjutant.toml"
    config.write_text('[[projects]]\nproject = "mnist"\nchannel = "general"\nalert_policy = "gpu-idle=halt"\n')
    with pytest.raises(ConfigError, match=re.escape("adjutant.toml:4: alert_policy must be per alert kind")) as caught:
        Settings.from_env({"ADJUTANT_CONFIG": str(config)})
    assert "'halt' is not a policy: notify, stop, or stop after <minutes>" in str(caught.value)
