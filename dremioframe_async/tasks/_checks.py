"""Data-quality checks: each one SQL query against Dremio and a verdict on its rows.

Every table path goes through :func:`quote_path` and every column through
:func:`quote_identifier`, every value through a literal builder, so a column
called ``x" IS NULL OR 1=1 --`` stays one quoted identifier. ``expression``,
``where`` and ``custom_sql`` are SQL by nature and are inserted as given: only
put trusted text there.

Checks that look at rows return the failing rows themselves, up to
``sample_size``, with the total count of failures from a window function, so
the count and the samples come from one query.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._sql import SqlArgumentError, quote_identifier, quote_path, string_literal

__all__ = [
    "AcceptedValues",
    "Check",
    "CheckResult",
    "CustomSql",
    "Expression",
    "Freshness",
    "NotNull",
    "RowCount",
    "Unique",
    "max_age_of",
]

FAILING = "__dq_failing"  # the window count column added to failing-row queries
Table = str | Sequence[str]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How one check fared: ``failing`` rows (or groups), up to ``sample_size`` of them."""

    name: str
    kind: str
    passed: bool
    failing: int
    samples: tuple[dict[str, Any], ...] = ()
    observed: Any = None
    sql: str = field(default="", repr=False)
    error: str | None = None

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.name}: error: {self.error}"
        verdict = "passed" if self.passed else f"FAILED ({self.failing} failing)"
        seen = f", observed {self.observed}" if self.observed is not None else ""
        return f"{self.name}: {verdict}{seen}"


_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def max_age_of(value: object) -> dt.timedelta:
    """A freshness limit: a timedelta, seconds, or text like ``'30m'``, ``'12h'``, ``'1d'``.

    :raises SqlArgumentError: (a ValueError) anything else, or a negative age.
    """
    age: dt.timedelta | None = None
    if isinstance(value, dt.timedelta):
        age = value
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        age = dt.timedelta(seconds=value)
    elif isinstance(value, str) and (match := _AGE.fullmatch(value)) is not None:
        age = dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    if age is None or age < dt.timedelta(0):
        raise SqlArgumentError(
            f"max_age must be a timedelta, seconds, or like '30m', '12h', '1d', '2w' "
            f"(zero or more), got {value!r}"
        )
    return age


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str | dt.date):
        return string_literal(value)
    raise ValueError(f"accepted values must be strings, numbers, booleans or dates, got {value!r}")


def _where(*conditions: str | None) -> str:
    present = [f"({c})" for c in conditions if c]
    return f" WHERE {' AND '.join(present)}" if present else ""


def _failing_rows(frm: str, predicate: str, where: str | None, sample_size: int) -> str:
    return (
        f"SELECT *, COUNT(*) OVER () AS {FAILING} FROM {frm}"
        f"{_where(where, predicate)} LIMIT {sample_size}"
    )


def _rows_result(check: Check, rows: list[dict[str, Any]], sql: str) -> CheckResult:
    failing = int(rows[0][FAILING]) if rows else 0
    samples = tuple({k: v for k, v in r.items() if k != FAILING} for r in rows)
    return CheckResult(check.label, check.kind, failing == 0, failing, samples, None, sql)


@dataclass(frozen=True, slots=True)
class NotNull:
    """No NULL in ``column``."""

    table: Table
    column: str
    where: str | None = None
    name: str | None = None
    kind = "not_null"

    @property
    def label(self) -> str:
        return self.name or f"not_null({self.column})"

    def sql(self, sample_size: int) -> str:
        predicate = f"{quote_identifier(self.column)} IS NULL"
        return _failing_rows(quote_path(self.table), predicate, self.where, sample_size)

    def evaluate(self, rows: list[dict[str, Any]], sql: str, now: dt.datetime) -> CheckResult:
        return _rows_result(self, rows, sql)


@dataclass(frozen=True, slots=True)
class Unique:
    """No two rows share the (non-NULL) values of ``columns``; failures are duplicated keys."""

    table: Table
    columns: str | Sequence[str]
    where: str | None = None
    name: str | None = None
    kind = "unique"

    def _columns(self) -> list[str]:
        cols = [self.columns] if isinstance(self.columns, str) else list(self.columns)
        if not cols:
            raise ValueError("unique needs at least one column")
        return cols

    @property
    def label(self) -> str:
        return self.name or f"unique({', '.join(self._columns())})"

    def sql(self, sample_size: int) -> str:
        cols = [quote_identifier(c) for c in self._columns()]
        not_null = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        keys = ", ".join(cols)
        return (
            f"SELECT {keys}, COUNT(*) AS __dq_rows, COUNT(*) OVER () AS {FAILING}"
            f" FROM {quote_path(self.table)}{_where(self.where, not_null)}"
            f" GROUP BY {keys} HAVING COUNT(*) > 1 LIMIT {sample_size}"
        )

    def evaluate(self, rows: list[dict[str, Any]], sql: str, now: dt.datetime) -> CheckResult:
        return _rows_result(self, rows, sql)


@dataclass(frozen=True, slots=True)
class AcceptedValues:
    """Every non-NULL ``column`` value is one of ``values``."""

    table: Table
    column: str
    values: Sequence[object]
    where: str | None = None
    name: str | None = None
    kind = "accepted_values"

    @property
    def label(self) -> str:
        return self.name or f"accepted_values({self.column})"

    def sql(self, sample_size: int) -> str:
        if not self.values:
            raise ValueError("accepted_values needs at least one value")
        allowed = ", ".join(_literal(v) for v in self.values)
        predicate = f"{quote_identifier(self.column)} NOT IN ({allowed})"
        return _failing_rows(quote_path(self.table), predicate, self.where, sample_size)

    def evaluate(self, rows: list[dict[str, Any]], sql: str, now: dt.datetime) -> CheckResult:
        return _rows_result(self, rows, sql)


@dataclass(frozen=True, slots=True)
class Expression:
    """The SQL predicate ``expression`` holds for every row (NULL counts as not holding)."""

    table: Table
    expression: str
    where: str | None = None
    name: str | None = None
    kind = "expression"

    @property
    def label(self) -> str:
        return self.name or f"expression({self.expression})"

    def sql(self, sample_size: int) -> str:
        predicate = f"({self.expression}) IS NOT TRUE"
        return _failing_rows(quote_path(self.table), predicate, self.where, sample_size)

    def evaluate(self, rows: list[dict[str, Any]], sql: str, now: dt.datetime) -> CheckResult:
        return _rows_result(self, rows, sql)


@dataclass(frozen=True, slots=True)
class CustomSql:
    """A query whose rows are failures: it passes when it returns none."""

    sql_text: str
    name: str | None = None
    kind = "custom_sql"

    @property
    def label(self) -> str:
        return self.name or "custom_sql"

    def sql(self, sample_size: int) -> str:
        inner = self.sql_text.strip().rstrip(";").strip()
        if not inner:
            raise ValueError("custom_sql needs a query")
        return (
            f"SELECT *, COUNT(*) OVER () AS {FAILING} FROM ({inner}) AS dq_rows LIMIT {sample_size}"
        )

    def evaluate(self, rows: list[dict[str, Any]], sql: str, now: dt.datetime) -> CheckResult:
        return _rows_result(self, rows, sql)


@dataclass(frozen=True, slots=True)
class RowCount:
    """The table (rows matching ``where``) has between ``min`` and ``max`` rows."""

    table: Table
    min: int | None = None
    max: int | None = None
    where: str | None = None
    name: str | None = None
    kind = "row_count"

    @property
    def label(self) -> str:
        return self.name or "row_count"

    def sql(self, sample_size: int) -> str:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min and/or max")
        return f"SELECT COUNT(*) AS __dq_rows FROM {quote_path(self.table)}{_where(self.where)}"

    def evaluate(self, rows: list[dict[str, Any]], sql: str, now: dt.datetime) -> CheckResult:
        count = int(rows[0]["__dq_rows"])
        low = self.min is not None and count < self.min
        high = self.max is not None and count > self.max
        return CheckResult(
            self.label, self.kind, not (low or high), int(low or high), (), count, sql
        )


@dataclass(frozen=True, slots=True)
class Freshness:
    """The newest ``column`` timestamp is at most ``max_age`` old (naive times are UTC).

    ``max_age`` is a timedelta, seconds, or text as in YAML (``"1d"``, ``"12h"``);
    it is a timedelta once constructed.

    :raises SqlArgumentError: (a ValueError) ``max_age`` is none of these.
    """

    table: Table
    column: str
    max_age: dt.timedelta | str | float
    where: str | None = None
    name: str | None = None
    kind = "freshness"

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_age", max_age_of(self.max_age))

    @property
    def label(self) -> str:
        return self.name or f"freshness({self.column})"

    def sql(self, sample_size: int) -> str:
        column = quote_identifier(self.column)
        return (
            f"SELECT MAX({column}) AS __dq_latest FROM {quote_path(self.table)}{_where(self.where)}"
        )

    def evaluate(self, rows: list[dict[str, Any]], sql: str, now: dt.datetime) -> CheckResult:
        latest = rows[0]["__dq_latest"] if rows else None
        if isinstance(latest, dt.datetime) and latest.tzinfo is None:
            latest = latest.replace(tzinfo=dt.UTC)
        elif isinstance(latest, dt.date) and not isinstance(latest, dt.datetime):
            latest = dt.datetime.combine(latest, dt.time(), dt.UTC)
        max_age = max_age_of(self.max_age)  # a timedelta already: narrows the type
        fresh = isinstance(latest, dt.datetime) and now - latest <= max_age
        return CheckResult(self.label, self.kind, fresh, int(not fresh), (), latest, sql)


Check = NotNull | Unique | AcceptedValues | Expression | CustomSql | RowCount | Freshness
