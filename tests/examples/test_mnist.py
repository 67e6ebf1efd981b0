"""The MNIST example: a real (tiny) training run offline, and the whole path through Adjutant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cogs.test_experiments import acks, fields, launch, wait_report

DIGITS = '{"dataset": "digits", "epochs": 1, "hidden_size": 32, "min_epoch_seconds": 0}'
MNIST = Path(__file__).resolve().parent.parent.parent / "examples" / "mnist"


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
