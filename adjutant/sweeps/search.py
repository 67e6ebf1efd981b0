"""The search: which trials to run next, which running trial to stop early, which trial is best. Pure, no I/O.

Everything is computed from the trials recorded (``sweep_trials``), never from memory, so a restarted bot resumes a
sweep exactly where it was:

- **grid**: the cells in :func:`adjutant.hparams.expand_sweep`'s order (the first parameter varies slowest),
  skipping the ones any recorded trial already has.
- **random**: trial k's parameters are drawn from ``random.Random`` seeded by (seed, k), so the same seed gives the
  same trials, and a restart the same next one.
- **bayes**: Optuna's TPE sampler (seeded), in a fresh in-memory study rebuilt from the trials on every call: done
  trials are complete with their value, pending ones running (the constant liar keeps parallel proposals apart),
  failed ones imputed with the worst value seen (W&B's ``impute: worst``). The first few trials are random
  (TPE's startup). Optuna is imported on the first bayes proposal only.
- **hyperband**: W&B's rule. At each rung a running trial whose metric is worse than the (1/eta) quantile of all
  trials' values at that rung is stopped. Rungs here are steps of the metric's history (W&B counts logged values;
  the two agree when the metric is logged once per step from step 0, and steps survive W&B's history sampling).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from adjutant.sweeps.config import Param, SweepConfig, canonical, iter_cells

if TYPE_CHECKING:
    import optuna

#: Trial states (adjutant.sweeps TrialState values map onto these; queued and running are both pending).
PENDING = "pending"
DONE = "done"
FAILED = "failed"
STOPPED = "stopped"
DROPPED = "dropped"
_PENDING_STATES = frozenset({PENDING, "queued", "running"})
#: bayes: how many trials are drawn at random before TPE models the results: a quarter of ``run_cap``, from 3 to 10
#: (Optuna's default, 10, is made for long studies; sweeps run by hand are often 10 to 50 trials). Without a cap, 10.
MIN_STARTUP_TRIALS = 3
MAX_STARTUP_TRIALS = 10
#: How many times a draw that repeats a recorded trial is drawn again (spaces of few discrete values).
_REDRAWS = 20
#: One bayes proposal at a time: Optuna's logger level and the warning filters changed around it are process-wide.
_OPTUNA_LOCK = threading.Lock()
#: The unit interval's ends, kept away from 0 and 1 where a normal distribution's quantile is infinite.
_EPSILON = 1e-12


@dataclass(frozen=True)
class Trial:
    """One trial as recorded: its number (1, 2, ...), its parameters, the metric's final value and its state:
    "pending" (queued or running), "done", "failed", "stopped" (early) or "dropped" (never ran)."""

    number: int
    params: Mapping[str, Any]
    value: float | None
    state: str

    @property
    def pending(self) -> bool:
        return self.state in _PENDING_STATES

    @property
    def scored(self) -> bool:
        """Done, with a finite metric value."""
        return self.state == DONE and self.value is not None and math.isfinite(self.value)


def propose(config: SweepConfig, trials: Sequence[Trial], seed: int, count: int) -> list[dict[str, Any]]:
    """Up to ``count`` new trials' parameters (every parameter, in the configuration's order), deterministic for
    (config, trials, seed). Fewer when the grid is exhausted or ``run_cap`` is reached (every recorded trial counts,
    whatever its state)."""
    if config.run_cap is not None:
        count = min(count, config.run_cap - len(trials))
    if count <= 0:
        return []
    if config.method == "grid":
        return _grid(config, trials, count)
    if config.method == "random":
        return _random(config, trials, seed, count)
    return _bayes(config, trials, seed, count)


def more_to_propose(config: SweepConfig, trials: Sequence[Trial]) -> bool:
    """Whether :func:`propose` could still give a trial (run_cap not reached; for grid, a cell left). Cheap: no
    optimiser runs."""
    if config.run_cap is not None and len(trials) >= config.run_cap:
        return False
    if config.method == "grid":
        taken = {_key(config, trial.params) for trial in trials}
        return any(_key(config, cell) not in taken for cell in iter_cells(config))
    return True


def best_trial(config: SweepConfig, trials: Sequence[Trial]) -> Trial | None:
    """The done trial with the best value for the metric's goal (the earliest on a tie); None without a metric or a
    scored trial."""
    metric = config.metric
    if metric is None:
        return None
    best: Trial | None = None
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.scored and (best is None or metric.better(_value(trial), _value(best))):
            best = trial
    return best


def target_reached(config: SweepConfig, trials: Sequence[Trial]) -> Trial | None:
    """The first done trial (by number) whose value reaches ``metric.target`` (at or below it to minimize, at or
    above to maximize); None without a target or such a trial."""
    metric = config.metric
    if metric is None or metric.target is None:
        return None
    return next((t for t in sorted(trials, key=lambda t: t.number) if t.scored and metric.reaches(_value(t))), None)


def hyperband_stops(
    config: SweepConfig,
    histories: Mapping[int, Sequence[tuple[int, float]]],
    finished: Mapping[int, Sequence[tuple[int, float]]],
) -> dict[int, int]:
    """Trial number → the rung index (0 = the first rung, at step ``min_iter``) at which a RUNNING trial is
    stopped.

    ``histories`` are the running trials' (step, value) of the metric, ``finished`` the ended trials' (both count
    for the bands). As W&B does: for the latest rung a running trial has reached (a value logged at or after the
    rung's step), its value there (the last logged at or before the step) is compared with the band, the value at
    index ``int(n / eta)`` of all n trials' values at that rung sorted best first; worse than the band is stopped.
    Empty without hyperband or a metric. Non-finite values are left out."""
    band = config.early_terminate
    metric = config.metric
    if band is None or metric is None or not histories:
        return {}
    sign = -1.0 if metric.maximize else 1.0
    clean = {
        number: sorted((step, sign * value) for step, value in history if math.isfinite(value))
        for number, history in (*finished.items(), *histories.items())
    }
    last_step = max((history[-1][0] for history in clean.values() if history), default=-1)
    rungs = band.rung_steps(last_step)
    if not rungs:
        return {}
    bands: list[float] = []
    for step in rungs:
        values = sorted(value for history in clean.values() if (value := _value_at(history, step)) is not None)
        bands.append(values[int(len(values) / band.eta)] if values else math.inf)
    stops: dict[int, int] = {}
    for number in histories:
        history = clean[number]
        if not history:
            continue
        reached = [index for index, step in enumerate(rungs) if history[-1][0] >= step]
        if not reached:
            continue
        index = reached[-1]
        value = _value_at(history, rungs[index])
        if value is not None and value > bands[index]:
            stops[number] = index
    return stops


# -- grid -------------------------------------------------------------------------------------------------------------
def _grid(config: SweepConfig, trials: Sequence[Trial], count: int) -> list[dict[str, Any]]:
    taken = {_key(config, trial.params) for trial in trials}
    out: list[dict[str, Any]] = []
    for cell in iter_cells(config):
        if _key(config, cell) in taken:
            continue
        out.append(copy.deepcopy(cell))
        if len(out) == count:
            break
    return out


# -- random -----------------------------------------------------------------------------------------------------------
def _random(config: SweepConfig, trials: Sequence[Trial], seed: int, count: int) -> list[dict[str, Any]]:
    taken = {_key(config, trial.params) for trial in trials}
    first = max((trial.number for trial in trials), default=0) + 1
    out: list[dict[str, Any]] = []
    for number in range(first, first + count):
        rng = random.Random(f"adjutant-sweep:{seed}:{number}")  # noqa: S311 (the same (seed, k): the same trial k)
        params = _draw(config, rng)
        for _ in range(_REDRAWS):
            if _key(config, params) not in taken:
                break
            params = _draw(config, rng)
        taken.add(_key(config, params))
        out.append(params)
    return out


def _draw(config: SweepConfig, rng: random.Random) -> dict[str, Any]:
    return {param.name: _sample(param, rng) for param in config.parameters}


def _sample(param: Param, rng: random.Random) -> Any:
    if param.distribution == "constant":
        return copy.deepcopy(param.value)
    if param.distribution == "categorical":
        if param.probabilities is not None:
            return copy.deepcopy(rng.choices(param.values, weights=param.probabilities)[0])
        return copy.deepcopy(rng.choice(param.values))
    if param.distribution == "int_uniform":
        assert param.min is not None and param.max is not None
        return rng.randint(int(param.min), int(param.max))
    return from_unit(param, rng.random())


def from_unit(param: Param, u: float) -> float | int:
    """The value at quantile ``u`` (0..1) of a numeric parameter's distribution: W&B's ``ppf``, quantized for the
    ``q_`` kinds (to a multiple of ``q`` inside min..max when bounded)."""
    if param.distribution == "int_uniform":
        assert param.min is not None and param.max is not None
        first, last = int(param.min), int(param.max)
        return min(last, first + math.floor(u * (last - first + 1)))
    x: float
    if param.min is not None:
        low, high = param.value_bounds()
        x = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if param.is_log else low + u * (high - low)
        x = min(max(x, low), high)
    else:
        z = NormalDist(param.mu, param.sigma).inv_cdf(min(max(u, _EPSILON), 1 - _EPSILON))
        x = math.exp(min(z, 700.0)) if "log" in param.distribution else z
    if not param.distribution.startswith("q_"):
        return x
    k = round(x / param.q)
    if param.min is not None:
        first, last = param.multiples()
        k = min(max(k, first), last)
    return param.quantize(k)


def to_unit(param: Param, value: float) -> float:
    """The quantile of ``value`` in a numeric parameter's distribution (the inverse of :func:`from_unit`)."""
    if param.min is not None:
        low, high = param.value_bounds()
        if param.is_log:
            position = (math.log(max(value, low)) - math.log(low)) / (math.log(high) - math.log(low))
        else:
            position = (value - low) / (high - low)
    else:
        x = value
        if "log" in param.distribution:
            x = math.log(value) if value > 0 else -math.inf
        position = NormalDist(param.mu, param.sigma).cdf(x) if math.isfinite(x) else 0.0
    return min(max(position, 0.0), 1.0)


# -- bayes ------------------------------------------------------------------------------------------------------------
def _bayes(config: SweepConfig, trials: Sequence[Trial], seed: int, count: int) -> list[dict[str, Any]]:
    import optuna

    metric = config.metric
    assert metric is not None  # parse refuses bayes without a metric
    searched = [param for param in config.parameters if param.distribution != "constant"]
    distributions = {param.name: _distribution(param) for param in searched}
    taken = {_key(config, trial.params) for trial in trials}
    out: list[dict[str, Any]] = []
    with _OPTUNA_LOCK, _quiet_optuna():
        sampler = optuna.samplers.TPESampler(
            seed=_derived_seed(seed, len(trials)),
            n_startup_trials=startup_trials(config),
            multivariate=True,
            constant_liar=True,
        )
        study = optuna.create_study(
            direction="maximize" if metric.maximize else "minimize",
            sampler=sampler,
            storage=optuna.storages.InMemoryStorage(),
        )
        for frozen in _frozen_trials(config, searched, distributions, trials):
            study.add_trial(frozen)
        while len(out) < count:
            params: dict[str, Any] = {}
            for _ in range(_REDRAWS):
                asked = study.ask(distributions)
                params = {
                    param.name: copy.deepcopy(param.value)
                    if param.distribution == "constant"
                    else _from_internal(param, asked.params[param.name])
                    for param in config.parameters
                }
                if _key(config, params) not in taken:
                    break
            taken.add(_key(config, params))
            out.append(params)
    return out


def startup_trials(config: SweepConfig) -> int:
    """How many of a bayes sweep's first trials are random (TPE's startup)."""
    if config.run_cap is None:
        return MAX_STARTUP_TRIALS
    return max(MIN_STARTUP_TRIALS, min(MAX_STARTUP_TRIALS, config.run_cap // 4))


def _distribution(param: Param) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution a parameter is searched in (its "internal" value; see :func:`_from_internal`)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.distribution == "categorical":
        return CategoricalDistribution(tuple(range(len(param.values))))  # by index: any JSON value can be a choice
    if param.distribution == "int_uniform":
        assert param.min is not None and param.max is not None
        return IntDistribution(int(param.min), int(param.max))
    if param.min is None:  # the normal kinds: unbounded, searched by quantile
        return FloatDistribution(0.0, 1.0)
    if param.distribution.startswith("q_"):  # the multiples of q inside the bounds, by k
        first, last = param.multiples()
        return IntDistribution(first, last, log=param.is_log)
    low, high = param.value_bounds()
    return FloatDistribution(low, high, log=param.is_log)


def _from_internal(param: Param, internal: Any) -> Any:
    if param.distribution == "categorical":
        return copy.deepcopy(param.values[int(internal)])
    if param.distribution == "int_uniform":
        return int(internal)
    if param.min is None:
        return from_unit(param, float(internal))
    if param.distribution.startswith("q_"):
        return param.quantize(int(internal))
    return float(internal)


def _to_internal(param: Param, value: Any) -> Any:
    """A recorded value in the parameter's Optuna distribution; None when it is not one this parameter can take."""
    if not param.contains(value) and param.min is not None:
        return None
    if param.distribution == "categorical":
        key = canonical(value)
        return next((index for index, item in enumerate(param.values) if canonical(item) == key), None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if param.distribution == "int_uniform":
        return int(value)
    if param.min is None:
        return to_unit(param, float(value))
    if param.distribution.startswith("q_"):
        first, last = param.multiples()
        return min(max(round(value / param.q), first), last)
    low, high = param.value_bounds()
    return min(max(float(value), low), high)


def _frozen_trials(
    config: SweepConfig,
    searched: Sequence[Param],
    distributions: Mapping[str, optuna.distributions.BaseDistribution],
    trials: Sequence[Trial],
) -> Iterator[optuna.trial.FrozenTrial]:
    from optuna.trial import TrialState, create_trial

    metric = config.metric
    assert metric is not None
    scored = [_value(trial) for trial in trials if trial.scored or (trial.state == STOPPED and _finite(trial.value))]
    worst = (min(scored) if metric.maximize else max(scored)) if scored else None
    for trial in sorted(trials, key=lambda t: t.number):
        internal = {param.name: _to_internal(param, trial.params.get(param.name)) for param in searched}
        if any(value is None for value in internal.values()):
            continue  # not a point of this space (a hand-made trial, or a changed configuration): left out
        if trial.pending:
            yield create_trial(state=TrialState.RUNNING, params=internal, distributions=dict(distributions))
            continue
        if trial.scored or (trial.state == STOPPED and _finite(trial.value)):
            value = _value(trial)
        elif trial.state in (FAILED, STOPPED, DONE) and worst is not None:
            value = worst  # W&B's impute: worst, so the search moves away from what failed
        else:
            continue  # dropped (never ran), or nothing to impute from yet
        yield create_trial(state=TrialState.COMPLETE, value=value, params=internal, distributions=dict(distributions))


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines and experimental-feature warnings, silenced for this call only (the host bot may use
    Optuna itself, so its global verbosity is left alone)."""
    import optuna

    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        logger.setLevel(level)


def _derived_seed(seed: int, recorded: int) -> int:
    """The sampler's seed for a proposal after ``recorded`` trials: the same (seed, trials) give the same proposal,
    and each call a fresh draw (a fixed seed in a rebuilt study would repeat the first random draw)."""
    return random.Random(f"adjutant-bayes:{seed}:{recorded}").getrandbits(32)  # noqa: S311 (not a secret)


# -- helpers ----------------------------------------------------------------------------------------------------------
def _key(config: SweepConfig, params: Mapping[str, Any]) -> str:
    return canonical([params.get(param.name) for param in config.parameters])


def _value(trial: Trial) -> float:
    assert trial.value is not None
    return float(trial.value)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _value_at(history: Sequence[tuple[int, float]], step: int) -> float | None:
    """The last value logged at or before ``step`` (None if the history starts after it)."""
    found = None
    for at, value in history:
        if at > step:
            break
        found = value
    return found
