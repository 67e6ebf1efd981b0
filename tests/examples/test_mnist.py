"""The MNIST example: a real (tiny) training run offline, and the whole path through Adjutant."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cogs.test_experiments import acks, fields, launch, wait_report
from tests.standins.discord_standin import DiscordStandIn

DIGITS = '{"dataset": "digits", "epochs": 1, "hidden_size": 32, "min_epoch_seconds": 0}'
ROOT = Path(__file__).resolve().parent.parent.parent
MNIST = ROOT / "examples" / "mnist"


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
        WANDB_CONFIG_DIR=str(tmp_path / "config"),
        WANDB_PROJECT="mnist-test",
        WANDB_SILENT="true",
        # the example runs `python`: the interpreter of this test run, with the example's requirements
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


def inspect_summary(wandb_dir: Path) -> dict:
    """What the run wrote, read back by wandb's own tool from the offline transaction log."""
    runs = sorted(wandb_dir.glob("wandb/offline-run-*"))
    assert runs, f"no offline run in {wandb_dir}"
    wandb_cli = Path(sys.executable).parent / "wandb"
    result = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(runs[-1])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_train_model_on_digits_offline(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(MNIST / "train_model.py"),
            DIGITS,
        ],
        env={**offline_env(tmp_path), "WANDB_RUN_ID": "digits1run"},
        cwd=MNIST,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "best validation loss" in result.stdout
    summary = json.dumps(inspect_summary(tmp_path))
    assert "best_val_loss" in summary and "val_accuracy" in summary
    assert "digits1run" in summary


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ('{"epochz": 1}', "unknown hyperparameter(s) epochz"),
        ('{"epochs": "ten"}', "epochs must be int"),
        ('{"dataset": "cifar"}', "dataset must be 'mnist' or 'digits'"),
        ("[1]", "must be a JSON object"),
    ],
)
def test_train_model_refuses_bad_hyperparameters(tmp_path: Path, argument: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, str(MNIST / "train_model.py"), argument],
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_run_experiment_sh_is_the_seed_shape() -> None:
    script = MNIST / "run_experiment.sh"
    assert os.access(script, os.X_OK)
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert 'python train_model.py "$1"' in lines


async def test_experiment_through_adjutant_reports_the_run(
    start_adjutant, discord_standin, tmp_path, monkeypatch
) -> None:
    for key, value in offline_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    async with start_adjutant({"ADJUTANT_EXPERIMENT_SCRIPT": str(MNIST / "run_experiment.sh")}) as bot:
        job_id = await launch(discord_standin, DIGITS)
        done = await wait_report(discord_standin, job_id, timeout=240)
        job = bot.get_cog("Experiments").services.jobs.get(job_id)
    assert done["embeds"][0]["title"] == f"✅ Experiment {job_id} succeeded", fields(done)
    assert fields(done)["Exit code"] == "0"
    assert job.wandb_run_id in fields(done)["W&B run"]
    assert job.wandb_run_id in json.dumps(inspect_summary(tmp_path)), "the training used the run id Adjutant chose"
    assert acks(discord_standin)


def quickstart_command() -> str:
    """The `$experiment` the README's Quickstart tells a new user to post, verbatim."""
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"post\s+`\$experiment (\{[^`]*\})`", quickstart)
    assert found, "the Quickstart's step 5 names the command to post"
    return found.group(1)


def env_example_values(*names: str) -> dict[str, str]:
    """What .env.example sets (uncommented) for ``names``: the settings a new user starts with."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: values[name] for name in names}


def ack_edits(discord: DiscordStandIn, ack_id: str) -> list[tuple[float, dict]]:
    """Each edit of the acknowledgement, with when it reached Discord."""
    return [(r.at, r.json["embeds"][0]) for r in discord.rest("PATCH", f"/messages/{ack_id}") if r.json.get("embeds")]


async def test_the_quickstart_example_shows_its_step_and_val_loss_while_it_runs(
    start_adjutant, discord_standin, wandb_standin, monkeypatch
) -> None:
    """The README's Quickstart, literally: its `$experiment` with .env.example's poll (10 s) and ranking metric
    (val_loss), the real wandb client in the example's training process, reporting to the W&B stand-in. The
    acknowledgement turns into a live status showing a step and val_loss before the job ends, as the README says.
    About 30 s: the literal example paces each of its 3 epochs to 8 s."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)  # else the trainer would attach to this process's wandb-core
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    command = quickstart_command()
    assert json.loads(command) == {"dataset": "digits", "epochs": 3}, "the README's example changed: check its timing"
    env = {
        **env_example_values("ADJUTANT_POLL_SECONDS", "ADJUTANT_METRIC"),
        "WANDB_ENTITY": wandb_standin.entity,
        "WANDB_PROJECT": "proj",
        "ADJUTANT_EXPERIMENT_SCRIPT": str(MNIST / "run_experiment.sh"),
    }
    assert env["ADJUTANT_METRIC"] == "val_loss"
    async with start_adjutant(env):
        job_id = await launch(discord_standin, command)
        ack = acks(discord_standin)[0]
        done = await wait_report(discord_standin, job_id, timeout=120)
    assert done["embeds"][0]["title"] == f"✅ Experiment {job_id} succeeded", fields(done)
    reported_at = next(
        r.at
        for r in discord_standin.rest("POST", "/messages")
        if r.json and any(e.get("title", "").startswith(f"✅ Experiment {job_id} ") for e in r.json.get("embeds", []))
    )
    live = [
        {f["name"]: f["value"] for f in embed.get("fields", [])}
        for at, embed in ack_edits(discord_standin, ack["id"])
        if at < reported_at and embed["title"] == f"▶️ Experiment {job_id}: running"
    ]
    shown = [f for f in live if f.get("Step", "-").isdigit() and "val\\_loss" in f.get("Latest metrics", "")]
    assert shown, f"no live status showed a step and val_loss before the end report: {live}"
    first = shown[0]
    assert first["Latest metrics"].startswith("**val\\_loss**: "), "the ranking metric comes first"
    assert 1 <= int(first["Step"]) <= 3
