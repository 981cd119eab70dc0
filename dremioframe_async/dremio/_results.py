"""A completed job's results, page by page, checked against the job's row count.

Dremio serves results in pages of at most 500 rows. A proxy that cuts a body,
a server that loses rows or reports a row count it cannot deliver must never
turn into a silently short table: every page is checked against the range it
was asked for and the job's ``rowCount``, and the total against that count.
On any mismatch :class:`DremioResultIncomplete` is raised and no partial result
is returned.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from ._errors import DremioError, DremioResultIncomplete
from ._pages import map_bounded
from ._transport import Loads, Transport
from ._types import arrow_schema, has_decimal, rows_to_batch

__all__ = ["PAGE_SIZE", "ResultPager", "path_segment", "row_count"]

PAGE_SIZE = 500
"""Dremio serves at most 500 rows per results request."""


def path_segment(text: str) -> str:
    """``text`` as one percent-encoded URL path segment: it can never change the endpoint.

    ``/`` and every other reserved character are encoded, and so are the dots of
    a ``.`` or ``..`` segment, which a URL library or a proxy would otherwise
    resolve as "this folder" or "the parent folder".
    """
    encoded = quote(text, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def row_count(value: Any, job_id: str) -> int:
    """Dremio's ``rowCount`` as a whole number of rows.

    :raises DremioError: it is not one (text, negative, fractional): checking the
        rows against it would mean nothing.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise DremioError(f"Dremio job {job_id}: its row count {value!r} is not a number of rows")


def _exact_loads(text: str) -> Any:
    # DECIMAL values arrive as JSON numbers; parsing them as float would lose digits.
    return json.loads(text, parse_float=Decimal)


@dataclass(frozen=True, slots=True)
class _Page:
    offset: int
    reported_rows: int | None
    batch: pa.RecordBatch
    other_schema: bool = False


# Pages per window of ``ResultPager.table``, per page in flight.
_WINDOW_ROUNDS = 64


class ResultPager:
    """Fetches the result pages of one completed job that has ``expected`` rows."""

    def __init__(
        self, transport: Transport, job_id: str, expected: int, page_concurrency: int
    ) -> None:
        self.transport, self.job_id, self.expected = transport, job_id, expected
        self.page_concurrency = page_concurrency
        self._path = f"/job/{path_segment(job_id)}/results"

    async def table(self) -> pa.Table:
        """Every page, fetched concurrently, as one table in order.

        :raises DremioResultIncomplete: the rows do not add up to the job's row count.
        """
        first = await self._page(0, None)
        schema = first.batch.schema
        pages = [first]
        problem = self._problem(first)
        offsets = self._offsets()
        # Pages are fetched a window at a time, so a row count far above the rows
        # (a hostile one: 10**12) ends at the first window that brings nothing,
        # instead of sizing a list of billions of pages up front.
        window = self.page_concurrency * _WINDOW_ROUNDS
        for start in range(0, len(offsets), window):
            got = await map_bounded(
                lambda offset: self._page(offset, schema),
                offsets[start : start + window],
                self.page_concurrency,
            )
            pages += got
            problem = problem or next((d for p in got if (d := self._problem(p))), None)
            if problem and not any(p.batch.num_rows for p in got):
                break  # nothing more is coming: every row there is has been counted
        received = sum(p.batch.num_rows for p in pages)
        if problem or received != self.expected:
            raise DremioResultIncomplete(self.job_id, self.expected, received, problem or "")
        return pa.Table.from_batches([p.batch for p in pages], schema=schema)

    async def batches(self) -> AsyncGenerator[pa.RecordBatch, None]:
        """Yield the pages in order, ``page_concurrency`` at a time, each checked on arrival.

        :raises DremioResultIncomplete: a page is short, long or inconsistent.
        """
        first = await self._page(0, None)
        schema = first.batch.schema
        received = self._check(first, 0)
        yield first.batch
        # Each page's size is checked against the job's row count, so the pages
        # that arrive add up to it exactly.
        offsets = self._offsets()
        for start in range(0, len(offsets), self.page_concurrency):
            chunk = offsets[start : start + self.page_concurrency]
            pages = await map_bounded(
                lambda offset: self._page(offset, schema), chunk, self.page_concurrency
            )
            for page in pages:
                received = self._check(page, received)
                yield page.batch

    def _offsets(self) -> range:
        return range(PAGE_SIZE, self.expected, PAGE_SIZE)

    def _check(self, page: _Page, received: int) -> int:
        received += page.batch.num_rows
        problem = self._problem(page)
        if problem:
            raise DremioResultIncomplete(self.job_id, self.expected, received, problem)
        return received

    def _problem(self, page: _Page) -> str | None:
        """What is wrong with ``page``, or None."""
        if page.other_schema:  # its rows read with the first page's columns would be nulls
            return f"the page at offset {page.offset:,} has another schema than the first"
        if page.reported_rows is not None and page.reported_rows != self.expected:
            return f"the results report {page.reported_rows:,} rows, the job {self.expected:,}"
        wanted = max(0, min(PAGE_SIZE, self.expected - page.offset))
        if page.batch.num_rows != wanted:
            return (
                f"the page at offset {page.offset:,} held {page.batch.num_rows:,} rows, "
                f"not {wanted:,}"
            )
        return None

    async def _page(self, offset: int, schema: pa.Schema | None) -> _Page:
        loads: Loads = _exact_loads if schema is None or has_decimal(schema) else json.loads
        params = {"offset": str(offset), "limit": str(PAGE_SIZE)}
        body = await self.transport.request("GET", self._path, params=params, loads=loads)
        body = body if isinstance(body, dict) else {}
        served = arrow_schema(body["schema"]) if body.get("schema") else None
        other = schema is not None and served is not None and not served.equals(schema)
        if schema is None:
            schema = served if served is not None else pa.schema([])
        reported = body.get("rowCount")
        rows = body.get("rows") or []
        batch = rows_to_batch(rows, schema)
        reported = None if reported is None else row_count(reported, self.job_id)
        return _Page(offset, reported, batch, other)
