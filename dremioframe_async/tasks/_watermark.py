"""Watermarks: typed values that travel as SQL literals and are kept as JSON in pipeline state.

A watermark is never pasted into SQL as text. It is one of five kinds, each
rendered by its own rule:

- ``timestamp``: ``TIMESTAMP 'YYYY-MM-DD HH:MM:SS.ffffff'`` (an aware datetime
  is converted to UTC first: Dremio's TIMESTAMP has no time zone);
- ``date``: ``DATE 'YYYY-MM-DD'``;
- ``integer``: the digits of a Python ``int`` (never a bool);
- ``decimal``: the digits of a finite ``Decimal``, in fixed-point notation;
- ``string``: a quoted literal with ``'`` doubled.

Every rendering is built from a typed Python value, and the text is
re-validated when read back from state, so a tampered state cannot inject SQL.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ._sql import SqlArgumentError

__all__ = ["Watermark", "WatermarkKind"]

WatermarkKind = Literal["timestamp", "date", "integer", "decimal", "string"]
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Watermark:
    """A typed watermark value (see the module's docs for the literal of each kind)."""

    kind: WatermarkKind
    value: dt.datetime | dt.date | int | Decimal | str

    @classmethod
    def of(cls, value: object) -> Watermark:
        """The watermark of a Python value.

        :raises SqlArgumentError: a type no literal rule covers (floats included:
            a watermark must compare exactly), or a decimal that is not finite.
        """
        if isinstance(value, dt.datetime):
            return cls("timestamp", _naive_utc(value))
        if isinstance(value, dt.date):
            return cls("date", value)
        if isinstance(value, int) and not isinstance(value, bool):
            return cls("integer", value)
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise SqlArgumentError(f"a decimal watermark must be finite, got {value}")
            return cls("decimal", value)
        if isinstance(value, str):
            return cls("string", value)
        raise SqlArgumentError(
            f"a watermark must be a datetime, date, int, Decimal or str, got {type(value).__name__}"
        )

    def literal(self) -> str:
        """The SQL literal for this value."""
        v = self.value
        if self.kind == "timestamp":
            assert isinstance(v, dt.datetime)
            return f"TIMESTAMP '{v.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
        if self.kind == "date":
            assert isinstance(v, dt.date)
            return f"DATE '{v.isoformat()}'"
        if self.kind == "integer":
            assert isinstance(v, int)
            return str(int(v))
        if self.kind == "decimal":
            assert isinstance(v, Decimal)
            return format(v, "f")
        assert isinstance(v, str)
        return "'" + v.replace("'", "''") + "'"

    def minus(self, lookback: object) -> Watermark:
        """This value moved back by ``lookback`` (a timedelta, or a number for numbers).

        :raises SqlArgumentError: a lookback that does not fit this kind.
        """
        v = self.value
        if self.kind in ("timestamp", "date") and isinstance(lookback, dt.timedelta):
            assert isinstance(v, dt.date)
            return Watermark.of(v - lookback)
        if self.kind == "integer" and isinstance(lookback, int) and not isinstance(lookback, bool):
            assert isinstance(v, int)
            return Watermark.of(v - lookback)
        if self.kind == "decimal" and isinstance(lookback, int | Decimal):
            assert isinstance(v, Decimal)
            return Watermark.of(v - Decimal(lookback))
        raise SqlArgumentError(
            f"lookback {lookback!r} does not apply to a {self.kind} watermark "
            "(a timedelta for timestamps and dates, a number for numbers, none for strings)"
        )

    def to_json(self) -> dict[str, Any]:
        """The form kept in pipeline state."""
        v = self.value
        text = self.literal().strip("'") if self.kind == "decimal" else None
        if text is None:
            text = v.isoformat() if isinstance(v, dt.date) else str(v)
        return {"kind": self.kind, "value": text if self.kind != "integer" else v}

    @classmethod
    def from_json(cls, data: object) -> Watermark:
        """Read back :meth:`to_json`'s form, checking every field.

        :raises SqlArgumentError: anything else.
        """
        if not isinstance(data, dict):
            raise SqlArgumentError(f"a stored watermark must be an object, got {data!r}")
        kind, value = data.get("kind"), data.get("value")
        try:
            if kind == "timestamp" and isinstance(value, str):
                return cls.of(dt.datetime.fromisoformat(value))
            if kind == "date" and isinstance(value, str):
                return cls.of(dt.date.fromisoformat(value))
            if kind == "integer" and isinstance(value, int):
                return cls.of(value)
            if kind == "decimal" and isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
                return cls.of(Decimal(value))
            if kind == "string" and isinstance(value, str):
                return cls.of(value)
        except (ValueError, InvalidOperation) as exc:
            raise SqlArgumentError(f"stored watermark {data!r} is malformed: {exc}") from exc
        raise SqlArgumentError(f"stored watermark {data!r} is malformed")
