"""Whole numbers typed in chat: ASCII digits only, within bounds, refused with a message that says what was typed
and what is expected. Pure.

Python's own tests are too generous for chat: ``"²".isdigit()`` and ``"①".isnumeric()`` are true, and
``int("٣")`` and ``int()`` of a fullwidth 3 are 3. Every parser of a number a member types (``--gpus``, ``--time``,
``$runs``, ``$best``, ``$logs``, ``$audit`` counts) goes through :func:`parse_whole`.
"""

from __future__ import annotations

import math
import re

from adjutant.render import plain, truncate

#: What a whole number typed in chat may be: ASCII digits and nothing else (no sign, space, exponent or underscore).
WHOLE = re.compile(r"[0-9]+")
#: Without an upper bound, longer numbers are refused (``int()`` of thousands of digits is slow, then refused).
MAX_DIGITS = 18


class NumberError(ValueError):
    """The message says what was typed and what is expected; it is ready to show in chat (escaped)."""


def shown(text: str, limit: int = 20) -> str:
    """What a member typed, quoted for a reply: cut, invisible characters visible (``repr``), markdown escaped."""
    return plain(repr(truncate(text, limit)))


def expected(low: int | None, high: int | None) -> str:
    """``a whole number from 0 to 64`` / ``of at least 1`` / ``of at most 9`` / ``a whole number``."""
    if low is not None and high is not None:
        return f"a whole number from {low} to {high}"
    if low is not None:
        return f"a whole number of at least {low}"
    if high is not None:
        return f"a whole number of at most {high}"
    return "a whole number"


def is_whole(text: str) -> bool:
    """``text`` is made of ASCII digits 0-9 only (and at least one)."""
    return WHOLE.fullmatch(text) is not None


def looks_numeric(text: str) -> bool:
    """``text`` is meant as a number even if it is not a valid one: ``-1``, ``1e3``, ``2.5``, ``²``, ``٣``, a fullwidth
    3, ``①`` (so a parser that also takes words can refuse it as a number rather than take it as a word)."""
    stripped = text.strip()
    has_digit = any(char.isdecimal() or char.isdigit() or char.isnumeric() for char in stripped)
    return has_digit and not any(char.isalpha() and char not in "eE" for char in stripped)


def parse_whole(text: str, *, what: str, low: int | None = 0, high: int | None = None) -> int:
    """``text`` as a whole number from ``low`` to ``high`` (either may be None: unbounded on that side).

    Only ASCII digits: ``²``, ``٣``, ``①``, a fullwidth 3, ``-1``, ``1e3``, ``2.5``, `` 3`` (with a space) are
    refused with :class:`NumberError`: "``what`` must be a whole number from 0 to 64, not '²'", and for digits of
    another script a hint to type 0-9.
    """
    if not is_whole(text):
        hint = " (type the digits 0-9)" if looks_numeric(text) and not text.isascii() else ""
        raise NumberError(f"{what} must be {expected(low, high)}, not {shown(text)}{hint}")
    digits = text.lstrip("0") or "0"
    limit = MAX_DIGITS if high is None else len(str(abs(high)))
    if len(digits) > limit:
        raise NumberError(f"{what} must be {expected(low, high)}, not {shown(text)}")
    value = int(digits)
    if (low is not None and value < low) or (high is not None and value > high):
        raise NumberError(f"{what} must be {expected(low, high)}, not {shown(text)}")
    return value


#: A decimal number typed in chat: ASCII digits, an optional sign, point and exponent (``-2``, ``0.5``, ``1e-3``).
DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def parse_decimal(text: str, *, what: str) -> float:
    """``text`` as a finite number written in ASCII (``float()`` alone takes ``٣``, ``1_0``, `` 3 `` and ``inf``)."""
    if DECIMAL.fullmatch(text) is None:
        hint = " (type the digits 0-9)" if looks_numeric(text) and not text.isascii() else ""
        raise NumberError(f"{what} must be a number like 2, 0.5 or 1e-3, not {shown(text)}{hint}")
    value = float(text)
    if not math.isfinite(value):
        raise NumberError(f"{what} must be a finite number, not {shown(text)}")
    return value
