"""Incremental extraction: only the rows past a stored watermark, one Parquet file per increment.

How an increment stays exactly-once across failures:

1. The watermark lives in pipeline state (``context.state``), which the store
   commits with the task's SUCCESS record only.
2. Each increment is written through ``query_to_parquet`` (a temporary file
   renamed into place once complete) as ``out/<UTC time>-g<generation>.parquet``,
   ``generation`` being one more than the committed one.
3. Only once the file is in place does the task compute the maximum watermark
   the file holds and set it, with the new generation, in state.

A failure before the rename leaves no file; a failure after it (or a store that
could not record the SUCCESS) leaves a file whose generation is past the
committed one. The next run deletes such files before it writes: they were
never committed, and the new increment covers their rows again. So the union of
the committed files is the table's rows with a non-NULL watermark, each once,
plus the rows ``lookback`` re-reads on purpose (rows whose watermark is within
``lookback`` of the stored one appear again in the next file).

The folder belongs to the task: it deletes only files of the increment pattern
with a generation past the committed one. Rows whose watermark is NULL are
never extracted. One run of the task at a time (two at once would both write
the same generation).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..dremio import Via
from ..orchestration import RunContext
from ._common import TaskLibraryError
from ._dremio import ClientSource, ClientTask, client_options, client_scope, dremio_retry_options
from ._sql import quote_identifier, quote_path
from ._watermark import Watermark

__all__ = ["IncrementalExtractError", "IncrementalExtractTask", "increment_files"]

_FILE = re.compile(r"(?P<stamp>\d{8}T\d{12}Z)-g(?P<generation>\d{6,})\.parquet")


class IncrementalExtractError(TaskLibraryError):
    """The task's folder and its stored state disagree, or the watermark column is unusable."""

    def __init__(self, task: str, problem: str) -> None:
        self.task, self.problem = task, problem
        super().__init__(f"incremental extract {task!r}: {problem}")


def increment_files(out: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(generation, path)`` of every increment file in ``out``, in generation order."""
    folder = Path(out)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _FILE.fullmatch(path.name)
        if match is not None:
            found.append((int(match["generation"]), path))
    return sorted(found)


class IncrementalExtractTask(ClientTask):
    """Extract the rows of ``table`` whose ``watermark`` column is past the stored watermark.

    Each successful run adds one Parquet file to the folder ``out`` (named so
    that names sort by time) and returns its path as a string, or None when no
    row is new (then no file is written and the watermark stays). The watermark
    is kept in pipeline state under ``state_key`` (default ``"<name>.watermark"``)
    and advances to the largest value the file holds, only once the file is in
    place (see the module's docs for why no row is lost or repeated).

    ``initial`` is the lower bound (exclusive) before any watermark is stored;
    None reads every row with a non-NULL watermark. ``lookback`` re-reads rows
    that far behind the stored watermark (a ``timedelta`` for timestamps and
    dates, a number for numbers), for rows that arrive late; those rows are then
    in two files. ``columns`` picks columns (the watermark column is added).
    Values travel as typed SQL literals (see ``_watermark``); identifiers are quoted.
    The run needs a store (``run(store=...)``): the watermark lives there.

    :raises SqlArgumentError: (at construction) an ``initial`` of no supported type.
    """

    def __init__(
        self,
        name: str,
        *,
        table: str | Sequence[str],
        watermark: str,
        out: str | os.PathLike[str],
        via: Via = "auto",
        lookback: Any = None,
        initial: Any = None,
        columns: Sequence[str] | None = None,
        state_key: str | None = None,
        client: ClientSource = None,
        query_timeout: float | None = None,
        **options: Any,
    ) -> None:
        self.table = quote_path(table)
        self.column = watermark
        self.out = Path(out)
        self.via: Via = via
        self.lookback = lookback
        self.initial = Watermark.of(initial) if initial is not None else None
        self.columns = tuple(columns) if columns else None
        self.state_key = state_key or f"{name}.watermark"
        self.client = client
        self.query_timeout = query_timeout
        options = client_options(self, client, dremio_retry_options(options))
        super().__init__(name, self._execute, **options)

    def sql(self, after: Watermark | None) -> str:
        """The increment's query: rows past ``after`` (moved back by ``lookback``)."""
        column = quote_identifier(self.column)
        if self.columns is None:
            select = "*"
        else:
            names = dict.fromkeys([*self.columns, self.column])
            select = ", ".join(quote_identifier(c) for c in names)
        sql = f"SELECT {select} FROM {self.table} WHERE {column} "
        if after is None:
            return sql + "IS NOT NULL"
        if self.lookback is not None:
            after = after.minus(self.lookback)
        return sql + f"> {after.literal()}"

    async def _execute(self, context: RunContext) -> str | None:
        stored = context.state.get(self.state_key) if context.state is not None else None
        after, generation = self._committed(stored)
        await anyio.to_thread.run_sync(self._drop_uncommitted, generation)
        path = self.out / f"{_stamp()}-g{generation + 1:06d}.parquet"
        async with client_scope(self, context) as client:
            rows = await client.query_to_parquet(
                self.sql(after), path, timeout=self.query_timeout, via=self.via
            )
        if rows == 0:
            await anyio.to_thread.run_sync(path.unlink)
            return None
        await self._written(path)
        highest = await anyio.to_thread.run_sync(self._highest, path)
        assert context.state is not None
        context.state[self.state_key] = {
            "watermark": highest.to_json(),
            "generation": generation + 1,
            "file": path.name,
            "rows": rows,
        }
        return str(path)

    def _committed(self, stored: Any) -> tuple[Watermark | None, int]:
        """The stored watermark and generation (the initial bound and 0 before any)."""
        if stored is None:
            return self.initial, 0
        generation = stored.get("generation") if isinstance(stored, dict) else None
        if not isinstance(generation, int) or generation < 1 or "watermark" not in stored:
            raise IncrementalExtractError(
                self.name, f"the state under {self.state_key!r} is not this task's: {stored!r}"
            )
        return Watermark.from_json(stored["watermark"]), generation

    async def _written(self, path: Path) -> None:
        """The increment's file is in place (a seam for failure-injection tests)."""

    def _drop_uncommitted(self, committed: int) -> None:
        files = increment_files(self.out)
        # Only generation committed + 1 is ever written after a commit; anything past
        # it means the state went back (lost or reset): deleting would lose data.
        ahead = [path.name for generation, path in files if generation > committed + 1]
        if ahead:
            raise IncrementalExtractError(
                self.name,
                f"{self.out} holds increments newer than the stored state "
                f"({state_summary(self.state_key, committed)}): {', '.join(ahead[:3])}; "
                "restore the state or empty the folder",
            )
        for generation, path in files:
            if generation == committed + 1:
                path.unlink(missing_ok=True)  # written, never committed: re-extracted now
        self.out.mkdir(parents=True, exist_ok=True)

    def _highest(self, path: Path) -> Watermark:
        names = pq.read_schema(path).names
        matching = [n for n in names if n.lower() == self.column.lower()]
        if not matching:
            raise IncrementalExtractError(
                self.name, f"the result has no column {self.column!r} (it has {names})"
            )
        column = pq.read_table(path, columns=matching[:1]).column(0)
        if pa.types.is_floating(column.type):
            raise IncrementalExtractError(
                self.name, f"column {self.column!r} is floating point: it cannot be a watermark"
            )
        return Watermark.of(pc.max(column).as_py())


def state_summary(key: str, generation: int) -> str:
    return f"{key!r} at generation {generation}" if generation else f"nothing under {key!r}"


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
