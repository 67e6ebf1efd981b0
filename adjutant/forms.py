"""Launch forms: which hyperparameters get a field of their own, and what a submitted form launches. Pure.

A form has up to four short fields (the schema's declared hyperparameters, else the ones that varied most over the
recent jobs) and one paragraph holding the whole JSON, all prefilled from the source job or run. On submit the
paragraph is read first (with every check ``$experiment`` makes), then each field whose text differs from what it was
prefilled with overrides its key: editing a field or the same key in the paragraph both work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from adjutant.hparams import HParamsError, parse_hyperparameters, to_argument

MAX_FIELDS = 4
#: Discord's limit on a text input's value.
FIELD_LIMIT = 4000


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def form_keys(
    source: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    schema: Mapping[str, Any] | None = None,
    limit: int = MAX_FIELDS,
) -> list[str]:
    """The keys that get a field: the schema's properties (in its order), else those whose values varied most over
    ``history`` (recent jobs), then the source's own keys; only values that fit a one-line field."""
    if schema is not None and isinstance(schema.get("properties"), Mapping):
        declared = [k for k, v in schema["properties"].items() if _scalar(source.get(k)) and isinstance(v, Mapping)]
        return declared[:limit]
    distinct: dict[str, set[str]] = {}
    for params in [*history, source]:
        for key, value in params.items():
            if _scalar(value):
                distinct.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    order = list(source) + [k for params in history for k in params if k not in source]
    position = {key: i for i, key in reversed(list(enumerate(order)))}
    ranked = sorted(distinct, key=lambda k: (-len(distinct[k]), position.get(k, len(order))))
    return [key for key in ranked if _scalar(source.get(key))][:limit]


def field_text(value: Any) -> str:
    """How a value is shown in its field: strings as they are, everything else as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def paragraph_text(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), indent=1, ensure_ascii=False)[:FIELD_LIMIT]


def _field_value(key: str, text: str, source: Mapping[str, Any]) -> Any:
    if isinstance(source.get(key), str):
        return text
    stripped = text.strip()
    if stripped == "":
        return None
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        if key not in source:
            return stripped  # a new key: text unless it reads as JSON
        raise HParamsError(
            f"the field {key} holds {stripped[:40]!r}, which is not a number, true/false or JSON"
            f" (it was {field_text(source.get(key))!r})"
        ) from None


def apply_form(
    source: Mapping[str, Any], keys: Sequence[str], fields: Mapping[str, str], paragraph: str
) -> dict[str, Any]:
    """The hyperparameters a submitted form launches; raises :class:`HParamsError` with what is wrong."""
    params = parse_hyperparameters(paragraph)
    for key in keys:
        if key not in fields:
            continue
        text = fields[key]
        if text == field_text(source.get(key)):
            continue  # unchanged field: the paragraph decides
        value = _field_value(key, text, source)
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    try:
        return parse_hyperparameters(to_argument(params))  # the same checks on the merged result
    except ValueError as error:
        raise HParamsError(str(error)) from None
