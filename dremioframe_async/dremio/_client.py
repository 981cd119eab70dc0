"""The public Dremio client: jobs, results as Arrow, Parquet, catalog."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from ._config import resolve_config
from ._errors import (
    DremioConfigError,
    DremioError,
    DremioJobCancelled,
    DremioJobFailed,
    DremioJobTimeout,
)
from ._flight import CLOUD_FLIGHT_URL, FlightOptions, FlightTransport
from ._pages import map_bounded
from ._parquet import write_parquet_atomically
from ._stream import BatchStream, StreamStats
from ._transport import Loads, RetryPolicy, Transport
from ._types import arrow_schema, has_decimal, rows_to_batch

__all__ = ["FINAL_JOB_STATES", "PAGE_SIZE", "DremioClient", "Job", "Via"]

logger = logging.getLogger("dremioframe_async.dremio")

PAGE_SIZE = 500
"""Dremio serves at most 500 rows per results request."""
FINAL_JOB_STATES = frozenset({"COMPLETED", "FAILED", "CANCELED"})
Via = Literal["auto", "flight", "rest"]
"""How a query's result travels: ``auto`` is Flight when a Flight URL is set, else REST."""


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of a Dremio job's status."""

    id: str
    state: str
    row_count: int = 0
    error_message: str = ""
    cancellation_reason: str = ""
    started_at: str | None = None
    ended_at: str | None = None

    @property
    def final(self) -> bool:
        """Whether the job has ended (COMPLETED, FAILED or CANCELED)."""
        return self.state in FINAL_JOB_STATES

    @classmethod
    def from_json(cls, job_id: str, body: Mapping[str, Any]) -> Job:
        """Build a snapshot from ``GET /job/{id}``'s body."""
        return cls(
            id=job_id,
            state=str(body.get("jobState", "")),
            row_count=int(body.get("rowCount") or 0),
            error_message=str(body.get("errorMessage") or ""),
            cancellation_reason=str(body.get("cancellationReason") or ""),
            started_at=body.get("startedAt"),
            ended_at=body.get("endedAt"),
        )


@dataclass(frozen=True, slots=True)
class _Page:
    row_count: int
    batch: pa.RecordBatch


def _exact_loads(text: str) -> Any:
    # DECIMAL values arrive as JSON numbers; parsing them as float would lose digits.
    return json.loads(text, parse_float=Decimal)


class DremioClient:
    """An async client for Dremio Software (``/api/v3``) and Dremio Cloud.

    Use it as an async context manager: one pooled aiohttp session lives inside
    it. Configuration comes from the arguments, else from ``DREMIO_URL``,
    ``DREMIO_PAT``, ``DREMIO_USERNAME``, ``DREMIO_PASSWORD``,
    ``DREMIO_PROJECT_ID`` and ``DREMIO_FLIGHT_URL``. Tokens and passwords never
    appear in its repr, its log lines or its errors.

    With ``flight_url`` (``grpc+tcp://host:32010``, ``grpc+tls://...``) results
    can travel over Arrow Flight: ``query``, ``stream`` and ``query_to_parquet``
    use it by default. ``flight_read_ahead`` bounds the record batches a Flight
    stream holds; ``flight_streams`` the Flight reads running at once.

    :raises DremioConfigError: no URL, no usable credentials, or a bad ``flight_url``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        project_id: str | None = None,
        page_concurrency: int = 8,
        max_connections: int = 64,
        request_timeout: float = 300.0,
        retry: RetryPolicy | None = None,
        poll_interval: float = 0.05,
        max_poll_interval: float = 1.0,
        cancel_timeout: float = 10.0,
        flight_url: str | None = None,
        flight_read_ahead: int = 4,
        flight_streams: int = 8,
    ) -> None:
        self.config = resolve_config(url, token, username, password, project_id)
        self.page_concurrency = page_concurrency
        self._poll = (poll_interval, max_poll_interval)
        self._cancel_timeout = cancel_timeout
        self._transport = Transport(
            self.config,
            retry=retry or RetryPolicy(),
            max_connections=max_connections,
            request_timeout=request_timeout,
        )
        self._flight = self._flight_transport(
            flight_url, retry or RetryPolicy(), flight_read_ahead, flight_streams
        )

    def _flight_transport(
        self, url: str | None, retry: RetryPolicy, read_ahead: int, streams: int
    ) -> FlightTransport | None:
        url = url or os.environ.get("DREMIO_FLIGHT_URL") or None
        if url is None:
            return None
        options = FlightOptions(url, read_ahead=read_ahead, max_streams=streams)
        return FlightTransport(self.config, options, retry)

    @property
    def flight_url(self) -> str | None:
        """The Arrow Flight endpoint, or None when results travel over REST only."""
        return self._flight.options.url if self._flight is not None else None

    @classmethod
    def cloud(
        cls, *, token: str | None = None, project_id: str | None = None, **options: Any
    ) -> Self:
        """A client for Dremio Cloud (``https://api.dremio.cloud/v0/projects/{project_id}``).

        Results travel over Arrow Flight at ``grpc+tls://data.dremio.cloud:443``
        unless ``flight_url=`` (or ``DREMIO_FLIGHT_URL``) names another endpoint
        (``grpc+tls://data.eu.dremio.cloud:443`` in the EU).

        :raises DremioConfigError: no token or no project id.
        """
        project_id = project_id or os.environ.get("DREMIO_PROJECT_ID")
        if not project_id:
            raise DremioConfigError("Dremio Cloud needs project_id= (or DREMIO_PROJECT_ID)")
        options.setdefault("flight_url", os.environ.get("DREMIO_FLIGHT_URL") or CLOUD_FLIGHT_URL)
        return cls(options.pop("url", None), token=token, project_id=project_id, **options)

    def __repr__(self) -> str:
        cfg = self.config
        who = f", username={cfg.username!r}" if cfg.username else ""
        project = f", project_id={cfg.project_id!r}" if cfg.project_id else ""
        flight_url = f", flight_url={self.flight_url!r}" if self.flight_url else ""
        return f"DremioClient({cfg.root!r}, auth={cfg.auth!r}{who}{project}{flight_url})"

    async def __aenter__(self) -> Self:
        try:
            await self._transport.open()
        except BaseException:
            await self._transport.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session and the Flight channel (shielded: a cancelled caller too)."""
        with anyio.CancelScope(shield=True):
            await self._transport.close()
            if self._flight is not None:
                await self._flight.close()

    # -- jobs ---------------------------------------------------------------------------------

    async def submit(self, sql: str, context: Sequence[str] | None = None) -> str:
        """Submit SQL as a job and return its id (the job runs asynchronously).

        :raises DremioBadRequest: Dremio rejected the request.
        :raises DremioError: any other failure.
        """
        body: dict[str, Any] = {"sql": sql}
        if context:
            body["context"] = list(context)
        reply = await self._transport.request("POST", "/sql", body=body)
        return str(reply["id"])

    async def job(self, job_id: str) -> Job:
        """Return the job's current status.

        :raises DremioNotFound: no such job.
        """
        return Job.from_json(job_id, await self._transport.request("GET", f"/job/{job_id}"))

    async def cancel(self, job_id: str) -> None:
        """Ask Dremio to cancel a job.

        :raises DremioError: Dremio refused (e.g. the job already ended) or is unreachable.
        """
        await self._transport.request("POST", f"/job/{job_id}/cancel", retry=False)

    async def wait(self, job_id: str, *, timeout: float | None = None) -> Job:  # noqa: ASYNC109
        """Poll the job, with growing intervals, until it ends; return it when COMPLETED.

        If the wait is cancelled or times out, one cancel request is sent for the
        job (shielded, bounded by ``cancel_timeout``) before re-raising.

        :raises DremioJobFailed: the job FAILED (carries Dremio's ``errorMessage``).
        :raises DremioJobCancelled: the job was CANCELED.
        :raises DremioJobTimeout: ``timeout`` seconds passed first.
        """
        try:
            with anyio.fail_after(timeout):
                return await self._poll_until_final(job_id)
        except TimeoutError as exc:
            await self._cancel_quietly(job_id)
            raise DremioJobTimeout(job_id, timeout or 0.0) from exc
        except anyio.get_cancelled_exc_class():
            await self._cancel_quietly(job_id)
            raise

    async def _poll_until_final(self, job_id: str) -> Job:
        delay, max_delay = self._poll
        while True:
            job = await self.job(job_id)
            if job.state == "COMPLETED":
                return job
            if job.state == "FAILED":
                raise DremioJobFailed(job_id, job.error_message)
            if job.state == "CANCELED":
                raise DremioJobCancelled(job_id, job.cancellation_reason)
            await anyio.sleep(delay)
            delay = min(delay * 1.5, max_delay)

    async def _cancel_quietly(self, job_id: str) -> None:
        with anyio.move_on_after(self._cancel_timeout, shield=True):
            try:
                await self.cancel(job_id)
            except DremioError as exc:
                logger.warning("could not cancel Dremio job %s: %s", job_id, exc)
            else:
                logger.info("cancelled Dremio job %s", job_id)

    async def query(
        self,
        sql: str,
        context: Sequence[str] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (a timeout must also cancel the job)
        via: Via = "auto",
    ) -> pa.Table:
        """Run a query and return its whole result: over Flight, or ``submit`` + ``wait`` +
        ``fetch_arrow`` over REST (``via``: ``auto`` is Flight when ``flight_url`` is set).

        A table is returned only once every row has arrived: a stream broken mid-way raises.

        :raises DremioJobFailed: the job FAILED (Dremio's message is carried).
        :raises DremioJobTimeout: the job took longer than ``timeout`` (it is cancelled).
        :raises DremioConfigError: ``via="flight"`` without a Flight URL.
        :raises DremioError: any other failure.
        """
        if self._resolve_via(via) == "flight":
            return await self._flight_or_fail().table(sql, context=context, timeout=timeout)
        job_id = await self.submit(sql, context)
        await self.wait(job_id, timeout=timeout)
        return await self.fetch_arrow(job_id)

    def stream(
        self,
        sql: str,
        context: Sequence[str] | None = None,
        *,
        timeout: float | None = None,
        via: Via = "auto",
    ) -> BatchStream:
        """Run a query and stream its record batches, in order, with bounded read-ahead.

        ``async for batch in client.stream(sql)``; ``async with client.stream(sql) as s``
        stops the read when the block is left early. Over Flight at most
        ``flight_read_ahead`` batches are held; over REST at most ``page_concurrency``
        pages. Errors are raised by the iteration.

        :raises DremioConfigError: ``via="flight"`` without a Flight URL.
        """
        if self._resolve_via(via) == "flight":
            stats = StreamStats()
            flight = self._flight_or_fail()
            batches = flight.batches(sql, context=context, timeout=timeout, stats=stats)
            return BatchStream(batches, "flight", stats)
        return BatchStream(self._rest_batches(sql, context, timeout), "rest")

    async def _rest_batches(
        self,
        sql: str,
        context: Sequence[str] | None,
        timeout: float | None,  # noqa: ASYNC109
    ) -> AsyncGenerator[pa.RecordBatch, None]:
        job_id = await self.submit(sql, context)
        await self.wait(job_id, timeout=timeout)
        async with aclosing(self.iter_batches(job_id)) as batches:
            async for batch in batches:
                yield batch

    async def query_to_parquet(
        self,
        sql: str,
        path: str | os.PathLike[str],
        context: Sequence[str] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (a timeout must also cancel the job)
        via: Via = "auto",
        row_group_rows: int = 65_536,
    ) -> int:
        """Run a query and stream its result into a Parquet file; return the row count.

        The file is written under a hidden temporary name beside ``path`` and renamed
        into place once complete, so ``path`` never holds a partial result; on failure
        or cancellation the temporary file is removed.

        :raises DremioError: the query or the stream failed.
        :raises OSError: the file could not be written.
        """
        async with self.stream(sql, context, timeout=timeout, via=via) as batches:
            return await write_parquet_atomically(batches, path, row_group_rows=row_group_rows)

    def _resolve_via(self, via: str) -> Literal["flight", "rest"]:
        if via == "auto":
            return "flight" if self._flight is not None else "rest"
        if via in ("flight", "rest"):
            return "flight" if via == "flight" else "rest"
        raise DremioConfigError(f"via must be 'auto', 'flight' or 'rest', not {via!r}")

    def _flight_or_fail(self) -> FlightTransport:
        if self._flight is None:
            raise DremioConfigError(
                "via='flight' needs a Flight endpoint: pass flight_url= or set DREMIO_FLIGHT_URL"
            )
        return self._flight

    # -- results ------------------------------------------------------------------------------

    async def fetch_arrow(self, job_id: str) -> pa.Table:
        """Fetch a completed job's results as one table, pages fetched concurrently, in order.

        :raises DremioBadRequest: the job has not completed.
        :raises DremioError: any other failure.
        """
        first = await self._page(job_id, 0, None)
        schema = first.batch.schema
        offsets = range(PAGE_SIZE, first.row_count, PAGE_SIZE)
        rest = await map_bounded(
            lambda offset: self._page(job_id, offset, schema), offsets, self.page_concurrency
        )
        return pa.Table.from_batches([first.batch, *(p.batch for p in rest)], schema=schema)

    async def iter_batches(self, job_id: str) -> AsyncGenerator[pa.RecordBatch, None]:
        """Yield a completed job's results as record batches, in order.

        At most ``page_concurrency`` pages are held at once, so large results
        stream without being materialised.

        :raises DremioError: a page could not be fetched.
        """
        first = await self._page(job_id, 0, None)
        schema = first.batch.schema
        yield first.batch
        window = PAGE_SIZE * self.page_concurrency
        for start in range(PAGE_SIZE, first.row_count, window):
            offsets = range(start, min(start + window, first.row_count), PAGE_SIZE)
            pages = await map_bounded(
                lambda offset: self._page(job_id, offset, schema), offsets, self.page_concurrency
            )
            for page in pages:
                yield page.batch

    async def to_parquet(
        self, job_id: str, path: str | os.PathLike[str], *, row_group_rows: int = 65_536
    ) -> int:
        """Stream a completed job's results into a Parquet file; return the row count.

        The file is written beside ``path`` and renamed into place at the end, so
        ``path`` never holds a partial result.

        :raises DremioError: a page could not be fetched.
        :raises OSError: the file could not be written.
        """
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        writer: pq.ParquetWriter | None = None
        rows, pending = 0, []
        try:
            async with aclosing(self.iter_batches(job_id)) as batches:
                async for batch in batches:
                    if writer is None:
                        writer = await anyio.to_thread.run_sync(
                            pq.ParquetWriter, partial, batch.schema
                        )
                    pending.append(batch)
                    rows += batch.num_rows
                    if sum(b.num_rows for b in pending) >= row_group_rows:
                        await _write(writer, pending)
                        pending = []
            if writer is not None:
                await _write(writer, pending)
        finally:
            with anyio.CancelScope(shield=True):
                if writer is not None:
                    await anyio.to_thread.run_sync(writer.close)
        await anyio.Path(partial).replace(target)
        return rows

    async def _page(self, job_id: str, offset: int, schema: pa.Schema | None) -> _Page:
        loads: Loads = _exact_loads if schema is None or has_decimal(schema) else json.loads
        params = {"offset": str(offset), "limit": str(PAGE_SIZE)}
        body = await self._transport.request(
            "GET", f"/job/{job_id}/results", params=params, loads=loads
        )
        if schema is None:
            schema = arrow_schema(body.get("schema") or [])
        rows = body.get("rows") or []
        return _Page(int(body.get("rowCount") or 0), rows_to_batch(rows, schema))

    # -- catalog ------------------------------------------------------------------------------

    async def catalog(self) -> list[Mapping[str, Any]]:
        """List the top-level catalog entities (spaces, sources, home).

        :raises DremioError: the request failed.
        """
        body = await self._transport.request("GET", "/catalog")
        return list(body.get("data") or [])

    async def catalog_by_path(self, path: str | Sequence[str]) -> Mapping[str, Any]:
        """Return the catalog entity at ``path`` (``"space.folder.table"`` or its parts).

        :raises DremioNotFound: nothing at that path.
        """
        parts = split_path(path) if isinstance(path, str) else list(path)
        encoded = "/".join(quote(part, safe="") for part in parts)
        body: Mapping[str, Any] = await self._transport.request(
            "GET", f"/catalog/by-path/{encoded}"
        )
        return body


async def _write(writer: pq.ParquetWriter, batches: list[pa.RecordBatch]) -> None:
    if batches:
        table = pa.Table.from_batches(batches)
        await anyio.to_thread.run_sync(writer.write_table, table)


def split_path(path: str) -> list[str]:
    """Split a dotted Dremio path, honouring double-quoted parts (``a."b.c".d``)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == '"':
            if quoted and path[i + 1 : i + 2] == '"':
                current.append('"')
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts
