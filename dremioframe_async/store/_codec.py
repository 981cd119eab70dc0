"""How results and exceptions become storable text.

A result is stored only when it survives a JSON round trip unchanged (so a
tuple, a dict with int keys, NaN or a pyarrow Table are not) and is at most
``max_bytes`` long; otherwise its type name and a note are recorded instead,
and a resumed run executes that task again rather than feed it a changed value.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from typing import Any

__all__ = ["EncodedError", "EncodedResult", "encode_error", "encode_result", "type_name"]

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


_NONE = EncodedResult("null", True, None, "")


def type_name(obj: object) -> str:
    """``module.QualName`` of ``obj``'s type; builtins keep their bare name."""
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def encode_result(value: Any, max_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> EncodedResult:
    """Encode ``value`` for storage (see the module docstring for the rule)."""
    if value is None:
        return _NONE
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return _skipped(value, "not JSON-serialisable; the task runs again on resume")
    if len(text) > max_bytes:
        return _skipped(value, f"larger than {max_bytes} bytes as JSON; runs again on resume")
    if json.loads(text) != value:
        return _skipped(value, "changed by a JSON round trip; the task runs again on resume")
    return EncodedResult(text, True, type_name(value), "")


def _skipped(value: Any, note: str) -> EncodedResult:
    return EncodedResult(None, False, type_name(value), note)


def encode_error(error: BaseException) -> EncodedError:
    """Encode an exception with its full formatted traceback (chained causes included)."""
    return EncodedError(
        type=type_name(error),
        message=str(error),
        traceback="".join(traceback.format_exception(error)),
    )


def decode_json(text: str | None, default: Any = None) -> Any:
    """Parse stored JSON text, ``default`` when there is none."""
    return default if text is None else json.loads(text)
