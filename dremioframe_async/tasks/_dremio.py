"""Tasks that run SQL on Dremio: queries (to Arrow or Parquet) and Iceberg/reflection upkeep.

Where a task's client comes from (``client=``):

- nothing: the run's ``"dremio"`` resource (``Pipeline(resources={"dremio": ...})``
  or ``run(resources=...)``); when the run declares none, one client per run
  from the ``DREMIO_*`` environment, shared by every such task of the run;
- a resource name (``client="warehouse"``): that resource of the run;
- a zero-argument callable making a client: a resource of the run, opened
  once per run and shared by every task given the same callable;
- an open :class:`DremioClient`: used as it is (its owner closes it).

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

from ..dremio import RETRYABLE_ERRORS, DremioClient, Via, is_data_changing
from ..orchestration import RunContext, Task
from ._once import OnceSubmitted
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


def _resource_for(source: ClientSource) -> tuple[str | None, Mapping[str, Callable[[], Any]]]:
    """The run resource a task's client is, and the default factory it offers for it."""
    if isinstance(source, DremioClient):
        return None, {}
    if source is None:
        return DREMIO_RESOURCE, _FROM_ENVIRONMENT
    if isinstance(source, str):
        return source, {}
    # A factory: a resource of its own, so tasks given the same one share a client per run.
    name = f"dremio:{getattr(source, '__qualname__', type(source).__name__)}@{id(source):x}"
    return name, {name: source}


class ClientTask(Task):
    """A task that runs on a Dremio client: ``client`` as given, ``client_resource``
    the run resource it stands for (None for an open client)."""

    client: ClientSource
    client_resource: str | None = None


def client_options(
    task: ClientTask, source: ClientSource, options: dict[str, Any]
) -> dict[str, Any]:
    """``options`` with the run resource ``source`` stands for added to ``resources``.

    Also sets the task's ``client_resource`` and the default factory it offers.
    """
    name, defaults = _resource_for(source)
    task.client_resource = name
    if name is None:
        return options
    if defaults:
        task.default_resources = defaults
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
async def client_scope(task: ClientTask, context: RunContext) -> AsyncIterator[DremioClient]:
    """The client of ``task`` in this run: its own open client, or the run's resource."""
    if isinstance(task.client, DremioClient):
        yield task.client
    else:
        assert task.client_resource is not None
        yield context.resources[task.client_resource]


class DremioQueryTask(ClientTask):
    """Run one SQL query; return a ``pyarrow.Table``, or the path of a Parquet file.

    ``client`` is where the client comes from (see the module's docs): by
    default the run's ``"dremio"`` resource, else one client per run from the
    environment.

    With ``output_path`` the result is streamed into that file (renamed into
    place once complete) and the task returns the path as a string. The result
    travels over Arrow Flight when the client has a Flight URL, else over REST;
    ``via="rest"`` or ``via="flight"`` overrides that. ``query_timeout`` bounds the Dremio
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
        via: Via = "auto",
        **options: Any,
    ) -> None:
        self.sql = sql
        self.via: Via = via
        self.client = client
        self.output_path = None if output_path is None else Path(output_path)
        self.sql_context = list(sql_context) if sql_context else None
        self.query_timeout = query_timeout
        self._once = OnceSubmitted() if is_data_changing(sql) else None
        options = client_options(self, client, dremio_retry_options(options))
        super().__init__(name, self._execute, **options)

    async def _execute(self, context: RunContext) -> pa.Table | str:
        async with client_scope(self, context) as client:
            if self._once is not None and self.output_path is None:
                # A statement that changes data: submitted once, followed by retries.
                return await self._once.run(
                    client, self.sql, context, self.query_timeout, self.sql_context
                )
            if self.output_path is None:
                return await client.query(
                    self.sql, self.sql_context, timeout=self.query_timeout, via=self.via
                )
            await client.query_to_parquet(
                self.sql,
                self.output_path,
                self.sql_context,
                timeout=self.query_timeout,
                via=self.via,
            )
            return str(self.output_path)


class DremioSqlTask(ClientTask):
    """Run a statement and return its (small) result as a list of row dicts.

    The client and retries follow :class:`DremioQueryTask`'s rules; a submission
    that may have run (:class:`~dremioframe_async.dremio.DremioSubmitUncertain`)
    is never retried. A statement that changes data is submitted at most once
    per task instance: a retry follows the job the first attempt submitted.
    """

    def __init__(self, name: str, sql: str, *, client: ClientSource = None, **options: Any) -> None:
        self.sql = sql
        self.client = client
        self._once = OnceSubmitted() if is_data_changing(sql) else None
        options = client_options(self, client, dremio_retry_options(options))
        super().__init__(name, self._execute, **options)

    async def _execute(self, context: RunContext) -> list[dict[str, Any]]:
        async with client_scope(self, context) as client:
            if self._once is not None:
                table = await self._once.run(client, self.sql, context)
            else:
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

    :raises SqlArgumentError: an unknown option (at construction).
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

    :raises SqlArgumentError: not exactly one of ``snapshot_id`` and ``timestamp``.
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
