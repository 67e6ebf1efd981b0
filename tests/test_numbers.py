"""Numbers typed in chat are ASCII digits, parsed once (adjutant.numbers), and every refusal says what was typed and
what is expected: ``"²".isdigit()`` is true and ``int("٣")`` is 3 in Python, neither is a number here."""

from __future__ import annotations

import re

import pytest

from adjutant.hparams import HParamsError, check_gpus, parse_duration, parse_gpus, take_launch_options
from adjutant.numbers import NumberError, is_whole, looks_numeric, parse_decimal, parse_whole
from adjutant.render import plain
from adjutant.runs import parse_best_args, parse_runs_args

FULLWIDTH_3 = "\uff13"
#: Each refused as --gpus (0 to 64): what Python would take as a number, and what is out of range.
NOT_GPUS = ["²", "٣", "①", "-1", "1e3", " 3", "3 ", FULLWIDTH_3, "65", "3.0", "+3", "0x3", "1_0", "", "three", "三"]


@pytest.mark.parametrize("typed", NOT_GPUS)
def test_parse_whole_refuses_all_but_ascii_digits_in_bounds(typed: str) -> None:
    with pytest.raises(NumberError) as refused:
        parse_whole(typed, what="--gpus", low=0, high=64)
    assert str(refused.value).startswith(f"--gpus must be a whole number from 0 to 64, not {plain(repr(typed))}")


def test_parse_whole_takes_ascii_digits() -> None:
    assert parse_whole("3", what="--gpus", low=0, high=64) == 3
    assert parse_whole("0", what="--gpus", low=0, high=64) == 0
    assert parse_whole("064", what="--gpus", low=0, high=64) == 64
    assert parse_whole("10", what="n", low=None, high=None) == 10


def test_other_scripts_get_a_hint_and_bounds_read_naturally() -> None:
    with pytest.raises(NumberError, match=re.escape("not '٣' (type the digits 0-9)")):
        parse_whole("٣", what="lines", low=1, high=1000)
    with pytest.raises(NumberError, match=r"^lines must be a whole number of at least 1, not '0'$"):
        parse_whole("0", what="lines", low=1)
    with pytest.raises(NumberError, match=r"^n must be a whole number of at most 9, not '10'$"):
        parse_whole("10", what="n", low=None, high=9)
    with pytest.raises(NumberError, match=r"^n must be a whole number, not 'x'$"):
        parse_whole("x", what="n", low=None)


def test_huge_numbers_are_refused_without_converting_them() -> None:
    """``int()`` of more than 4,300 digits raises ValueError in Python itself: refused first, with the message."""
    with pytest.raises(NumberError, match=re.escape("--gpus must be a whole number from 0 to 64, not '99999")):
        parse_whole("9" * 5000, what="--gpus", low=0, high=64)
    with pytest.raises(NumberError, match="must be a whole number of at least 0"):
        parse_whole("9" * 5000, what="n")


def test_what_was_typed_is_shown_escaped_and_cut() -> None:
    with pytest.raises(NumberError) as refused:
        parse_whole("**@everyone**" + "x" * 50, what="n")
    text = str(refused.value)
    assert "@everyone" not in text and "**" not in text and len(text) < 120


def test_is_whole_and_looks_numeric() -> None:
    assert is_whole("0123") and not is_whole("²") and not is_whole("") and not is_whole("٣")
    for word in ("²", "٣", "①", "-1", "1e3", " 3", FULLWIDTH_3, "2.5"):
        assert looks_numeric(word), word
    for word in ("loss", "val_acc", "inf", "nan", "e", "", "top-1", "v2"):
        assert not looks_numeric(word), word


@pytest.mark.parametrize("typed", [word for word in NOT_GPUS if word and word.strip() == word])
def test_launch_options_gpus(typed: str) -> None:
    """``--gpus ²`` was "Something went wrong (ValueError)"; ``--gpus ٣`` was taken as 3 (issue 21 item 8).
    (Spaces separate words here, so `` 3`` cannot arrive; parse_whole refuses it above.)"""
    for text in (f"--gpus={typed} {{}}", f"--gpus {typed} {{}}"):
        with pytest.raises(HParamsError) as refused:
            take_launch_options(text)
        assert f"--gpus must be a whole number from 0 to 64, not {plain(repr(typed))}" in str(refused.value)


def test_launch_options_take_ascii_numbers() -> None:
    options, rest = take_launch_options('--gpus 3 --time 90m {"lr": 0.1}')
    assert (options.gpus, options.time_limit, rest) == (3, 5400.0, '{"lr": 0.1}')
    with pytest.raises(HParamsError, match=re.escape("--gpus must be a whole number from 0 to 64, not 'many'")):
        take_launch_options("--gpus many {}")
    assert parse_gpus("64") == 64 and check_gpus(0) == 0
    with pytest.raises(HParamsError, match=r"^gpus must be a whole number from 0 to 64, not 65$"):
        check_gpus(65)


@pytest.mark.parametrize("typed", ["٣h", "²h", "①", f"{FULLWIDTH_3}h", "1e3", "-1h", "2 h", "h", "", "3w"])
def test_durations_are_ascii_too(typed: str) -> None:
    with pytest.raises(HParamsError) as refused:
        parse_duration(typed)
    assert str(refused.value) == f"--time must be a duration like 90m, 2h or 1d, not {typed!r}"


def test_durations() -> None:
    assert parse_duration("90") == 5400 and parse_duration("1.5h") == 5400 and parse_duration("1D") == 86400
    with pytest.raises(HParamsError, match=re.escape("--time must be between 1 second and 30 days, not '31d'")):
        parse_duration("31d")
    with pytest.raises(HParamsError, match=re.escape("--time must be a duration like 90m, 2h or 1d, not '٣h'")):
        take_launch_options("--time ٣h {}")


@pytest.mark.parametrize("typed", ["²", "٣", "①", "-1", "1e3", FULLWIDTH_3, "26", "0"])
def test_counts_of_runs_and_best(typed: str) -> None:
    with pytest.raises(ValueError) as runs:
        parse_runs_args(["finished", typed])
    assert repr(typed) in str(runs.value) and "1 to 25" in str(runs.value)
    with pytest.raises(ValueError) as best:
        parse_best_args(["loss", typed], "loss", "min")
    assert f"the number of runs must be a whole number from 1 to 25, not {typed!r}" in str(best.value)


def test_parse_decimal() -> None:
    assert parse_decimal("2", what="t") == 2.0 and parse_decimal("-0.5", what="t") == -0.5
    assert parse_decimal("1e-3", what="t") == 0.001 and parse_decimal(".5", what="t") == 0.5
    for typed in ("٣", "1_0", " 3", "inf", "nan", "0x1", "", "²", FULLWIDTH_3):
        with pytest.raises(NumberError) as refused:
            parse_decimal(typed, what="the threshold")
        assert str(refused.value).startswith(
            f"the threshold must be a number like 2, 0.5 or 1e-3, not {plain(repr(typed))}"
        )
    with pytest.raises(NumberError, match=re.escape("the threshold must be a finite number, not '1e999'")):
        parse_decimal("1e999", what="the threshold")
