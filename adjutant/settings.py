"""Adjutant's configuration: one frozen dataclass, parsed from a mapping by pure functions.

Nothing here reads the process environment by itself: callers pass ``os.environ`` (or a dict in
tests) to :meth:`Settings.from_env` when ``setup()`` or ``main()`` runs, never at import.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from adjutant.alerts import DEFAULT_LOG_PATTERNS, parse_policies
from adjutant.projects import ProjectRoute, ProjectsFile, ProjectsFileError, load_projects_file, routes_from

__all__ = [
    "SETTINGS",
    "WANDB_VARIABLES",
    "ConfigError",
    "Secret",
    "SettingSpec",
    "Settings",
    "env_example",
    "env_file_sources",
    "settings_table",
    "variables_help",
]


class ConfigError(ValueError):
    """Configuration values are missing or wrong. Each problem names the variable and the fix."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems: list[str] = list(problems)


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


#: Run lifecycle events Adjutant can announce (ADJUTANT_NOTIFY).
RUN_EVENTS = ("started", "finished", "crashed", "failed", "killed", "stalled", "resumed", "preempted")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_state_dir() -> Path:
    """The per-user data folder used when ADJUTANT_STATE_DIR is unset."""
    import platformdirs  # only when no state folder is set (8 ms at every start otherwise)

    return Path(platformdirs.user_data_dir("adjutant", appauthor=False))


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def parse_bool(name: str, raw: str) -> bool:
    """on/off, true/false, yes/no, 1/0."""
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be on or off (got {raw!r})")


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
    if raw.startswith("<#") and raw.endswith(">") and raw[2:-1].isdecimal() and raw[2:-1].isascii():
        return int(raw[2:-1])
    if raw.isdecimal() and raw.isascii():
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
        if not (cleaned.isdecimal() and cleaned.isascii()):
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


# --- parsers: text (environment, .env) and typed keyword values go through the same checks ------------


class Parser:
    """Turns a setting's text (from the environment) or typed keyword value into its value, or refuses."""

    #: Leading and trailing blanks are dropped before parsing (the prefix keeps them, to refuse them).
    strip = True

    def from_text(self, name: str, raw: str) -> Any:
        raise NotImplementedError

    def from_value(self, name: str, value: Any) -> Any:
        """A keyword's value: text goes through :meth:`from_text`; other types are checked by :meth:`check`."""
        if isinstance(value, str):
            return self.from_text(name, value)
        return self.check(name, value)

    def check(self, name: str, value: Any) -> Any:
        raise ConfigError(f"{name} must be given as text, not {type(value).__name__} ({value!r})")


class Text(Parser):
    def __init__(self, *, single_word: bool = False, name_only: bool = False) -> None:
        self.single_word = single_word
        self.name_only = name_only

    def from_text(self, name: str, raw: str) -> str:
        if self.name_only and ("/" in raw or any(c.isspace() for c in raw)):
            raise ConfigError(f"{name} must be a single name without '/' or spaces (got {raw!r})")
        if self.single_word and any(c.isspace() for c in raw):
            raise ConfigError(f"{name} must be one value without spaces (got {raw!r})")
        return raw


class Number(Parser):
    def __init__(self, *, minimum: float, maximum: float | None = None, whole: bool = False) -> None:
        self.minimum, self.maximum, self.whole = minimum, maximum, whole

    def from_text(self, name: str, raw: str) -> float | int:
        try:
            value: float | int = int(raw) if self.whole else float(raw)
        except ValueError:
            kind = "a whole number" if self.whole else "a number"
            raise ConfigError(f"{name} must be {kind}, e.g. {name}={self.minimum:g} (got {raw!r})") from None
        return self.check(name, value)

    def check(self, name: str, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float) or (self.whole and not isinstance(value, int)):
            kind = "a whole number" if self.whole else "a number"
            raise ConfigError(f"{name} must be {kind} (got {value!r})")
        if not value >= self.minimum or value == float("inf") or (self.maximum is not None and value > self.maximum):
            if self.maximum is not None:
                raise ConfigError(f"{name} must be between {self.minimum:g} and {self.maximum:g} (got {value!r})")
            raise ConfigError(f"{name} must be a finite number of at least {self.minimum:g} (got {value!r})")
        return int(value) if self.whole else float(value)


class Flag(Parser):
    def from_text(self, name: str, raw: str) -> bool:
        return parse_bool(name, raw)

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False (got {value!r})")
        return value


class Choice(Parser):
    def __init__(self, *options: str) -> None:
        self.options = options

    def from_text(self, name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in self.options:
            raise ConfigError(f"{name} must be {' or '.join(repr(o) for o in self.options)} (got {raw!r})")
        return value


class Names(Parser):
    """A comma-separated list (or a list/tuple of strings as a keyword)."""

    def from_text(self, name: str, raw: str) -> tuple[str, ...]:
        return parse_list(raw)

    def check(self, name: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple | set | frozenset) or not all(isinstance(v, str | int) for v in value):
            raise ConfigError(f"{name} must be a list of names (got {value!r})")
        return tuple(str(v).strip() for v in value if str(v).strip())


class UserIds(Parser):
    def from_text(self, name: str, raw: str) -> tuple[int, ...]:
        return parse_user_ids(name, raw)

    def check(self, name: str, value: Any) -> tuple[int, ...]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list | tuple | set | frozenset):
            raise ConfigError(f"{name} must be a list of Discord user ids (got {value!r})")
        return parse_user_ids(name, ",".join(str(v) for v in value))


class Snowflake(Parser):
    def from_text(self, name: str, raw: str) -> int:
        if not (raw.isdecimal() and raw.isascii()):
            raise ConfigError(f"{name} must be a numeric Discord id (got {raw!r})")
        return int(raw)

    def check(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a numeric Discord id (got {value!r})")
        return value


class Snowflakes(Parser):
    """One or more Discord ids, comma-separated (or a list of ints as a keyword)."""

    def from_text(self, name: str, raw: str) -> tuple[int, ...]:
        return tuple(Snowflake().from_text(name, part) for part in parse_list(raw))

    def check(self, name: str, value: Any) -> tuple[int, ...]:
        items = [value] if isinstance(value, int) else value
        if not isinstance(items, list | tuple | set | frozenset):
            raise ConfigError(f"{name} must be Discord ids (got {value!r})")
        return tuple(Snowflake().from_value(name, item) for item in items)


class Channel(Parser):
    def from_text(self, name: str, raw: str) -> str | int:
        return parse_channel(raw)

    def check(self, name: str, value: Any) -> int:
        return Snowflake().check(name, value)


class Goal(Parser):
    def from_text(self, name: str, raw: str) -> str:
        return parse_goal(raw)


class Events(Parser):
    def from_text(self, name: str, raw: str) -> frozenset[str]:
        return parse_events(raw)

    def check(self, name: str, value: Any) -> frozenset[str]:
        if not isinstance(value, list | tuple | set | frozenset):
            raise ConfigError(f"{name} must be a list of run events (got {value!r})")
        return parse_events(",".join(str(v) for v in value) or "none")


class PathParser(Parser):
    def __init__(self, check_path: Callable[[str], Path]) -> None:
        self.check_path = check_path

    def from_text(self, name: str, raw: str) -> Path:
        return self.check_path(raw)

    def check(self, name: str, value: Any) -> Path:
        if not isinstance(value, os.PathLike):
            raise ConfigError(f"{name} must be a path (got {value!r})")
        return self.check_path(os.fspath(value))


class TokenParser(Parser):
    def from_text(self, name: str, raw: str) -> Secret:
        return Secret(raw)

    def check(self, name: str, value: Any) -> Secret:
        if not isinstance(value, Secret):
            raise ConfigError(f"{name} must be text")
        return value


class Prefix(Parser):
    strip = False

    def from_text(self, name: str, raw: str) -> str:
        if raw != raw.strip() or any(c.isspace() for c in raw):
            raise ConfigError(f"{name} must not contain spaces, e.g. {name}=$ (got {raw!r})")
        return raw


class CommandName(Parser):
    def from_text(self, name: str, raw: str) -> str:
        value = raw.strip()
        if not re.fullmatch(r"[a-z0-9_-]{1,32}", value):
            raise ConfigError(
                f"{name} must be a command name of 1 to 32 lowercase letters, digits, - or _ (got {raw!r})"
            )
        return value


class ShellWords(Parser):
    def from_text(self, name: str, raw: str) -> str:
        try:
            shlex.split(raw)
        except ValueError as error:
            raise ConfigError(f"{name} cannot be split like a shell line: {error}") from None
        return raw


class LogPatterns(Parser):
    """Regular expressions: comma-separated, or the path of a file with one per line (``#`` comments), or
    ``none``."""

    def from_text(self, name: str, raw: str) -> tuple[str, ...]:
        value = raw.strip()
        if value.lower() in ("", "none", "off"):
            return ()
        path = Path(value).expanduser()
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeError) as error:
                raise ConfigError(f"{name}: cannot read {value!r}: {error}") from None
            patterns = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
        else:
            patterns = parse_list(value)
        return self.check(name, patterns)

    def check(self, name: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of regular expressions (got {value!r})")
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(f"{name}: {pattern!r} is not a regular expression ({error})") from None
        return tuple(value)


class ExitCodes(Parser):
    def from_text(self, name: str, raw: str) -> tuple[int, ...]:
        codes = []
        for word in parse_list(raw):
            try:
                codes.append(int(word))
            except ValueError:
                raise ConfigError(f"{name} must list exit codes, e.g. {name}=137,143 (got {word!r})") from None
        return self.check(name, tuple(codes))

    def check(self, name: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{name} must be a list of exit codes (got {value!r})")
        if any(not -255 <= v <= 255 for v in value):
            raise ConfigError(f"{name}: exit codes are between -255 and 255 (got {value!r})")
        return tuple(value)


class GpuIds(Parser):
    """ADJUTANT_GPUS: GPU ids (``0,1,2,3``) or ``auto`` (every GPU NVML sees, read when Adjutant starts)."""

    def from_text(self, name: str, raw: str) -> tuple[int, ...] | str:
        if raw.strip().lower() == "auto":
            return "auto"
        ids = []
        for word in parse_list(raw):
            if not word.isdigit():
                raise ConfigError(f"{name} must list GPU ids like {name}=0,1,2,3, or be auto (got {word!r})")
            ids.append(int(word))
        return self.check(name, tuple(ids))

    def check(self, name: str, value: Any) -> tuple[int, ...] | str:
        if value == "auto":
            return "auto"
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1024 for v in value
        ):
            raise ConfigError(f"{name} must be a list of GPU ids (whole numbers from 0) or 'auto' (got {value!r})")
        if not value:
            raise ConfigError(f"{name} lists no GPU; leave it unset for no GPU scheduling")
        if len(set(value)) != len(value):
            raise ConfigError(f"{name} lists a GPU twice (got {value!r})")
        return tuple(value)


#: The priority classes a launch may ask for (``--priority``), lowest first.
PRIORITY_CLASSES = ("low", "normal", "high")


class PriorityMap(Parser):
    """``high=Admin,ml-leads;low=...``: per priority class (``;``-separated), role names or ids (``words=False``:
    comma-separated), or one line of arguments (``words=True``: split like a shell line)."""

    def __init__(self, *, words: bool = False) -> None:
        self.words = words

    def from_text(self, name: str, raw: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for part in (p.strip() for p in raw.split(";")):
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq:
                raise ConfigError(f"{name} must be like {name}=high=Admin,ml-leads (got {part!r})")
            found[key.strip().lower()] = value.strip() if self.words else parse_list(value)
        return self.check(name, found)

    def check(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must map priority classes to values (got {value!r})")
        checked: dict[str, Any] = {}
        for key, item in value.items():
            if key not in PRIORITY_CLASSES:
                raise ConfigError(f"{name}: {key!r} is not a priority class (high, normal or low)")
            if self.words:
                if not isinstance(item, str):
                    raise ConfigError(f"{name}: the arguments of {key} must be text (got {item!r})")
                try:
                    shlex.split(item)
                except ValueError as error:
                    raise ConfigError(f"{name}: {key}'s arguments cannot be split like a shell line: {error}") from None
                checked[key] = item
            else:
                checked[key] = Names().from_value(name, item)
        return checked


class SignalName(Parser):
    """A signal's name: ``USR1``, ``SIGUSR2``, ``TERM``, ``INT`` … (stored without ``SIG``, upper case)."""

    def from_text(self, name: str, raw: str) -> str:
        value = raw.strip().upper().removeprefix("SIG")
        if value in ("KILL", "STOP") or not hasattr(signal, f"SIG{value}"):
            raise ConfigError(f"{name} must name a signal a script can catch, e.g. USR1 or TERM (got {raw!r})")
        return value


def _policy_text(policy: Any) -> str:
    """A keyword's policy (text, minutes or None) as ADJUTANT_ALERT_POLICY writes it."""
    if isinstance(policy, str):
        return policy
    return "notify" if policy is None else f"stop after {policy}"


class AlertPolicies(Parser):
    """ADJUTANT_ALERT_POLICY: ``gpu-idle=stop after 30, nan=stop`` → {alert kind: minutes of grace (0: at once) or
    None (notify)}; a mapping of the same is accepted as a keyword's value."""

    def from_text(self, name: str, raw: str) -> dict[str, float | None]:
        try:
            return parse_policies(raw)
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None

    def check(self, name: str, value: Any) -> dict[str, float | None]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must map alert kinds to policies (got {value!r})")
        try:
            return parse_policies(", ".join(f"{kind}={_policy_text(policy)}" for kind, policy in value.items()))
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None


class DigestParser(Parser):
    """ADJUTANT_DIGEST: ``daily 09:00``, ``weekly mon 09:00`` or ``off``."""

    def from_text(self, name: str, raw: str) -> Any:
        from adjutant.digest import parse_schedule

        if raw.strip().lower() in ("off", "none", "no"):
            return None
        try:
            return parse_schedule(raw)
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None


class TimeZoneName(Parser):
    """ADJUTANT_TIMEZONE: an IANA zone name (Europe/Paris), checked against the zone database."""

    def from_text(self, name: str, raw: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(raw.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{name} must be a time zone name like Europe/Paris or UTC (got {raw!r})") from None
        return raw.strip()


class JsonObject(Parser):
    def from_text(self, name: str, raw: str) -> dict[str, Any]:
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise ConfigError(f'{name} must be a JSON object, e.g. {name}=\'{{"pip": ["torch"]}}\' ({error})') from None
        return self.check(name, value)

    def check(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a JSON object (got {type(value).__name__})")
        if "env_vars" in value and not isinstance(value["env_vars"], dict):
            raise ConfigError(f"{name}: env_vars must be an object of names to values")
        return dict(value)


class ProjectsFileParser(Parser):
    def from_text(self, name: str, raw: str) -> ProjectsFile:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ConfigError(f"{name}: no file {raw!r}; name the TOML file with the [[projects]] tables")
        try:
            return load_projects_file(path.resolve(), check_script)
        except ProjectsFileError as error:
            raise ConfigError(*str(error).splitlines()) from None

    def check(self, name: str, value: Any) -> ProjectsFile:
        if isinstance(value, ProjectsFile):
            return value
        if isinstance(value, os.PathLike):
            return self.from_text(name, os.fspath(value))
        raise ConfigError(f"{name} must be the path of a projects file (got {value!r})")


#: The variables that mean "one project" and so cannot be set together with ADJUTANT_CONFIG.
ONE_PROJECT_SHORTCUT = ("WANDB_PROJECT", "ADJUTANT_CHANNEL", "ADJUTANT_EXPERIMENT_SCRIPT")
#: Each one's keyword, and the key of a [[projects]] table that takes its place.
_SHORTCUT_KEYWORD = {"WANDB_PROJECT": "project", "ADJUTANT_CHANNEL": "channel"}
_SHORTCUT_KEYWORD["ADJUTANT_EXPERIMENT_SCRIPT"] = "run_experiment_script"
_SHORTCUT_TABLE_KEY = {"WANDB_PROJECT": "project", "ADJUTANT_CHANNEL": "channel"}
_SHORTCUT_TABLE_KEY["ADJUTANT_EXPERIMENT_SCRIPT"] = "experiment_script"


def env_file_sources(text: str, label: str, already_set: Collection[str]) -> dict[str, str]:
    """Where each variable that a .env file sets (``text``, shown as ``label``) comes from, for messages that say
    which line to remove: ``{"ADJUTANT_CHANNEL": "line 11 of /srv/adjutant/.env"}``. A variable the environment
    already held before the file was read (``already_set``: the environment wins) comes from both. Blank values
    (unset) are no source. Pure: ``__main__`` reads the file and passes the result to :meth:`Settings.from_env`."""
    import io

    from dotenv.parser import parse_stream

    lines: dict[str, list[int]] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.key and binding.value and binding.value.strip():
            lines.setdefault(binding.key, []).append(binding.original.line)
    sources = {}
    for key, numbers in lines.items():
        where = f"line {numbers[0]}" if len(numbers) == 1 else f"lines {_listed([str(n) for n in numbers])}"
        where = f"{where} of {label}"
        sources[key] = f"the environment, and {where}" if key in already_set else where
    return sources


def _one_project_conflict(
    env: Mapping[str, str], keywords: Mapping[str, Any], sources: Mapping[str, str]
) -> str | None:
    """The refusal of ADJUTANT_CONFIG together with one-project variables: each one set, with its value and where it
    was set (a .env line, the environment, a keyword), what to remove, and the table key that takes its place."""
    found = []  # (variable, the [[projects]] line that takes its place, what to remove)
    for name in ONE_PROJECT_SHORTCUT:
        keyword, table_key = _SHORTCUT_KEYWORD[name], _SHORTCUT_TABLE_KEY[name]
        given = keywords.get(keyword)
        if given is not None:
            value = given if isinstance(given, int) and not isinstance(given, bool) else json.dumps(str(given))
            found.append((name, f"{table_key} = {value}", f"the keyword argument {keyword}={given!r}"))
        elif (env.get(name) or "").strip():
            text = (env.get(name) or "").strip()
            where = sources.get(name, "the environment")
            found.append((name, f"{table_key} = {json.dumps(text)}", f"{name}={text} (from {where})"))
    if not found:
        return None
    config = keywords.get("config") or (env.get("ADJUTANT_CONFIG") or "").strip()
    config_path = config.path if isinstance(config, ProjectsFile) else config
    return (
        f"ADJUTANT_CONFIG and {', '.join(name for name, _, _ in found)} are both set: the projects file replaces the"
        f" one-project variables. Remove {_listed([what for _, _, what in found])}, and write"
        f" {_listed([line for _, line, _ in found])} in a [[projects]] table of {config_path} instead;"
        f" or unset ADJUTANT_CONFIG"
    )


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def check_state_dir(raw: str) -> Path:
    path = Path(raw).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"ADJUTANT_STATE_DIR {raw!r} exists and is not a folder; name a folder")
    return path


# --- the declarations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its keyword, environment variable, parser, default, help line and group."""

    keyword: str
    env: str
    parser: Parser
    help: str
    group: str
    default_text: str
    #: The value written in .env.example (the quickstart's choice), when it differs from the default.
    example: str


GROUPS = ("Discord", "W&B run reporting", "Launching", "GPUs and usage", "Slurm", "Ray", "Containers")


def setting(
    env: str,
    help: str,
    *,
    parser: Parser,
    group: str,
    default: Any = None,
    default_factory: Callable[[], Any] | None = None,
    default_text: str | None = None,
    example: str | None = None,
) -> Any:
    """Declare a setting: a dataclass field carrying its variable, parser, help line and group."""
    if default_text is None:
        default_text = "unset" if default is None else _as_text(default)
    spec = {"env": env, "parser": parser, "help": help, "group": group, "default_text": default_text}
    if example is None:
        example = "" if default is None or default == () else _as_text(default)
    spec["example"] = example
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"setting": spec})
    return field(default=default, metadata={"setting": spec}, repr=env != "DISCORD_TOKEN")


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple | frozenset | set | list):
        return ",".join(str(v) for v in value) or "unset"
    return str(value)


@dataclass(frozen=True)
class Settings:
    """Everything Adjutant needs to know, validated. Build it with :meth:`from_env`.

    Each field is declared once, with its environment variable, parser, help and group; ``--help``,
    ``.env.example``, the README's table and ``Adjutant(**keywords)`` come from these declarations.
    """

    token: Secret | None = setting(
        "DISCORD_TOKEN",
        "Discord bot token (Developer Portal → your application → Bot → Reset Token); keep it secret",
        parser=TokenParser(),
        group="Discord",
        default_text="required standalone",
    )
    config: ProjectsFile | None = setting(
        "ADJUTANT_CONFIG",
        "a TOML file with one [[projects]] table per W&B project and channel (see README); instead of"
        " WANDB_PROJECT, ADJUTANT_CHANNEL and ADJUTANT_EXPERIMENT_SCRIPT",
        parser=ProjectsFileParser(),
        group="Discord",
        default_text="unset (one project: the variables below)",
    )
    channel: str | int = setting(
        "ADJUTANT_CHANNEL",
        "channel name or numeric id where Adjutant announces and takes commands",
        parser=Channel(),
        group="Discord",
        default="general",
    )
    prefix: str = setting("ADJUTANT_PREFIX", "command prefix", parser=Prefix(), group="Discord", default="$")
    command_group: str | None = setting(
        "ADJUTANT_COMMAND_GROUP",
        "put every Adjutant command under this one command (e.g. adj: `$adj runs`, `/adj runs`), for host bots",
        parser=CommandName(),
        group="Discord",
        default_text="unset (top-level commands)",
    )
    guild_ids: tuple[int, ...] = setting(
        "ADJUTANT_GUILD_ID",
        "the Discord server id(s) Adjutant serves, comma-separated; required once the bot is in more than one "
        "server (commands, buttons, roles and channels count only there); --sync registers slash commands there",
        parser=Snowflakes(),
        group="Discord",
        default=(),
        default_text="unset (the one server the bot is in)",
    )
    leave_unknown_guilds: bool = setting(
        "ADJUTANT_LEAVE_UNKNOWN_GUILDS",
        "on: leave any server that is not one of ADJUTANT_GUILD_ID; off: ignore it (logged once)",
        parser=Flag(),
        group="Discord",
        default=False,
    )
    launch_roles: tuple[str, ...] = setting(
        "ADJUTANT_LAUNCH_ROLES",
        "comma-separated role names or ids allowed to launch and cancel",
        parser=Names(),
        group="Discord",
        default=(),
        default_text="unset (admins, Manage Server, owner)",
    )
    launch_users: tuple[int, ...] = setting(
        "ADJUTANT_LAUNCH_USERS",
        "comma-separated user ids allowed to launch and cancel",
        parser=UserIds(),
        group="Discord",
        default=(),
        default_text="unset (admins, Manage Server, owner)",
    )
    job_threads: bool = setting(
        "ADJUTANT_JOB_THREADS",
        "on: each job's story goes to a thread under its launch (where allowed); off: replies to the launch",
        parser=Flag(),
        group="Discord",
        default=True,
    )
    entity: str | None = setting(
        "WANDB_ENTITY",
        "W&B entity (user or team) whose project is reported on",
        parser=Text(name_only=True),
        group="W&B run reporting",
        default_text="the W&B key's default entity",
    )
    project: str | None = setting(
        "WANDB_PROJECT",
        "W&B project to report on; unset turns run reporting off",
        parser=Text(name_only=True),
        group="W&B run reporting",
    )
    poll_seconds: float = setting(
        "ADJUTANT_POLL_SECONDS",
        "seconds between two looks at W&B",
        parser=Number(minimum=1),
        group="W&B run reporting",
        default=60.0,
        example="10",
    )
    metric: str = setting(
        "ADJUTANT_METRIC",
        "summary metric that ranks runs",
        parser=Text(),
        group="W&B run reporting",
        default="loss",
        example="val_loss",
    )
    metric_goal: Literal["min", "max"] = setting(
        "ADJUTANT_METRIC_GOAL",
        "min or max: which end of ADJUTANT_METRIC is best",
        parser=Goal(),
        group="W&B run reporting",
        default="min",
    )
    stall_minutes: float = setting(
        "ADJUTANT_STALL_MINUTES",
        "a running run without a heartbeat, or whose step has not moved, for this many minutes (fractions "
        "allowed: 0.2 = 12 s) is announced as stalled",
        parser=Number(minimum=0.1),
        group="W&B run reporting",
        default=30.0,
    )
    notify: frozenset[str] = setting(
        "ADJUTANT_NOTIFY",
        "comma-separated run events to announce: " + ", ".join(RUN_EVENTS) + " (or all, or none)",
        parser=Events(),
        group="W&B run reporting",
        default_factory=lambda: frozenset(RUN_EVENTS),
        default_text="all",
        example="all",
    )
    nan_alerts: bool = setting(
        "ADJUTANT_NAN_ALERTS",
        "on: a running run whose summary holds NaN or ±Infinity in a metric is announced (once per run and metric)",
        parser=Flag(),
        group="W&B run reporting",
        default=True,
    )
    gpu_idle_minutes: float | None = setting(
        "ADJUTANT_GPU_IDLE_MINUTES",
        "a running run whose GPUs all report utilisation under ADJUTANT_GPU_IDLE_PERCENT for this many minutes"
        " is announced (once per episode; read from the poll's own answer); unset: off",
        parser=Number(minimum=0.1),
        group="W&B run reporting",
        default_text="unset (off)",
    )
    gpu_idle_percent: float = setting(
        "ADJUTANT_GPU_IDLE_PERCENT",
        "GPU utilisation (percent) under which a GPU counts as idle",
        parser=Number(minimum=0.1, maximum=100),
        group="W&B run reporting",
        default=5.0,
    )
    history_polls: int = setting(
        "ADJUTANT_HISTORY_POLLS",
        "a watch rule on history (avg, min, max, last, change, plateau, diverging) reads each matching running run's"
        " sampled history at most once per this many polls, and only when the run logged something since",
        parser=Number(minimum=1, maximum=1000, whole=True),
        group="W&B run reporting",
        default=6,
    )
    alert_policy: dict[str, float | None] = setting(
        "ADJUTANT_ALERT_POLICY",
        "what an alert about a job Adjutant launched does, per kind (gpu-idle, no-progress, nan, stalled, rule):"
        " notify, stop (cancel the job at once) or stop after <minutes> (its card says when and has Keep running),"
        " e.g. gpu-idle=stop after 30, nan=stop; a kind not listed only notifies",
        parser=AlertPolicies(),
        group="W&B run reporting",
        default_factory=dict,
        default_text="notify (every kind)",
    )
    digest: Any = setting(
        "ADJUTANT_DIGEST",
        "one summary per period in each project's channel: daily HH:MM or weekly mon HH:MM (in ADJUTANT_TIMEZONE);"
        " a period missed while the bot was down is posted when it is back, marked late",
        parser=DigestParser(),
        group="W&B run reporting",
        default_text="unset (no digest)",
    )
    timezone: str = setting(
        "ADJUTANT_TIMEZONE",
        "the time zone of ADJUTANT_DIGEST's time (e.g. Europe/Paris)",
        parser=TimeZoneName(),
        group="W&B run reporting",
        default="UTC",
    )
    wandb_timeout: float = setting(
        "ADJUTANT_WANDB_TIMEOUT",
        "seconds one W&B request may take before it counts as failed (then retried with back-off)",
        parser=Number(minimum=1),
        group="W&B run reporting",
        default=20.0,
    )
    run_experiment_script: Path | None = setting(
        "ADJUTANT_EXPERIMENT_SCRIPT",
        "executable run as `script '{json}'` for each $experiment; unset turns launching off",
        parser=PathParser(lambda raw: check_script(raw)),
        group="Launching",
        default_text="unset (launching off)",
    )
    state_dir: Path = setting(
        "ADJUTANT_STATE_DIR",
        "folder for Adjutant's SQLite database and job logs",
        parser=PathParser(check_state_dir),
        group="Launching",
        default_factory=lambda: default_state_dir(),
        default_text="a per-user data folder (~/.local/share/adjutant)",
        example="",
    )
    max_concurrent: int | None = setting(
        "ADJUTANT_MAX_CONCURRENT",
        "jobs that may run at once; more wait in a queue",
        parser=Number(minimum=1, maximum=64, whole=True),
        group="Launching",
        default_text="1; with ADJUTANT_GPUS, one per GPU",
        example="",
    )
    time_limit: float | None = setting(
        "ADJUTANT_TIME_LIMIT",
        "minutes a job may run before it is stopped (one job: $experiment --time 2h); with ADJUTANT_GPUS, a job"
        " with a limit may start ahead of a larger waiting job when it ends before that one could start",
        parser=Number(minimum=0.1),
        group="Launching",
        default_text="unset (no limit)",
    )
    cancel_grace_seconds: float = setting(
        "ADJUTANT_CANCEL_GRACE_SECONDS",
        "seconds between SIGTERM and SIGKILL when a job is cancelled",
        parser=Number(minimum=0.1),
        group="Launching",
        default=30.0,
    )
    log_alerts: tuple[str, ...] = setting(
        "ADJUTANT_LOG_ALERTS",
        "regular expressions (comma-separated, or a file with one per line, or none): a line of a job's log"
        " matching one is announced in the job's thread, once per job and pattern",
        parser=LogPatterns(),
        group="Launching",
        default=DEFAULT_LOG_PATTERNS,
        default_text="CUDA out of memory, NCCL.*[Tt]imeout, Traceback \\(most recent call last\\)",
        example="",
    )
    retries: int = setting(
        "ADJUTANT_RETRIES",
        "how many times a job lost by its backend (supervisor or node gone, Slurm NODE_FAIL or PREEMPTED) is"
        " submitted again, as a new attempt of the same job and W&B run",
        parser=Number(minimum=0, maximum=10, whole=True),
        group="Launching",
        default=1,
    )
    retry_on_exit: tuple[int, ...] = setting(
        "ADJUTANT_RETRY_ON_EXIT",
        "comma-separated exit codes after which a failed job is retried too (within ADJUTANT_RETRIES)",
        parser=ExitCodes(),
        group="Launching",
        default=(),
        default_text="unset (a script's own failure is not retried)",
    )
    canary_steps: int = setting(
        "ADJUTANT_CANARY_STEPS",
        "a $sweep runs one cell first (its canary) and starts the others once the canary's W&B run reaches this step"
        " (or ADJUTANT_CANARY_MINUTES pass, or it succeeds); 0: no canary ($sweep --no-canary for one sweep)",
        parser=Number(minimum=0, whole=True),
        group="Launching",
        default=10,
    )
    canary_minutes: float = setting(
        "ADJUTANT_CANARY_MINUTES",
        "minutes a sweep's canary must run without failing before the other cells start",
        parser=Number(minimum=0.01),
        group="Launching",
        default=5.0,
    )
    priority_roles: dict[str, tuple[str, ...]] = setting(
        "ADJUTANT_PRIORITY_ROLES",
        "who may launch with --priority high (or low, normal): per class, role names or ids, e.g."
        " high=Admin,ml-leads (classes separated by ;); a class not listed is open to everyone who may launch",
        parser=PriorityMap(),
        group="Launching",
        default_factory=dict,
        default_text="unset (every class open)",
    )
    preempt_low: bool = setting(
        "ADJUTANT_PREEMPT_LOW",
        "on: every --priority low job may be preempted, as if launched with --preemptible",
        parser=Flag(),
        group="Launching",
        default=False,
    )
    preempt_signal: str = setting(
        "ADJUTANT_PREEMPT_SIGNAL",
        "the signal a preempted local job's process group gets first (it should save a checkpoint and exit)",
        parser=SignalName(),
        group="Launching",
        default="USR1",
    )
    preempt_grace_seconds: float = setting(
        "ADJUTANT_PREEMPT_GRACE_SECONDS",
        "seconds a preempted local job has after ADJUTANT_PREEMPT_SIGNAL before SIGTERM (then"
        " ADJUTANT_CANCEL_GRACE_SECONDS before SIGKILL)",
        parser=Number(minimum=0.1),
        group="Launching",
        default=90.0,
    )
    max_sweep: int = setting(
        "ADJUTANT_MAX_SWEEP",
        "the most jobs one $sweep may queue",
        parser=Number(minimum=1, maximum=1000, whole=True),
        group="Launching",
        default=16,
    )
    hparams_schema: Path | None = setting(
        "ADJUTANT_HPARAMS_SCHEMA",
        "JSON Schema file the hyperparameters must match (its defaults are filled in)",
        parser=PathParser(lambda raw: check_schema_file(raw)),
        group="Launching",
    )
    launcher: Literal["local", "slurm", "ray", "container"] = setting(
        "ADJUTANT_LAUNCHER",
        "where jobs run: local (this machine), slurm (sbatch from this machine), ray (a Ray cluster's Jobs API) or"
        " container (a Podman or Docker container on this machine)",
        parser=Choice("local", "slurm", "ray", "container"),
        group="Launching",
        default="local",
    )
    job_env: tuple[str, ...] = setting(
        "ADJUTANT_JOB_ENV",
        "comma-separated names of more variables of the bot's environment that Slurm, Ray and container jobs get (e.g."
        " HF_HOME,WANDB_API_KEY); they get only their job ids, W&B run variables and these",
        parser=Names(),
        group="Launching",
        default=(),
        default_text="unset (none)",
    )
    slurm_partition: str | None = setting(
        "ADJUTANT_SLURM_PARTITION", "sbatch --partition", parser=Text(single_word=True), group="Slurm"
    )
    slurm_time: str | None = setting(
        "ADJUTANT_SLURM_TIME", "sbatch --time (e.g. 04:00:00)", parser=Text(single_word=True), group="Slurm"
    )
    slurm_gres: str | None = setting(
        "ADJUTANT_SLURM_GRES", "sbatch --gres (e.g. gpu:1)", parser=Text(single_word=True), group="Slurm"
    )
    slurm_args: str | None = setting(
        "ADJUTANT_SLURM_ARGS", "more sbatch arguments, split like a shell line", parser=ShellWords(), group="Slurm"
    )
    slurm_priority_args: dict[str, str] = setting(
        "ADJUTANT_SLURM_PRIORITY_ARGS",
        "more sbatch arguments per priority class, e.g. high=--qos=high;low=--nice=100 (Slurm orders and preempts"
        " by its own QOS; Adjutant never preempts Slurm jobs)",
        parser=PriorityMap(words=True),
        group="Slurm",
        default_factory=dict,
        default_text="unset (none)",
    )
    slurm_timeout: float = setting(
        "ADJUTANT_SLURM_TIMEOUT",
        "seconds one sbatch/squeue/scontrol/sacct/scancel may take before Slurm counts as unreachable",
        parser=Number(minimum=1),
        group="Slurm",
        default=30.0,
    )
    gpus: tuple[int, ...] | Literal["auto"] | None = setting(
        "ADJUTANT_GPUS",
        "the GPUs local jobs get (CUDA_VISIBLE_DEVICES), as ids (0,1,2,3) or auto (all that NVML sees: install"
        " adjutant-discord[gpu]); each job gets its own, and waits until enough are free",
        parser=GpuIds(),
        group="GPUs and usage",
        default_text="unset (jobs are counted, not GPUs)",
    )
    gpus_per_job: int | None = setting(
        "ADJUTANT_GPUS_PER_JOB",
        "GPUs a launch asks for unless it says --gpus N",
        parser=Number(minimum=0, maximum=64, whole=True),
        group="GPUs and usage",
        default_text="1 with ADJUTANT_GPUS, else 0",
    )
    gpu_busy_mb: int = setting(
        "ADJUTANT_GPU_BUSY_MB",
        "with ADJUTANT_GPUS=auto: a GPU on which processes outside Adjutant use more memory (MiB) counts as busy",
        parser=Number(minimum=1, whole=True),
        group="GPUs and usage",
        default=1024,
    )
    gpu_hours_per_week: float | None = setting(
        "ADJUTANT_GPU_HOURS_PER_WEEK",
        "each member's GPU-hours over the last 7 days: a warning at 80 %, launches refused at 100 %"
        " (Administrator and Manage Server are exempt)",
        parser=Number(minimum=0.01),
        group="GPUs and usage",
        default_text="unset (no quota)",
    )
    fair_share: bool = setting(
        "ADJUTANT_FAIR_SHARE",
        "on: among queued jobs of the same priority, the member who used fewer GPU-hours over the last 7 days goes"
        " first (with ADJUTANT_GPUS); off: arrival order",
        parser=Flag(),
        group="GPUs and usage",
        default=False,
    )
    approver_roles: tuple[str, ...] = setting(
        "ADJUTANT_APPROVER_ROLES",
        "comma-separated role names or ids whose members approve or reject launch requests (never their own)",
        parser=Names(),
        group="GPUs and usage",
        default=(),
        default_text="unset (Administrator, Manage Server)",
    )
    approval_gpus: int | None = setting(
        "ADJUTANT_APPROVAL_GPUS",
        "a job asking for more GPUs than this waits for an approver",
        parser=Number(minimum=0, whole=True),
        group="GPUs and usage",
        default_text="unset (no approval by GPUs)",
    )
    approval_jobs: int | None = setting(
        "ADJUTANT_APPROVAL_JOBS",
        "a $sweep with more cells than this waits for an approver",
        parser=Number(minimum=0, whole=True),
        group="GPUs and usage",
        default_text="unset (no approval by size)",
    )
    approval_hours: float = setting(
        "ADJUTANT_APPROVAL_HOURS",
        "a launch request no approver decided within this many hours expires (its card says so; nothing runs)",
        parser=Number(minimum=0.01, maximum=24 * 30),
        group="GPUs and usage",
        default=24.0,
    )
    request_roles: tuple[str, ...] = setting(
        "ADJUTANT_REQUEST_ROLES",
        "comma-separated role names or ids whose members may request launches; each request waits for an approver",
        parser=Names(),
        group="GPUs and usage",
        default=(),
    )
    ray_address: str = setting(
        "ADJUTANT_RAY_ADDRESS",
        "the Ray dashboard's address (its Jobs API), for ADJUTANT_LAUNCHER=ray",
        parser=Text(single_word=True),
        group="Ray",
        default="http://127.0.0.1:8265",
    )
    ray_num_gpus: float | None = setting(
        "ADJUTANT_RAY_NUM_GPUS", "GPUs reserved for each job's entrypoint", parser=Number(minimum=0), group="Ray"
    )
    ray_num_cpus: float | None = setting(
        "ADJUTANT_RAY_NUM_CPUS", "CPUs reserved for each job's entrypoint", parser=Number(minimum=0), group="Ray"
    )
    ray_runtime_env: dict[str, Any] = setting(
        "ADJUTANT_RAY_RUNTIME_ENV",
        'JSON object merged into each job\'s runtime_env (e.g. {"pip": ["torch"]}); the job\'s environment'
        " variables are added to its env_vars",
        parser=JsonObject(),
        group="Ray",
        default_factory=dict,
        default_text="{}",
    )
    ray_timeout: float = setting(
        "ADJUTANT_RAY_TIMEOUT",
        "seconds one call to Ray may take before Ray counts as unreachable",
        parser=Number(minimum=1),
        group="Ray",
        default=20.0,
    )

    container_runtime: Literal["podman", "docker"] | None = setting(
        "ADJUTANT_CONTAINER_RUNTIME",
        "the container runtime of ADJUTANT_LAUNCHER=container: podman or docker",
        parser=Choice("podman", "docker"),
        group="Containers",
        default_text="unset (podman if installed, else docker)",
    )
    container_image: str | None = setting(
        "ADJUTANT_CONTAINER_IMAGE",
        "the image each job runs in (a projects table's image wins); it must exist on this machine",
        parser=Text(single_word=True),
        group="Containers",
    )
    container_mounts: str | None = setting(
        "ADJUTANT_CONTAINER_MOUNTS",
        "more mounts (besides the script's folder, read-only, and the job's output folder), split like a shell"
        " line: /data:/data:ro /scratch:/scratch",
        parser=ShellWords(),
        group="Containers",
    )
    container_memory: str | None = setting(
        "ADJUTANT_CONTAINER_MEMORY",
        "each job's memory limit (e.g. 16g, 512m); a job killed for lack of memory runs once more with 1.5 times"
        " as much",
        parser=Text(single_word=True),
        group="Containers",
        default_text="unset (no limit)",
    )
    container_cpus: float | None = setting(
        "ADJUTANT_CONTAINER_CPUS",
        "each job's CPUs (e.g. 4 or 1.5)",
        parser=Number(minimum=0.01),
        group="Containers",
        default_text="unset (no limit)",
    )
    container_network: str | None = setting(
        "ADJUTANT_CONTAINER_NETWORK",
        "the jobs' network mode (none, host, bridge or a network's name)",
        parser=Text(single_word=True),
        group="Containers",
        default_text="unset (the runtime's default)",
    )
    container_args: str | None = setting(
        "ADJUTANT_CONTAINER_ARGS",
        "more options of the runtime's run command, split like a shell line (e.g. --runtime runc, --init)",
        parser=ShellWords(),
        group="Containers",
    )

    @property
    def job_gpus(self) -> int:
        """GPUs a launch asks for when it does not say (ADJUTANT_GPUS_PER_JOB; 1 once ADJUTANT_GPUS is set)."""
        if self.gpus_per_job is not None:
            return self.gpus_per_job
        return 1 if self.gpus is not None else 0

    @property
    def reporting_enabled(self) -> bool:
        """Run reporting needs a W&B project (the entity may come from the W&B key's default)."""
        return any(route.project is not None for route in self.routes)

    @property
    def routes(self) -> tuple[ProjectRoute, ...]:
        """Each channel Adjutant serves and its project, script and launch rule (ADJUTANT_CONFIG, else the
        one-project variables)."""
        return routes_from(
            self.config,
            channel=self.channel,
            project=self.project,
            entity=self.entity,
            experiment_script=self.run_experiment_script,
            launch_roles=self.launch_roles,
            launch_users=self.launch_users,
            metric=self.metric,
            metric_goal=self.metric_goal,
        )

    @classmethod
    def keywords(cls) -> frozenset[str]:
        """Every setting's keyword (``Adjutant(**keywords)``, ``Settings.from_env(env, **keywords)``)."""
        return frozenset(spec.keyword for spec in SETTINGS)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, sources: Mapping[str, str] | None = None, **keywords: Any) -> Settings:
        """Parse and validate settings from ``env``; keyword values (typed, or text) win over the environment.

        Raises :class:`ConfigError` listing every problem (each names the variable and the fix), and
        :class:`TypeError` for a keyword that is no setting (naming the closest one). ``sources`` says where a
        variable of ``env`` was set when that is not the environment (:func:`env_file_sources`), for the messages.
        """
        settings, problems = cls.from_env_checked(env, sources=sources, **keywords)
        if problems:
            raise ConfigError(*problems)
        return settings

    @classmethod
    def from_env_checked(
        cls, env: Mapping[str, str], *, sources: Mapping[str, str] | None = None, **keywords: Any
    ) -> tuple[Settings, list[str]]:
        """Like :meth:`from_env`, but a bad value is listed and left at its default, so that ``--check``
        can go on checking everything else in the same run."""
        unknown = sorted(set(keywords) - cls.keywords())
        if unknown:
            raise TypeError(unknown_keyword_message(unknown[0]))
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in SETTINGS:
            try:
                if keywords.get(spec.keyword) is not None:
                    values[spec.keyword] = spec.parser.from_value(spec.env, keywords[spec.keyword])
                    continue
                raw = env.get(spec.env)
                if raw is None or not raw.strip():
                    continue
                values[spec.keyword] = spec.parser.from_text(spec.env, raw.strip() if spec.parser.strip else raw)
            except ConfigError as error:
                problems.extend(error.problems)
        if values.get("launcher") == "ray" and importlib.util.find_spec("ray") is None:
            problems.append("ADJUTANT_LAUNCHER=ray needs Ray's job client: pip install 'adjutant-discord[ray]'")
        config_given = keywords.get("config") is not None or bool((env.get("ADJUTANT_CONFIG") or "").strip())
        conflict = _one_project_conflict(env, keywords, sources or {}) if config_given else None
        if conflict is not None:
            problems.append(conflict)
            values.pop("config", None)
        return cls(**values), problems

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


def _specs() -> tuple[SettingSpec, ...]:
    specs = []
    for item in fields(Settings):
        meta = item.metadata["setting"]
        specs.append(SettingSpec(keyword=item.name, **meta))
    return tuple(specs)


#: Every setting, in declaration order.
SETTINGS: tuple[SettingSpec, ...] = _specs()


@dataclass(frozen=True)
class ForeignVariable:
    """A variable Adjutant documents but does not read itself (wandb reads it)."""

    env: str
    help: str
    default_text: str


WANDB_VARIABLES = (
    ForeignVariable("WANDB_API_KEY", "W&B API key (https://wandb.ai/authorize), read by wandb itself", "wandb login"),
    ForeignVariable(
        "WANDB_BASE_URL", "W&B server, read by wandb itself (self-hosted W&B only)", "https://api.wandb.ai"
    ),
)


def unknown_keyword_message(keyword: str) -> str:
    import difflib

    close = difflib.get_close_matches(keyword, sorted(Settings.keywords()), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown Adjutant setting {keyword!r}{hint} (settings: {', '.join(sorted(Settings.keywords()))})"


def variables_help() -> str:
    """The ``--help`` epilog: every variable, by group."""
    width = max(len(name) for name in [*(s.env for s in SETTINGS), *(v.env for v in WANDB_VARIABLES)])
    lines = ["environment variables (also read from .env; the environment wins over the file):"]
    for group in GROUPS:
        lines.append(f"\n {group}:")
        for spec in SETTINGS:
            if spec.group == group:
                lines.append(f"  {spec.env:<{width}}  {spec.help} [default: {spec.default_text}]")
        if group == "W&B run reporting":
            lines += [f"  {v.env:<{width}}  {v.help} [default: {v.default_text}]" for v in WANDB_VARIABLES]
    return "\n".join(lines)


def example_is_default(spec: SettingSpec) -> bool:
    """``.env.example``'s value for ``spec`` is the built-in default (then the file keeps it commented out, so that
    a copied .env sets only what differs: a value left there would still count as set, e.g. ADJUTANT_CHANNEL against
    ADJUTANT_CONFIG). A blank value (a slot to fill in) means unset and stays as it is."""
    if not spec.example.strip():
        return False
    declared = next(item for item in fields(Settings) if item.name == spec.keyword)
    default = declared.default_factory() if callable(declared.default_factory) else declared.default
    try:
        return bool(spec.parser.from_text(spec.env, spec.example) == default)
    except ConfigError:
        return False


def env_example() -> str:
    """The text of ``.env.example`` (a test keeps the committed file equal to it). Each setting is a line: set to the
    quickstart's value where it differs from the built-in default, commented out where it equals it, blank where
    it is to be filled in."""
    lines = [
        "# Adjutant's configuration. Copy to .env (never commit .env) and fill in.",
        "# The process environment wins over this file. `python -m adjutant --check` validates it.",
        "# Made from adjutant/settings.py by `python -m adjutant --env-example`; do not edit by hand.",
    ]
    for group in GROUPS:
        lines += ["", f"# --- {group} ---"]
        for spec in SETTINGS:
            if spec.group == group:
                lines.append(f"# {spec.help} (default: {spec.default_text})")
                commented = "# " if example_is_default(spec) else ""
                lines.append(f"{commented}{spec.env}={spec.example}")
        if group == "W&B run reporting":
            for var in WANDB_VARIABLES:
                lines.append(f"# {var.help} (default: {var.default_text})")
                lines.append(f"# {var.env}=" if var.env == "WANDB_BASE_URL" else f"{var.env}=")
    return "\n".join(lines) + "\n"


def settings_table() -> str:
    """The README's table of settings (Markdown; a test keeps the README equal to it)."""
    lines = ["| Variable | Keyword | Meaning | Default |", "|---|---|---|---|"]
    for spec in SETTINGS:
        meaning = spec.help.replace("|", "\\|")
        lines.append(f"| `{spec.env}` | `{spec.keyword}` | {meaning} | {spec.default_text} |")
    for var in WANDB_VARIABLES:
        lines.append(f"| `{var.env}` | | {var.help} | {var.default_text} |")
    return "\n".join(lines)


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
