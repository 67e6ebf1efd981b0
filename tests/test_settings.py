"""Configuration parsing: every variable, every bad value, and the token's secrecy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adjutant.settings import (
    SETTINGS,
    WANDB_VARIABLES,
    ConfigError,
    Secret,
    Settings,
    default_state_dir,
    env_example,
    settings_table,
)

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secret-token-value"


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "run_experiment.sh"
    path.write_text('#!/bin/sh\necho "$1"\n')
    path.chmod(0o755)
    return path


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.token is None
    assert s.entity is None and s.project is None and not s.reporting_enabled
    assert s.channel == "general"
    assert s.run_experiment_script is None and not any(r.experiment_script for r in s.routes)
    assert s.state_dir == default_state_dir()
    assert s.poll_seconds == 60
    assert s.launch_roles == () and s.launch_users == ()
    assert (s.metric, s.metric_goal) == ("loss", "min")
    assert s.prefix == "$"
    assert s.stall_minutes == 30
    # unset: 1 job at a time, or one per GPU with ADJUTANT_GPUS (the scheduler's slots; see test_gpus.py)
    assert (s.max_concurrent, s.cancel_grace_seconds, s.hparams_schema, s.max_sweep) == (None, 30, None, 16)
    assert (s.gpus, s.job_gpus, s.gpu_hours_per_week, s.time_limit) == (None, 0, None, None)
    assert s.notify == {"started", "finished", "crashed", "failed", "killed", "stalled", "resumed", "preempted"}
    assert Settings.from_env({"ADJUTANT_NOTIFY": "none"}).notify == frozenset()


def test_every_variable(tmp_path: Path, script: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object"}')
    env = {
        "DISCORD_TOKEN": f"  {TOKEN}\n",
        "WANDB_ENTITY": "team",
        "WANDB_PROJECT": "mnist",
        "ADJUTANT_CHANNEL": "#ml-runs",
        "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
        "ADJUTANT_STATE_DIR": str(tmp_path / "state"),
        "ADJUTANT_POLL_SECONDS": "15.5",
        "ADJUTANT_LAUNCH_ROLES": "ml-team, 123456789012345678 ,",
        "ADJUTANT_LAUNCH_USERS": "111111111111111111,<@222222222222222222>",
        "ADJUTANT_METRIC": "val_accuracy",
        "ADJUTANT_METRIC_GOAL": "MAX",
        "ADJUTANT_PREFIX": "!",
        "ADJUTANT_STALL_MINUTES": "5",
        "ADJUTANT_NOTIFY": "finished, crashed",
        "ADJUTANT_WANDB_TIMEOUT": "7",
        "ADJUTANT_MAX_CONCURRENT": "3",
        "ADJUTANT_CANCEL_GRACE_SECONDS": "2.5",
        "ADJUTANT_HPARAMS_SCHEMA": str(schema),
        "ADJUTANT_MAX_SWEEP": "8",
        "ADJUTANT_LAUNCHER": "Slurm",
        "ADJUTANT_SLURM_PARTITION": "gpu",
        "ADJUTANT_SLURM_TIME": "2:00:00",
        "ADJUTANT_SLURM_GRES": "gpu:1",
        "ADJUTANT_SLURM_ARGS": "--mem=16G -c 4",
        "ADJUTANT_SLURM_TIMEOUT": "12",
    }
    s = Settings.from_env(env)
    assert s.token == Secret(TOKEN)
    assert (s.entity, s.project) == ("team", "mnist")
    assert s.channel == "ml-runs"
    assert s.run_experiment_script == script.resolve()
    assert s.state_dir == tmp_path / "state"
    assert s.poll_seconds == 15.5
    assert s.launch_roles == ("ml-team", "123456789012345678")
    assert s.launch_users == (111111111111111111, 222222222222222222)
    assert (s.metric, s.metric_goal) == ("val_accuracy", "max")
    assert s.prefix == "!"
    assert s.stall_minutes == 5
    assert s.notify == {"finished", "crashed"}
    assert s.wandb_timeout == 7
    assert s.max_concurrent == 3
    assert s.cancel_grace_seconds == 2.5
    assert s.hparams_schema == schema.resolve()
    assert s.max_sweep == 8
    assert s.launcher == "slurm"
    assert (s.slurm_partition, s.slurm_time, s.slurm_gres) == ("gpu", "2:00:00", "gpu:1")
    assert s.slurm_args == "--mem=16G -c 4"
    assert s.slurm_timeout == 12


@pytest.mark.parametrize(
    ("raw", "expected"), [("123456789012345678", 123456789012345678), ("<#42>", 42), ("general", "general")]
)
def test_channel_forms(raw: str, expected: str | int) -> None:
    assert Settings.from_env({"ADJUTANT_CHANNEL": raw}).channel == expected


def test_keywords_override_environment(script: Path) -> None:
    s = Settings.from_env(
        {"WANDB_PROJECT": "env-project", "ADJUTANT_CHANNEL": "env"},
        project="kw-project",
        channel=42,
        run_experiment_script=script,
        poll_seconds=5,
        launch_users=[1, 2],
        launch_roles=("a", "b"),
    )
    assert s.project == "kw-project"
    assert s.channel == 42
    assert s.run_experiment_script == script.resolve()
    assert s.poll_seconds == 5
    assert s.launch_users == (1, 2)
    assert s.launch_roles == ("a", "b")


def test_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown Adjutant setting 'chanel'"):
        Settings.from_env({}, chanel="x")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ADJUTANT_POLL_SECONDS": "often"}, "ADJUTANT_POLL_SECONDS must be a number"),
        ({"ADJUTANT_POLL_SECONDS": "0"}, "ADJUTANT_POLL_SECONDS must be a finite number of at least 1"),
        ({"ADJUTANT_POLL_SECONDS": "-5"}, "ADJUTANT_POLL_SECONDS must be a finite number of at least 1"),
        ({"ADJUTANT_POLL_SECONDS": "nan"}, "ADJUTANT_POLL_SECONDS must be a finite number"),
        ({"ADJUTANT_POLL_SECONDS": "inf"}, "ADJUTANT_POLL_SECONDS must be a finite number"),
        ({"ADJUTANT_METRIC_GOAL": "lowest"}, "ADJUTANT_METRIC_GOAL must be 'min' or 'max'"),
        ({"ADJUTANT_LAUNCH_USERS": "alice"}, "ADJUTANT_LAUNCH_USERS must be comma-separated numeric"),
        ({"ADJUTANT_CHANNEL": "two words"}, "ADJUTANT_CHANNEL must be a channel name"),
        ({"ADJUTANT_CHANNEL": "#"}, "ADJUTANT_CHANNEL must be a channel name"),
        ({"ADJUTANT_PREFIX": "a b"}, "ADJUTANT_PREFIX must not contain spaces"),
        ({"WANDB_PROJECT": "team/proj"}, "WANDB_PROJECT must be a single name"),
        ({"WANDB_ENTITY": "my team"}, "WANDB_ENTITY must be a single name"),
        ({"ADJUTANT_EXPERIMENT_SCRIPT": "/nonexistent/run.sh"}, "does not exist"),
        ({"ADJUTANT_STALL_MINUTES": "0.05"}, "ADJUTANT_STALL_MINUTES must be a finite number of at least 0.1"),
        ({"ADJUTANT_NOTIFY": "finished,exploded"}, "ADJUTANT_NOTIFY has unknown event"),
        ({"ADJUTANT_WANDB_TIMEOUT": "x"}, "ADJUTANT_WANDB_TIMEOUT must be a number"),
        ({"ADJUTANT_MAX_CONCURRENT": "0"}, "ADJUTANT_MAX_CONCURRENT must be between 1 and 64"),
        ({"ADJUTANT_MAX_CONCURRENT": "two"}, "ADJUTANT_MAX_CONCURRENT must be a whole number"),
        ({"ADJUTANT_CANCEL_GRACE_SECONDS": "-1"}, "ADJUTANT_CANCEL_GRACE_SECONDS must be a finite number"),
        ({"ADJUTANT_LAUNCHER": "kubernetes"}, "ADJUTANT_LAUNCHER must be 'local' or 'slurm'"),
        ({"ADJUTANT_SLURM_PARTITION": "a b"}, "ADJUTANT_SLURM_PARTITION must be one value"),
        ({"ADJUTANT_SLURM_ARGS": "--comment='open"}, "ADJUTANT_SLURM_ARGS cannot be split"),
        ({"ADJUTANT_SLURM_TIMEOUT": "0"}, "ADJUTANT_SLURM_TIMEOUT must be a finite number"),
        ({"ADJUTANT_MAX_SWEEP": "5000"}, "ADJUTANT_MAX_SWEEP must be between 1 and 1000"),
        ({"ADJUTANT_HPARAMS_SCHEMA": "/nonexistent/schema.json"}, "ADJUTANT_HPARAMS_SCHEMA .* does not exist"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_script_not_executable(tmp_path: Path) -> None:
    path = tmp_path / "run.sh"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644)
    if os.access(path, os.X_OK):  # root can execute anything with any x bit; this file has none
        pytest.skip("file is executable for this user despite mode 644")
    with pytest.raises(ConfigError, match=r"not executable; run: chmod \+x"):
        Settings.from_env({"ADJUTANT_EXPERIMENT_SCRIPT": str(path)})


def test_script_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a file"):
        Settings.from_env({"ADJUTANT_EXPERIMENT_SCRIPT": str(tmp_path)})


def test_schema_file_problems(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        Settings.from_env({"ADJUTANT_HPARAMS_SCHEMA": str(bad_json)})
    bad_schema = tmp_path / "schema.json"
    bad_schema.write_text('{"type": 12}')
    with pytest.raises(ConfigError, match="is not a valid JSON Schema"):
        Settings.from_env({"ADJUTANT_HPARAMS_SCHEMA": str(bad_schema)})


def test_state_dir_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ConfigError, match=r"ADJUTANT_STATE_DIR .* is not a folder"):
        Settings.from_env({"ADJUTANT_STATE_DIR": str(path)})


def test_blank_values_mean_unset() -> None:
    s = Settings.from_env({"WANDB_PROJECT": "  ", "ADJUTANT_POLL_SECONDS": "", "DISCORD_TOKEN": ""})
    assert s.project is None and s.poll_seconds == 60 and s.token is None


def test_token_never_in_repr_or_errors() -> None:
    s = Settings.from_env({"DISCORD_TOKEN": TOKEN})
    for text in (repr(s), str(s), repr(s.token), str(s.token), f"{s.token}"):
        assert TOKEN not in text
    assert s.token is not None and s.token.reveal() == TOKEN
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DISCORD_TOKEN": TOKEN, "ADJUTANT_POLL_SECONDS": "x"})
    assert TOKEN not in str(info.value)


def test_problems(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    s = Settings.from_env({"WANDB_PROJECT": "p"})
    problems = s.problems({}, netrc_path=netrc)
    assert any("DISCORD_TOKEN is not set" in p for p in problems)
    assert any("W&B credentials are missing" in p for p in problems)
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    s = Settings.from_env({"WANDB_PROJECT": "p", "DISCORD_TOKEN": TOKEN})
    assert s.problems({}, netrc_path=netrc) == []
    assert s.problems({"WANDB_API_KEY": "k" * 40}, netrc_path=tmp_path / "none") == []


def test_env_example_and_readme_table_come_from_the_declarations() -> None:
    """.env.example is exactly what the declarations make, and the README holds their table verbatim."""
    root = Path(__file__).parent.parent
    example = (root / ".env.example").read_text()
    assert example == env_example(), "regenerate: python -m adjutant --env-example > .env.example"
    readme = (root / "README.md").read_text()
    assert settings_table() in readme, "paste settings_table() into the README's configuration section"
    for spec in SETTINGS:
        assert f"\n{spec.env}=" in example or f"\n# {spec.env}=" in example, spec.env
        assert f"`{spec.env}` | `{spec.keyword}`" in readme
    for var in WANDB_VARIABLES:
        assert var.env in example and f"`{var.env}`" in readme


def example_lines() -> dict[str, tuple[bool, str]]:
    """Each setting's line in .env.example: (commented out, value)."""
    found = {}
    for line in (Path(__file__).parent.parent / ".env.example").read_text().splitlines():
        name, _, value = line.removeprefix("# ").partition("=")
        if name in {s.env for s in SETTINGS}:
            found[name] = (line.startswith("# "), value)
    return found


def test_env_example_sets_only_what_differs_from_the_defaults() -> None:
    """A copied .env.example sets nothing to its built-in default (such a line would still count as set: an
    ADJUTANT_CHANNEL=general left there refused every ADJUTANT_CONFIG). Each default is shown, commented out; a
    value that differs (the Quickstart's) is set; a blank line is a slot to fill in, and means unset."""
    lines = example_lines()
    assert set(lines) == {s.env for s in SETTINGS}
    default = Settings.from_env({})
    for spec in SETTINGS:
        commented, value = lines[spec.env]
        if commented:
            assert value.strip(), spec.env
            assert getattr(Settings.from_env({spec.env: value}), spec.keyword) == getattr(default, spec.keyword)
        elif value.strip():
            assert getattr(Settings.from_env({spec.env: value}), spec.keyword) != getattr(default, spec.keyword)
    assert lines["ADJUTANT_CHANNEL"] == (True, "general")
    assert lines["ADJUTANT_POLL_SECONDS"] == (False, "10") and lines["ADJUTANT_METRIC"] == (False, "val_loss")
    assert lines["DISCORD_TOKEN"] == lines["WANDB_PROJECT"] == lines["ADJUTANT_CONFIG"] == (False, "")


def quickstart_env(tmp_path: Path, script: Path) -> tuple[str, Path]:
    """A .env as the README's Quickstart makes it: .env.example copied, steps 2 and 3 filled in, step 5's line
    appended; then a projects file added (ADJUTANT_CONFIG=...) at the end."""
    projects = tmp_path / "projects.toml"
    projects.write_text('[[projects]]\nproject = "mnist"\nchannel = "general"\n')
    text = (Path(__file__).parent.parent / ".env.example").read_text()
    for name, value in {"DISCORD_TOKEN": TOKEN, "WANDB_ENTITY": "team", "WANDB_PROJECT": "mnist"}.items():
        assert f"\n{name}=\n" in text
        text = text.replace(f"\n{name}=\n", f"\n{name}={value}\n")
    text += f"ADJUTANT_EXPERIMENT_SCRIPT={script}\nADJUTANT_CONFIG={projects}\n"
    return text, projects


def test_a_projects_file_after_the_quickstart_is_refused_naming_each_line_to_remove(
    tmp_path: Path, script: Path
) -> None:
    """ADJUTANT_CONFIG in the Quickstart's .env: refused for what the user set (WANDB_PROJECT, step 5's script),
    never for a default .env.example wrote (ADJUTANT_CHANNEL=general); the refusal names each line of .env to
    remove, with its value, and the [[projects]] lines that take their place. Without them, it is accepted."""
    from dotenv import dotenv_values

    from adjutant.settings import env_file_sources

    text, projects = quickstart_env(tmp_path, script)
    dotenv = tmp_path / ".env"
    dotenv.write_text(text)
    env = {k: v for k, v in dotenv_values(dotenv).items() if v is not None}
    lines = text.splitlines()
    project_line = lines.index("WANDB_PROJECT=mnist") + 1
    script_line = lines.index(f"ADJUTANT_EXPERIMENT_SCRIPT={script}") + 1
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env, sources=env_file_sources(text, str(dotenv), already_set=()))
    assert refused.value.problems == [
        "ADJUTANT_CONFIG and WANDB_PROJECT, ADJUTANT_EXPERIMENT_SCRIPT are both set: the projects file replaces the"
        f" one-project variables. Remove WANDB_PROJECT=mnist (from line {project_line} of {dotenv}) and"
        f" ADJUTANT_EXPERIMENT_SCRIPT={script} (from line {script_line} of {dotenv}), and write"
        f' project = "mnist" and experiment_script = "{script}" in a [[projects]] table of {projects} instead;'
        " or unset ADJUTANT_CONFIG"
    ]
    kept = "\n".join(line for n, line in enumerate(lines, 1) if n not in (project_line, script_line)) + "\n"
    dotenv.write_text(kept)
    settings = Settings.from_env({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    assert settings.config is not None and settings.config.path == projects.resolve()
    assert [(r.project, r.channel) for r in settings.routes] == [("mnist", "general")]


def test_the_refusal_says_where_each_one_project_value_came_from(tmp_path: Path, script: Path) -> None:
    """From the environment, from .env (each line that sets it, blank ones aside), from both (the environment
    wins over the file: both must go), or from a keyword argument."""
    from adjutant.settings import env_file_sources

    text = "WANDB_PROJECT=mnist\nADJUTANT_CHANNEL=\nADJUTANT_CHANNEL=lab\nADJUTANT_CHANNEL=ml\nexport X=1\n"
    sources = env_file_sources(text, "/srv/bot/.env", already_set={"WANDB_PROJECT"})
    assert sources == {
        "WANDB_PROJECT": "the environment, and line 1 of /srv/bot/.env",
        "ADJUTANT_CHANNEL": "lines 3 and 4 of /srv/bot/.env",
        "X": "line 5 of /srv/bot/.env",
    }
    projects = tmp_path / "projects.toml"
    projects.write_text('[[projects]]\nproject = "vision"\nchannel = "vision-runs"\n')
    env = {"ADJUTANT_CONFIG": str(projects), "WANDB_PROJECT": "mnist", "ADJUTANT_CHANNEL": "ml"}
    env["ADJUTANT_EXPERIMENT_SCRIPT"] = str(script)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env, sources=sources)
    (problem,) = refused.value.problems
    assert "Remove WANDB_PROJECT=mnist (from the environment, and line 1 of /srv/bot/.env)," in problem
    assert "ADJUTANT_CHANNEL=ml (from lines 3 and 4 of /srv/bot/.env)" in problem
    assert f"ADJUTANT_EXPERIMENT_SCRIPT={script} (from the environment)" in problem
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({}, config=projects, channel=1234)
    assert refused.value.problems == [
        "ADJUTANT_CONFIG and ADJUTANT_CHANNEL are both set: the projects file replaces the one-project variables."
        f" Remove the keyword argument channel=1234, and write channel = 1234 in a [[projects]] table of {projects}"
        " instead; or unset ADJUTANT_CONFIG"
    ]


def test_every_setting_is_a_dataclass_field_with_a_declaration() -> None:
    from dataclasses import fields

    assert [f.name for f in fields(Settings)] == [s.keyword for s in SETTINGS]
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    for spec in SETTINGS:
        assert spec.help and spec.group and spec.default_text, spec


# One typed value per setting, as a program would pass it (no text round trip), and what it reads back as.
def typed_values(tmp_path: Path, script: Path) -> dict[str, object]:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object"}')
    return {
        "token": Secret(TOKEN),
        "channel": 1234,
        "prefix": "!",
        "command_group": "adj",
        "guild_ids": (99,),
        "leave_unknown_guilds": True,
        "launch_roles": ["ml-team"],
        "launch_users": [5, 6],
        "job_threads": False,
        "entity": "team",
        "project": "mnist",
        "poll_seconds": 15,
        "metric": "val_loss",
        "metric_goal": "max",
        "stall_minutes": 0.2,
        "history_polls": 3,
        "nan_alerts": False,
        "gpu_idle_minutes": 10.0,
        "gpu_idle_percent": 3.0,
        "alert_policy": {"gpu-idle": 30.0, "nonfinite": 0.0, "rule": None},
        "log_alerts": ("OOM", r"loss=nan"),
        "notify": {"finished"},
        "wandb_timeout": 9,
        "digest": "weekly mon 09:30",
        "timezone": "Europe/Paris",
        "run_experiment_script": script,
        "state_dir": tmp_path / "state",
        "max_concurrent": 4,
        "time_limit": 90.0,
        "cancel_grace_seconds": 2.5,
        "gpus": (0, 1, 2, 3),
        "gpus_per_job": 2,
        "gpu_busy_mb": 2048,
        "gpu_hours_per_week": 40.0,
        "approver_roles": ("leads",),
        "approval_gpus": 2,
        "approval_jobs": 8,
        "approval_hours": 2.5,
        "request_roles": ("students",),
        "max_sweep": 3,
        "retries": 2,
        "canary_steps": 50,
        "canary_minutes": 2.5,
        "retry_on_exit": (137, 143),
        "priority_roles": {"high": ("Admin", "ml-leads")},
        "preempt_low": True,
        "preempt_signal": "USR2",
        "preempt_grace_seconds": 5.0,
        "slurm_priority_args": {"high": "--qos=high"},
        "fair_share": True,
        "hparams_schema": schema,
        "launcher": "slurm",
        "job_env": ("HF_HOME", "WANDB_API_KEY"),
        "slurm_partition": "gpu",
        "slurm_time": "1:00:00",
        "slurm_gres": "gpu:2",
        "slurm_args": "--mem=1G",
        "slurm_timeout": 7,
        "ray_address": "http://10.0.0.5:8265",
        "ray_num_gpus": 1.0,
        "ray_num_cpus": 4.0,
        "ray_runtime_env": {"pip": ["torch"]},
        "ray_timeout": 9.0,
        "container_runtime": "docker",
        "container_image": "localhost/mnist:3",
        "container_mounts": "/data:/data:ro",
        "container_memory": "16g",
        "container_cpus": 2.0,
        "container_network": "none",
        "container_args": "--runtime runc",
    }


def test_every_setting_by_keyword_with_a_typed_value(tmp_path: Path, script: Path) -> None:
    # imported here: loading the extension elsewhere in the run makes discord.py re-import adjutant's modules
    from adjutant.digest import parse_schedule

    values = typed_values(tmp_path, script)
    # config (a projects file) replaces project, channel and script: it has its own tests (test_projects.py)
    assert set(values) | {"config"} == Settings.keywords(), "add the new setting to typed_values()"
    s = Settings.from_env({}, **values)
    expected = {
        **values,
        "launch_roles": ("ml-team",),
        "launch_users": (5, 6),
        "notify": frozenset({"finished"}),
        "run_experiment_script": script.resolve(),
        "hparams_schema": (tmp_path / "schema.json").resolve(),
        "digest": parse_schedule("weekly mon 09:30"),
    }
    for keyword, value in expected.items():
        assert getattr(s, keyword) == value, keyword


def test_every_setting_by_variable(tmp_path: Path, script: Path) -> None:
    """Each variable, set alone, changes exactly its own setting away from the default."""
    texts = {
        "DISCORD_TOKEN": TOKEN,
        "ADJUTANT_CONFIG": str(tmp_path / "projects.toml"),
        "ADJUTANT_CHANNEL": "1234",
        "ADJUTANT_PREFIX": "!",
        "ADJUTANT_COMMAND_GROUP": "adj",
        "ADJUTANT_GUILD_ID": "99",
        "ADJUTANT_LEAVE_UNKNOWN_GUILDS": "on",
        "ADJUTANT_LAUNCH_ROLES": "ml-team",
        "ADJUTANT_LAUNCH_USERS": "5",
        "ADJUTANT_JOB_THREADS": "off",
        "WANDB_ENTITY": "team",
        "WANDB_PROJECT": "mnist",
        "ADJUTANT_POLL_SECONDS": "15",
        "ADJUTANT_METRIC": "val_loss",
        "ADJUTANT_METRIC_GOAL": "max",
        "ADJUTANT_STALL_MINUTES": "0.2",
        "ADJUTANT_HISTORY_POLLS": "3",
        "ADJUTANT_NAN_ALERTS": "off",
        "ADJUTANT_GPU_IDLE_MINUTES": "10",
        "ADJUTANT_GPU_IDLE_PERCENT": "3",
        "ADJUTANT_ALERT_POLICY": "gpu-idle=stop after 30",
        "ADJUTANT_LOG_ALERTS": "OOM,loss=nan",
        "ADJUTANT_NOTIFY": "finished",
        "ADJUTANT_WANDB_TIMEOUT": "9",
        "ADJUTANT_DIGEST": "weekly mon 09:30",
        "ADJUTANT_TIMEZONE": "Europe/Paris",
        "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
        "ADJUTANT_STATE_DIR": str(tmp_path / "state"),
        "ADJUTANT_MAX_CONCURRENT": "4",
        "ADJUTANT_TIME_LIMIT": "90",
        "ADJUTANT_CANCEL_GRACE_SECONDS": "2.5",
        "ADJUTANT_GPUS": "0,1,2,3",
        "ADJUTANT_GPUS_PER_JOB": "2",
        "ADJUTANT_GPU_BUSY_MB": "2048",
        "ADJUTANT_GPU_HOURS_PER_WEEK": "40",
        "ADJUTANT_APPROVER_ROLES": "leads",
        "ADJUTANT_APPROVAL_GPUS": "2",
        "ADJUTANT_APPROVAL_JOBS": "8",
        "ADJUTANT_APPROVAL_HOURS": "2.5",
        "ADJUTANT_REQUEST_ROLES": "students",
        "ADJUTANT_MAX_SWEEP": "3",
        "ADJUTANT_RETRIES": "2",
        "ADJUTANT_CANARY_STEPS": "50",
        "ADJUTANT_CANARY_MINUTES": "2.5",
        "ADJUTANT_RETRY_ON_EXIT": "137,143",
        "ADJUTANT_PRIORITY_ROLES": "high=Admin,ml-leads",
        "ADJUTANT_PREEMPT_LOW": "on",
        "ADJUTANT_PREEMPT_SIGNAL": "SIGUSR2",
        "ADJUTANT_PREEMPT_GRACE_SECONDS": "5",
        "ADJUTANT_SLURM_PRIORITY_ARGS": "high=--qos=high;low=--nice=100",
        "ADJUTANT_FAIR_SHARE": "on",
        "ADJUTANT_HPARAMS_SCHEMA": str(tmp_path / "schema.json"),
        "ADJUTANT_LAUNCHER": "slurm",
        "ADJUTANT_JOB_ENV": "HF_HOME,WANDB_API_KEY",
        "ADJUTANT_SLURM_PARTITION": "gpu",
        "ADJUTANT_SLURM_TIME": "1:00:00",
        "ADJUTANT_SLURM_GRES": "gpu:2",
        "ADJUTANT_SLURM_ARGS": "--mem=1G",
        "ADJUTANT_SLURM_TIMEOUT": "7",
        "ADJUTANT_RAY_ADDRESS": "http://10.0.0.5:8265",
        "ADJUTANT_RAY_NUM_GPUS": "1",
        "ADJUTANT_RAY_NUM_CPUS": "4",
        "ADJUTANT_RAY_RUNTIME_ENV": '{"pip": ["torch"]}',
        "ADJUTANT_RAY_TIMEOUT": "9",
        "ADJUTANT_CONTAINER_RUNTIME": "docker",
        "ADJUTANT_CONTAINER_IMAGE": "localhost/mnist:3",
        "ADJUTANT_CONTAINER_MOUNTS": "/data:/data:ro",
        "ADJUTANT_CONTAINER_MEMORY": "16g",
        "ADJUTANT_CONTAINER_CPUS": "2",
        "ADJUTANT_CONTAINER_NETWORK": "none",
        "ADJUTANT_CONTAINER_ARGS": "--runtime runc",
    }
    (tmp_path / "schema.json").write_text('{"type": "object"}')
    (tmp_path / "projects.toml").write_text('[[projects]]\nproject = "vision"\nchannel = "vision-runs"\n')
    assert set(texts) == {s.env for s in SETTINGS}, "add the new variable to this test"
    default = Settings.from_env({})
    for spec in SETTINGS:
        s = Settings.from_env({spec.env: texts[spec.env]})
        changed = [k for k in Settings.keywords() if getattr(s, k) != getattr(default, k)]
        assert changed == [spec.keyword], (spec.env, changed)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"max_concurrent": "x"}, "ADJUTANT_MAX_CONCURRENT must be a whole number"),
        ({"max_concurrent": 2.5}, "ADJUTANT_MAX_CONCURRENT must be a whole number"),
        ({"max_concurrent": 0}, "ADJUTANT_MAX_CONCURRENT must be between 1 and 64"),
        ({"job_threads": "maybe"}, "ADJUTANT_JOB_THREADS must be on or off"),
        ({"job_threads": 1}, "ADJUTANT_JOB_THREADS must be True or False"),
        ({"poll_seconds": True}, "ADJUTANT_POLL_SECONDS must be a number"),
        ({"launch_users": ["alice"]}, "ADJUTANT_LAUNCH_USERS must be comma-separated numeric"),
        ({"notify": 3}, "ADJUTANT_NOTIFY must be a list of run events"),
        ({"command_group": "Two Words"}, "ADJUTANT_COMMAND_GROUP must be a command name"),
    ],
)
def test_bad_typed_keywords_name_the_setting(keywords: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({}, **keywords)


def test_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"ADJUTANT_POLL_SECONDS": "x", "ADJUTANT_METRIC_GOAL": "up", "ADJUTANT_MAX_SWEEP": "0"})
    assert len(info.value.problems) == 3
    settings, problems = Settings.from_env_checked({"ADJUTANT_POLL_SECONDS": "x", "ADJUTANT_METRIC": "acc"})
    assert settings.metric == "acc" and settings.poll_seconds == 60 and len(problems) == 1


def test_unknown_keyword_names_the_closest_setting() -> None:
    with pytest.raises(TypeError, match="did you mean 'max_concurrent'"):
        Settings.from_env({}, max_concurent=3)


def test_log_alerts_from_a_file_none_or_bad_patterns(tmp_path: Path) -> None:
    patterns = tmp_path / "patterns.txt"
    patterns.write_text("# one per line\nCUDA out of memory\nloss=nan{1,3}\n\n")
    assert Settings.from_env({"ADJUTANT_LOG_ALERTS": str(patterns)}).log_alerts == (
        "CUDA out of memory",
        "loss=nan{1,3}",
    )
    assert Settings.from_env({"ADJUTANT_LOG_ALERTS": "none"}).log_alerts == ()
    assert "Traceback" in " ".join(Settings.from_env({}).log_alerts)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ADJUTANT_LOG_ALERTS": "ok,broken(", "ADJUTANT_GPU_IDLE_PERCENT": "150"})
    text = " ".join(caught.value.problems)
    assert "'broken(' is not a regular expression" in text and "ADJUTANT_GPU_IDLE_PERCENT" in text


@pytest.mark.parametrize(
    ("text", "policies"),
    [
        ("gpu-idle=stop after 30", {"gpu-idle": 30.0}),
        (
            "GPU idle = stop after 1.5 min; NaN=stop, no-progress=notify",
            {"gpu-idle": 1.5, "nonfinite": 0.0, "no-progress": None},
        ),
        ("rule=stop after 10 minutes, stalled=stop", {"rule": 10.0, "stalled": 0.0}),
        ("", {}),
    ],
)
def test_alert_policy(text: str, policies: dict) -> None:
    assert Settings.from_env({"ADJUTANT_ALERT_POLICY": text}).alert_policy == policies


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("gpu-idle=halt", "not a policy"),
        ("gpu-idle=stop after ٣", "not a policy"),
        ("gpu-idle=stop after -1", "not a policy"),
        ("loss=stop", "the kind one of gpu-idle"),
        ("gpu-idle", "give <kind>=<policy>"),
    ],
)
def test_alert_policy_refused(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match="ADJUTANT_ALERT_POLICY") as caught:
        Settings.from_env({"ADJUTANT_ALERT_POLICY": text})
    assert words in str(caught.value)
