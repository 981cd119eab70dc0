"""One big table, many streams: range partitions of a column, read concurrently.

``plan_partitions`` reads ``MIN``, ``MAX`` and ``COUNT(*)`` of the source in
one query (or takes given bounds) and cuts ``[MIN, MAX]`` of an integer, date
or timestamp column into ``parts`` ranges of equal width. The first part is
open below and also takes the rows where the column is NULL; the last is open
above; so every row of the source falls in exactly one part, whatever its
value, and the parts' row counts must add up to ``COUNT(*)`` (checked).

Skew: equal-width ranges hold equal numbers of rows only when values are
spread evenly. For skewed data ask for more parts than streams (``parts=64,
streams=8``): each stream takes the next range as soon as its last one ends,
so a dense range keeps one stream busy while the others drain the rest, and
no part is more than a small fraction of the table. Values in the partition
column become SQL literals built from typed values, never pasted text.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._errors import DremioConfigError, DremioError

if TYPE_CHECKING:
    from ._client import DremioClient

__all__ = ["Partition", "PartitionCountMismatch", "PartitionPlan", "plan_partitions"]

# A query starts with one of these words and a space or a parenthesis; "select.t" is a table.
_QUERY = re.compile(r"\s*\(*\s*(SELECT|WITH|VALUES)[\s(]", re.I)
_EPOCH = dt.datetime(1970, 1, 1)


class PartitionCountMismatch(DremioError):
    """The parts of a partitioned read delivered ``received`` rows; ``COUNT(*)`` said ``expected``.

    The source changed while it was read, or rows fell outside every part: the
    parts are not the table, and what was written was removed.
    """

    def __init__(self, source: str, expected: int, received: int) -> None:
        self.source, self.expected, self.received = source, expected, received
        super().__init__(
            f"partitioned read of {source}: the parts hold {received} rows but COUNT(*) "
            f"is {expected}"
        )


@dataclass(frozen=True, slots=True)
class Partition:
    """One range of a partitioned read: ``sql`` selects its rows."""

    index: int
    sql: str
    low: Any = None  # inclusive; None: open below
    high: Any = None  # exclusive; None: open above
    nulls: bool = False  # also the rows whose column is NULL


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """The parts of one read and the row count they must add up to."""

    source: str
    parts: tuple[Partition, ...]
    count: int


def source_sql(source: str | Sequence[str]) -> str:
    """``source`` as a FROM item: a query in parentheses, or a quoted table path."""
    from ._client import split_path

    if isinstance(source, str) and _QUERY.match(source):
        return f"({source}) AS src"
    parts = split_path(source) if isinstance(source, str) else list(source)
    if not parts or not all(parts):
        raise DremioConfigError(f"a table path needs non-empty parts, got {source!r}")
    return ".".join(_quote(p) for p in parts)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """An integer, date or timestamp as a SQL literal.

    :raises DremioConfigError: any other type.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return f"TIMESTAMP '{value.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    raise DremioConfigError(
        f"partitions need an integer, date or timestamp column, got a {type(value).__name__}"
    )


def _to_number(value: Any) -> int:
    if isinstance(value, dt.datetime):
        naive = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        return (naive - _EPOCH) // dt.timedelta(microseconds=1)
    if isinstance(value, dt.date):
        return value.toordinal()
    literal(value)  # refuses other types with the message
    return int(value)


def _from_number(number: int, like: Any) -> Any:
    if isinstance(like, dt.datetime):
        return _EPOCH + dt.timedelta(microseconds=number)
    if isinstance(like, dt.date):
        return dt.date.fromordinal(number)
    return number


def split_points(low: Any, high: Any, parts: int) -> list[Any]:
    """The ``parts - 1`` inner boundaries of ``[low, high]`` (fewer when the range is narrow)."""
    lo, hi = _to_number(low), _to_number(high)
    width = hi - lo + 1
    points = sorted({lo + width * i // parts for i in range(1, parts)} - {lo})
    return [_from_number(p, low) for p in points]


def _partition(index: int, base: str, column: str, low: Any, high: Any, last: bool) -> Partition:
    conditions = []
    if low is not None:
        conditions.append(f"{column} >= {literal(low)}")
    if high is not None and not last:
        conditions.append(f"{column} < {literal(high)}")
    nulls = index == 0
    where = " AND ".join(conditions)
    if nulls and where:
        where = f"{where} OR {column} IS NULL"
    sql = f"SELECT * FROM {base}" + (f" WHERE {where}" if where else "")
    return Partition(index, sql, low, None if last else high, nulls)


async def plan_partitions(
    client: DremioClient,
    source: str | Sequence[str],
    by: str,
    parts: int,
    bounds: tuple[Any, Any] | None = None,
    via: Literal["auto", "flight", "rest"] = "auto",
) -> PartitionPlan:
    """Cut ``source`` into ``parts`` ranges of ``by`` (see the module's docs).

    :raises DremioConfigError: ``parts`` below 1, or a column of another type.
    """
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise DremioConfigError(f"parts must be a whole number >= 1, got {parts!r}")
    base, column = source_sql(source), _quote(by)
    stats = await client.query(
        f"SELECT MIN({column}) AS lo, MAX({column}) AS hi, COUNT(*) AS n FROM {base}", via=via
    )
    row: dict[str, Any] = stats.to_pylist()[0]
    low, high = bounds if bounds is not None else (row["lo"], row["hi"])
    name = source if isinstance(source, str) else ".".join(source)
    if low is None or high is None:  # no non-NULL value: one part takes everything
        return PartitionPlan(name, (_partition(0, base, column, None, None, True),), row["n"])
    edges = [None, *split_points(low, high, parts), None]
    found = tuple(
        _partition(i, base, column, edges[i], edges[i + 1], i == len(edges) - 2)
        for i in range(len(edges) - 1)
    )
    return PartitionPlan(name, found, int(row["n"]))
