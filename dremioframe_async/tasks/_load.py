"""Loads back into Dremio: ``MERGE INTO`` and ``INSERT INTO ... SELECT``, run at most once.

A task instance submits its statement once. A retried attempt (after a
connection error, an attempt ``timeout=``, anything) picks up the job the first
attempt submitted instead of submitting again: if that job completed, the
retry returns its counts; if it failed or was cancelled, the retry raises that.
An attempt interrupted while its submission was in flight leaves no job id to
pick up, so later attempts raise :class:`DremioSubmitUncertain` rather than risk
a second run. The client adds its own rule (``DremioStatementUncertain``, never
retried) for a job it lost track of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ..orchestration import RunContext
from ._dremio import ClientSource, ClientTask, client_options, client_scope, dremio_retry_options
from ._once import OnceSubmitted
from ._sql import SqlArgumentError, quote_identifier, quote_path

__all__ = ["InsertSelectTask", "MergeTask", "merge_sql", "reported_counts"]


def reported_counts(table: pa.Table) -> dict[str, int]:
    """The numbers a DML statement's result reports, by column (Dremio: ``Records``)."""
    if table.num_rows == 0:
        return {}
    row = table.slice(0, 1).to_pylist()[0]
    return {k: int(v) for k, v in row.items() if isinstance(v, int) and not isinstance(v, bool)}


def _columns(names: Sequence[str], what: str) -> list[str]:
    if isinstance(names, str):
        names = [names]
    quoted = [quote_identifier(n) for n in names]
    if not quoted:
        raise SqlArgumentError(f"{what} needs at least one column")
    return quoted


def merge_sql(
    target: str | Sequence[str],
    source: str | Sequence[str] | None,
    *,
    on: Sequence[str],
    columns: Sequence[str],
    source_sql: str | None = None,
    update: bool = True,
    insert: bool = True,
) -> str:
    """``MERGE INTO target AS t USING source AS s ON t.k = s.k ... WHEN MATCHED THEN UPDATE
    SET c = s.c ... WHEN NOT MATCHED THEN INSERT (k ..., c ...) VALUES (s.k ..., s.c ...)``.

    ``source`` is a table path; ``source_sql`` a query used instead (trusted SQL).

    :raises SqlArgumentError: no key, no column, neither or both sources, nothing to do.
    """
    if (source is None) == (source_sql is None):
        raise SqlArgumentError("give exactly one of source and source_sql")
    keys, cols = _columns(on, "on"), _columns(columns, "columns") if columns else []
    if not (update or insert):
        raise SqlArgumentError("MERGE needs update=True, insert=True or both")
    using = f"({source_sql})" if source_sql is not None else quote_path(source)  # type: ignore[arg-type]
    sql = [
        f"MERGE INTO {quote_path(target)} AS t USING {using} AS s ON "
        + " AND ".join(f"t.{k} = s.{k}" for k in keys)
    ]
    if update and cols:
        sql.append("WHEN MATCHED THEN UPDATE SET " + ", ".join(f"{c} = s.{c}" for c in cols))
    if insert:
        every = [*keys, *cols]
        sql.append(
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(every)}) "
            f"VALUES ({', '.join(f's.{c}' for c in every)})"
        )
    return " ".join(sql)


class _StatementTask(ClientTask):
    """Runs one data-changing statement at most once per task instance."""

    statement: str

    def _setup(
        self, name: str, client: ClientSource, query_timeout: float | None, options: Any
    ) -> None:
        self.client = client
        self.query_timeout = query_timeout
        self._once = OnceSubmitted()
        options = client_options(self, client, dremio_retry_options(options))
        super().__init__(name, self._execute, **options)

    async def _execute(self, context: RunContext) -> dict[str, int]:
        async with client_scope(self, context) as client:
            table = await self._once.run(client, self.statement, context, self.query_timeout)
        return reported_counts(table)


class MergeTask(_StatementTask):
    """``MERGE INTO target USING source ON keys`` (update matched rows, insert the others).

    ``on`` names the key columns (equal in target and source), ``columns`` the
    other columns to update and insert. ``source`` is a table path; or pass
    ``source_sql=`` (trusted SQL) to merge a query's rows. Identifiers are
    quoted. Returns the counts Dremio reports (``{"Records": n}``).

    The statement is submitted at most once per task instance, whatever
    ``retries`` and ``retry_on`` say (see the module's docs).

    :raises SqlArgumentError: (at construction) see :func:`merge_sql`.
    """

    def __init__(
        self,
        name: str,
        *,
        target: str | Sequence[str],
        on: Sequence[str],
        columns: Sequence[str] = (),
        source: str | Sequence[str] | None = None,
        source_sql: str | None = None,
        update: bool = True,
        insert: bool = True,
        client: ClientSource = None,
        query_timeout: float | None = None,
        **options: Any,
    ) -> None:
        self.statement = merge_sql(
            target,
            source,
            on=on,
            columns=columns,
            source_sql=source_sql,
            update=update,
            insert=insert,
        )
        self._setup(name, client, query_timeout, options)


class InsertSelectTask(_StatementTask):
    """``INSERT INTO target [(columns)] SELECT ...``: a query's rows appended to a table.

    ``select`` is the query (trusted SQL); or ``source=`` a table path to copy
    (its ``columns``, or all). Identifiers are quoted. Returns the counts Dremio
    reports (``{"Records": n}``). Submitted at most once per task instance.

    :raises SqlArgumentError: (at construction) neither or both of ``select`` and ``source``.
    """

    def __init__(
        self,
        name: str,
        *,
        target: str | Sequence[str],
        select: str | None = None,
        source: str | Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        client: ClientSource = None,
        query_timeout: float | None = None,
        **options: Any,
    ) -> None:
        if (select is None) == (source is None):
            raise SqlArgumentError("give exactly one of select and source")
        cols = ", ".join(_columns(columns, "columns")) if columns else None
        if select is None:
            select = f"SELECT {cols or '*'} FROM {quote_path(source)}"  # type: ignore[arg-type]
        into = f"INSERT INTO {quote_path(target)}" + (f" ({cols})" if cols else "")
        self.statement = f"{into} {select}"
        self._setup(name, client, query_timeout, options)
