"""How results, exceptions and text become storable.

A result is stored only when it survives a JSON round trip unchanged (so a
tuple, a dict with int keys, NaN or a pyarrow Table are not) and is at most
``max_bytes`` long; otherwise its type name and a note are recorded instead,
and a resumed run executes that task again rather than feed it a changed value.
Stored results are JSON with non-ASCII escaped, so any string round-trips.

Other text (run ids, task keys, reasons, error messages and tracebacks, the
pipeline name) is stored as given, except what a database cannot hold:
PostgreSQL cannot hold NUL (U+0000), and neither PostgreSQL nor SQLite can hold
an unpaired surrogate (U+D800 to U+DFFF, from ``os.fsdecode`` of bad bytes, say).
Both database stores write those characters as Python escapes (``\\x00``,
``\\udc80``), as ``backslashreplace`` does, so the text stays readable and one
rule holds for both; the escape is not undone when the text is read back (a
key read back is the escaped key). The memory store keeps text exactly.
"""

from __future__ import annotations

import json
import json.encoder
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._masking import error_text, mask_text

__all__ = [
    "EncodedError",
    "EncodedResult",
    "encode_error",
    "encode_result",
    "encode_result_fields",
    "storable_text",
    "type_name",
]

DEFAULT_MAX_RESULT_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class EncodedResult:
    """A result as stored: JSON text when ``stored``, else its type and why not."""

    json: str | None
    stored: bool
    type: str | None
    note: str


@dataclass(frozen=True, slots=True)
class EncodedError:
    """An exception as stored: qualified type, message and formatted traceback."""

    type: str
    message: str
    traceback: str


# (json, stored, type, note): the fields of an EncodedResult, as a plain tuple for the
# store's fold, which encodes one result per task and skips the dataclass.
ResultFields = tuple[str | None, bool, str | None, str]
_NONE: ResultFields = ("null", True, None, "")
_DUMPS = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
_ascii_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def type_name(obj: object) -> str:
    """``module.QualName`` of ``obj``'s type; builtins keep their bare name."""
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def encode_result(value: Any, max_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> EncodedResult:
    """Encode ``value`` for storage (see the module docstring for the rule)."""
    return EncodedResult(*encode_result_fields(value, max_bytes))


def encode_result_fields(value: Any, max_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> ResultFields:
    """:func:`encode_result` as a ``(json, stored, type, note)`` tuple."""
    if value is None:
        return _NONE
    cls = type(value)
    # Exact scalar types survive a JSON round trip unchanged by construction
    # (floats print as their shortest repr), so they skip the check below.
    if cls is str or cls is int or cls is bool or (cls is float and math.isfinite(value)):
        # What json writes for each, without its encoder's set-up per call (which
        # cost more than the text): ASCII-escaped strings, true/false, and the
        # repr of ints and finite floats.
        try:
            if cls is str:
                text = _ascii_string(value)
            elif cls is bool:
                text = "true" if value else "false"
            else:
                text = repr(value)
        except ValueError:  # an int past sys.get_int_max_str_digits()
            return _skipped(value, "not JSON-serialisable; the task runs again on resume")
        if len(text) <= max_bytes:
            return (text, True, cls.__name__, "")
    return _checked(value, max_bytes)


def _checked(value: Any, max_bytes: int) -> ResultFields:
    try:
        text = _DUMPS(value)
    except (TypeError, ValueError, RecursionError):
        return _skipped(value, "not JSON-serialisable; the task runs again on resume")
    if len(text) > max_bytes:
        return _skipped(value, f"larger than {max_bytes} bytes as JSON; runs again on resume")
    if json.loads(text) != value:
        return _skipped(value, "changed by a JSON round trip; the task runs again on resume")
    return (text, True, type_name(value), "")


def _skipped(value: Any, note: str) -> ResultFields:
    return (None, False, type_name(value), note)


def encode_error(error: BaseException) -> EncodedError:
    """Encode an exception with its full formatted traceback (chained causes included),
    masked (secret-keyed values, URL passwords) before anything is stored."""
    return EncodedError(
        type=type_name(error),
        message=mask_text(error_text(error)),
        traceback=mask_text("".join(traceback.format_exception(error))),
    )


def decode_json(text: str | None, default: Any = None) -> Any:
    """Parse stored JSON text, ``default`` when there is none."""
    return default if text is None else json.loads(text)


def storable_text(text: str) -> str:
    """``text`` with NUL and unpaired surrogates written as Python escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():  # the common case, and the cheap check (task keys pass here)
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
