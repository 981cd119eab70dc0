"""Listing runs a page at a time: filters, a total, and keyset cursors over an index.

Pages are ordered newest first by ``(started, run_id)``. A cursor names the
first or last run of a page, so the next page is one indexed range scan
(``WHERE (started, run_id) < cursor ORDER BY started DESC, run_id DESC``)
however deep the user pages, where ``OFFSET`` would read every skipped row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._fold import RunRow
from ._model import RunInfo, RunStatus
from ._sql import columns

__all__ = ["MAX_PAGE", "Keyset", "PageSQL", "RunPage", "RunQuery", "decode_cursor", "encode_cursor"]

MAX_PAGE = 1000

# (started, run_id): a run's place in the newest-first order.
Keyset = tuple[float, str]


def encode_cursor(started: float, run_id: str) -> str:
    """The cursor naming a run's place in the order (``repr`` keeps the float exact)."""
    return f"{started!r}:{run_id}"


def decode_cursor(cursor: str) -> Keyset:
    """Read a cursor made by :func:`encode_cursor`.

    :raises ValueError: when ``cursor`` is not one.
    """
    started, sep, run_id = cursor.partition(":")
    try:
        value = float(started)
    except ValueError:
        value = float("nan")
    if not sep or not run_id or value != value:  # NaN never equals itself
        raise ValueError(f"not a run-page cursor: {cursor!r}")
    return value, run_id


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs to list: filters, a page size and at most one cursor.

    ``before`` lists the runs older than that cursor (the next page), ``after``
    the runs newer than it (the previous page); neither lists the newest.
    ``pipeline`` is a pipeline's name; ``pipeline_contains`` keeps the pipelines
    whose name holds that text, in any case. ``since`` and ``until`` (epoch
    seconds) keep the runs started at or after ``since`` and before ``until``.

    :raises ValueError: for a ``limit`` outside 1..1000, both cursors, a bad cursor,
        or ``since`` past ``until``.
    """

    pipeline: str | None = None
    status: RunStatus | None = None
    before: str | None = None
    after: str | None = None
    limit: int = 50
    backfill: str | None = None  # only the runs of this backfill (RunInfo.backfill)
    pipeline_contains: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        for name, moment in (("since", self.since), ("until", self.until)):
            if moment is not None and (
                isinstance(moment, bool)
                or not isinstance(moment, int | float)
                or not math.isfinite(moment)
            ):
                raise ValueError(f"{name} must be finite epoch seconds, got {moment!r}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(f"since ({self.since}) must not be after until ({self.until})")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise ValueError(f"limit must be a whole number, got {self.limit!r}")
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {self.limit}")
        if self.before is not None and self.after is not None:
            raise ValueError("give before= or after=, not both")
        for name, cursor in (("before", self.before), ("after", self.after)):
            if cursor is not None:
                try:
                    decode_cursor(cursor)
                except ValueError as exc:
                    raise ValueError(
                        f"{name}=: {exc} (give a page's older or newer value)"
                    ) from None
        if self.status is not None:
            object.__setattr__(self, "status", RunStatus(self.status))

    def admits(self, pipeline: str, status: str, backfill: str | None, started: float) -> bool:
        """Whether a run passes the filters (for a store that filters in Python)."""
        contains = self.pipeline_contains
        return (
            (self.pipeline is None or pipeline == self.pipeline)
            and (self.status is None or status == self.status.value)
            and (self.backfill is None or backfill == self.backfill)
            and (contains is None or contains.lower() in pipeline.lower())
            and (self.since is None or started >= self.since)
            and (self.until is None or started < self.until)
        )

    @property
    def cursor(self) -> Keyset | None:
        """The decoded cursor, if any."""
        text = self.before if self.before is not None else self.after
        return None if text is None else decode_cursor(text)


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, newest first.

    ``total`` counts every run matching the filters; ``older`` and ``newer`` are
    the cursors of the neighbouring pages (``RunQuery(before=page.older)``), or
    None when there is no such page.
    """

    runs: tuple[RunInfo, ...]
    total: int
    older: str | None
    newer: str | None


def page_of(
    query: RunQuery, runs: Sequence[RunInfo], total: int, more: Callable[..., bool]
) -> RunPage:
    """Build the page; ``more(keyset, older)`` says whether runs lie beyond ``keyset``."""
    if not runs:
        return RunPage((), total, None, None)
    first, last = runs[0], runs[-1]
    older = (last.started, last.run_id)
    newer = (first.started, first.run_id)
    return RunPage(
        tuple(runs),
        total,
        encode_cursor(*older) if more(older, True) else None,
        encode_cursor(*newer) if more(newer, False) else None,
    )


def _like(text: str) -> str:
    """``text`` lower-cased, as a LIKE pattern that matches it literally (``!`` escapes)."""
    return "".join(f"!{c}" if c in "!%_" else c for c in text.lower())


class PageSQL:
    """The statements behind a :class:`RunQuery`, for one placeholder style.

    ``mark(n)`` returns the n-th placeholder (``?`` for SQLite, ``$n`` for
    PostgreSQL); ``lower`` names the SQL function that lower-cases as Python's
    ``str.lower`` does (SQLite's own folds ASCII only). Filters come first so each
    statement can use the ``(pipeline|status, started, run_id)`` indexes.
    """

    def __init__(
        self, query: RunQuery, table: str, mark: Callable[[int], str], lower: str = "lower"
    ) -> None:
        self.table = table
        self._mark = mark
        self.where: list[str] = []
        self.params: list[object] = []
        if query.pipeline is not None:
            self._add("pipeline = {}", query.pipeline)
        if query.status is not None:
            self._add("status = {}", query.status.value)
        if query.backfill is not None:
            self._add("backfill = {}", query.backfill)
        if query.pipeline_contains is not None:
            pattern = f"%{_like(query.pipeline_contains)}%"
            self._add(f"{lower}(pipeline) LIKE {{}} ESCAPE '!'", pattern)
        if query.since is not None:
            self._add("started >= {}", query.since)
        if query.until is not None:
            self._add("started < {}", query.until)

    def _add(self, clause: str, *values: object) -> None:
        marks = [self._mark(len(self.params) + i + 1) for i in range(len(values))]
        self.where.append(clause.format(*marks))
        self.params.extend(values)

    def _sql(self, head: str, extra: list[str]) -> str:
        where = self.where + extra
        return head + (" WHERE " + " AND ".join(where) if where else "")

    def count(self) -> tuple[str, list[object]]:
        """``SELECT count(*)`` of the filtered runs."""
        return self._sql(f"SELECT count(*) FROM {self.table}", []), list(self.params)

    def rows(self, query: RunQuery, selected: str | None = None) -> tuple[str, list[object]]:
        """The page's run rows (every :class:`RunRow` column unless ``selected``);
        oldest first when ``query.after`` is set (reverse them)."""
        params = list(self.params)
        extra, order = [], "DESC"
        cursor = query.cursor
        if cursor is not None:
            op = "<" if query.before is not None else ">"
            order = "DESC" if query.before is not None else "ASC"
            extra.append(self._range(op, len(params)))
            params.extend(cursor)
        names = selected or ", ".join(columns(RunRow))
        sql = self._sql(f"SELECT {names} FROM {self.table}", extra)
        sql += f" ORDER BY started {order}, run_id {order} LIMIT {self._mark(len(params) + 1)}"
        return sql, [*params, query.limit]

    def beyond(self, keyset: Keyset, older: bool) -> tuple[str, list[object]]:
        """Whether a run lies past ``keyset`` (older or newer): one indexed probe."""
        extra = [self._range("<" if older else ">", len(self.params))]
        sql = self._sql(f"SELECT 1 FROM {self.table}", extra) + " LIMIT 1"
        return sql, [*self.params, *keyset]

    def _range(self, op: str, used: int) -> str:
        return f"(started, run_id) {op} ({self._mark(used + 1)}, {self._mark(used + 2)})"
