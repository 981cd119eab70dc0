"""The trigger form's fields, derived from a pipeline's default params.

Pipelines declare no parameter types: a task reads ``context.params`` as it
likes. So the form is built from defaults, the first of these found:

1. ``PipelineEntry(params={...})``: the defaults the application declares;
2. the params of the schedule the UI runs (``Schedule(params={...})``);
3. the params of the pipeline's latest run, but for what a schedule or a
   backfill adds (``interval_start``, ``interval_end``, ``backfill_id``).

Each default's type picks its field: text, a date (``YYYY-MM-DD`` text), a whole
number, a number, a checkbox, or JSON text for lists, objects and null. Keys that
name a secret get an empty password field: a secret is never put in a page. A
field left empty is left out of the params (the task's own default applies);
the raw JSON box below the fields adds keys or overrides fields.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._masking import is_secret_key, mask_value

__all__ = [
    "ADDED_BY_SCHEDULERS",
    "PREFIX",
    "ParamField",
    "param_fields",
    "read_fields",
    "standard_json",
]

Kind = Literal["text", "date", "int", "float", "bool", "json", "secret"]
KINDS: tuple[Kind, ...] = ("text", "date", "int", "float", "bool", "json", "secret")
PREFIX = "p."  # form fields are named p.<kind>.<param name>
ADDED_BY_SCHEDULERS = frozenset({"interval_start", "interval_end", "backfill_id"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class ParamField:
    """One field of the trigger form: a param's name, its kind and its default."""

    name: str
    kind: Kind
    default: Any = None

    @property
    def input_name(self) -> str:
        return f"{PREFIX}{self.kind}.{self.name}"

    @property
    def text(self) -> str:
        """The default as the field shows it."""
        if self.kind == "secret" or (self.default is None and self.kind != "json"):
            return ""
        if self.kind in ("json", "bool"):
            return json.dumps(self.default)
        return str(self.default)


def _kind(name: str, value: Any) -> Kind:
    if is_secret_key(name) or mask_value(value) != value:  # a secret, or a URL with one
        return "secret"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "date" if _DATE.match(value) else "text"
    return "json"


def param_fields(*sources: Mapping[str, Any] | None) -> list[ParamField]:
    """The fields of the first non-empty source (see the module docstring), in its order."""
    for source in sources:
        if source:
            return [ParamField(k, _kind(k, v), v) for k, v in source.items()]
    return []


def standard_json(text: str) -> Any:
    """``json.loads``, refusing NaN and Infinity: not JSON, and no browser could read
    them back from the run's page.

    :raises ValueError: for text that is not standard JSON.
    """
    seen: list[str] = []
    value = json.loads(text, parse_constant=seen.append)
    if seen:
        raise ValueError(f"{seen[0]} is not a JSON value (give a number or a string)")
    return value


def _value(kind: Kind, name: str, text: str) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            number = float(text)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind == "bool":
            return text == "true"
        if kind == "json":
            return standard_json(text)
    except ValueError:
        what = {"int": "a whole number", "float": "a finite number", "json": "JSON"}[kind]
        raise ValueError(f"{name} must be {what}, got {text!r}") from None
    return text


def read_fields(form: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Params from the form's fields (``p.<kind>.<name>``); the last value of a name
    wins (a checkbox follows its hidden "false"); empty fields are left out.

    :raises ValueError: for a value its kind cannot hold, naming the param.
    """
    texts: dict[tuple[Kind, str], str] = {}
    for key, text in form:
        kind, dot, name = key.removeprefix(PREFIX).partition(".")
        if key.startswith(PREFIX) and dot and name and kind in KINDS:
            texts[(kind, name)] = text  # kind is one of KINDS (narrowed by the test)
    return {name: _value(kind, name, text) for (kind, name), text in texts.items() if text.strip()}
