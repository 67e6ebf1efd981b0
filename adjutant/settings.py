"""Adjutant's configuration: one frozen dataclass, parsed from a mapping by pure functions.

Nothing here reads the process environment by itself: callers pass ``os.environ`` (or a dict in
tests) to :meth:`Settings.from_env` when ``setup()`` or ``main()`` runs, never at import.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

__all__ = ["ENV_VARS", "ConfigError", "EnvVar", "Secret", "Settings"]


class ConfigError(ValueError):
    """A configuration value is missing or wrong. The message names the variable and the fix."""


class Secret:
    """A string that never shows itself in ``repr``/``str``/logs. Use :meth:`reveal` to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself (for the one place that needs it)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class EnvVar:
    """Documentation of one environment variable (used by ``--help``, README and tests)."""

    name: str
    keyword: str | None
    meaning: str
    default: str


#: Run lifecycle events Adjutant can announce (ADJUTANT_NOTIFY).
RUN_EVENTS = ("started", "finished", "crashed", "failed", "killed", "stalled", "resumed")

ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "DISCORD_TOKEN",
        None,
        "Discord bot token (standalone only; Adjutant.run(token) otherwise)",
        "required",
    ),
    EnvVar("WANDB_ENTITY", "entity", "W&B entity (user or team) whose project is reported on", "unset"),
    EnvVar("WANDB_PROJECT", "project", "W&B project to report on; unset disables run reporting", "unset"),
    EnvVar("WANDB_API_KEY", None, "W&B API key, read by wandb itself", "wandb's (~/.netrc)"),
    EnvVar("WANDB_BASE_URL", None, "W&B server, read by wandb itself (self-hosted W&B)", "https://api.wandb.ai"),
    EnvVar(
        "ADJUTANT_CHANNEL",
        "channel",
        "channel name or numeric id where Adjutant announces and listens",
        "general",
    ),
    EnvVar(
        "ADJUTANT_EXPERIMENT_SCRIPT",
        "run_experiment_script",
        "executable run with the hyperparameters JSON as its one argument",
        "unset (launching disabled)",
    ),
    EnvVar(
        "ADJUTANT_STATE_DIR",
        "state_dir",
        "folder for Adjutant's SQLite database and job logs",
        "per-user data dir",
    ),
    EnvVar("ADJUTANT_POLL_SECONDS", "poll_seconds", "W&B poll interval in seconds", "60"),
    EnvVar(
        "ADJUTANT_LAUNCH_ROLES",
        "launch_roles",
        "comma-separated role names or ids allowed to launch and cancel",
        "unset (admins, Manage Server, owner)",
    ),
    EnvVar(
        "ADJUTANT_LAUNCH_USERS",
        "launch_users",
        "comma-separated user ids allowed to launch and cancel",
        "unset (admins, Manage Server, owner)",
    ),
    EnvVar("ADJUTANT_METRIC", "metric", "summary metric that ranks runs", "loss"),
    EnvVar("ADJUTANT_METRIC_GOAL", "metric_goal", "`min` or `max`: which end of ADJUTANT_METRIC is best", "min"),
    EnvVar("ADJUTANT_PREFIX", "prefix", "command prefix", "$"),
    EnvVar(
        "ADJUTANT_STALL_MINUTES",
        "stall_minutes",
        "a running run whose last heartbeat is older than this is announced as stalled",
        "30",
    ),
    EnvVar(
        "ADJUTANT_NOTIFY",
        "notify",
        "comma-separated run events to announce: " + ", ".join(RUN_EVENTS) + " (or `all`, or `none`)",
        "all",
    ),
    EnvVar(
        "ADJUTANT_WANDB_TIMEOUT", "wandb_timeout", "seconds one W&B request may take before it counts as failed", "20"
    ),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_state_dir() -> Path:
    """The per-user data folder used when ADJUTANT_STATE_DIR is unset."""
    return Path(platformdirs.user_data_dir("adjutant", appauthor=False))


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def parse_positive_float(name: str, raw: str, *, minimum: float = 1.0) -> float:
    """Parse a number of seconds (or similar) that must be at least ``minimum``."""
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, e.g. {name}=60 (got {raw!r})") from None
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number of at least {minimum:g} (got {raw!r})")
    return value


def parse_bool(name: str, raw: str) -> bool:
    """on/off, true/false, yes/no, 1/0."""
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be on or off (got {raw!r})")


def parse_count(name: str, raw: str, *, maximum: int) -> int:
    """A whole number from 1 to ``maximum``."""
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, e.g. {name}=1 (got {raw!r})") from None
    if not 1 <= value <= maximum:
        raise ConfigError(f"{name} must be between 1 and {maximum} (got {raw!r})")
    return value


def check_schema_file(raw: str) -> Path:
    """ADJUTANT_HPARAMS_SCHEMA must name a readable file holding a valid JSON Schema."""
    import json

    path = Path(raw).expanduser()
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"ADJUTANT_HPARAMS_SCHEMA {raw!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"ADJUTANT_HPARAMS_SCHEMA {raw!r} cannot be read: {error}") from None
    except ValueError as error:
        raise ConfigError(f"ADJUTANT_HPARAMS_SCHEMA {raw!r} is not valid JSON: {error}") from None
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        raise ConfigError(f"ADJUTANT_HPARAMS_SCHEMA {raw!r} is not a valid JSON Schema: {error.message}") from None
    return path.resolve()


def parse_channel(raw: str) -> str | int:
    """A channel is a numeric id or a name; ``#general`` is accepted and means ``general``."""
    raw = raw.strip()
    if raw.startswith("<#") and raw.endswith(">") and raw[2:-1].isdigit():
        return int(raw[2:-1])
    if raw.isdigit():
        return int(raw)
    name = raw.lstrip("#").strip()
    if not name or any(c.isspace() for c in name):
        raise ConfigError(
            f"ADJUTANT_CHANNEL must be a channel name like 'general' or a numeric channel id (got {raw!r})"
        )
    return name


def parse_list(raw: str) -> tuple[str, ...]:
    """Split a comma-separated list, dropping blanks."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_user_ids(name: str, raw: str) -> tuple[int, ...]:
    """Comma-separated Discord user ids (snowflakes)."""
    ids = []
    for part in parse_list(raw):
        cleaned = part.removeprefix("<@").removeprefix("!").removesuffix(">")
        if not cleaned.isdigit():
            raise ConfigError(
                f"{name} must be comma-separated numeric Discord user ids (got {part!r}); "
                "enable Developer Mode in Discord and use 'Copy User ID'"
            )
        ids.append(int(cleaned))
    return tuple(ids)


def parse_goal(raw: str) -> Literal["min", "max"]:
    """``min`` or ``max`` (case-insensitive)."""
    goal = raw.strip().lower()
    if goal in ("min", "minimize", "minimise"):
        return "min"
    if goal in ("max", "maximize", "maximise"):
        return "max"
    raise ConfigError(f"ADJUTANT_METRIC_GOAL must be 'min' or 'max' (got {raw!r})")


def parse_events(raw: str) -> frozenset[str]:
    """ADJUTANT_NOTIFY: run events to announce, ``all`` or ``none``."""
    words = {w.lower() for w in parse_list(raw)}
    if words == {"all"}:
        return frozenset(RUN_EVENTS)
    if words == {"none"}:
        return frozenset()
    unknown = sorted(words - set(RUN_EVENTS))
    if unknown:
        raise ConfigError(
            f"ADJUTANT_NOTIFY has unknown event(s) {', '.join(unknown)}; use any of {', '.join(RUN_EVENTS)}, "
            "or all, or none"
        )
    return frozenset(words)


def check_script(raw: str) -> Path:
    """The experiment script must exist, be a file, and be executable by this user."""
    path = Path(raw).expanduser()
    if not path.exists():
        raise ConfigError(
            f"ADJUTANT_EXPERIMENT_SCRIPT points to {str(path)!r}, which does not exist; "
            "give the path of your run_experiment script"
        )
    if not path.is_file():
        raise ConfigError(f"ADJUTANT_EXPERIMENT_SCRIPT points to {str(path)!r}, which is not a file")
    if not os.access(path, os.X_OK):
        raise ConfigError(
            f"ADJUTANT_EXPERIMENT_SCRIPT {str(path)!r} is not executable; run: chmod +x {path} "
            "(and give it a shebang line such as #!/usr/bin/env bash)"
        )
    return path.resolve()


@dataclass(frozen=True)
class Settings:
    """Everything Adjutant needs to know, validated. Build it with :meth:`from_env`."""

    token: Secret | None = field(default=None, repr=False)
    entity: str | None = None
    project: str | None = None
    channel: str | int = "general"
    run_experiment_script: Path | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    poll_seconds: float = 60.0
    launch_roles: tuple[str, ...] = ()
    launch_users: tuple[int, ...] = ()
    metric: str = "loss"
    metric_goal: Literal["min", "max"] = "min"
    prefix: str = "$"
    stall_minutes: float = 30.0
    notify: frozenset[str] = frozenset(RUN_EVENTS)
    wandb_timeout: float = 20.0
    max_concurrent: int = 1
    cancel_grace_seconds: float = 30.0
    hparams_schema: Path | None = None
    max_sweep: int = 16
    job_threads: bool = True
    launcher: Literal["local", "slurm"] = "local"
    guild_id: int | None = None
    slurm_partition: str | None = None
    slurm_time: str | None = None
    slurm_gres: str | None = None
    slurm_args: str | None = None
    slurm_timeout: float = 30.0

    @property
    def reporting_enabled(self) -> bool:
        """Run reporting needs a W&B project (the entity may come from the W&B key's default)."""
        return self.project is not None

    @property
    def launching_enabled(self) -> bool:
        """Launching needs an experiment script."""
        return self.run_experiment_script is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Parse and validate settings from ``env``; keyword ``overrides`` win over the environment.

        Each keyword is the twin of one variable (``channel`` of ADJUTANT_CHANNEL, ...); lists may be
        given as lists. Raises :class:`ConfigError` with a message naming the variable and the fix.
        """
        merged = dict(env)
        for keyword, value in overrides.items():
            if keyword not in _KEYWORD_TO_VAR:
                raise TypeError(f"unknown Adjutant setting {keyword!r}; known: {', '.join(sorted(_KEYWORD_TO_VAR))}")
            if value is not None:
                merged[_KEYWORD_TO_VAR[keyword]] = _as_env_string(value)

        def get(var: str) -> str | None:
            return _clean(merged.get(var))

        values: dict[str, Any] = {}
        if (token := get("DISCORD_TOKEN")) is not None:
            values["token"] = Secret(token)
        for var, key in (("WANDB_ENTITY", "entity"), ("WANDB_PROJECT", "project")):
            if (value := get(var)) is not None:
                if "/" in value or any(c.isspace() for c in value):
                    raise ConfigError(f"{var} must be a single name without '/' or spaces (got {value!r})")
                values[key] = value
        if (value := get("ADJUTANT_CHANNEL")) is not None:
            values["channel"] = parse_channel(value)
        if (value := get("ADJUTANT_EXPERIMENT_SCRIPT")) is not None:
            values["run_experiment_script"] = check_script(value)
        if (value := get("ADJUTANT_STATE_DIR")) is not None:
            path = Path(value).expanduser()
            if path.exists() and not path.is_dir():
                raise ConfigError(f"ADJUTANT_STATE_DIR {value!r} exists and is not a folder; name a folder")
            values["state_dir"] = path
        if (value := get("ADJUTANT_POLL_SECONDS")) is not None:
            values["poll_seconds"] = parse_positive_float("ADJUTANT_POLL_SECONDS", value)
        if (value := get("ADJUTANT_LAUNCH_ROLES")) is not None:
            values["launch_roles"] = parse_list(value)
        if (value := get("ADJUTANT_LAUNCH_USERS")) is not None:
            values["launch_users"] = parse_user_ids("ADJUTANT_LAUNCH_USERS", value)
        if (value := get("ADJUTANT_METRIC")) is not None:
            values["metric"] = value
        if (value := get("ADJUTANT_METRIC_GOAL")) is not None:
            values["metric_goal"] = parse_goal(value)
        if (prefix := merged.get("ADJUTANT_PREFIX")) is not None and prefix != "":
            if prefix != prefix.strip() or any(c.isspace() for c in prefix):
                raise ConfigError(f"ADJUTANT_PREFIX must not contain spaces, e.g. ADJUTANT_PREFIX=$ (got {prefix!r})")
            values["prefix"] = prefix
        if (value := get("ADJUTANT_STALL_MINUTES")) is not None:
            values["stall_minutes"] = parse_positive_float("ADJUTANT_STALL_MINUTES", value)
        if (value := get("ADJUTANT_NOTIFY")) is not None:
            values["notify"] = parse_events(value)
        if (value := get("ADJUTANT_WANDB_TIMEOUT")) is not None:
            values["wandb_timeout"] = parse_positive_float("ADJUTANT_WANDB_TIMEOUT", value)
        if (value := get("ADJUTANT_MAX_CONCURRENT")) is not None:
            values["max_concurrent"] = parse_count("ADJUTANT_MAX_CONCURRENT", value, maximum=64)
        if (value := get("ADJUTANT_CANCEL_GRACE_SECONDS")) is not None:
            values["cancel_grace_seconds"] = parse_positive_float("ADJUTANT_CANCEL_GRACE_SECONDS", value, minimum=0.1)
        if (value := get("ADJUTANT_HPARAMS_SCHEMA")) is not None:
            values["hparams_schema"] = check_schema_file(value)
        if (value := get("ADJUTANT_GUILD_ID")) is not None:
            if not value.isdigit():
                raise ConfigError(f"ADJUTANT_GUILD_ID must be a numeric server id (got {value!r})")
            values["guild_id"] = int(value)
        if (value := get("ADJUTANT_LAUNCHER")) is not None:
            if value.lower() not in ("local", "slurm"):
                raise ConfigError(f"ADJUTANT_LAUNCHER must be 'local' or 'slurm' (got {value!r})")
            values["launcher"] = value.lower()
        for var, key in (
            ("ADJUTANT_SLURM_PARTITION", "slurm_partition"),
            ("ADJUTANT_SLURM_TIME", "slurm_time"),
            ("ADJUTANT_SLURM_GRES", "slurm_gres"),
        ):
            if (value := get(var)) is not None:
                if any(c.isspace() for c in value):
                    raise ConfigError(f"{var} must be one value without spaces (got {value!r})")
                values[key] = value
        if (value := get("ADJUTANT_SLURM_ARGS")) is not None:
            try:
                shlex.split(value)
            except ValueError as error:
                raise ConfigError(f"ADJUTANT_SLURM_ARGS cannot be split like a shell line: {error}") from None
            values["slurm_args"] = value
        if (value := get("ADJUTANT_SLURM_TIMEOUT")) is not None:
            values["slurm_timeout"] = parse_positive_float("ADJUTANT_SLURM_TIMEOUT", value)
        if (value := get("ADJUTANT_JOB_THREADS")) is not None:
            values["job_threads"] = parse_bool("ADJUTANT_JOB_THREADS", value)
        if (value := get("ADJUTANT_MAX_SWEEP")) is not None:
            values["max_sweep"] = parse_count("ADJUTANT_MAX_SWEEP", value, maximum=1000)
        return cls(**values)

    def problems(self, env: Mapping[str, str], *, netrc_path: Path | None = None) -> list[str]:
        """What a standalone start would miss (``--check``). Empty when all is well."""
        found = []
        if self.token is None:
            found.append("DISCORD_TOKEN is not set: copy your bot token from the Discord Developer Portal (Bot tab)")
        if self.reporting_enabled and not _wandb_key_present(env, netrc_path):
            found.append(
                "W&B credentials are missing: set WANDB_API_KEY (https://wandb.ai/authorize) or run `wandb login`"
            )
        return found


_KEYWORD_TO_VAR = {"token": "DISCORD_TOKEN"} | {v.keyword: v.name for v in ENV_VARS if v.keyword}


def _as_env_string(value: Any) -> str:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value)
    return str(value)


def _wandb_key_present(env: Mapping[str, str], netrc_path: Path | None) -> bool:
    if _clean(env.get("WANDB_API_KEY")):
        return True
    import netrc

    path = netrc_path or Path(env.get("NETRC", "~/.netrc")).expanduser()
    try:
        entries = netrc.netrc(str(path)).hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    base = env.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = base.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host in entries
