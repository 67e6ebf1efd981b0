"""The search: grid order and exhaustion, seeded random, Optuna's TPE for bayes, hyperband, best and target."""

import json
import math
import statistics
import time

import pytest

from adjutant.hparams import expand_sweep
from adjutant.sweeps.config import grid_config, parse_sweep_config
from adjutant.sweeps.search import (
    Trial,
    best_trial,
    from_unit,
    hyperband_stops,
    more_to_propose,
    propose,
    startup_trials,
    target_reached,
    to_unit,
)

RANDOM = """
method: random
metric: {name: loss}
run_cap: 6
parameters:
  lr: {distribution: log_uniform_values, min: 1e-5, max: 1e-1}
  dropout: {min: 0.0, max: 0.5}
  layers: {min: 1, max: 8}
  width: {distribution: q_uniform, min: 32, max: 256, q: 32}
  optimizer: {values: [sgd, adam, [adamw, 0.01]]}
  epochs: {value: 10}
"""

QUADRATIC = "method: bayes\nmetric: {name: loss, goal: minimize}\nrun_cap: 12\nparameters: {x: {min: 0.0, max: 1.0}}"


def run_one_at_a_time(config, seed, score, n):
    """Propose one trial at a time, as slots free, feeding each value back before the next proposal."""
    trials = []
    for number in range(1, n + 1):
        (params,) = propose(config, trials, seed, 1)
        trials.append(Trial(number, params, score(params), "done"))
    return trials


# -- random -----------------------------------------------------------------------------------------------------------
def test_random_with_run_cap_6_gives_6_distinct_trials_inside_the_bounds():
    config = parse_sweep_config(RANDOM)
    proposed = propose(config, [], seed=7, count=10)
    assert len(proposed) == 6  # run_cap
    assert len({json.dumps(p, sort_keys=True) for p in proposed}) == 6
    for params in proposed:
        assert list(params) == ["lr", "dropout", "layers", "width", "optimizer", "epochs"]
        assert 1e-5 <= params["lr"] <= 0.1 and type(params["lr"]) is float
        assert 0.0 <= params["dropout"] <= 0.5
        assert params["layers"] in range(1, 9) and type(params["layers"]) is int
        assert params["width"] in (32, 64, 96, 128, 160, 192, 224, 256) and type(params["width"]) is int
        assert params["optimizer"] in ("sgd", "adam", ["adamw", 0.01])
        assert params["epochs"] == 10


def test_random_is_the_same_for_the_same_seed_and_different_for_another():
    config = parse_sweep_config(RANDOM)
    first = propose(config, [], seed=7, count=6)
    assert propose(config, [], seed=7, count=6) == first
    assert propose(config, [], seed=8, count=6) != first
    # Trial k depends on (seed, k) only: proposing as slots free gives the same set as all at once.
    trials = []
    for number in range(1, 7):
        (params,) = propose(config, trials, seed=7, count=1)
        trials.append(Trial(number, params, None, "pending"))
    assert [t.params for t in trials] == first
    assert propose(config, trials, seed=7, count=1) == []  # run_cap reached, whatever the trials' states


def test_random_avoids_repeating_a_recorded_trial_in_a_small_space():
    config = parse_sweep_config("method: random\nparameters: {a: {values: [1, 2, 3]}, b: {values: [x, y]}}")
    proposed = propose(config, [], seed=1, count=6)
    assert sorted(json.dumps(p) for p in proposed) == sorted(
        json.dumps(c) for c in expand_sweep({"a": [1, 2, 3], "b": ["x", "y"]})
    )


def test_random_draws_follow_categorical_probabilities():
    config = parse_sweep_config(
        "method: random\nparameters: {a: {values: [rare, common], probabilities: [0.1, 0.9]}, x: {min: 0.0, max: 1.0}}"
    )
    drawn = [p["a"] for p in propose(config, [], seed=3, count=400)]
    assert 0.8 < drawn.count("common") / 400 < 0.97


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        ("{distribution: normal, mu: 5, sigma: 2}", lambda v: isinstance(v, float)),
        ("{distribution: q_normal, mu: 0, sigma: 10, q: 5}", lambda v: type(v) is int and v % 5 == 0),
        ("{distribution: log_normal, mu: 0, sigma: 1}", lambda v: isinstance(v, float) and v > 0),
        (
            "{distribution: q_log_normal, mu: 3, sigma: 1, q: 0.5}",
            lambda v: isinstance(v, float) and v * 2 == round(v * 2),
        ),
        ("{distribution: log_uniform, min: -5, max: -1}", lambda v: math.exp(-5) <= v <= math.exp(-1)),
        (
            "{distribution: q_log_uniform_values, min: 16, max: 256, q: 8}",
            lambda v: type(v) is int and 16 <= v <= 256 and v % 8 == 0,
        ),
        ("{distribution: inv_log_uniform_values, min: 0.001, max: 0.1}", lambda v: 0.001 <= v <= 0.1),
        ("{distribution: inv_log_uniform, min: 1, max: 4}", lambda v: math.exp(-4) <= v <= math.exp(-1)),
        ("{distribution: q_uniform, min: 0, max: 1, q: 0.1}", lambda v: v in [round(0.1 * k, 1) for k in range(11)]),
    ],
)
def test_random_values_have_the_declared_type_and_support(spec, check):
    config = parse_sweep_config(f"method: random\nparameters:\n  p: {spec}\n")
    for params in propose(config, [], seed=11, count=50):
        assert check(params["p"]), params


def test_quantiles_round_trip():
    config = parse_sweep_config(
        "method: random\nparameters:\n  a: {distribution: normal, mu: 1, sigma: 3}\n"
        "  b: {distribution: log_uniform_values, min: 0.001, max: 10}\n  c: {min: -2.0, max: 2}\n"
    )
    for param in config.parameters:
        for u in (0.01, 0.3, 0.5, 0.9):
            assert to_unit(param, from_unit(param, u)) == pytest.approx(u, abs=1e-9)


# -- grid -------------------------------------------------------------------------------------------------------------
def test_grid_cells_come_in_expand_sweep_order_skip_taken_ones_and_run_out():
    shorthand = {"lr": [0.1, 0.01], "bs": [16, 32, 64], "epochs": 3}
    config = grid_config(shorthand)
    cells = expand_sweep(shorthand)
    assert propose(config, [], seed=0, count=100) == cells
    first_two = propose(config, [], seed=0, count=2)
    assert first_two == cells[:2]
    trials = [Trial(1, cells[0], None, "done"), Trial(2, cells[3], None, "failed")]
    assert propose(config, trials, seed=0, count=2) == [cells[1], cells[2]]
    trials = [Trial(n, cell, 1.0, "done") for n, cell in enumerate(cells, 1)]
    assert propose(config, trials, seed=0, count=1) == []
    assert not more_to_propose(config, trials)
    assert more_to_propose(config, trials[:-1])


def test_grid_with_int_uniform_and_q_uniform_and_a_run_cap():
    config = parse_sweep_config(
        "method: grid\nrun_cap: 5\nparameters:\n  n: {min: 1, max: 3}\n"
        "  q: {distribution: q_uniform, min: 0, max: 1, q: 0.5}\n"
    )
    assert config.trial_count() == 5
    proposed = propose(config, [], seed=0, count=10)
    assert proposed == [{"n": 1, "q": 0}, {"n": 1, "q": 0.5}, {"n": 1, "q": 1.0}, {"n": 2, "q": 0}, {"n": 2, "q": 0.5}]
    assert [type(p["n"]) for p in proposed] == [int] * 5


# -- bayes ------------------------------------------------------------------------------------------------------------
def quadratic(params):
    return (params["x"] - 0.3) ** 2


def halves(trials):
    early = statistics.median(abs(t.params["x"] - 0.3) for t in trials[:6])
    late = statistics.median(abs(t.params["x"] - 0.3) for t in trials[6:12])
    return early, late


def test_bayes_moves_towards_the_minimum_of_a_quadratic():
    config = parse_sweep_config(QUADRATIC)
    trials = run_one_at_a_time(config, seed=0, score=quadratic, n=12)  # seed 0: the first one tried
    assert propose(config, trials, seed=0, count=1) == []  # run_cap 12
    early, late = halves(trials)
    assert late < early


def test_bayes_improves_for_most_seeds():
    """Measured over seeds 0-99 with Optuna 5.1: 84 of 100 hold (of 0-19, all but 2 and 5): TPE's first
    startup_trials (3 of 12) are random, and a single run of 12 trials is noisy."""
    config = parse_sweep_config(QUADRATIC)
    assert startup_trials(config) == 3
    holds = sum(
        late < early for early, late in (halves(run_one_at_a_time(config, seed, quadratic, 12)) for seed in range(20))
    )
    assert holds >= 15, f"{holds} of 20 seeds"


def test_bayes_is_deterministic_for_the_same_trials_and_seed():
    config = parse_sweep_config(QUADRATIC)
    trials = run_one_at_a_time(config, seed=4, score=quadratic, n=8)
    assert propose(config, trials, seed=4, count=3) == propose(config, trials, seed=4, count=3)
    assert propose(config, trials, seed=4, count=1) != propose(config, trials, seed=5, count=1)
    assert run_one_at_a_time(config, seed=4, score=quadratic, n=8) == trials


def test_bayes_keeps_types_and_parallel_proposals_apart():
    config = parse_sweep_config(
        """
method: bayes
metric: {name: acc, goal: maximize}
parameters:
  lr: {distribution: log_uniform_values, min: 1e-4, max: 1e-1}
  layers: {min: 1, max: 6}
  width: {distribution: q_log_uniform_values, min: 16, max: 512, q: 16}
  act: {values: [relu, gelu, [swish, 1.5]]}
  noise: {distribution: q_normal, mu: 0, sigma: 3, q: 1}
  epochs: {value: 5}
"""
    )

    def accuracy(params):
        return -abs(math.log10(params["lr"]) + 2) - abs(params["layers"] - 3) / 6 + (params["act"] == "gelu") / 2

    trials = []
    for number in range(1, 17):
        (params,) = propose(config, trials, seed=2, count=1)
        trials.append(Trial(number, params, accuracy(params), "done"))
    pending = [Trial(17, propose(config, trials, seed=2, count=1)[0], None, "pending")]
    batch = propose(config, [*trials, *pending], seed=2, count=4)
    assert len({json.dumps(p, sort_keys=True) for p in [*batch, pending[0].params]}) == 5
    for params in [t.params for t in trials] + batch:
        assert type(params["lr"]) is float and 1e-4 <= params["lr"] <= 0.1
        assert type(params["layers"]) is int and 1 <= params["layers"] <= 6
        assert type(params["width"]) is int and params["width"] % 16 == 0 and 16 <= params["width"] <= 512
        assert params["act"] in ("relu", "gelu", ["swish", 1.5])
        assert type(params["noise"]) is int
        assert params["epochs"] == 5


def test_bayes_takes_failed_stopped_and_foreign_trials_in_its_stride():
    config = parse_sweep_config(QUADRATIC.replace("run_cap: 12", "run_cap: 30"))
    trials = run_one_at_a_time(config, seed=1, score=quadratic, n=10)
    trials += [
        Trial(11, {"x": 0.95}, None, "failed"),
        Trial(12, {"x": 0.9}, 0.5, "stopped"),
        Trial(13, {"x": 7.0}, 0.0, "done"),  # outside the space (a changed configuration): left out
        Trial(14, {"y": 1}, 0.0, "done"),
        Trial(15, {"x": 0.5}, None, "dropped"),
        Trial(16, {"x": 0.31}, None, "pending"),
    ]
    (params,) = propose(config, trials, seed=1, count=1)
    assert 0.0 <= params["x"] <= 1.0


def test_bayes_propose_over_100_trials_is_fast():
    config = parse_sweep_config(
        """
method: bayes
metric: {name: loss}
parameters:
  lr: {distribution: log_uniform_values, min: 1e-5, max: 1e-1}
  bs: {values: [16, 32, 64, 128]}
  layers: {min: 1, max: 8}
  dropout: {min: 0.0, max: 0.5}
  epochs: {value: 10}
"""
    )
    trials = [
        Trial(
            n,
            {
                "lr": 10 ** (-5 + 4 * ((n * 7) % 100) / 100),
                "bs": 16 << (n % 4),
                "layers": 1 + n % 8,
                "dropout": (n % 50) / 100,
                "epochs": 10,
            },
            float(n % 13),
            "done" if n < 97 else "pending",
        )
        for n in range(1, 101)
    ]
    propose(config, trials[:5], seed=0, count=1)  # Optuna's import, once
    started = time.perf_counter()
    proposed = propose(config, trials, seed=0, count=1)
    elapsed = time.perf_counter() - started
    assert len(proposed) == 1
    assert elapsed < 2.0  # measured about 0.035 s on a shared 2-core machine


# -- hyperband, best, target ------------------------------------------------------------------------------------------
HYPERBAND = """
method: random
metric: {name: loss, goal: GOAL}
early_terminate: {type: hyperband, min_iter: 3, eta: 3}
parameters: {x: {min: 0.0, max: 1.0}}
"""


def history(*values, start=0):
    return [(start + step, value) for step, value in enumerate(values)]


def test_hyperband_stops_a_bad_trial_at_the_first_rung_and_not_a_good_one():
    config = parse_sweep_config(HYPERBAND.replace("GOAL", "minimize"))
    finished = {1: history(1.0, 0.8, 0.6, 0.5, 0.4), 2: history(1.0, 0.7, 0.5, 0.45, 0.3)}
    running = {3: history(1.0, 1.0, 1.0, 0.99), 4: history(1.0, 0.6, 0.4, 0.35)}
    assert hyperband_stops(config, running, finished) == {3: 0}
    # Before its first rung (step 3) a trial is not judged, however bad.
    assert hyperband_stops(config, {5: history(9.0, 9.0, 9.0)}, finished) == {}


def test_hyperband_for_a_maximized_metric_and_later_rungs():
    config = parse_sweep_config(HYPERBAND.replace("GOAL", "maximize"))
    finished = {n: history(*[0.1 * n + 0.01 * step for step in range(12)]) for n in range(1, 4)}
    good = history(*[0.5 + 0.01 * step for step in range(10)])  # the best at step 9, the second rung
    bad = history(*[0.5 if step < 4 else 0.0 for step in range(10)])  # fine at the first rung, worst at the second
    assert hyperband_stops(config, {4: good, 5: bad}, finished) == {5: 1}


def test_hyperband_reads_the_last_value_at_or_before_a_rung_of_a_sampled_history():
    config = parse_sweep_config(HYPERBAND.replace("GOAL", "minimize"))
    finished = {1: [(0, 1.0), (2, 0.2), (5, 0.1)], 2: [(0, 1.0), (3, 0.3)]}
    assert hyperband_stops(config, {3: [(0, 1.0), (2, 0.9), (4, 0.1)]}, finished) == {3: 0}
    assert hyperband_stops(config, {3: [(0, 1.0), (2, 0.1), (4, 0.9)]}, finished) == {}


def test_hyperband_needs_early_terminate():
    config = parse_sweep_config("method: random\nmetric: {name: loss}\nparameters: {x: {min: 0.0, max: 1.0}}")
    assert hyperband_stops(config, {1: history(9, 9, 9, 9)}, {2: history(0, 0, 0, 0)}) == {}


@pytest.mark.parametrize(("goal", "best", "reached"), [("minimize", 3, 3), ("maximize", 2, 1)])
def test_best_trial_and_target_reached(goal, best, reached):
    config = parse_sweep_config(
        f"method: random\nmetric: {{name: loss, goal: {goal}, target: 0.1}}\nparameters: {{x: {{min: 0.0, max: 1.0}}}}"
    )
    trials = [
        Trial(1, {"x": 0.1}, 0.5, "done"),
        Trial(2, {"x": 0.2}, 0.9, "done"),
        Trial(3, {"x": 0.3}, 0.05, "done"),
        Trial(4, {"x": 0.4}, 0.01, "stopped"),  # stopped early: neither best nor reaching the target
        Trial(5, {"x": 0.5}, float("nan"), "done"),
        Trial(6, {"x": 0.6}, None, "pending"),
        Trial(7, {"x": 0.7}, 0.05, "done"),  # ties trial 3: the earlier one is best
    ]
    assert best_trial(config, trials).number == best
    found = target_reached(config, trials)
    assert (found.number if found else None) == reached


def test_no_best_without_a_metric_and_no_target_without_one():
    no_metric = grid_config({"a": [1, 2]})
    trials = [Trial(1, {"a": 1}, 0.0, "done")]
    assert best_trial(no_metric, trials) is None
    assert target_reached(no_metric, trials) is None
    no_target = parse_sweep_config("method: random\nmetric: {name: l}\nparameters: {x: {min: 0.0, max: 1.0}}")
    assert target_reached(no_target, [Trial(1, {"x": 0.1}, -1e9, "done")]) is None
