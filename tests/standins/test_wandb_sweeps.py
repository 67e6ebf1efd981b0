"""The W&B stand-in's sweeps, driven by the real wandb 0.31 client only: ``wandb.sweep()``, ``wandb.Api().sweep()``,
the ``wandb sweep --pause/--resume/--stop/--cancel`` and ``wandb agent`` CLIs, a trainer's ``wandb.init()``, and the
client's own agent calls (``_register_agent``/``_agent_heartbeat``, what ``wandb agent`` sends). So the stand-in
answers what the client asks, and refuses what W&B refuses (../shared/notes/wandb-sweeps.md)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import wandb
from wandb.apis.public.sweeps import _agent_heartbeat, _register_agent
from wandb.errors import CommError
from wandb.sdk.sweeps import SweepNotFoundError

from tests.standins.wandb_standin import SweepRefusal, WandbStandIn

BIN = Path(sys.executable).parent
AGENT_JOB = Path(__file__).resolve().parents[2] / "adjutant" / "sweeps" / "agent_job.py"
GRID3 = {
    "method": "grid",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {"lr": {"values": [0.1, 0.2, 0.3]}, "depth": {"value": 4}},
}
RANDOM = {"method": "random", "parameters": {"lr": {"min": 0.001, "max": 0.1}, "width": {"values": [32, 64]}}}
TRAINER = '''#!{python}
"""A sweep trial: records its arguments, then logs the metric of its one JSON argument through wandb; with
``hold``, it records its pid (and any SIGUSR1 it gets) and waits that many seconds first."""
import json, os, signal, sys, time
import wandb
out = os.environ["SWEEP_TEST_OUT"]
with open(os.path.join(out, os.environ["WANDB_RUN_ID"] + ".argv"), "w") as argv:
    json.dump(sys.argv[1:], argv)
params = json.loads(sys.argv[1])
run = wandb.init()
if params.get("hold"):
    mark = os.path.join(out, os.environ["WANDB_RUN_ID"] + ".usr1")
    signal.signal(signal.SIGUSR1, lambda *_: open(mark, "w").close())
    with open(os.path.join(out, os.environ["WANDB_RUN_ID"] + ".pid"), "w") as pid:
        pid.write(str(os.getpid()))
    time.sleep(params["hold"])
run.log({{"loss": (params["lr"] - 0.2) ** 2}})
run.finish()
'''


@pytest.fixture
def wb(wandb_standin: WandbStandIn, monkeypatch: pytest.MonkeyPatch) -> WandbStandIn:
    """The stand-in, with this process's entity/project set (and put back: wandb.sweep() sets them in os.environ)."""
    monkeypatch.setenv("WANDB_ENTITY", "team")
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return wandb_standin


def child_env(**extra: str) -> dict[str, str]:
    """A wandb child process's environment: the venv's bin first on PATH (``${interpreter}`` is ``python`` from
    PATH), no link to this process's wandb service."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra}


def wandb_cli(*args: str, cwd: Path, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "wandb"), *args], cwd=cwd, env=child_env(**env), capture_output=True, text=True, timeout=timeout
    )


def trainer(tmp_path: Path) -> Path:
    """An executable trial program (explicit path and a shebang: the agent runs ``${program}`` as given)."""
    path = tmp_path / "train.py"
    path.write_text(TRAINER.format(python=sys.executable))
    path.chmod(0o755)
    (tmp_path / "out").mkdir(exist_ok=True)
    return path


def test_wandb_sweep_creates_a_sweep_the_api_reads_back(wb: WandbStandIn) -> None:
    config = {**GRID3, "program": "./train.py"}
    sweep_id = wandb.sweep(config, entity="team", project="proj")
    assert re.fullmatch(r"[a-z0-9]{8}", sweep_id)
    assert wb.counts["UpsertSweep"] == 1, "the newest mutation variant is accepted: one request"

    sweep = wandb.Api().sweep(f"team/proj/{sweep_id}")
    assert (sweep.state, sweep.config, sweep.expected_run_count) == ("RUNNING", config, 3)
    assert list(sweep.runs) == [] and sweep.name == sweep_id

    capped = wandb.sweep({**RANDOM, "run_cap": 6}, entity="team", project="proj")
    endless = wandb.sweep(RANDOM, entity="team", project="proj")
    api = wandb.Api()
    assert api.sweep(f"team/proj/{capped}").expected_run_count == 6
    assert api.sweep(f"team/proj/{endless}").expected_run_count is None, "random without run_cap: no end"
    listed = api.project("proj", entity="team").sweeps()
    assert sorted(s.id for s in listed) == sorted([sweep_id, capped, endless])


@pytest.mark.parametrize(
    ("config", "refusal"),
    [
        ({"method": "bayes", "parameters": {"lr": {"min": 0.0, "max": 1.0}}}, "bayesian search requires"),
        ({"method": "hyperopt", "parameters": {"lr": {"values": [1, 2]}}}, "unknown method"),
        ({"parameters": {"lr": {"values": [1, 2]}}}, "'method' is a required property"),
        ({"method": "grid"}, "'parameters' is a required property"),
        ({"method": "random", "parameters": {"lr": {"distribution": "zipf", "min": 1, "max": 9}}}, "zipf"),
        ({"method": "grid", "parameters": {"lr": {"min": 0.0, "max": 1.0}}}, "grid search needs discrete"),
        (
            {"method": "random", "parameters": {"lr": {"values": [1]}}, "early_terminate": {"type": "hyperband"}},
            "min_iter",
        ),
    ],
)
def test_the_stand_in_refuses_the_configs_wandb_refuses(wb: WandbStandIn, config: dict[str, Any], refusal: str) -> None:
    with pytest.raises(CommError, match=re.escape(refusal)):
        wandb.sweep(config, entity="team", project="proj")
    assert wb.sweeps == {}


def test_malformed_yaml_is_refused(wb: WandbStandIn) -> None:
    """No client sends malformed YAML (they dump a dict); the stand-in still refuses it as UpsertSweep would."""
    with pytest.raises(SweepRefusal, match="malformed YAML"):
        wb.create_sweep("method: [grid\nparameters: {")
    assert wb.sweeps == {}


def test_pause_resume_stop_and_cancel_follow_the_clients_rules(wb: WandbStandIn, tmp_path: Path) -> None:
    sweep_id = wandb.sweep(GRID3, entity="team", project="proj")
    path = f"team/proj/{sweep_id}"
    steps = [
        ("--pause", 0, "PAUSED", ""),
        ("--pause", 0, "PAUSED", ""),  # pausing a paused sweep is allowed
        ("--resume", 0, "RUNNING", ""),
        ("--stop", 0, "FINISHED", ""),
        ("--stop", 1, "FINISHED", "Sweep already finished."),
        ("--pause", 1, "FINISHED", "Cannot pause finished sweep."),
        ("--resume", 0, "RUNNING", ""),  # resume is always allowed
        ("--cancel", 0, "CANCELED", ""),
        ("--cancel", 1, "CANCELED", "Sweep already canceled."),
    ]
    for flag, code, state, said in steps:
        wb.reset_counts()
        done = wandb_cli("sweep", flag, path, cwd=tmp_path)
        assert (flag, done.returncode, wb.sweep(sweep_id).state) == (flag, code, state), done.stderr[-500:]
        assert said in done.stderr
        assert wb.counts["UpsertSweep"] == (1 if code == 0 else 0), "a refused change is refused by the client"
    assert wandb.Api().sweep(path).state == "CANCELED"


@pytest.mark.slow
def test_wandb_agent_count_1_three_times_runs_a_grid_of_three_then_exits(wb: WandbStandIn, tmp_path: Path) -> None:
    program = trainer(tmp_path)
    config = {**GRID3, "program": str(program), "command": ["${env}", "${interpreter}", "${program}", "${args_json}"]}
    sweep_id = wandb.sweep(config, entity="team", project="proj")
    path = f"team/proj/{sweep_id}"
    out = tmp_path / "out"
    per_trial: list[dict[str, int]] = []
    for _ in range(3):
        wb.reset_counts()
        done = wandb_cli("agent", "--count", "1", path, cwd=tmp_path, timeout=100, SWEEP_TEST_OUT=str(out))
        assert done.returncode == 0, done.stderr[-2000:]
        per_trial.append(dict(wb.counts))

    runs = wb.sweep_runs(sweep_id)
    handed = wb.handed_out(sweep_id)
    assert len(runs) == 3 and all(r.state == "finished" and r.sweep == sweep_id for r in runs)
    assert sorted(h["lr"] for h in handed) == [0.1, 0.2, 0.3] and all(h["depth"] == 4 for h in handed)
    for run, params in zip(runs, handed, strict=True):
        assert json.loads((out / f"{run.name}.argv").read_text()) == [json.dumps(params)], "one JSON argument"
        assert run.config == params, "the run's config is exactly the trial's parameters"
    for counts in per_trial:  # what one trial costs in W&B requests (agent and trainer)
        assert (counts["CreateAgent"], counts["Heartbeat"], counts["UpsertBucket"]) == (1, 1, 2), counts

    sweep = wandb.Api().sweep(path)
    assert {r.id for r in sweep.runs} == {r.name for r in runs}
    assert sweep.best_run().config["lr"] == 0.2

    wb.reset_counts()
    done = wandb_cli("agent", "--count", "1", path, cwd=tmp_path, timeout=100, SWEEP_TEST_OUT=str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(wb.sweep_runs(sweep_id)) == 3 and wb.counts["UpsertBucket"] == 0, "the exhausted grid ran nothing"
    assert wb.sweep_commands(sweep_id)[-1][1] == {"type": "exit"}
    assert wandb.Api().sweep(path).state == "FINISHED"


def test_a_trainer_naming_an_unknown_sweep_is_refused(wb: WandbStandIn, tmp_path: Path) -> None:
    program = trainer(tmp_path)
    env = {"WANDB_SWEEP_ID": "nosuch12", "WANDB_RUN_ID": "trial001", "SWEEP_TEST_OUT": str(tmp_path / "out")}
    done = subprocess.run(
        [sys.executable, str(program), '{"lr": 0.1}'], env=child_env(**env), capture_output=True, text=True, timeout=90
    )
    assert done.returncode != 0
    assert "sweep team/proj/nosuch12 not found" in done.stderr
    assert wb.runs() == {}, "W&B records no run for a refused upsert"


def test_a_trainer_attaches_its_run_to_a_local_controller_sweep(wb: WandbStandIn, tmp_path: Path) -> None:
    """Adjutant's search mode: W&B's controller proposes nothing; the trial's wandb.init attaches the run."""
    sweep_id = wandb.sweep({**RANDOM, "controller": {"type": "local"}}, entity="team", project="proj")
    api = wandb.Api()
    agent = _register_agent(api, "host", sweep_id=sweep_id, entity="team", project="proj")
    assert _agent_heartbeat(api, agent["id"], {}, {}) == [], "no proposals from W&B's controller"

    program = trainer(tmp_path)
    env = {"WANDB_SWEEP_ID": sweep_id, "WANDB_RUN_ID": "trial001", "SWEEP_TEST_OUT": str(tmp_path / "out")}
    done = subprocess.run(
        [sys.executable, str(program), '{"lr": 0.05}'], env=child_env(**env), capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert wb.runs()["trial001"].sweep == sweep_id
    runs = wandb.Api().runs("team/proj", filters={"sweep": sweep_id})
    assert [r.id for r in runs] == ["trial001"] and runs[0].sweep_name == sweep_id
    sweep = wandb.Api().sweep(f"team/proj/{sweep_id}")
    assert [r.id for r in sweep.runs] == ["trial001"]
    assert wb.handed_out(sweep_id) == [] and sweep.expected_run_count is None


def commands(api: Any, agent_id: str, alive: list[str]) -> list[dict[str, Any]]:
    return _agent_heartbeat(api, agent_id, {}, dict.fromkeys(alive, True))


def test_the_controller_hands_out_one_run_per_agent_until_run_cap(wb: WandbStandIn) -> None:
    sweep_id = wandb.sweep({**RANDOM, "run_cap": 2, "program": "train.py"}, entity="team", project="proj")
    api = wandb.Api()
    agent = _register_agent(api, "gpu1", sweep_id=sweep_id, entity="team", project="proj")["id"]
    wb.reset_counts()
    [first] = commands(api, agent, [])
    assert first["type"] == "run" and first["program"] == "train.py"
    assert set(first["args"]) == {"lr", "width"} and 0.001 <= first["args"]["lr"]["value"] <= 0.1
    assert first["args"]["width"]["value"] in (32, 64)
    assert wb.runs()[first["run_id"]].state == "pending" and wb.runs()[first["run_id"]].sweep == sweep_id
    assert commands(api, agent, [first["run_id"]]) == [], "an agent with a live run gets no second one"
    [second] = commands(api, agent, [])
    assert second["type"] == "run" and second["run_id"] != first["run_id"]
    assert wb.runs()[first["run_id"]].state == "crashed", "its child ended without wandb.init"
    assert commands(api, agent, []) == [{"type": "exit"}], "run_cap reached"
    assert wb.counts["Heartbeat"] == 4
    sweep = wandb.Api().sweep(f"team/proj/{sweep_id}")
    assert sweep.state == "FINISHED" and sweep.expected_run_count == 2
    [seen] = sweep.agents()
    assert (seen.host, seen.state, seen.totalRuns) == ("gpu1", "FINISHED", 2)
    assert sweep.agent(seen.id).host == "gpu1"


def test_pause_cancel_and_a_deleted_sweep_as_the_agent_hears_them(wb: WandbStandIn) -> None:
    sweep_id = wandb.sweep({**GRID3, "program": "train.py"}, entity="team", project="proj")
    api = wandb.Api()
    busy = _register_agent(api, "gpu1", sweep_id=sweep_id, entity="team", project="proj")["id"]
    idle = _register_agent(api, "gpu2", sweep_id=sweep_id, entity="team", project="proj")["id"]
    [run] = commands(api, busy, [])

    wb.set_sweep_state(sweep_id, "PAUSED")
    assert commands(api, busy, [run["run_id"]]) == [], "paused: a running trial finishes"
    assert commands(api, idle, []) == [{"type": "exit"}], "paused: no new trial"
    wb.set_sweep_state(sweep_id, "CANCELED")
    assert commands(api, busy, [run["run_id"]]) == [{"type": "stop", "run_id": run["run_id"]}]
    assert commands(api, busy, []) == [{"type": "exit"}]

    wb.set_sweep_state(sweep_id, "RUNNING")
    wb.delete_sweep(sweep_id)
    with pytest.raises(SweepNotFoundError):
        commands(api, idle, [])
    with pytest.raises(SweepNotFoundError):
        commands(api, "QWdlbnQ6OTk5", [])  # an agent W&B never registered
    with pytest.raises(CommError, match="not found"):
        _register_agent(api, "gpu3", sweep_id=sweep_id, entity="team", project="proj")


# --- adjutant/sweeps/agent_job.py: what an $agents job runs ------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "expected one JSON argument, got 0"),
        (['{"sweep": "team/proj/abc"}', "extra"], "expected one JSON argument, got 2"),
        (["team/proj/abc"], "not JSON"),
        (['["team/proj/abc"]'], "must be a JSON object"),
        (["{}"], "'sweep' must be the sweep's full path"),
        (['{"sweep": "abc12345"}'], "'sweep' must be the sweep's full path"),
        (['{"sweep": "team/proj/abc", "count": 2}'], "unexpected key(s) 'count'"),
        (['{"sweep": "team/proj/abc", "dir": "relative/folder"}'], "'dir' must be an absolute path to a folder"),
        (['{"sweep": "team/proj/abc", "dir": "/no/such/folder"}'], "'dir' must be an absolute path to a folder"),
    ],
)
def test_the_agent_job_refuses_a_bad_argument(argv: list[str], said: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(AGENT_JOB), *argv], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and said in done.stderr and "usage:" in done.stderr


def agent_job(sweep_path: str, tmp_path: Path, **kwargs: Any) -> subprocess.Popen[str]:
    """The job as Adjutant starts it: by path, on this interpreter, in a session of its own, with the job's
    environment (WANDB_SILENT and a run id of the job's own, which the agent job must not pass on)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_SILENT="true", WANDB_RUN_ID="jobrunid", SWEEP_TEST_OUT=str(tmp_path / "out"))
    env["PATH"] = "/usr/bin:/bin"  # not the venv's: the agent job puts it first
    return subprocess.Popen(
        [sys.executable, str(AGENT_JOB), json.dumps({"sweep": sweep_path})],
        cwd=tmp_path, env=env, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs,
    )  # fmt: skip


@pytest.mark.slow
def test_the_agent_job_runs_one_trial_then_nothing_once_the_grid_is_exhausted(wb: WandbStandIn, tmp_path: Path) -> None:
    program = trainer(tmp_path)
    grid = {"method": "grid", "parameters": {"lr": {"values": [0.1, 0.3]}, "tag": {"value": "a b"}}}
    config = {**grid, "program": str(program), "command": ["${env}", "${interpreter}", "${program}", "${args_json}"]}
    sweep_id = wandb.sweep(config, entity="team", project="proj")
    job = agent_job(f"team/proj/{sweep_id}", tmp_path)
    said, _ = job.communicate(timeout=100)
    assert job.returncode == 0, said[-2000:]
    [run] = wb.sweep_runs(sweep_id)
    [params] = wb.handed_out(sweep_id)
    assert run.state == "finished" and run.name != "jobrunid", "the trial's run id is W&B's, not the job's"
    assert json.loads((tmp_path / "out" / f"{run.name}.argv").read_text()) == [json.dumps(params)]
    assert run.name in said, "WANDB_SILENT is not passed on: the agent says which run it starts"

    api = wandb.Api()  # another agent takes the grid's last cell
    other = _register_agent(api, "gpu2", sweep_id=sweep_id, entity="team", project="proj")["id"]
    [last] = commands(api, other, [])
    assert last["type"] == "run" and {k: v["value"] for k, v in last["args"].items()} != params

    job = agent_job(f"team/proj/{sweep_id}", tmp_path)
    said, _ = job.communicate(timeout=100)
    assert job.returncode == 0, said[-2000:]
    assert len(wb.sweep_runs(sweep_id)) == 2 and wb.sweep_commands(sweep_id)[-1][1] == {"type": "exit"}
    assert sorted(p.name for p in (tmp_path / "out").glob("*.argv")) == [f"{run.name}.argv"], "it ran nothing"


@pytest.mark.slow
def test_the_agent_job_runs_a_relative_program_in_the_folder_it_is_given(wb: WandbStandIn, tmp_path: Path) -> None:
    """``dir``: W&B's agent runs in the experiment script's folder, so a sweep's relative ``program`` is that script
    (what the service checked), wherever the job itself starts."""
    code = tmp_path / "code"
    code.mkdir()
    trainer(code)
    config = {**GRID3, "program": "train.py", "command": ["${env}", "${interpreter}", "${program}", "${args_json}"]}
    sweep_id = wandb.sweep(config, entity="team", project="proj")
    started = tmp_path / "job"
    started.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env["SWEEP_TEST_OUT"] = str(code / "out")
    job = subprocess.run(
        [sys.executable, str(AGENT_JOB), json.dumps({"sweep": f"team/proj/{sweep_id}", "dir": str(code)})],
        cwd=started, env=env, text=True, capture_output=True, timeout=100,
    )  # fmt: skip
    assert job.returncode == 0, (job.stdout + job.stderr)[-2000:]
    [run] = wb.sweep_runs(sweep_id)
    assert (code / "out" / f"{run.name}.argv").is_file() and not list(started.iterdir())


@pytest.mark.slow
def test_the_agent_job_passes_a_preemption_signal_to_its_trial_and_a_cancel_stops_it(
    wb: WandbStandIn, tmp_path: Path
) -> None:
    program = trainer(tmp_path)
    config = {
        "method": "grid",
        "parameters": {"lr": {"value": 0.1}, "hold": {"value": 90}},
        "program": str(program),
        "command": ["${env}", "${interpreter}", "${program}", "${args_json}"],
    }
    sweep_id = wandb.sweep(config, entity="team", project="proj")
    job = agent_job(f"team/proj/{sweep_id}", tmp_path)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "out").glob("*.pid")):
        assert job.poll() is None and time.monotonic() < deadline, "the trial did not start"
        time.sleep(0.2)
    [pid_file] = (tmp_path / "out").glob("*.pid")
    trial = int(pid_file.read_text())
    os.killpg(job.pid, signal.SIGUSR1)  # Adjutant's preemption signal (ADJUTANT_PREEMPT_SIGNAL's default)
    while not (tmp_path / "out" / f"{pid_file.stem}.usr1").exists():
        assert job.poll() is None and time.monotonic() < deadline, "the trial did not get SIGUSR1"
        time.sleep(0.1)
    time.sleep(0.5)
    assert job.poll() is None, "SIGUSR1 is the trial's to act on: the agent and its job go on"
    os.killpg(job.pid, signal.SIGTERM)  # what Adjutant's cancel does to a local job
    said, _ = job.communicate(timeout=30)
    assert "SIGTERM received. Waiting for runs to end." in said, said[-2000:]
    assert job.returncode == 0, "the job lived until its agent ended, after the trial (W&B's agent then exits 0)"
    with pytest.raises(ProcessLookupError):
        os.kill(trial, 0)  # the trial ended before the job did
    assert wb.runs()[pid_file.stem].state != "finished", "stopped, not run to its end"
