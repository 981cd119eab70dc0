"""Partitioned reads: N range streams at once, as Parquet files or as record batches.

``partitions_to_parquet`` writes one file per part, each through
``query_to_parquet`` (renamed into place once complete); ``query_partitions``
hands the parts' record batches to the caller as they arrive, through a
bounded buffer. Both check that the parts' rows add up to ``COUNT(*)`` and
raise :class:`PartitionCountMismatch` otherwise (``partitions_to_parquet``
removes its files first). See ``_partitions`` for how parts are cut, NULLs
kept, and skew handled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
import anyio.to_thread
import pyarrow as pa
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._partitions import Partition, PartitionCountMismatch, PartitionPlan, plan_partitions

if TYPE_CHECKING:
    from ._client import DremioClient

__all__ = ["PartitionStream", "partitions_to_parquet"]

ViaName = Literal["auto", "flight", "rest"]
_PART = re.compile(r"part-\d{5}\.parquet")


class _FirstError:
    """The first error among concurrent parts; it cancels the others and is raised alone.

    Only for parts run by tasks of their own group, in which nothing else runs.
    """

    def __init__(self) -> None:
        self.error: Exception | None = None

    def keep(self, exc: Exception, tg: TaskGroup) -> None:
        if self.error is None:
            self.error = exc
        tg.cancel_scope.cancel()


async def partitions_to_parquet(
    client: DremioClient,
    source: str | Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    by: str,
    parts: int,
    bounds: tuple[Any, Any] | None = None,
    via: ViaName = "auto",
    streams: int | None = None,
) -> list[Path]:
    """``DremioClient.partitions_to_parquet`` (see there)."""
    plan = await plan_partitions(client, source, by, parts, bounds, via)
    out = Path(out_dir)
    await anyio.to_thread.run_sync(lambda: out.mkdir(parents=True, exist_ok=True))
    paths = [out / f"part-{p.index:05d}.parquet" for p in plan.parts]
    counts = [0] * len(paths)
    limiter = anyio.CapacityLimiter(streams or len(paths))
    first = _FirstError()

    async def write(i: int, tg: TaskGroup) -> None:
        try:
            async with limiter:
                counts[i] = await client.query_to_parquet(plan.parts[i].sql, paths[i], via=via)
        except Exception as exc:  # raised alone below, not inside a group
            first.keep(exc, tg)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(paths)):
                tg.start_soon(write, i, tg)
        if first.error is not None:
            raise first.error
        if sum(counts) != plan.count:
            raise PartitionCountMismatch(plan.source, plan.count, sum(counts))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_remove, paths)
        raise
    await anyio.to_thread.run_sync(_remove_stale, out, set(paths))
    return paths


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _remove_stale(out: Path, kept: set[Path]) -> None:
    """Part files of an earlier read with more parts: the dataset is this read's parts only."""
    _remove([p for p in out.glob("part-*.parquet") if _PART.fullmatch(p.name) and p not in kept])


class PartitionStream:
    """``async with client.query_partitions(...) as stream: async for part, batch in stream``.

    Parts are read concurrently (at most ``streams`` at once); their batches
    arrive interleaved, each with its :class:`Partition`, through a buffer of
    ``buffer`` batches (a full buffer pauses the streams). The iteration ends
    once every part has ended and the rows add up to ``COUNT(*)``; a failed
    part raises its error, alone. Leaving the block early stops every stream.
    """

    def __init__(
        self,
        client: DremioClient,
        source: str | Sequence[str],
        *,
        by: str,
        parts: int,
        bounds: tuple[Any, Any] | None,
        via: ViaName,
        streams: int | None,
        buffer: int,
    ) -> None:
        self._client, self._source = client, source
        self._by, self._parts, self._bounds = by, parts, bounds
        self._via, self._streams, self._buffer = via, streams, buffer
        self.plan: PartitionPlan | None = None
        self.rows = 0
        self._tg: TaskGroup | None = None
        self.error: Exception | None = None
        self._closing = False
        self._scopes: list[anyio.CancelScope] = []
        self._receive: MemoryObjectReceiveStream[tuple[Partition, pa.RecordBatch]] | None = None

    async def __aenter__(self) -> Self:
        self.plan = await plan_partitions(
            self._client, self._source, self._by, self._parts, self._bounds, self._via
        )
        send, self._receive = anyio.create_memory_object_stream[tuple[Partition, pa.RecordBatch]](
            self._buffer
        )
        limiter = anyio.CapacityLimiter(self._streams or len(self.plan.parts))
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        async with send:
            for part in self.plan.parts:
                scope = anyio.CancelScope()
                self._scopes.append(scope)
                self._tg.start_soon(self._read, part, send.clone(), limiter, scope)
        return self

    async def _read(
        self,
        part: Partition,
        send: MemoryObjectSendStream[tuple[Partition, pa.RecordBatch]],
        limiter: anyio.CapacityLimiter,
        scope: anyio.CancelScope,
    ) -> None:
        # Each part in a scope of its own: a failure stops the other parts, never the
        # task iterating (it is inside the task group's scope, and learns of the error
        # from the end of the stream).
        with scope:
            try:
                async with send, limiter, self._client.stream(part.sql, via=self._via) as batches:
                    async for batch in batches:
                        await send.send((part, batch))
            except Exception as exc:
                self._stop(exc)

    def _stop(self, exc: Exception | None) -> None:
        if self.error is None and not self._closing:
            self.error = exc
        for scope in self._scopes:
            scope.cancel()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> tuple[Partition, pa.RecordBatch]:
        assert self._receive is not None
        assert self.plan is not None
        try:
            part, batch = await self._receive.receive()
        except anyio.EndOfStream:
            if self.error is not None:
                raise self.error from None
            if self.rows != self.plan.count:
                raise PartitionCountMismatch(self.plan.source, self.plan.count, self.rows) from None
            raise StopAsyncIteration from None
        self.rows += batch.num_rows
        return part, batch

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        assert self._receive is not None
        self._closing = True  # errors from here on are the shutdown's, not the parts'
        self._receive.close()
        self._stop(None)  # ended or left early: no stream outlives the block
        # The parts catch their own errors, so the group ends clean; the block's own
        # exception, if any, then propagates as itself rather than inside a group.
        await self._tg.__aexit__(None, None, None)
