"""Stream record batches into a Parquet file that appears only once complete."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from ._stream import BatchStream

__all__ = ["write_parquet_atomically"]


async def write_parquet_atomically(
    batches: BatchStream, path: str | os.PathLike[str], *, row_group_rows: int = 65_536
) -> int:
    """Write ``batches`` to ``path`` through a hidden temporary file; return the row count.

    The file is renamed into place only after the last batch is written and the
    writer closed, so ``path`` never holds a partial result; on any failure or
    cancellation the temporary file is removed. Writes run in worker threads.

    :raises OSError: the file could not be written.
    """
    target = Path(path)
    sink = _Sink(target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial"))
    rows, pending, pending_rows = 0, [], 0
    try:
        async for batch in batches:
            pending.append(batch)
            rows += batch.num_rows
            pending_rows += batch.num_rows
            if pending_rows >= row_group_rows:
                await anyio.to_thread.run_sync(sink.write, pending)
                pending, pending_rows = [], 0
        schema = pending[0].schema if pending else batches.schema
        # The last row group, closing and the rename in one worker thread: a result
        # smaller than a row group (most of them) costs one trip to a thread, not five.
        await anyio.to_thread.run_sync(sink.finish, target, pending, schema)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(sink.discard)
        raise
    return rows


class _Sink:
    """The temporary file and its writer, used by one worker thread at a time.

    asyncio's own cancellation (``asyncio.timeout``, ``task.cancel()``) passes
    anyio's shields, so a write's thread can outlive the await that started it.
    :meth:`discard` waits for such a thread to end its step, and no step does
    anything once discarded: when the write raises, nothing is left to happen.
    """

    __slots__ = ("_done", "_lock", "_partial", "_writer")

    def __init__(self, partial: Path) -> None:
        self._partial = partial
        self._writer: pq.ParquetWriter | None = None
        self._lock = threading.Lock()
        self._done = False  # discarded, or renamed into place

    def write(self, batches: list[pa.RecordBatch]) -> None:
        """Write one row group (a worker thread)."""
        with self._lock:
            if self._done:
                return
            try:
                self._append(batches[0].schema, batches)
            except BaseException:
                self._drop()
                raise

    def finish(self, target: Path, batches: list[pa.RecordBatch], schema: pa.Schema | None) -> None:
        """Write what is left, close, and rename into place; on any failure leave no file."""
        with self._lock:
            if self._done:
                return
            try:
                # No row group yet: still a file, with the schema if known.
                writer = self._append(schema or pa.schema([]), batches)
                writer.close()
                self._writer = None
                self._partial.replace(target)
                self._done = True
            except BaseException:
                self._drop()
                raise

    def discard(self) -> None:
        """Close and remove the temporary file, once no thread is using it."""
        with self._lock:
            self._drop()

    def _append(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> pq.ParquetWriter:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._partial, schema)
        if batches:
            self._writer.write_table(pa.Table.from_batches(batches))
        return self._writer

    def _drop(self) -> None:
        self._done = True
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._writer = None
            self._partial.unlink(missing_ok=True)
