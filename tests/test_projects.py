"""The projects file (ADJUTANT_CONFIG): one [[projects]] table per W&B project and channel; every mistake named with
its file, line and fix; the environment's one-project variables as the shortcut."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adjutant.projects import ProjectRoute
from adjutant.settings import ConfigError, Settings

TWO = """
[[projects]]
project = "mnist"
channel = "general"
experiment_script = "scripts/train.sh"
metric = "val_loss"

[[projects]]
project = "vision"
entity = "other-team"
channel = 1234
launch_roles = ["vision-team"]
metric_goal = "max"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    script = tmp_path / "scripts" / "train.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "adjutant.toml"
    path.write_text(text)
    return path


def test_routes_from_the_file_with_defaults_from_the_environment(folder: Path) -> None:
    path = write(folder, TWO)
    env = {"ADJUTANT_CONFIG": str(path), "WANDB_ENTITY": "team", "ADJUTANT_LAUNCH_USERS": "7"}
    settings = Settings.from_env(env)
    first, second = settings.routes
    assert first == ProjectRoute(
        channel="general",
        project="mnist",
        entity="team",
        experiment_script=(folder / "scripts" / "train.sh").resolve(),
        launch_users=(7,),
        metric="val_loss",
    ), "relative paths are relative to the file; unset keys take the global settings"
    assert second.project_key == "other-team/vision" and second.channel == 1234
    assert second.launch_roles == ("vision-team",) and second.launch_users == (), "its own rule replaces the global"
    assert second.metric_goal == "max" and second.experiment_script is None
    assert settings.reporting_enabled and any(r.experiment_script for r in settings.routes)


def test_the_environment_shortcut_is_one_route() -> None:
    settings = Settings.from_env({"WANDB_PROJECT": "mnist", "ADJUTANT_CHANNEL": "runs"})
    assert settings.routes == (ProjectRoute(channel="runs", project="mnist"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[projects]]\nproject = "a"\nchannel = "general"\nchanel = "x"\n', ["adjutant.toml:4: unknown key 'chanel'"]),
        ('[[projects]]\nproject = "a"\n', ["adjutant.toml:1: channel is required"]),
        (
            '[[projects]]\nproject = "a"\nchannel = "general"\n\n[[projects]]\nproject = "b"\nchannel = "general"\n',
            ["adjutant.toml:5: channel general already holds the project of the table at line 1"],
        ),
        (
            '[[projects]]\nproject = "a"\nchannel = "general"\nexperiment_script = "missing.sh"\n',
            ["adjutant.toml:4: experiment_script must be the path of an executable script"],
        ),
        ('[[projects]]\nproject = "a/b"\nchannel = "general"\n', ["adjutant.toml:2: project must be a W&B project"]),
        ('[[projects]\nproject = "a"\n', ["adjutant.toml: not valid TOML", "line 1"]),
        ('project = "a"\n', ["unknown top-level key(s) project", "no [[projects]] table"]),
        (
            '[[projects]]\nproject = "a"\nchannel = "general"\nmetric_goal = "best"\nlaunch_users = ["x"]\n',
            ["adjutant.toml:4: metric_goal must be", "adjutant.toml:5: launch_users must be a list of user ids"],
        ),
    ],
)
def test_a_bad_file_names_file_line_and_fix(folder: Path, text: str, expected: list[str]) -> None:
    path = write(folder, text)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ADJUTANT_CONFIG": str(path)})
    problems = "\n".join(caught.value.problems)
    for part in expected:
        assert part in problems, problems
    assert str(folder) in problems, "the file is named in full"


def test_both_the_file_and_the_one_project_variables_is_an_error(folder: Path) -> None:
    path = write(folder, TWO)
    with pytest.raises(ConfigError, match="ADJUTANT_CONFIG and WANDB_PROJECT, ADJUTANT_CHANNEL are both set"):
        Settings.from_env({"ADJUTANT_CONFIG": str(path), "WANDB_PROJECT": "x", "ADJUTANT_CHANNEL": "y"})
    with pytest.raises(ConfigError, match="no file"):
        Settings.from_env({"ADJUTANT_CONFIG": str(folder / "nope.toml")})


def test_check_reports_the_file_problems_with_lines(folder: Path) -> None:
    path = write(folder, '[[projects]]\nproject = "a"\nchannel = "general"\nchanel = "x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "adjutant", "--check", "--config", str(path), "--env-file", str(write_env(folder))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"{path}:4: unknown key 'chanel' (did you mean channel?)" in result.stdout + result.stderr


def write_env(folder: Path) -> Path:
    env = folder / "check.env"
    env.write_text(f"ADJUTANT_STATE_DIR={folder / 'state'}\n")
    return env


def test_a_table_may_pick_its_launcher(folder: Path) -> None:
    path = write(folder, TWO.replace('metric = "val_loss"', 'metric = "val_loss"\nlauncher = "ray"'))
    routes = Settings.from_env({"ADJUTANT_CONFIG": str(path)}).routes
    assert [r.launcher for r in routes] == ["ray", None]
    bad = write(folder, TWO.replace('metric = "val_loss"', 'metric = "val_loss"\nlauncher = "kubernetes"'))
    with pytest.raises(ConfigError, match=r"launcher must be where its jobs run.*got 'kubernetes'"):
        Settings.from_env({"ADJUTANT_CONFIG": str(bad)})


def test_check_looks_at_a_backend_only_a_projects_table_names(folder: Path) -> None:
    """--check checks Ray when one channel's table says ``launcher = "ray"``, though ADJUTANT_LAUNCHER is local."""
    from adjutant.doctor import check_ray, launches_on

    ray_table = TWO.replace('metric = "val_loss"', 'metric = "val_loss"\nlauncher = "ray"')
    env = {"ADJUTANT_CONFIG": str(write(folder, ray_table)), "ADJUTANT_RAY_ADDRESS": "http://127.0.0.1:9"}
    settings = Settings.from_env(env)
    assert settings.launcher == "local" and launches_on(settings, "ray") and not launches_on(settings, "container")
    findings = check_ray(settings)
    assert [(f.check, f.ok) for f in findings] == [("ray", False)], findings
    assert check_ray(Settings.from_env({"ADJUTANT_CONFIG": str(write(folder, TWO))})) == [], "no channel uses Ray"
