"""One big table extracted as N concurrent range streams into a Parquet dataset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..dremio import Via
from ..orchestration import RunContext
from ._dremio import ClientSource, ClientTask, client_options, client_scope, dremio_retry_options

__all__ = ["PartitionedExtractTask"]


class PartitionedExtractTask(ClientTask):
    """Extract ``table`` (a path or a query) into ``out`` as ``parts`` Parquet files.

    The rows are split by ranges of the integer, date or timestamp column ``by``
    (from its MIN/MAX, or ``bounds``) and read by at most ``streams`` concurrent
    Flight (or REST) streams; NULLs in ``by`` go to the first part, and the parts
    must add up to ``COUNT(*)`` (see ``DremioClient.partitions_to_parquet``). For
    skewed data, give more parts than streams. Returns the files' paths as strings.
    """

    def __init__(
        self,
        name: str,
        *,
        table: str | Sequence[str],
        by: str,
        out: str | os.PathLike[str],
        parts: int = 8,
        streams: int | None = None,
        bounds: tuple[Any, Any] | None = None,
        via: Via = "auto",
        client: ClientSource = None,
        **options: Any,
    ) -> None:
        self.table, self.by, self.out = table, by, Path(out)
        self.parts, self.streams, self.bounds, self.via = parts, streams, bounds, via
        self.client = client
        options = client_options(self, client, dremio_retry_options(options))
        super().__init__(name, self._execute, **options)

    async def _execute(self, context: RunContext) -> list[str]:
        async with client_scope(self, context) as client:
            paths = await client.partitions_to_parquet(
                self.table,
                self.out,
                by=self.by,
                parts=self.parts,
                bounds=self.bounds,
                via=self.via,
                streams=self.streams,
            )
        return [str(p) for p in paths]
