"""Tasks that run SQL on Dremio: queries (to Arrow or Parquet) and Iceberg/reflection upkeep.

Where a task's client comes from (``client=``):

- nothing: the run's ``"dremio"`` resource (``Pipeline(resources={"dremio": ...})``
  or ``run(resources=...)``); when the run declares none, one client per run
  from the ``DREMIO_*`` environment, shared by every such task of the run;
- a resource name (``client="warehouse"``): that resource of the run;
- an open :class:`DremioClient`: used as it is (its owner closes it);
- a zero-argument callable: called for each attempt, and the client it makes is
  opened and closed around that attempt.

Job cancellation on timeout or cancellation is the client's: ``wait()`` sends
the cancel request (shielded, bounded) before the cancellation reaches the engine.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..dremio import RETRYABLE_ERRORS, DremioClient
from ..orchestration import RunContext, Task
from ._sql import (
    expire_snapshots_sql,
    optimize_sql,
    refresh_reflections_sql,
    remove_orphan_files_sql,
    rollback_sql,
)

__all__ = [
    "DremioQueryTask",
    "DremioSqlTask",
    "ExpireSnapshotsTask",
    "OptimizeTask",
    "RefreshReflectionTask",
    "RemoveOrphanFilesTask",
    "RollbackTableTask",
    "VacuumTask",
]

ClientSource = DremioClient | Callable[[], DremioClient] | str | None

DREMIO_RESOURCE = "dremio"
"""The run resource a Dremio task uses when given no ``client=``."""

# With no client given: one client per run from the DREMIO_* environment, unless
# the run declares a "dremio" resource.
_FROM_ENVIRONMENT: Mapping[str, Callable[[], Any]] = {DREMIO_RESOURCE: DremioClient}


def _resource_name(source: ClientSource) -> str | None:
    if source is None:
        return DREMIO_RESOURCE
    return source if isinstance(source, str) else None


def client_options(task: Task, source: ClientSource, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the run resource ``source`` stands for added to ``resources``.

    With no client, ``task`` also offers the environment's client as the default.
    """
    name = _resource_name(source)
    if name is None:
        return options
    if source is None:
        task.default_resources = _FROM_ENVIRONMENT
    given = options.get("resources", ())
    names = (given,) if isinstance(given, str) else tuple(given)
    return {**options, "resources": (*names, name)}


def dremio_retry_options(options: dict[str, Any], *, timeouts: bool = True) -> dict[str, Any]:
    """Task options where, unless the user gave ``retry_on``, only what can succeed
    on a retry is retried: :data:`~dremioframe_async.dremio.RETRYABLE_ERRORS` (and
    attempt timeouts when ``timeouts``). A wrong token or a SQL error fails at once
    instead of using up the retry budget.
    """
    if options.get("retry_on") is not None:
        return options
    retry_on = RETRYABLE_ERRORS + ((TimeoutError,) if timeouts else ())
    return {**options, "retry_on": retry_on}


@asynccontextmanager
async def client_scope(source: ClientSource, context: RunContext) -> AsyncIterator[DremioClient]:
    """The given open client, the run's resource, or one made by ``source`` for this attempt."""
    if isinstance(source, DremioClient):
        yield source
        return
    if source is None or isinstance(source, str):
        yield context.resources[source or DREMIO_RESOURCE]
        return
    async with source() as client:
        yield client


class DremioQueryTask(Task):
    """Run one SQL query; return a ``pyarrow.Table``, or the path of a Parquet file.

    ``client`` is where the client comes from (see the module's docs): by
    default the run's ``"dremio"`` resource, else one client per run from the
    environment.

    With ``output_path`` the result is streamed page by page into that file and
    the task returns the path as a string. ``query_timeout`` bounds the Dremio
    job (it is cancelled on expiry); the engine's ``timeout=`` bounds the whole
    attempt, and cancels the job too. Other keyword options are the Task's.

    With ``retries=``, only connection errors, 429, 5xx, transient job failures
    and timeouts are retried, never auth or SQL errors, unless ``retry_on=`` says
    otherwise.
    """

    def __init__(
        self,
        name: str,
        sql: str,
        *,
        client: ClientSource = None,
        output_path: str | os.PathLike[str] | None = None,
        sql_context: Sequence[str] | None = None,
        query_timeout: float | None = None,
        **options: Any,
    ) -> None:
        self.sql = sql
        self.client = client
        self.output_path = None if output_path is None else Path(output_path)
        self.sql_context = list(sql_context) if sql_context else None
        self.query_timeout = query_timeout
        options = client_options(self, client, dremio_retry_options(options))
        super().__init__(name, self._execute, **options)

    async def _execute(self, context: RunContext) -> pa.Table | str:
        async with client_scope(self.client, context) as client:
            job_id = await client.submit(self.sql, self.sql_context)
            job = await client.wait(job_id, timeout=self.query_timeout)
            if self.output_path is None:
                return await client.fetch_arrow(job)
            await client.to_parquet(job, self.output_path)
            return str(self.output_path)


class DremioSqlTask(Task):
    """Run a statement and return its (small) result as a list of row dicts.

    The client and retries follow :class:`DremioQueryTask`'s rules; a submission
    that may have run (:class:`~dremioframe_async.dremio.DremioSubmitUncertain`)
    is never retried.
    """

    def __init__(self, name: str, sql: str, *, client: ClientSource = None, **options: Any) -> None:
        self.sql = sql
        self.client = client
        options = client_options(self, client, dremio_retry_options(options))
        super().__init__(name, self._execute, **options)

    async def _execute(self, context: RunContext) -> list[dict[str, Any]]:
        async with client_scope(self.client, context) as client:
            table = await client.query(self.sql)
            rows: list[dict[str, Any]] = table.to_pylist()
            return rows


class RefreshReflectionTask(DremioSqlTask):
    """``ALTER DATASET <dataset> REFRESH REFLECTIONS``."""

    def __init__(
        self,
        name: str,
        dataset: str | Sequence[str],
        *,
        client: ClientSource = None,
        **options: Any,
    ) -> None:
        super().__init__(name, refresh_reflections_sql(dataset), client=client, **options)


class OptimizeTask(DremioSqlTask):
    """``OPTIMIZE TABLE`` an Iceberg table (bin-pack data files, optionally manifests).

    :raises ValueError: an unknown option (at construction).
    """

    def __init__(
        self,
        name: str,
        table: str | Sequence[str],
        *,
        client: ClientSource = None,
        rewrite_data: bool = True,
        rewrite_manifests: bool = False,
        file_options: Mapping[str, int] | None = None,
        for_partitions: str | None = None,
        **options: Any,
    ) -> None:
        sql = optimize_sql(
            table,
            rewrite_data=rewrite_data,
            options=file_options,
            for_partitions=for_partitions,
            rewrite_manifests=rewrite_manifests,
        )
        super().__init__(name, sql, client=client, **options)


class ExpireSnapshotsTask(DremioSqlTask):
    """``VACUUM TABLE <table> EXPIRE SNAPSHOTS [older_than = ...] [retain_last = ...]``."""

    def __init__(
        self,
        name: str,
        table: str | Sequence[str],
        *,
        client: ClientSource = None,
        older_than: str | dt.datetime | None = None,
        retain_last: int | None = None,
        **options: Any,
    ) -> None:
        sql = expire_snapshots_sql(table, older_than=older_than, retain_last=retain_last)
        super().__init__(name, sql, client=client, **options)


VacuumTask = ExpireSnapshotsTask
"""``VACUUM TABLE ... EXPIRE SNAPSHOTS``, under the name of its SQL verb."""


class RemoveOrphanFilesTask(DremioSqlTask):
    """``VACUUM TABLE <table> REMOVE ORPHAN FILES [older_than = ...] [location = ...]``."""

    def __init__(
        self,
        name: str,
        table: str | Sequence[str],
        *,
        client: ClientSource = None,
        older_than: str | dt.datetime | None = None,
        location: str | None = None,
        **options: Any,
    ) -> None:
        sql = remove_orphan_files_sql(table, older_than=older_than, location=location)
        super().__init__(name, sql, client=client, **options)


class RollbackTableTask(DremioSqlTask):
    """``ROLLBACK TABLE <table> TO SNAPSHOT '<id>'`` or ``TO TIMESTAMP '<ts>'``.

    :raises ValueError: not exactly one of ``snapshot_id`` and ``timestamp``.
    """

    def __init__(
        self,
        name: str,
        table: str | Sequence[str],
        *,
        client: ClientSource = None,
        snapshot_id: str | int | None = None,
        timestamp: str | dt.datetime | None = None,
        **options: Any,
    ) -> None:
        sql = rollback_sql(table, snapshot_id=snapshot_id, timestamp=timestamp)
        super().__init__(name, sql, client=client, **options)
