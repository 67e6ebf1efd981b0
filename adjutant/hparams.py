"""Hyperparameters from chat: parsing, validation, sweeps and diffs. Pure functions, no I/O."""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adjutant.numbers import NumberError, parse_decimal, parse_whole, shown

MAX_CHARS = 4000
MAX_DEPTH = 8

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class HParamsError(ValueError):
    """The message says what is wrong with the hyperparameters, and where."""


def _reject_constant(name: str) -> Any:
    raise HParamsError(f"{name} is not allowed: use a finite number or a string")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise HParamsError(f"{text} is too large for a number (it would be Infinity, which is not JSON)")
    return value


_INVISIBLE = {"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"}


def _bad_character(text: str) -> str | None:
    """A description of the first invisible, control or invalid character of ``text`` (None if all are fine)."""
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cs":
            return f"an invalid character (a lone surrogate, U+{ord(char):04X}) at position {index + 1}"
        if category in _INVISIBLE:
            name = unicodedata.name(char, "unnamed")
            return f"an invisible or control character (U+{ord(char):04X} {name}) at position {index + 1}"
    return None


def check_text(value: Any, path: str = "") -> None:
    """Refuse keys with invisible or control characters, and any string that cannot be encoded (lone surrogates).

    A key ``lr\u200b`` would look like a second ``lr``; a lone surrogate cannot reach a script as UTF-8.
    """
    if isinstance(value, dict):
        for position, (key, item) in enumerate(value.items(), 1):
            problem = _bad_character(key)
            where = f"{path}." if path else ""
            if problem:
                shown = key.encode("unicode_escape").decode("ascii")
                raise HParamsError(f"key #{position} of {path or 'the object'} ({shown!r}) contains {problem}")
            check_text(item, f"{where}{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{path}[{index}]")
    elif isinstance(value, str):
        for index, char in enumerate(value):
            if unicodedata.category(char) == "Cs":
                raise HParamsError(
                    f"the value of {path or 'the input'} contains an invalid character (a lone surrogate, "
                    f"U+{ord(char):04X}) at position {index + 1}"
                )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise HParamsError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0, ``{}`` is 1)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
            deepest = max(deepest, level + 1)
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
            deepest = max(deepest, level + 1)
    return deepest


def strip_fence(text: str) -> str:
    """People paste ```json blocks and `inline` code: take what is inside."""
    text = text.strip()
    match = _FENCE.match(text)
    if match:
        return match.group(1).strip()
    if len(text) >= 2 and text[0] == text[-1] == "`":
        return text.strip("`").strip()
    return text


def _loads(text: str) -> Any:
    try:
        return json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_no_duplicates
        )
    except json.JSONDecodeError as error:
        raise HParamsError(f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise HParamsError(f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)") from None


def _scalar(text: str) -> Any:
    """A ``key=value`` value: a JSON scalar where it parses (0.1, true, null, "x"), else the string."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except HParamsError:
        raise
    except (ValueError, RecursionError):
        return text
    return value


def parse_pairs(text: str) -> dict[str, Any]:
    """``lr=0.001 epochs=10 name="my run"`` → a dict. Values are JSON where they parse, else strings."""
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError as error:
        raise HParamsError(f"cannot split into key=value pairs: {error}") from None
    out: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep:
            raise HParamsError(f"{token!r} is not key=value; give a JSON object or pairs like lr=0.001 epochs=10")
        key = key.strip()
        if not _KEY.match(key):
            raise HParamsError(f"{key!r} is not a valid key (letters, digits, _ . -; not starting with a digit)")
        if key in out:
            raise HParamsError(f"the key {key!r} appears twice")
        out[key] = _scalar(value)
    return out


def parse_hyperparameters(text: str, *, max_chars: int = MAX_CHARS, allow_empty: bool = False) -> dict[str, Any]:
    """The hyperparameters of ``$experiment``: a JSON object, a ```json block, or key=value pairs."""
    if len(text) > max_chars:
        raise HParamsError(f"too large: {len(text):,} characters (the limit is {max_chars:,})")
    body = strip_fence(text)
    if not body:
        if allow_empty:
            return {}
        raise HParamsError('no hyperparameters given; e.g. {"epochs": 10, "batch_size": 32} or epochs=10 batch_size=32')
    if body[0] in '{["':
        value = _loads(body)
    else:
        try:
            value = json.loads(body, parse_constant=_reject_constant)  # a bare 42 or true: say what it is
        except ValueError:
            value = parse_pairs(body)
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        raise HParamsError(f'the hyperparameters must be a JSON object like {{"epochs": 10}}, not {kind}')
    if depth(value) > MAX_DEPTH:
        raise HParamsError(f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)")
    check_text(value)
    return value


def to_argument(params: Mapping[str, Any]) -> str:
    """The one argument the experiment script receives: compact, valid JSON (never NaN or Infinity), Unicode
    kept as is. Raises ValueError for a non-finite number: every path into a script validates first."""
    return json.dumps(params, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)


def validate(params: dict[str, Any], schema: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check ``params`` against a JSON Schema; returns (params with defaults, the defaults filled in).

    Raises :class:`HParamsError` with the schema's messages.
    """
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors[:5]:
            where = "/".join(str(p) for p in error.absolute_path)
            lines.append(f"{where}: {error.message}" if where else error.message)
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise HParamsError("; ".join(lines) + more)
    defaults = {
        key: spec["default"]
        for key, spec in (schema.get("properties") or {}).items()
        if isinstance(spec, dict) and "default" in spec and key not in params
    }
    return {**params, **defaults}, defaults


def expand_sweep(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of a grid: lists are the values to try, anything else is fixed."""
    if not grid:
        raise HParamsError('a sweep needs at least one key with a list of values, e.g. {"lr": [0.1, 0.01]}')
    keys = list(grid)
    axes = []
    for key in keys:
        values = grid[key]
        if isinstance(values, list):
            if not values:
                raise HParamsError(f"{key!r} has an empty list of values")
            axes.append(values)
        else:
            axes.append([values])
    if not any(isinstance(grid[k], list) for k in keys):
        raise HParamsError('nothing to sweep: give at least one key a list of values, e.g. {"lr": [0.1, 0.01]}')
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes)]


def sweep_size(grid: Mapping[str, Any]) -> int:
    size = 1
    for values in grid.values():
        if isinstance(values, list):
            size *= max(1, len(values))
    return size


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Lines describing what changed from ``old`` to ``new``."""
    lines = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            lines.append(f"- {key} = {json.dumps(old[key])}")
        elif key not in old:
            lines.append(f"+ {key} = {json.dumps(new[key])}")
        elif old[key] != new[key]:
            lines.append(f"~ {key}: {json.dumps(old[key])} → {json.dumps(new[key])}")
    return lines


@dataclass(frozen=True)
class LaunchOptions:
    """Options written before a launch's hyperparameters: ``--gpus N``, ``--time 2h``, ``--no-canary``."""

    gpus: int | None = None
    time_limit: float | None = None  # seconds
    canary: bool = True
    #: A memory limit (``16G``, ``512M``: containers' --memory, Slurm's --mem) and CPUs (containers' --cpus, Slurm's
    #: --cpus-per-task) for this launch; None: the settings'.
    memory: str | None = None
    cpus: float | None = None
    #: ``--priority high|normal|low`` (None: not asked; normal) and ``--preemptible``.
    priority: str | None = None
    preemptible: bool = False

    def overrides(self) -> dict[str, str]:
        """The backend options this launch sets (a job's ``overrides``)."""
        found = {"mem": self.memory, "cpus": None if self.cpus is None else f"{self.cpus:g}"}
        return {key: value for key, value in found.items() if value is not None}


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)")  # ASCII digits only (not ٣ or ²)
_UNIT_SECONDS = {"s": 1, "m": 60, "": 60, "h": 3600, "d": 86400}
#: The most GPUs one job may ask for.
MAX_GPUS = 64


def parse_duration(text: str, *, what: str = "--time") -> float:
    """``90`` (minutes), ``90m``, ``2h``, ``1.5h``, ``1d``, ``600s`` → seconds (at least 1 s, at most 30 days).

    Digits are ASCII only; anything else is refused naming what was typed."""
    match = _DURATION.fullmatch(text.lower())
    if match is None:
        raise HParamsError(f"{what} must be a duration like 90m, 2h or 1d, not {shown(text)}")
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if not 1 <= seconds <= 30 * 86400:
        raise HParamsError(f"{what} must be between 1 second and 30 days, not {shown(text)}")
    return seconds


def parse_gpus(text: str, *, what: str = "--gpus") -> int:
    """A GPU count typed in chat: ASCII digits, 0 to 64."""
    try:
        return parse_whole(text, what=what, low=0, high=MAX_GPUS)
    except NumberError as error:
        raise HParamsError(str(error)) from None


def check_gpus(count: int, *, what: str = "gpus") -> int:
    """A GPU count given as a number (a slash command's option): 0 to 64, else refused like a typed one."""
    if not 0 <= count <= MAX_GPUS:
        raise HParamsError(f"{what} must be a whole number from 0 to {MAX_GPUS}, not {count}")
    return count


def truncate_word(text: str) -> str:
    return text if len(text) <= 20 else text[:19] + "…"


def take_launch_options(text: str, *, sweep: bool = False) -> tuple[LaunchOptions, str]:
    """Split leading ``--gpus N``, ``--time D`` (and for a sweep ``--no-canary``) off ``text``; the rest is the
    hyperparameters. A ``--`` word that is none of these is refused, naming the ones there are."""
    gpus: int | None = None
    limit: float | None = None
    memory: str | None = None
    cpus: float | None = None
    priority: str | None = None
    preemptible = False
    canary = True
    rest = text.lstrip()
    known = "--gpus N, --time D, --memory 16G, --cpus N, --priority high|normal|low, --preemptible" + (
        ", --no-canary" if sweep else ""
    )
    while rest.startswith("--"):
        word, tail = _next_word(rest)
        word, _, glued = word.partition("=")
        if word == "--no-canary" and sweep:
            canary, rest = False, tail.lstrip()
            continue
        if word == "--preemptible" and not glued:
            preemptible, rest = True, tail.lstrip()
            continue
        if word not in ("--gpus", "--time", "--memory", "--cpus", "--priority"):
            raise HParamsError(f"unknown option {shown(word)}; the options are {known}")
        value = glued
        if not value:
            value, tail = _next_word(tail.lstrip())
        if not value:
            example = {"--gpus": "2", "--time": "2h", "--memory": "16G", "--cpus": "4", "--priority": "high"}[word]
            raise HParamsError(f"{word} needs a value, e.g. {word} {example}")
        if word == "--gpus":
            gpus = parse_gpus(value)
        elif word == "--memory":
            memory = parse_memory_option(value)
        elif word == "--cpus":
            cpus = parse_cpus(value)
        elif word == "--priority":
            priority = parse_priority(value)
        else:
            limit = parse_duration(value)
        rest = tail.lstrip()
    return LaunchOptions(gpus, limit, canary, memory, cpus, priority, preemptible), rest


#: The priority classes ``--priority`` takes, lowest first (see adjutant.db.models.PRIORITIES).
PRIORITY_CLASSES = ("low", "normal", "high")


def parse_priority(text: str) -> str:
    """``--priority high``/``normal``/``low`` (any case)."""
    value = text.strip().lower()
    if value not in PRIORITY_CLASSES:
        raise HParamsError(f"--priority must be high, normal or low, not {shown(text)}")
    return value


_MEMORY_OPTION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([KMGT])B?", re.IGNORECASE)  # ASCII digits only


def parse_memory_option(text: str) -> str:
    """``--memory 16g``/``16G``/``512M``/``1.5G`` → ``16G`` (a unit is required; from 4 MiB to 64 TiB)."""
    match = _MEMORY_OPTION.fullmatch(text.strip())
    if match is None:
        raise HParamsError(f"--memory must be a size with a unit like 16G or 512M, not {shown(text)}")
    unit = match[2].upper()
    mib = float(match[1]) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
    if not 4 <= mib <= 64 * 1024 * 1024:
        raise HParamsError(f"--memory must be between 4M and 64T, not {shown(text)}")
    return f"{match[1]}{unit}"


def parse_cpus(text: str) -> float:
    """``--cpus 4`` or ``--cpus 0.5``: more than 0, at most 256 (ASCII digits)."""
    try:
        value = parse_decimal(text, what="--cpus")
    except NumberError as error:
        raise HParamsError(str(error)) from None
    if not 0 < value <= 256:
        raise HParamsError(f"--cpus must be more than 0 and at most 256, not {shown(text)}")
    return value


def _next_word(text: str) -> tuple[str, str]:
    parts = re.split(r"\s+", text, maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""
