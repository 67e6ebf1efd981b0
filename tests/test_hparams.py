"""Hyperparameter parsing: every accepted form, every refusal, and no other exception for any input."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adjutant.hparams import (
    HParamsError,
    diff,
    expand_sweep,
    parse_hyperparameters,
    sweep_size,
    to_argument,
    validate,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"epochs": 10, "batch_size": 32}', {"epochs": 10, "batch_size": 32}),
        ('```json\n{"epochs": 1}\n```', {"epochs": 1}),
        ('```\n{"epochs": 1}\n```', {"epochs": 1}),
        ('`{"epochs": 1}`', {"epochs": 1}),
        ("lr=0.001 epochs=10", {"lr": 0.001, "epochs": 10}),
        ('name="my run" flag=true nothing=null', {"name": "my run", "flag": True, "nothing": None}),
        ("cmd=$(rm -rf /) path=/tmp/x;ls", None),  # unquoted spaces split the value: '-rf' is not key=value
        ("model.depth=3 opt-name=adam", {"model.depth": 3, "opt-name": "adam"}),
        ("list=[1,2] obj='{\"a\":1}'", {"list": [1, 2], "obj": {"a": 1}}),
    ],
)
def test_accepted_forms(text: str, expected: dict | None) -> None:
    if expected is None:
        with pytest.raises(HParamsError):
            parse_hyperparameters(text)
        return
    assert parse_hyperparameters(text) == expected


def test_pairs_keep_shell_syntax_as_data() -> None:
    assert parse_hyperparameters("cmd='$(rm -rf /)' tick='`id`'") == {"cmd": "$(rm -rf /)", "tick": "`id`"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no hyperparameters given"),
        ("{", "invalid JSON at line 1, column 2"),
        ('{"a": 1}}', "invalid JSON at line 1, column 9"),
        ("[1]", "not a list"),
        ("3.5", "not a number"),
        ('"s"', "not a string"),
        ("true", "not a boolean"),
        ("null", "not null"),
        ('{"x": Infinity}', "Infinity is not allowed"),
        ('{"a": 1, "a": 1}', "appears twice"),
        ("a=1 a=2", "appears twice"),
        ("1a=2", "not a valid key"),
        ("=2", "not a valid key"),
        ('{"a": ' * 9 + "1" + "}" * 9, "nested too deeply"),
        ("x" * 4001, "too large: 4,001 characters (the limit is 4,000)"),
    ],
)
def test_refusals(text: str, message: str) -> None:
    with pytest.raises(HParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_hyperparameters(text)


def test_eight_levels_are_fine() -> None:
    text = '{"a": ' * 8 + "1" + "}" * 8
    assert parse_hyperparameters(text)["a"]["a"]["a"]


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=5000))
def test_any_text_parses_or_says_why(text: str) -> None:
    try:
        result = parse_hyperparameters(text)
    except HParamsError as error:
        assert str(error)
    else:
        assert isinstance(result, dict)
        assert json.loads(to_argument(result)) == result


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=10,
        ),
        max_size=8,
    )
)
def test_json_round_trip(params: dict) -> None:
    text = json.dumps(params)
    if len(text) > 4000:
        return
    try:
        assert parse_hyperparameters(text) == params
    except HParamsError as error:
        if "invisible or control character" in str(error) or "lone surrogate" in str(error):
            # refused for a reason that must really be there: a key (or value) holding such a character
            assert any(unicodedata.category(c) in ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp") for c in text_of(params))
        else:
            assert "nested too deeply" in str(error)


def text_of(value: object) -> str:
    """Every key and string of a JSON value, concatenated."""
    if isinstance(value, dict):
        return "".join(k + text_of(v) for k, v in value.items())
    if isinstance(value, list):
        return "".join(text_of(v) for v in value)
    return value if isinstance(value, str) else ""


def test_schema_defaults_and_errors() -> None:
    schema = {
        "type": "object",
        "properties": {"epochs": {"type": "integer", "minimum": 1, "default": 5}, "lr": {"type": "number"}},
        "required": ["lr"],
        "additionalProperties": False,
    }
    assert validate({"lr": 0.1}, schema) == ({"lr": 0.1, "epochs": 5}, {"epochs": 5})
    with pytest.raises(HParamsError, match="'lr' is a required property"):
        validate({}, schema)
    with pytest.raises(HParamsError, match="epochs: 0 is less than the minimum of 1"):
        validate({"lr": 1, "epochs": 0}, schema)


def test_sweep() -> None:
    grid = {"lr": [0.1, 0.01], "batch_size": [32, 64], "epochs": 3}
    assert sweep_size(grid) == 4
    combos = expand_sweep(grid)
    assert combos[0] == {"lr": 0.1, "batch_size": 32, "epochs": 3}
    assert len(combos) == 4 and len({json.dumps(c) for c in combos}) == 4
    with pytest.raises(HParamsError, match="nothing to sweep"):
        expand_sweep({"lr": 0.1})
    with pytest.raises(HParamsError, match="empty list"):
        expand_sweep({"lr": []})


def test_diff() -> None:
    assert diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["~ b: 2 → 3", "+ c = 4"]
    assert diff({"a": 1}, {}) == ["- a = 1"]
