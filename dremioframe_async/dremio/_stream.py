"""``DremioClient.stream()``'s result: an async iterator of record batches that can be closed."""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

import pyarrow as pa

__all__ = ["BatchStream", "StreamStats"]

Via = Literal["flight", "rest"]


@dataclass(slots=True)
class StreamStats:
    """Counters a Flight read keeps while a worker thread and the loop share it.

    ``max_buffered`` is the most batches read from the server but not yet taken
    by the consumer at any moment: the read-ahead actually used.
    """

    schema_seen: pa.Schema | None = None
    batches_read: int = 0
    rows_read: int = 0
    batches_taken: int = 0
    max_buffered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def schema(self, schema: pa.Schema) -> None:
        """The stream's schema is known (before its first batch)."""
        self.schema_seen = schema

    def read(self, rows: int) -> None:
        """A batch arrived from the server (worker thread)."""
        with self._lock:
            self.batches_read += 1
            self.rows_read += rows
            self.max_buffered = max(self.max_buffered, self.batches_read - self.batches_taken)

    def taken(self) -> None:
        """The consumer took a batch (event loop)."""
        with self._lock:
            self.batches_taken += 1


class BatchStream:
    """Record batches of one query, in order; ``async for`` over it, or ``async with`` it.

    Leaving ``async with`` (or calling :meth:`aclose`) early stops the read: a
    Flight read cancels its gRPC call, so Dremio stops sending. ``rows`` counts
    the rows taken so far; ``via`` says which path serves it.
    """

    def __init__(
        self,
        batches: AsyncGenerator[pa.RecordBatch, None],
        via: Via,
        stats: StreamStats | None = None,
    ) -> None:
        self._batches = batches
        self.via: Via = via
        self.stats = stats
        self.rows = 0
        self._first_schema: pa.Schema | None = None

    @property
    def schema(self) -> pa.Schema | None:
        """The result's schema, once known (Flight: before the first batch)."""
        if self.stats is not None and self.stats.schema_seen is not None:
            return self.stats.schema_seen
        return self._first_schema

    def __repr__(self) -> str:
        return f"BatchStream(via={self.via!r}, rows={self.rows})"

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> pa.RecordBatch:
        batch = await self._batches.__anext__()
        self.rows += batch.num_rows
        if self._first_schema is None:
            self._first_schema = batch.schema
        return batch

    async def aclose(self) -> None:
        """Stop reading and release the stream's worker and connection."""
        await self._batches.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
