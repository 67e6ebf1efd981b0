"""W&B sweep configurations: every parameter form parses, every refusal names its key, the grid shorthand."""

import json

import pytest

from adjutant.hparams import expand_sweep
from adjutant.sweeps.config import (
    MAX_PARAMETERS,
    Hyperband,
    Metric,
    SweepConfigError,
    grid_config,
    is_sweep_config,
    iter_cells,
    parse_sweep_config,
)


def one_param(spec: str, method: str = "random") -> object:
    config = parse_sweep_config(f"method: {method}\nparameters:\n  p: {spec}\n")
    (param,) = config.parameters
    assert param.name == "p"
    return param


@pytest.mark.parametrize(
    ("spec", "distribution", "fields"),
    [
        ("{value: 10}", "constant", {"value": 10}),
        ("{distribution: constant, value: adam}", "constant", {"value": "adam"}),
        ("{values: [16, 32, 64]}", "categorical", {"values": (16, 32, 64), "probabilities": None}),
        ("{distribution: categorical, values: [a, b]}", "categorical", {"values": ("a", "b")}),
        (
            "{values: [a, b], probabilities: [0.25, 0.75]}",
            "categorical",
            {"values": ("a", "b"), "probabilities": (0.25, 0.75)},
        ),
        (
            "{distribution: categorical_w_probabilities, values: [1, 2], probabilities: [0.5, 0.5]}",
            "categorical",
            {"probabilities": (0.5, 0.5)},
        ),
        ("{values: [[64, 64], [128], {a: 1}]}", "categorical", {"values": ([64, 64], [128], {"a": 1})}),
        ("{min: 1, max: 8}", "int_uniform", {"min": 1, "max": 8}),
        ("{distribution: int_uniform, min: 1, max: 8}", "int_uniform", {"min": 1, "max": 8}),
        ("{min: 0, max: 0.5}", "uniform", {"min": 0, "max": 0.5}),
        ("{min: 0.0, max: 1}", "uniform", {"min": 0.0, "max": 1}),
        ("{distribution: uniform, min: 0, max: 1}", "uniform", {"min": 0, "max": 1}),
        ("{distribution: q_uniform, min: 0, max: 1, q: 0.25}", "q_uniform", {"q": 0.25}),
        ("{distribution: q_uniform, min: 0, max: 10}", "q_uniform", {"q": 1.0}),
        ("{distribution: log_uniform_values, min: 1e-5, max: 0.1}", "log_uniform_values", {"min": 1e-5, "max": 0.1}),
        ("{distribution: q_log_uniform_values, min: 16, max: 256, q: 8}", "q_log_uniform_values", {"q": 8}),
        ("{distribution: log_uniform, min: -10, max: -2}", "log_uniform", {"min": -10, "max": -2}),
        ("{distribution: q_log_uniform, min: 2, max: 6, q: 1}", "q_log_uniform", {"q": 1}),
        ("{distribution: inv_log_uniform, min: 1, max: 5}", "inv_log_uniform", {"min": 1, "max": 5}),
        ("{distribution: inv_log_uniform_values, min: 0.001, max: 0.1}", "inv_log_uniform_values", {"max": 0.1}),
        ("{distribution: normal}", "normal", {"mu": 0.0, "sigma": 1.0}),
        ("{distribution: normal, mu: 3, sigma: 0.5}", "normal", {"mu": 3, "sigma": 0.5}),
        ("{distribution: q_normal, mu: 0, sigma: 4, q: 2}", "q_normal", {"q": 2}),
        ("{distribution: log_normal, mu: -3, sigma: 1}", "log_normal", {"mu": -3}),
        ("{distribution: q_log_normal, mu: 3, sigma: 1, q: 1}", "q_log_normal", {"q": 1}),
    ],
)
def test_every_parameter_form_parses(spec, distribution, fields):
    param = one_param(spec)
    assert param.distribution == distribution
    for key, expected in fields.items():
        got = getattr(param, key)
        assert got == expected and type(got) is type(expected), (key, got)
    assert param.describe().startswith("p: ")


def test_a_full_configuration_parses_with_metric_cap_hyperband_and_kept_keys():
    config = parse_sweep_config(
        """
program: ./train.py
command:
  - ${env}
  - ${interpreter}
  - ${program}
  - ${args_json}
name: lr search
description: the first search
project: mnist
entity: team
method: bayes
metric:
  name: val_loss
  goal: minimize
  target: 0.05
run_cap: 20
early_terminate: {type: hyperband, min_iter: 3}
parameters:
  lr: {distribution: log_uniform_values, min: 1e-5, max: 1e-1}
  batch_size: {values: [16, 32, 64]}
  epochs: {value: 10}
"""
    )
    assert config.method == "bayes"
    assert config.metric == Metric("val_loss", "minimize", 0.05)
    assert config.run_cap == 20
    assert config.early_terminate == Hyperband(3, 3)
    assert [p.name for p in config.parameters] == ["lr", "batch_size", "epochs"]
    assert config.trial_count() == 20
    for key in ("program", "command", "name", "description", "project", "entity"):
        assert key in config.raw
    assert config.raw["command"] == ["${env}", "${interpreter}", "${program}", "${args_json}"]
    # YAML 1.1 would have made 1e-5 and 1e-1 strings; W&B is given numbers.
    assert config.raw["parameters"]["lr"] == {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1}
    assert json.loads(json.dumps(config.raw)) == config.raw
    assert config.describe() == ["lr: log-uniform 1e-05..0.1", "batch_size: 16, 32, 64", "epochs: 10"]


def test_json_text_parses_like_yaml():
    text = json.dumps(
        {
            "method": "random",
            "metric": {"name": "acc", "goal": "maximize"},
            "run_cap": 5,
            "parameters": {"lr": {"min": 0.001, "max": 0.1}, "bs": {"values": [1, 2]}},
        }
    )
    config = parse_sweep_config(text)
    assert config.metric == Metric("acc", "maximize", None)
    assert config.parameters[0].distribution == "uniform"
    assert config.raw == json.loads(text)


def test_numbers_written_as_text_are_numbers():
    param = one_param("{distribution: uniform, min: '1e-5', max: \"0.5\"}")
    assert (param.min, param.max) == (1e-5, 0.5)
    config = parse_sweep_config("method: random\nmetric: {name: l, target: '1e-3'}\nparameters: {p: {values: [1e-3]}}")
    assert config.metric is not None and config.metric.target == 1e-3
    assert config.parameters[0].values == (0.001,)  # YAML 1.1 alone reads 1e-3 as the string "1e-3"
    assert config.raw["metric"]["target"] == 0.001


def test_metric_goal_defaults_to_minimize_and_hyperband_eta_to_3():
    config = parse_sweep_config(
        "method: grid\nmetric: {name: loss}\nearly_terminate: {type: hyperband, min_iter: 2}\n"
        "parameters: {a: {values: [1]}}"
    )
    assert config.metric == Metric("loss", "minimize", None)
    assert config.early_terminate is not None
    assert config.early_terminate.eta == 3
    assert config.early_terminate.rung_steps(60) == [2, 6, 18, 54]
    assert config.early_terminate.next_rung(6) == 18


def test_hyperband_with_max_iter_and_s_has_w_and_b_bands():
    config = parse_sweep_config(
        "method: random\nmetric: {name: loss}\nearly_terminate: {type: hyperband, max_iter: 27, s: 3}\n"
        "parameters: {a: {min: 0.0, max: 1.0}}"
    )
    band = config.early_terminate
    assert band is not None
    assert band.rungs == (1, 3, 9)
    assert band.rung_steps(100) == [1, 3, 9]
    assert band.next_rung(9) is None


def test_grid_size_and_trial_count():
    grid = parse_sweep_config(
        "method: grid\nparameters:\n  a: {values: [1, 2, 3]}\n  b: {min: 1, max: 4}\n"
        "  c: {distribution: q_uniform, min: 0, max: 1, q: 0.25}\n  d: {value: x}\n"
    )
    assert grid.grid_size() == 3 * 4 * 5
    assert grid.trial_count() == 60
    assert parse_sweep_config(json.dumps({**grid.raw, "run_cap": 7})).trial_count() == 7
    assert list(grid.parameters[2].choices() or ()) == [0, 0.25, 0.5, 0.75, 1.0]
    random = parse_sweep_config("method: random\nparameters: {a: {min: 0.0, max: 1.0}}")
    assert random.trial_count() is None
    assert parse_sweep_config("method: random\nrun_cap: 9\nparameters: {a: {min: 0.0, max: 1.0}}").trial_count() == 9


def test_a_huge_int_grid_is_counted_without_being_built():
    config = parse_sweep_config("method: grid\nparameters: {a: {min: 0, max: 999999999}, b: {values: [1, 2]}}")
    assert config.trial_count() == 2_000_000_000
    cells = iter_cells(config)
    assert next(cells) == {"a": 0, "b": 1}
    assert next(cells) == {"a": 0, "b": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the sweep configuration is empty"),
        ("- a\n- b", "must be a mapping of keys"),
        ("method: grid\nparameters: {a: {values: [1]}\n", "not valid YAML or JSON: line"),
        ('{"method": "grid", "parameters": {"a": {"values": [NaN]}}}', "NaN is not a number"),
        ("parameters: {a: {values: [1]}}", "method: missing"),
        ("method: hyperopt\nparameters: {a: {values: [1]}}", "method: must be grid, random or bayes, not 'hyperopt'"),
        (
            "method: grid\nparameter: {a: {values: [1]}}",
            "'parameter': not a sweep configuration key; did you mean param",
        ),
        ("method: grid\nfoo: 1\nparameters: {a: {values: [1]}}", "'foo': not a sweep configuration key; the keys are"),
        ("method: grid\nmetrics: []\nparameters: {a: {values: [1]}}", "metrics: not supported here"),
        ("method: grid\njob: x\nparameters: {a: {values: [1]}}", "job: W&B Launch keys are not used here"),
        ("method: grid", "parameters: missing"),
        ("method: grid\nparameters: {}", "parameters: empty"),
        ("method: grid\nparameters: [a]", "parameters: must be a mapping"),
        ("method: grid\nparameters: {1a: {values: [1]}}", "'1a' is not a valid parameter name"),
        ("method: grid\nparameters: {lr: 0.1}", "parameters.lr: must be a mapping such as"),
        ("method: grid\nparameters: {m: {parameters: {a: {value: 1}}}}", "parameters.m: nested parameters"),
        ("method: grid\nparameters: {lr: {}}", "parameters.lr: give value, values, or min and max"),
        ("method: random\nparameters: {lr: {min: 0.1}}", "parameters.lr.max: missing"),
        ("method: random\nparameters: {lr: {mu: 0.1}}", "parameters.lr: mu and sigma need a distribution"),
        ("method: random\nparameters: {lr: {min: 0.1, max: 0.01}}", "parameters.lr: min must be below max"),
        ("method: random\nparameters: {lr: {min: 1, max: 1}}", "parameters.lr: min must be below max"),
        ("method: random\nparameters: {lr: {min: x, max: 1}}", "parameters.lr.min: must be a number, not the text 'x'"),
        ("method: random\nparameters: {lr: {min: true, max: 1}}", "parameters.lr.min: must be a number, not true"),
        ("method: random\nparameters: {lr: {min: 0, max: .inf}}", "parameters.lr.max: must be a finite number"),
        ("method: random\nparameters: {n: {distribution: int_uniform, min: 1.5, max: 4}}", "int_uniform needs whole"),
        (
            "method: random\nparameters: {lr: {distribution: gamma, min: 1, max: 2}}",
            "'gamma' is not a W&B distribution",
        ),
        ("method: random\nparameters: {lr: {distribution: beta}}", "beta is not supported by Adjutant's search"),
        (
            "method: random\nparameters: {lr: {distribution: uniform, min: 0, max: 1, q: 2}}",
            "parameters.lr.q: not a key",
        ),
        (
            "method: random\nparameters: {lr: {distribution: log_uniform_values, min: 0, max: 1}}",
            "parameters.lr.min: must be above 0 for log_uniform_values",
        ),
        (
            "method: random\nparameters: {lr: {distribution: log_uniform, min: 0.00001, max: 1000}}",
            "takes its bounds in log space",
        ),
        ("method: random\nparameters: {w: {distribution: normal, sigma: 0}}", "parameters.w.sigma: must be above 0"),
        ("method: random\nparameters: {w: {distribution: q_uniform, min: 0, max: 1, q: 0}}", "parameters.w.q: must be"),
        ("method: random\nparameters: {w: {distribution: q_uniform, min: 0.1, max: 0.2, q: 0.5}}", "no multiple of q"),
        ("method: random\nparameters: {a: {values: []}}", "parameters.a.values: empty"),
        ("method: random\nparameters: {a: {values: 3}}", "parameters.a.values: must be a list"),
        ("method: random\nparameters: {a: {values: [1, 2, 1]}}", "parameters.a.values: 1 appears twice"),
        (
            "method: random\nparameters: {a: {values: [1, 2], probabilities: [1]}}",
            "1 probabilities for 2 values",
        ),
        (
            "method: random\nparameters: {a: {values: [1, 2], probabilities: [0.5, 0.6]}}",
            "must add up to 1 (they add up to 1.1)",
        ),
        (
            "method: random\nparameters: {a: {values: [1, 2], probabilities: [-0.5, 1.5]}}",
            "must not be negative",
        ),
        ("method: bayes\nparameters: {a: {min: 0.0, max: 1.0}}", "metric: bayes needs a metric"),
        ("method: grid\nmetric: {goal: minimize}\nparameters: {a: {values: [1]}}", "metric.name: missing"),
        ("method: grid\nmetric: {name: l, goal: lower}\nparameters: {a: {values: [1]}}", "metric.goal: must be"),
        ("method: grid\nmetric: {name: l, goals: max}\nparameters: {a: {values: [1]}}", "metric.goals: not a metric"),
        ("method: grid\nmetric: loss\nparameters: {a: {values: [1]}}", "metric: must be a mapping"),
        ("method: grid\nrun_cap: 0\nparameters: {a: {values: [1]}}", "run_cap: must be a whole number of at least 1"),
        ("method: grid\nrun_cap: 2.5\nparameters: {a: {values: [1]}}", "run_cap: must be a whole number"),
        (
            "method: grid\nmetric: {name: l}\nearly_terminate: {type: median}\nparameters: {a: {values: [1]}}",
            "early_terminate.type: must be hyperband",
        ),
        (
            "method: grid\nmetric: {name: l}\nearly_terminate: {type: hyperband}\nparameters: {a: {values: [1]}}",
            "early_terminate: give min_iter",
        ),
        (
            "method: grid\nmetric: {name: l}\nearly_terminate: {type: hyperband, min_iter: 0}\n"
            "parameters: {a: {values: [1]}}",
            "early_terminate.min_iter: must be a whole number of at least 1",
        ),
        (
            "method: grid\nmetric: {name: l}\nearly_terminate: {type: hyperband, min_iter: 1, eta: 1}\n"
            "parameters: {a: {values: [1]}}",
            "early_terminate.eta: must be a whole number of at least 2",
        ),
        (
            "method: grid\nmetric: {name: l}\nearly_terminate: {type: hyperband, max_iter: 2, s: 1}\n"
            "parameters: {a: {values: [1]}}",
            "leaves no rung",
        ),
        (
            "method: grid\nearly_terminate: {type: hyperband, min_iter: 1}\nparameters: {a: {values: [1]}}",
            "metric: hyperband early termination needs a metric",
        ),
        ("method: grid\nparameters: {lr: {min: 0.0, max: 1.0}}", "parameters.lr: grid needs a finite list of values"),
        (
            "method: grid\nparameters: {lr: {distribution: normal}}",
            "parameters.lr: grid needs a finite list of values (value, values, int_uniform or q_uniform), not normal",
        ),
        (
            "method: grid\nparameters: {a: {values: [1, 2], probabilities: [0.5, 0.5]}}",
            "parameters.a: probabilities are for random search",
        ),
        ("a: &x 1\nb: *x", "YAML aliases (*name) are not accepted"),
        ("method: grid\nmethod: random\nparameters: {a: {values: [1]}}", "line 2: the key 'method' appears twice"),
        ('{"method": "grid", "method": "random"}', "the key 'method' appears twice"),
    ],
)
def test_each_refusal_names_the_key_and_the_fault(text, message):
    with pytest.raises(SweepConfigError) as caught:
        parse_sweep_config(text)
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_at_most_64_parameters():
    def config(n: int) -> str:
        return json.dumps({"method": "random", "parameters": {f"p{i}": {"values": [1, 2]} for i in range(n)}})

    assert len(parse_sweep_config(config(MAX_PARAMETERS)).parameters) == MAX_PARAMETERS
    with pytest.raises(SweepConfigError, match="parameters: 65 parameters; at most 64"):
        parse_sweep_config(config(MAX_PARAMETERS + 1))


def test_dates_stay_text_and_flow_yaml_that_is_not_json_parses():
    config = parse_sweep_config("{method: grid, parameters: {day: {values: [2024-01-01]}}}")
    assert config.parameters[0].values == ("2024-01-01",)


def test_the_grid_shorthand_is_a_grid_in_expand_sweep_order():
    shorthand = {"lr": [0.1, 0.01, 0.001], "epochs": 10, "bs": [16, 32], "opt": {"name": "adam"}}
    config = grid_config(shorthand)
    assert config.method == "grid"
    assert config.metric is None
    assert config.trial_count() == 6
    assert list(iter_cells(config)) == expand_sweep(shorthand)
    assert config.raw == {
        "method": "grid",
        "parameters": {
            "lr": {"values": [0.1, 0.01, 0.001]},
            "epochs": {"value": 10},
            "bs": {"values": [16, 32]},
            "opt": {"value": {"name": "adam"}},
        },
    }
    assert config.describe() == ["lr: 0.1, 0.01, 0.001", "epochs: 10", "bs: 16, 32", 'opt: {"name": "adam"}']


@pytest.mark.parametrize(
    ("shorthand", "message"),
    [
        ({}, "a sweep needs at least one key with a list of values"),
        ({"lr": 0.1}, "nothing to sweep"),
        ({"lr": []}, "parameters.lr.values: empty"),
        ({"lr": [0.1, 0.1]}, "parameters.lr.values: 0.1 appears twice"),
        ({"learning rate": [0.1, 0.2]}, "'learning rate' is not a valid parameter name"),
    ],
)
def test_the_grid_shorthand_refusals(shorthand, message):
    with pytest.raises(SweepConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        grid_config(shorthand)


def test_is_sweep_config_tells_a_configuration_from_the_shorthand():
    assert is_sweep_config({"method": "bayes", "parameters": {}})
    assert is_sweep_config({"parameters": {"a": {"values": [1]}}})
    assert is_sweep_config({"method": "random"})
    assert not is_sweep_config({"lr": [0.1, 0.01], "epochs": 10})
    assert not is_sweep_config({"parameters": [1, 2], "method": ["sgd", "adam"]})
