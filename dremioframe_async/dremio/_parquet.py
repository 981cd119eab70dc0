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
    done = False
    try:
        async for batch in batches:
            if writer is None:
                writer = await anyio.to_thread.run_sync(pq.ParquetWriter, partial, batch.schema)
            pending.append(batch)
            rows += batch.num_rows
            pending_rows += batch.num_rows
            if pending_rows >= row_group_rows:
                await _write(writer, pending)
                pending, pending_rows = [], 0
        if writer is None:  # no batch at all: still an empty file with the schema, if known
            writer = await anyio.to_thread.run_sync(
                pq.ParquetWriter, partial, batches.schema or pa.schema([])
            )
        await _write(writer, pending)
        done = True
    finally:
        with anyio.CancelScope(shield=True):
            if writer is not None:
                await anyio.to_thread.run_sync(writer.close)
            try:
                if done:
                    await anyio.Path(partial).replace(target)
            finally:  # not done, or the rename failed (``path`` is a directory, ...)
                await anyio.Path(partial).unlink(missing_ok=True)
    return rows


async def _write(writer: pq.ParquetWriter, batches: list[pa.RecordBatch]) -> None:
    if batches:
        table = pa.Table.from_batches(batches)
        await anyio.to_thread.run_sync(writer.write_table, table)
