"""W&B sweep configurations: parse YAML or JSON text, validate it the way W&B does, describe it. Pure, no I/O.

A configuration is W&B's own (https://docs.wandb.ai/guides/sweeps/sweep-config-keys): ``method`` (grid, random,
bayes), ``metric`` {name, goal, target}, ``parameters`` in W&B's forms, ``run_cap`` and ``early_terminate``
(hyperband). Every refusal is a :class:`SweepConfigError` whose message names the key and what is wrong, ready for the
chat. Where this module is kinder than W&B it says so:

- YAML 1.1 reads ``1e-5`` as a string (it needs a dot: ``1.0e-5``); here it is the number it looks like, and a
  quoted number in a numeric field (``min: "1e-5"``) is taken as that number. :attr:`SweepConfig.raw`, what W&B is
  given, holds the numbers.
- YAML anchors and aliases, dates and duplicate keys are refused (a repeated key would silently win).
- Parameter order is the order written (W&B sorts the names); grid cells come in
  :func:`adjutant.hparams.expand_sweep`'s order: the first parameter varies slowest.
- A quantized distribution (``q_uniform`` and kin) gives multiples of ``q`` between ``min`` and ``max``, ends
  included, for random, bayes and grid alike (W&B's grid uses ``min, min + q, ...`` below ``max``).
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

#: The most parameters one sweep may have (W&B's bayes scales poorly long before this).
MAX_PARAMETERS = 64
#: The most characters of configuration text read.
MAX_TEXT = 64_000
#: The most values one ``values`` list may hold.
MAX_VALUES = 10_000

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
#: Every distribution accepted, with the keys each takes besides ``distribution``.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values", "probabilities"),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
}
#: W&B's name for a categorical with probabilities, taken as ``categorical``.
_ALIASES = {"categorical_w_probabilities": "categorical"}
#: Distributions whose values are a finite list (the only ones grid accepts, as W&B's grid).
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
#: Top-level keys kept as given (in :attr:`SweepConfig.raw`) without meaning for Adjutant's search.
KEPT_KEYS = ("program", "command", "name", "description", "project", "entity", "controller", "apiVersion", "kind")
_KNOWN_KEYS = ("method", "metric", "parameters", "run_cap", "early_terminate", *KEPT_KEYS)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
#: What YAML 1.2 (and JSON) read as a float and YAML 1.1 does not: ``1e-5``, ``3E6``, ``.5e3``.
_FLOAT_12 = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+")
_NUMERIC = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class SweepConfigError(ValueError):
    """``str(error)`` is one sentence for the chat, naming the key at fault and what is wrong with it."""


@dataclass(frozen=True)
class Metric:
    """What a sweep optimises: a key of the runs' summary (``val_loss``), its goal, and an optional target."""

    name: str
    goal: str = "minimize"  # "minimize" | "maximize"
    target: float | None = None

    @property
    def maximize(self) -> bool:
        return self.goal == "maximize"

    def better(self, value: float, than: float) -> bool:
        """``value`` is strictly better than ``than`` for this goal."""
        return value > than if self.maximize else value < than

    def reaches(self, value: float) -> bool:
        """``value`` reaches the target (at or beyond it in the goal's direction); False without a target."""
        if self.target is None:
            return False
        return value >= self.target if self.maximize else value <= self.target


@dataclass(frozen=True)
class Hyperband:
    """W&B's hyperband early termination. Rung k is at step ``min_iter * eta**k`` (``rungs`` when the config gave
    ``max_iter`` and ``s``: W&B's bands, computed once)."""

    min_iter: int
    eta: int = 3
    #: The rung steps when they are a finite list (W&B's ``max_iter``/``s`` form); empty: ``min_iter * eta**k``.
    rungs: tuple[int, ...] = ()

    def rung_steps(self, up_to: float) -> list[int]:
        """The rung steps at or below ``up_to``, in order (rung index = position)."""
        if self.rungs:
            return [step for step in self.rungs if step <= up_to]
        steps: list[int] = []
        step = self.min_iter
        while step <= up_to and len(steps) < 100:
            steps.append(step)
            step *= self.eta
        return steps

    def next_rung(self, step: float) -> int | None:
        """The first rung step above ``step`` (None: no rung left), to know when a running trial is next judged."""
        if self.rungs:
            return next((rung for rung in self.rungs if rung > step), None)
        rung = self.min_iter
        for _ in range(100):
            if rung > step:
                return rung
            rung *= self.eta
        return None


@dataclass(frozen=True)
class Param:
    """One parameter of the search space, in a normalised form (``distribution`` is always set).

    ``constant`` uses ``value``; ``categorical`` uses ``values`` (and ``probabilities``, for random only);
    the uniform kinds ``min``/``max`` (``log_uniform`` and ``inv_log_uniform``: bounds in log space, as W&B's);
    the normal kinds ``mu``/``sigma``; the ``q_`` kinds ``q`` too (an int ``q`` gives int values).
    """

    name: str
    distribution: str
    value: Any = None
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] | None = None
    min: float | None = None
    max: float | None = None
    mu: float = 0.0
    sigma: float = 1.0
    q: float = 1.0

    # -- the finite kinds -----------------------------------------------------------------------------------------
    def choices(self) -> Sequence[Any] | None:
        """The values this parameter can take when they are a finite list (grid's axis), lazily; else None."""
        if self.distribution == "constant":
            return (self.value,)
        if self.distribution == "categorical":
            return self.values
        if self.distribution == "int_uniform":
            assert self.min is not None and self.max is not None
            return range(int(self.min), int(self.max) + 1)
        if self.distribution == "q_uniform":
            low, high = self.multiples()
            return _Multiples(low, high, self.q)
        return None

    def multiples(self) -> tuple[int, int]:
        """For a bounded ``q_`` kind: the first and last k with ``k * q`` inside the value bounds."""
        low, high = self.value_bounds()
        return math.ceil(low / self.q - 1e-9), math.floor(high / self.q + 1e-9)

    def value_bounds(self) -> tuple[float, float]:
        """The least and greatest value of a bounded kind (log-space bounds turned into values)."""
        assert self.min is not None and self.max is not None
        if self.distribution in ("log_uniform", "q_log_uniform"):
            return math.exp(self.min), math.exp(self.max)
        if self.distribution == "inv_log_uniform":
            return math.exp(-self.max), math.exp(-self.min)
        return self.min, self.max

    @property
    def is_log(self) -> bool:
        return self.distribution in (
            "log_uniform",
            "log_uniform_values",
            "q_log_uniform",
            "q_log_uniform_values",
            "inv_log_uniform",
            "inv_log_uniform_values",
        )

    @property
    def is_int(self) -> bool:
        """Values are ints: ``int_uniform``, and any ``q_`` kind with a whole-number (int) ``q``."""
        return self.distribution == "int_uniform" or (self.distribution.startswith("q_") and isinstance(self.q, int))

    def quantize(self, k: int) -> float | int:
        """``k * q``, an int for an int ``q``, else rounded to ``q``'s decimals (0.30000000000000004 → 0.3)."""
        if isinstance(self.q, int):
            return k * self.q
        return round(k * self.q, _decimals(self.q))

    def contains(self, value: Any) -> bool:
        """``value`` is one this parameter can take (for grid and categorical: one of the listed values)."""
        if self.distribution in ("constant", "categorical"):
            key = canonical(value)
            return any(canonical(item) == key for item in (self.choices() or ()))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.is_int and not isinstance(value, int) and not float(value).is_integer():
            return False
        if self.min is None:  # the normal kinds: any number (log_normal: positive)
            return value > 0 or "log" not in self.distribution
        low, high = self.value_bounds()
        tolerance = 1e-9 * max(1.0, abs(low), abs(high))
        return low - tolerance <= value <= high + tolerance

    def describe(self) -> str:
        """One short line for a preview: ``lr: log-uniform 1e-05..0.1``."""
        text = {
            "constant": lambda: _json_text(self.value),
            "categorical": self._describe_values,
            "int_uniform": lambda: f"integers {_num(self.min)}..{_num(self.max)}",
            "uniform": lambda: f"uniform {_num(self.min)}..{_num(self.max)}",
            "q_uniform": lambda: f"uniform {_num(self.min)}..{_num(self.max)} in steps of {_num(self.q)}",
            "log_uniform_values": lambda: f"log-uniform {_num(self.min)}..{_num(self.max)}",
            "inv_log_uniform_values": lambda: f"inverse log-uniform {_num(self.min)}..{_num(self.max)}",
            "q_log_uniform_values": lambda: (
                f"log-uniform {_num(self.min)}..{_num(self.max)} in steps of {_num(self.q)}"
            ),
            "log_uniform": lambda: f"log-uniform {self._bounds_text()} (e^{_num(self.min)}..e^{_num(self.max)})",
            "q_log_uniform": lambda: (
                f"log-uniform {self._bounds_text()} (e^{_num(self.min)}..e^{_num(self.max)}) in steps of {_num(self.q)}"
            ),
            "inv_log_uniform": lambda: (
                f"inverse log-uniform {self._bounds_text()} (e^-{_num(self.max)}..e^-{_num(self.min)})"
            ),
            "normal": lambda: f"normal mu={_num(self.mu)} sigma={_num(self.sigma)}",
            "q_normal": lambda: f"normal mu={_num(self.mu)} sigma={_num(self.sigma)} in steps of {_num(self.q)}",
            "log_normal": lambda: f"log-normal mu={_num(self.mu)} sigma={_num(self.sigma)}",
            "q_log_normal": lambda: (
                f"log-normal mu={_num(self.mu)} sigma={_num(self.sigma)} in steps of {_num(self.q)}"
            ),
        }[self.distribution]()
        return f"{self.name}: {text}"

    def _bounds_text(self) -> str:
        low, high = self.value_bounds()
        return f"{low:.3g}..{high:.3g}"

    def _describe_values(self) -> str:
        shown = [_json_text(value) for value in self.values[:8]]
        if self.probabilities is not None:
            shown = [f"{text} ({p:.0%})" for text, p in zip(shown, self.probabilities, strict=False)]
        more = f", … ({len(self.values)} values)" if len(self.values) > 8 else ""
        line = ", ".join(shown) + more
        return line if len(line) <= 120 else line[:119] + "…"


class _Multiples(Sequence[Any]):
    """``k * q`` for k from ``low`` to ``high``: a q_uniform grid axis, without building the list."""

    def __init__(self, low: int, high: int, q: float) -> None:
        self._ks = range(low, high + 1)
        self._q = q

    def __len__(self) -> int:
        return len(self._ks)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        k = self._ks[index]
        return k * self._q if isinstance(self._q, int) else round(k * self._q, _decimals(self._q))


@dataclass(frozen=True)
class SweepConfig:
    """A validated W&B sweep configuration."""

    method: str  # "grid" | "random" | "bayes"
    metric: Metric | None  # required for bayes, hyperband and a target
    parameters: tuple[Param, ...]
    run_cap: int | None
    early_terminate: Hyperband | None
    #: What W&B is given: the configuration as written, with numbers where text stood for them (S3 adds
    #: ``controller: {type: local}``). Kept keys (program, command, name, ...) are here.
    raw: Mapping[str, Any] = field(default_factory=dict)

    def grid_size(self) -> int | None:
        """The number of grid cells (None unless every parameter has a finite list of values)."""
        size = 1
        for param in self.parameters:
            choices = param.choices()
            if choices is None:
                return None
            size *= len(choices)
        return size

    def trial_count(self) -> int | None:
        """How many trials the sweep runs at most: grid, its size capped by ``run_cap``; random and bayes,
        ``run_cap`` (None: no cap, the sweep runs until stopped or its target is reached)."""
        if self.method == "grid":
            size = self.grid_size()
            assert size is not None  # parse refuses a grid with a continuous parameter
            return size if self.run_cap is None else min(size, self.run_cap)
        return self.run_cap

    def describe(self) -> list[str]:
        """One short line per parameter, for the preview (``lr: log-uniform 1e-05..0.1``)."""
        return [param.describe() for param in self.parameters]

    def param(self, name: str) -> Param | None:
        return next((param for param in self.parameters if param.name == name), None)


def is_sweep_config(obj: Mapping[str, Any]) -> bool:
    """``obj`` is a W&B sweep configuration rather than the JSON-lists grid shorthand: it has ``parameters`` (a
    mapping) or a ``method`` naming a search method at the top level."""
    method = obj.get("method")
    return isinstance(obj.get("parameters"), Mapping) or (isinstance(method, str) and method in (*METHODS, "custom"))


def parse_sweep_config(text: str) -> SweepConfig:
    """A W&B sweep configuration from YAML or JSON text (code fences already stripped), validated."""
    if len(text) > MAX_TEXT:
        raise SweepConfigError(f"the sweep configuration is too long: {len(text):,} characters (at most {MAX_TEXT:,})")
    if not text.strip():
        raise SweepConfigError("the sweep configuration is empty; give method, metric and parameters")
    loaded = _load(text)
    if not isinstance(loaded, dict):
        raise SweepConfigError(
            f"the sweep configuration must be a mapping of keys (method, metric, parameters, ...), not {_kind(loaded)}"
        )
    return validate_sweep_config(loaded)


def validate_sweep_config(config: Mapping[str, Any]) -> SweepConfig:
    """Validate an already loaded configuration (a dict from YAML or JSON) as W&B would."""
    for key in config:
        if not isinstance(key, str):
            raise SweepConfigError(f"the key {_show(key)} is not a name; keys are words like method or parameters")
        if key not in _KNOWN_KEYS:
            raise SweepConfigError(_unknown_top_key(key))
    raw = copy.deepcopy(dict(config))
    method = config.get("method")
    if method is None:
        raise SweepConfigError("method: missing; give method: grid, random or bayes")
    if method not in METHODS:
        raise SweepConfigError(f"method: must be grid, random or bayes, not {_show(method)}")
    metric = _metric(config.get("metric"), raw)
    run_cap = _run_cap(config.get("run_cap"), raw)
    early = _early_terminate(config.get("early_terminate"), raw)
    parameters = _parameters(config.get("parameters"), raw)
    if method == "bayes" and metric is None:
        raise SweepConfigError(
            "metric: bayes needs a metric to optimise, e.g. metric: {name: val_loss, goal: minimize}"
        )
    if early is not None and metric is None:
        raise SweepConfigError("metric: hyperband early termination needs a metric, e.g. metric: {name: val_loss}")
    if method == "grid":
        for param in parameters:
            if param.distribution not in GRID_DISTRIBUTIONS:
                raise SweepConfigError(
                    f"parameters.{param.name}: grid needs a finite list of values (value, values, int_uniform or "
                    f"q_uniform), not {param.distribution}; use method random or bayes for a distribution"
                )
            if param.probabilities is not None:
                raise SweepConfigError(
                    f"parameters.{param.name}: probabilities are for random search; grid tries every value once"
                )
    return SweepConfig(method, metric, parameters, run_cap, early, raw)


def grid_config(parsed: Mapping[str, Any]) -> SweepConfig:
    """Today's JSON-lists shorthand (``{"lr": [0.1, 0.01], "epochs": 10}``: lists are the values to try, anything
    else is fixed) as a ``method: grid`` configuration, cells in :func:`adjutant.hparams.expand_sweep`'s order."""
    if not parsed:
        raise SweepConfigError('a sweep needs at least one key with a list of values, e.g. {"lr": [0.1, 0.01]}')
    if not any(isinstance(value, list) for value in parsed.values()):
        raise SweepConfigError('nothing to sweep: give at least one key a list of values, e.g. {"lr": [0.1, 0.01]}')
    parameters = {
        name: {"values": value} if isinstance(value, list) else {"value": value} for name, value in parsed.items()
    }
    return validate_sweep_config({"method": "grid", "parameters": parameters})


def canonical(value: Any) -> str:
    """A key equal for equal JSON values (1 and 1.0 differ, as they do for a script reading its JSON argument)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


# -- loading ----------------------------------------------------------------------------------------------------------
@functools.cache
def _loader() -> type[Any]:
    """Safe YAML with YAML 1.2's floats (``1e-5``), no anchors or aliases, no dates, and no duplicate keys. Built on
    first use: PyYAML is imported only when a sweep configuration is read (it would add to every start)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise SweepConfigError(
                    f"line {event.start_mark.line + 1}: YAML aliases (*name) are not accepted; write the value out"
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, str | int | float | bool) and key in seen:
                    line = key_node.start_mark.line + 1
                    raise SweepConfigError(f"line {line}: the key {_show(key)} appears twice")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))
    return Loader


def _load(text: str) -> Any:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped, parse_constant=_no_constant, object_pairs_hook=_json_object)
        except json.JSONDecodeError:
            pass  # YAML's flow style ({method: grid, ...}) is not JSON; YAML says where it fails
        except RecursionError:
            raise SweepConfigError("the sweep configuration is nested too deeply") from None
    import yaml

    try:
        return yaml.load(stripped, Loader=_loader())  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = error.problem or "not valid YAML"
        raise SweepConfigError(f"the sweep configuration is not valid YAML or JSON: {where}{problem}") from None
    except yaml.YAMLError as error:
        raise SweepConfigError(f"the sweep configuration is not valid YAML or JSON: {error}") from None
    except RecursionError:
        raise SweepConfigError("the sweep configuration is nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise SweepConfigError(f"{name} is not a number a sweep can use; give a finite number")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SweepConfigError(f"the key {_show(key)} appears twice")
        out[key] = value
    return out


# -- sections ---------------------------------------------------------------------------------------------------------
def _unknown_top_key(key: str) -> str:
    if key in ("metrics", "scheduler"):
        return f"{key}: not supported here (W&B's method custom); use one metric with grid, random or bayes"
    if key in ("job", "image_uri"):
        return f"{key}: W&B Launch keys are not used here; Adjutant runs the route's script as each trial's job"
    close = difflib.get_close_matches(key, _KNOWN_KEYS, n=1)
    if close:
        return f"{_show(key)}: not a sweep configuration key; did you mean {close[0]}?"
    return f"{_show(key)}: not a sweep configuration key; the keys are {', '.join(_KNOWN_KEYS)}"


def _metric(value: Any, raw: dict[str, Any]) -> Metric | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SweepConfigError(f"metric: must be a mapping like {{name: val_loss, goal: minimize}}, not {_kind(value)}")
    for key in value:
        if key not in ("name", "goal", "target", "impute", "impute_while_running"):
            raise SweepConfigError(f"metric.{key}: not a metric key; the keys are name, goal and target")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SweepConfigError("metric.name: missing; give the summary key to optimise, e.g. name: val_loss")
    goal = value.get("goal", "minimize")
    if goal not in GOALS:
        raise SweepConfigError(f"metric.goal: must be minimize or maximize, not {_show(goal)}")
    target = None
    if value.get("target") is not None:
        target = float(_number(value["target"], "metric.target"))
        raw["metric"]["target"] = _number(value["target"], "metric.target")
    return Metric(name, goal, target)


def _run_cap(value: Any, raw: dict[str, Any]) -> int | None:
    if value is None:
        return None
    number = _number(value, "run_cap")
    if not isinstance(number, int) or number < 1:
        raise SweepConfigError(f"run_cap: must be a whole number of at least 1, not {_show(value)}")
    raw["run_cap"] = number
    return number


def _early_terminate(value: Any, raw: dict[str, Any]) -> Hyperband | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SweepConfigError(
            f"early_terminate: must be a mapping like {{type: hyperband, min_iter: 3}}, not {_kind(value)}"
        )
    for key in value:
        if key not in ("type", "min_iter", "max_iter", "s", "eta", "strict"):
            raise SweepConfigError(
                f"early_terminate.{key}: not a hyperband key; the keys are type, min_iter, max_iter, s, eta and strict"
            )
    if value.get("type") != "hyperband":
        raise SweepConfigError(
            "early_terminate.type: must be hyperband (the only early termination W&B has), "
            f"not {_show(value.get('type'))}"
        )
    section = raw["early_terminate"]
    eta = 3
    if value.get("eta") is not None:
        eta_number = _number(value["eta"], "early_terminate.eta")
        if not float(eta_number).is_integer() or eta_number < 2:
            raise SweepConfigError(
                f"early_terminate.eta: must be a whole number of at least 2, not {_show(value['eta'])}"
            )
        eta = int(eta_number)
        section["eta"] = eta
    if value.get("min_iter") is not None:
        min_iter = _whole(value["min_iter"], "early_terminate.min_iter", low=1)
        section["min_iter"] = min_iter
        return Hyperband(min_iter, eta)
    if value.get("max_iter") is None or value.get("s") is None:
        raise SweepConfigError("early_terminate: give min_iter (the first rung's step), or max_iter and s")
    max_iter = _whole(value["max_iter"], "early_terminate.max_iter", low=1)
    s = _whole(value["s"], "early_terminate.s", low=1)
    section["max_iter"], section["s"] = max_iter, s
    band: float = max_iter
    bands = []
    for _ in range(s):  # W&B's bands: max_iter / eta, / eta**2, ... while at least 1
        band /= eta
        if band < 1:
            break
        bands.append(int(band))
    if not bands:
        raise SweepConfigError(
            f"early_terminate: max_iter {max_iter} with eta {eta} leaves no rung; raise max_iter or lower eta"
        )
    rungs = tuple(sorted(set(bands)))
    return Hyperband(rungs[0], eta, rungs)


def _parameters(value: Any, raw: dict[str, Any]) -> tuple[Param, ...]:
    if value is None:
        raise SweepConfigError("parameters: missing; give at least one, e.g. parameters: {lr: {values: [0.1, 0.01]}}")
    if not isinstance(value, dict):
        raise SweepConfigError(f"parameters: must be a mapping of parameter names, not {_kind(value)}")
    if not value:
        raise SweepConfigError("parameters: empty; give at least one, e.g. parameters: {lr: {values: [0.1, 0.01]}}")
    if len(value) > MAX_PARAMETERS:
        raise SweepConfigError(f"parameters: {len(value)} parameters; at most {MAX_PARAMETERS}")
    params = []
    for name, spec in value.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SweepConfigError(
                f"parameters: {_show(name)} is not a valid parameter name "
                "(letters, digits, _ . -; starting with a letter or _)"
            )
        params.append(_param(name, spec, raw["parameters"]))
    return tuple(params)


def _param(name: str, spec: Any, raw_parameters: dict[str, Any]) -> Param:
    where = f"parameters.{name}"
    if not isinstance(spec, dict):
        raise SweepConfigError(
            f"{where}: must be a mapping such as {{values: [...]}}, {{value: ...}} or {{min: ..., max: ...}}, "
            f"not {_kind(spec)}"
        )
    if "parameters" in spec:
        raise SweepConfigError(
            f"{where}: nested parameters are not supported here; flatten them into top-level names "
            f"(e.g. {name}.depth, {name}.width)"
        )
    distribution = _infer(where, spec)
    allowed = DISTRIBUTIONS[distribution]
    for key in spec:
        if key != "distribution" and key not in allowed:
            takes = ", ".join(allowed)
            raise SweepConfigError(f"{where}.{key}: not a key of a {distribution} parameter (it takes {takes})")
    raw = raw_parameters[name]
    if distribution == "constant":
        _finite_everywhere(spec["value"], f"{where}.value")
        return Param(name, distribution, value=spec["value"])
    if distribution == "categorical":
        return _categorical(name, where, spec, raw)
    numbers = {key: _number(spec[key], f"{where}.{key}") for key in allowed if spec.get(key) is not None}
    raw.update(numbers)
    for key in allowed:
        if key in spec and spec[key] is None:
            raise SweepConfigError(f"{where}.{key}: must be a number, not null")
    if "min" in allowed:
        for key in ("min", "max"):
            if key not in numbers:
                raise SweepConfigError(f"{where}.{key}: missing; a {distribution} parameter needs min and max")
        low, high = numbers["min"], numbers["max"]
        if distribution == "int_uniform":
            low, high = _int_bound(low, f"{where}.min"), _int_bound(high, f"{where}.max")
            raw["min"], raw["max"] = low, high
        if not low < high:
            raise SweepConfigError(f"{where}: min must be below max (min is {_num(low)}, max {_num(high)})")
        if distribution in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values") and low <= 0:
            raise SweepConfigError(f"{where}.min: must be above 0 for {distribution} (the values' logarithms are used)")
        if distribution in ("log_uniform", "q_log_uniform", "inv_log_uniform") and (abs(low) > 700 or abs(high) > 700):
            raise SweepConfigError(
                f"{where}: {distribution} takes its bounds in log space (e^min..e^max); {_num(low)}..{_num(high)} "
                "is out of range. For bounds as values use log_uniform_values"
            )
    sigma = numbers.get("sigma", 1.0)
    if "sigma" in allowed and not sigma > 0:
        raise SweepConfigError(f"{where}.sigma: must be above 0, not {_num(sigma)}")
    q = numbers.get("q", 1.0)
    if "q" in allowed and not q > 0:
        raise SweepConfigError(f"{where}.q: must be above 0, not {_num(q)}")
    param = Param(
        name,
        distribution,
        min=numbers.get("min") if distribution != "int_uniform" else int(numbers["min"]),
        max=numbers.get("max") if distribution != "int_uniform" else int(numbers["max"]),
        mu=numbers.get("mu", 0.0),
        sigma=sigma,
        q=q,
    )
    if param.min is not None and distribution.startswith("q_"):
        first, last = param.multiples()
        if first > last:
            low_value, high_value = param.value_bounds()
            raise SweepConfigError(
                f"{where}: no multiple of q ({_num(q)}) lies between {low_value:.6g} and {high_value:.6g}; "
                "lower q or widen min..max"
            )
        if param.is_log and param.quantize(first) <= 0:
            raise SweepConfigError(f"{where}.q: {_num(q)} rounds the smallest values to 0; lower q")
    return param


def _infer(where: str, spec: Mapping[str, Any]) -> str:
    """The distribution named, or the one W&B infers: value → constant, values → categorical, int min and max →
    int_uniform, a float bound → uniform."""
    named = spec.get("distribution")
    if named is not None:
        if not isinstance(named, str):
            raise SweepConfigError(f"{where}.distribution: must be a name like uniform, not {_kind(named)}")
        if named in ("beta", "q_beta"):
            raise SweepConfigError(
                f"{where}.distribution: {named} is not supported by Adjutant's search; use uniform or q_uniform"
            )
        named = _ALIASES.get(named, named)
        if named not in DISTRIBUTIONS:
            raise SweepConfigError(
                f"{where}.distribution: {_show(named)} is not a W&B distribution; use one of {', '.join(DISTRIBUTIONS)}"
            )
        return named
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "min" in spec and "max" in spec:
        bounds = [_number(spec[key], f"{where}.{key}") for key in ("min", "max")]
        return "int_uniform" if all(isinstance(bound, int) for bound in bounds) else "uniform"
    if "mu" in spec or "sigma" in spec:
        raise SweepConfigError(
            f"{where}: mu and sigma need a distribution (normal, q_normal, log_normal, q_log_normal)"
        )
    if "min" in spec or "max" in spec:
        missing = "max" if "min" in spec else "min"
        raise SweepConfigError(f"{where}.{missing}: missing; a range needs both min and max")
    raise SweepConfigError(f"{where}: give value, values, or min and max (with an optional distribution)")


def _categorical(name: str, where: str, spec: Mapping[str, Any], raw: dict[str, Any]) -> Param:
    values = spec.get("values")
    if not isinstance(values, list):
        raise SweepConfigError(f"{where}.values: must be a list like [16, 32, 64], not {_kind(values)}")
    if not values:
        raise SweepConfigError(f"{where}.values: empty; give at least one value")
    if len(values) > MAX_VALUES:
        raise SweepConfigError(f"{where}.values: {len(values):,} values; at most {MAX_VALUES:,}")
    seen: set[str] = set()
    for index, value in enumerate(values):
        _finite_everywhere(value, f"{where}.values[{index}]")
        key = canonical(value)
        if key in seen:
            raise SweepConfigError(f"{where}.values: {_show(value)} appears twice")
        seen.add(key)
    probabilities = None
    if spec.get("probabilities") is not None:
        given = spec["probabilities"]
        if not isinstance(given, list):
            raise SweepConfigError(f"{where}.probabilities: must be a list of numbers, not {_kind(given)}")
        if len(given) != len(values):
            raise SweepConfigError(
                f"{where}.probabilities: {len(given)} probabilities for {len(values)} values; give one per value"
            )
        numbers = [_number(p, f"{where}.probabilities[{i}]") for i, p in enumerate(given)]
        if any(p < 0 for p in numbers):
            raise SweepConfigError(f"{where}.probabilities: must not be negative")
        total = math.fsum(numbers)
        if abs(total - 1) > 1e-6:
            raise SweepConfigError(f"{where}.probabilities: must add up to 1 (they add up to {total:.6g})")
        raw["probabilities"] = numbers
        probabilities = tuple(float(p) for p in numbers)
    return Param(name, "categorical", values=tuple(values), probabilities=probabilities)


# -- values -----------------------------------------------------------------------------------------------------------
def _number(value: Any, where: str) -> int | float:
    """A number from a numeric field: an int or a finite float; a string that is a number (YAML 1.1's ``1e-5``,
    a quoted ``"0.1"``) is taken as it."""
    if isinstance(value, bool):
        raise SweepConfigError(f"{where}: must be a number, not {str(value).lower()}")
    if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        text = value.strip()
        value = int(text) if re.fullmatch(r"[-+]?[0-9]+", text) else float(text)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SweepConfigError(f"{where}: must be a finite number, not {value}")
        return value
    raise SweepConfigError(f"{where}: must be a number, not {_kind(value)}")


def _whole(value: Any, where: str, *, low: int) -> int:
    number = _number(value, where)
    if not float(number).is_integer() or number < low:
        raise SweepConfigError(f"{where}: must be a whole number of at least {low}, not {_show(value)}")
    return int(number)


def _int_bound(value: int | float, where: str) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise SweepConfigError(f"{where}: int_uniform needs whole numbers, not {_num(value)}")
        return int(value)
    return value


def _finite_everywhere(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SweepConfigError(f"{where}: {value} is not a number a script can receive as JSON")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SweepConfigError(f"{where}: the key {_show(key)} must be a string for the script's JSON")
            _finite_everywhere(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _finite_everywhere(item, f"{where}[{index}]")
    elif not isinstance(value, str | int | float | bool | type(None)):
        raise SweepConfigError(f"{where}: {_kind(value)} is not a JSON value")


def _decimals(q: float) -> int:
    exponent = Decimal(repr(q)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _num(value: float | int | None) -> str:
    if value is None:
        return "?"
    return str(value) if isinstance(value, int) else f"{value:g}"


def _json_text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: f"the text {_show(value)}",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def iter_cells(config: SweepConfig) -> Iterator[dict[str, Any]]:
    """Every grid cell in order (the first parameter varies slowest), lazily."""
    axes = [param.choices() for param in config.parameters]
    if any(axis is None for axis in axes):
        raise ValueError("iter_cells needs a finite list of values for every parameter")
    sizes = [len(axis) for axis in axes if axis is not None]
    total = math.prod(sizes)
    names = [param.name for param in config.parameters]
    for index in range(total):
        cell: list[Any] = []
        rest = index
        for size in reversed(sizes):
            rest, position = divmod(rest, size)
            cell.append(position)
        cell.reverse()
        yield {name: axis[pos] for name, axis, pos in zip(names, axes, cell, strict=True) if axis is not None}
