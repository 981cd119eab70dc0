"""Stream record batches into a Parquet file that appears only once complete."""

from __future__ import annotations

import os
import secrets
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
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    writer: pq.ParquetWriter | None = None
    rows, pending, pending_rows = 0, [], 0
    try:
        async for batch in batches:
            pending.append(batch)
            rows += batch.num_rows
            pending_rows += batch.num_rows
            if pending_rows >= row_group_rows:
                writer = await _write(writer, partial, pending)
                pending, pending_rows = [], 0
        schema = pending[0].schema if pending else batches.schema
        # The last row group, closing and the rename in one worker thread: a result
        # smaller than a row group (most of them) costs one trip to a thread, not five.
        await anyio.to_thread.run_sync(_finish, writer, partial, target, pending, schema)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_discard, writer, partial)
        raise
    return rows


def _open(partial: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(partial, schema)


async def _write(
    writer: pq.ParquetWriter | None, partial: Path, batches: list[pa.RecordBatch]
) -> pq.ParquetWriter:
    def write() -> pq.ParquetWriter:
        out = writer if writer is not None else _open(partial, batches[0].schema)
        try:
            out.write_table(pa.Table.from_batches(batches))
        except BaseException:
            if writer is None:
                out.close()  # opened here, so the caller never sees it: close it here
            raise
        return out

    return await anyio.to_thread.run_sync(write)


def _finish(
    writer: pq.ParquetWriter | None,
    partial: Path,
    target: Path,
    batches: list[pa.RecordBatch],
    schema: pa.Schema | None,
) -> None:
    """Write what is left, close, and rename into place; on any failure leave no file."""
    try:
        if writer is None:  # no row group yet: still a file, with the schema if known
            writer = _open(partial, schema or pa.schema([]))
        if batches:
            writer.write_table(pa.Table.from_batches(batches))
        writer.close()
        writer = None
        partial.replace(target)
    except BaseException:
        _discard(writer, partial)
        raise


def _discard(writer: pq.ParquetWriter | None, partial: Path) -> None:
    try:
        if writer is not None:
            writer.close()
    finally:
        partial.unlink(missing_ok=True)
