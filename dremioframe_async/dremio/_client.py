"""The public Dremio client: jobs, results as Arrow, Parquet, catalog."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import anyio
import pyarrow as pa

from .._metrics import REGISTRY
from .._telemetry import current_tracer
from ._config import SslOption, redact_url, resolve_config
from ._errors import (
    DremioConfigError,
    DremioJobError,
    DremioJobTimeout,
)
from ._flight import CLOUD_FLIGHT_URL, FlightOptions, FlightTransport
from ._jobs import FINAL_JOB_STATES, Job, cancel_quietly, poll_until_final, post_sql
from ._parquet import write_parquet_atomically
from ._partition_reads import PartitionStream, partitions_to_parquet
from ._results import PAGE_SIZE, ResultPager, path_segment
from ._statements import follow_statement, is_data_changing
from ._stream import BatchStream, StreamStats
from ._tracing import measured_query, query_span, untraced
from ._transport import RetryPolicy, Transport

__all__ = ["FINAL_JOB_STATES", "PAGE_SIZE", "DremioClient", "Job", "Via"]

_CLOUD_FLIGHT = {
    "api.dremio.cloud": CLOUD_FLIGHT_URL,
    "api.eu.dremio.cloud": "grpc+tls://data.eu.dremio.cloud:443",
}
Via = Literal["auto", "flight", "rest"]
"""How a query's result travels: ``auto`` is Flight when a Flight URL is set, else REST."""


class DremioClient:
    """An async client for Dremio Software (``/api/v3``) and Dremio Cloud.

    Use it as an async context manager: one pooled aiohttp session lives inside
    it. Configuration comes from the arguments, else from ``DREMIO_URL``,
    ``DREMIO_PAT``, ``DREMIO_USERNAME``, ``DREMIO_PASSWORD``,
    ``DREMIO_PROJECT_ID``, ``DREMIO_SSL_CA``, ``DREMIO_SSL_VERIFY`` and
    ``DREMIO_FLIGHT_URL``. Tokens and passwords never appear in its repr, its log
    lines or its errors.

    ``url`` must be ``http://`` or ``https://``; a ``user:password@`` in it is used
    as username/password and redacted. ``ssl`` verifies ``https`` servers (and
    ``grpc+tls`` Flight endpoints): an :class:`ssl.SSLContext`, the path of a CA
    bundle (PEM), ``True`` (the system's CAs, the default) or ``False`` (no
    verification).

    With ``flight_url`` (``grpc+tcp://host:32010``, ``grpc+tls://...``) results
    can travel over Arrow Flight: ``query``, ``stream`` and ``query_to_parquet``
    use it by default. ``flight_read_ahead`` bounds the record batches a Flight
    stream holds; ``flight_streams`` the Flight reads running at once.
    ``request_timeout`` and ``retry`` bound Flight as they bound REST: each
    handshake and GetFlightInfo, and each wait for a stream's next batch, takes
    at most ``request_timeout``; retries end within ``retry.max_time``.

    :raises DremioConfigError: a malformed URL or ``flight_url``, no usable
        credentials, a bad ``ssl``, or a ``page_concurrency`` below 1 or a
        ``request_timeout`` or ``cancel_timeout`` that is not positive.
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
        ssl: SslOption = None,
        flight_url: str | None = None,
        flight_read_ahead: int = 4,
        flight_streams: int = 8,
    ) -> None:
        self.config = resolve_config(url, token, username, password, project_id, ssl_option=ssl)
        _check_settings(page_concurrency, request_timeout, cancel_timeout)
        self.page_concurrency = page_concurrency
        self._poll = (poll_interval, max_poll_interval)
        self._cancel_timeout = cancel_timeout
        self._request_timeout = request_timeout
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
        return FlightTransport(self.config, options, retry, request_timeout=self._request_timeout)

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
        (``grpc+tls://data.eu.dremio.cloud:443`` for ``url="https://api.eu.dremio.cloud"``)
        unless ``flight_url=`` (or ``DREMIO_FLIGHT_URL``) names another endpoint. With
        any other ``url`` only an explicit Flight URL turns Flight on.

        :raises DremioConfigError: no token or no project id.
        """
        project_id = project_id or os.environ.get("DREMIO_PROJECT_ID")
        if not project_id:
            raise DremioConfigError("Dremio Cloud needs project_id= (or DREMIO_PROJECT_ID)")
        url = options.pop("url", None)
        options.setdefault("flight_url", _cloud_flight_url(url or os.environ.get("DREMIO_URL")))
        return cls(url, token=token, project_id=project_id, **options)

    def __repr__(self) -> str:
        cfg = self.config
        who = f", username={cfg.username!r}" if cfg.username else ""
        project = f", project_id={cfg.project_id!r}" if cfg.project_id else ""
        flight_url = f", flight_url={self.flight_url!r}" if self.flight_url else ""
        return (
            f"DremioClient({redact_url(cfg.root)!r}, auth={cfg.auth!r}{who}{project}{flight_url})"
        )

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

        The request is never sent twice once it may have reached Dremio: it is
        repeated only when the connection could not be opened, or after 429/503.
        If the caller is cancelled while the request is in flight, the request
        still completes (shielded, for at most ``cancel_timeout`` seconds) and the
        job it created is cancelled before the cancellation propagates.

        :raises DremioSubmitUncertain: the statement may have run, but no reply came
            back (a timeout, a lost reply, a gateway error); it was not re-sent.
        :raises DremioBadRequest: Dremio rejected the request.
        :raises DremioError: any other failure.
        """
        body: dict[str, Any] = {"sql": sql}
        if context:
            body["context"] = list(context)
        return await post_sql(self._transport, body, self._cancel_timeout, self._cancel_quietly)

    async def job(self, job_id: str) -> Job:
        """Return the job's current status.

        :raises DremioNotFound: no such job.
        """
        body = await self._transport.request("GET", f"/job/{path_segment(job_id)}")
        return Job.from_json(job_id, body)

    async def cancel(self, job_id: str) -> None:
        """Ask Dremio to cancel a job (repeated on transient faults: cancelling is idempotent).

        :raises DremioError: Dremio refused (e.g. the job already ended) or is unreachable.
        """
        await self._transport.request("POST", f"/job/{path_segment(job_id)}/cancel")

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (a timeout must also cancel the job)
        on_status: Callable[[Job], object] | None = None,
    ) -> Job:
        """Poll the job, with growing intervals, until it ends; return it when COMPLETED.

        ``on_status`` is called with every status read (to follow QUEUED -> RUNNING).

        Status polls are retried on transient faults within the retry budget. If
        the wait gives up before the job ends, for any reason (a status error
        after the budget, ``timeout``, cancellation), one cancel request is sent
        for the job (shielded, bounded by ``cancel_timeout``) before raising.

        :raises DremioJobFailed: the job FAILED (carries Dremio's ``errorMessage``).
        :raises DremioJobCancelled: the job was CANCELED.
        :raises DremioJobTimeout: ``timeout`` seconds passed first.
        :raises DremioError: the status could not be read (the job was cancelled).
        :raises DremioConfigError: ``timeout`` is not positive.
        """
        _check_timeout(timeout)
        with anyio.move_on_after(timeout):
            try:
                return await poll_until_final(self.job, job_id, on_status, self._poll)
            except DremioJobError:
                raise  # the job has ended: there is nothing to cancel
            except BaseException:
                await self._cancel_quietly(job_id)
                raise
        raise DremioJobTimeout(job_id, timeout or 0.0)

    async def _cancel_quietly(self, job_id: str) -> None:
        await cancel_quietly(self.cancel, job_id, self._cancel_timeout)

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

        A table is returned only once every row has arrived: a stream broken mid-way
        raises. A query that gives up before its job ends cancels the job (see ``wait``).
        A statement that changes data (:func:`is_data_changing`) always runs as a
        REST job and is never submitted twice (see :meth:`follow_statement`).

        :raises DremioJobFailed: the job FAILED (Dremio's message is carried).
        :raises DremioJobTimeout: the job took longer than ``timeout`` (it is cancelled).
        :raises DremioResultIncomplete: fewer (or more) rows arrived than the job produced.
        :raises DremioSubmitUncertain: the statement may have run, but no reply came back.
        :raises DremioStatementUncertain: a data-changing statement was submitted, then
            its job could not be followed to the end.
        :raises DremioConfigError: ``via="flight"`` without a Flight URL, or a
            ``timeout`` that is not positive.
        :raises DremioError: any other failure.
        """
        _check_timeout(timeout)
        tracer = current_tracer()
        if tracer is not None or REGISTRY.enabled:
            with measured_query(self._resolve_via(via)) as measure:
                table = await self._traced_query(tracer, sql, context, timeout, via)
                measure(table.num_rows, table.nbytes)
                return table
        if is_data_changing(sql):
            self._resolve_via(via)  # still refuse a bad ``via``
            return await self.follow_statement(await self.submit(sql, context), timeout=timeout)
        if self._resolve_via(via) == "flight":
            return await self._flight_or_fail().table(sql, context=context, timeout=timeout)
        job_id = await self.submit(sql, context)
        job = await self.wait(job_id, timeout=timeout)
        return await self.fetch_arrow(job)

    async def _traced_query(
        self,
        tracer: Any,
        sql: str,
        context: Sequence[str] | None,
        timeout: float | None,  # noqa: ASYNC109
        via: Via,
    ) -> pa.Table:
        """``query`` inside its span (see ``_tracing``)."""
        resolved = self._resolve_via(via)
        changing = is_data_changing(sql)  # submitted once over REST and followed, as untraced
        if changing:
            resolved = "rest"
        with query_span(tracer, sql, resolved) if tracer is not None else untraced() as span:
            if resolved == "flight":
                span.submitted(None)
                table = await self._flight_or_fail().table(sql, context=context, timeout=timeout)
            elif changing:
                job_id = await self.submit(sql, context)
                span.submitted(job_id)
                table = await self.follow_statement(job_id, timeout=timeout)
            else:
                job_id = await self.submit(sql, context)
                span.submitted(job_id)
                job = await self.wait(job_id, timeout=timeout, on_status=span.status)
                table = await self.fetch_arrow(job)
            span.done(table.num_rows, table.nbytes)
            return table

    async def follow_statement(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (a timeout must also cancel the job)
    ) -> pa.Table:
        """Wait for the job of a data-changing statement and return its result (row counts).

        Never submits anything: call it again with the same ``job_id`` to pick a
        job up after a failure. Losing track of the job (status reads failing
        after the retry budget, ``timeout``) cancels it, as ``wait`` does, and
        raises :class:`DremioStatementUncertain`, which tasks never retry.

        :raises DremioJobFailed: the job FAILED.
        :raises DremioJobCancelled: the job was CANCELED.
        :raises DremioStatementUncertain: the outcome could not be read.
        """
        return await follow_statement(self, job_id, timeout)

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

        :raises DremioConfigError: ``via="flight"`` without a Flight URL, or a
            ``timeout`` that is not positive.
        """
        _check_timeout(timeout)
        if self._resolve_via(via) == "flight" and not is_data_changing(sql):
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
        if is_data_changing(sql):  # never submitted twice: see follow_statement
            for batch in (await self.follow_statement(job_id, timeout=timeout)).to_batches():
                yield batch
            return
        job = await self.wait(job_id, timeout=timeout)
        async with aclosing(self.iter_batches(job)) as batches:
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

    async def partitions_to_parquet(
        self,
        source: str | Sequence[str],
        out_dir: str | os.PathLike[str],
        *,
        by: str,
        parts: int,
        bounds: tuple[Any, Any] | None = None,
        via: Via = "auto",
        streams: int | None = None,
    ) -> list[Path]:
        """Read ``source`` (a table or a query) as ``parts`` range streams of the integer,
        date or timestamp column ``by`` (cut from its MIN/MAX, or ``bounds``; NULLs go to
        the first part), at most ``streams`` at once, into ``out_dir/part-NNNNN.parquet``.
        Returns the paths; part files of an earlier read into ``out_dir`` that this one did
        not write are removed. For skewed data use more parts than streams (``_partitions``).

        :raises PartitionCountMismatch: the parts' rows != ``COUNT(*)`` (files removed).
        :raises DremioConfigError: ``parts`` below 1, or a column of another type.
        :raises DremioError: a part failed (the files are removed).
        """
        return await partitions_to_parquet(
            self, source, out_dir, by=by, parts=parts, bounds=bounds, via=via, streams=streams
        )

    def query_partitions(
        self,
        source: str | Sequence[str],
        *,
        by: str,
        parts: int,
        bounds: tuple[Any, Any] | None = None,
        via: Via = "auto",
        streams: int | None = None,
        buffer: int = 16,
    ) -> PartitionStream:
        """Read ``source`` as ``parts`` concurrent range streams of ``by``, as record batches.

        ``async with client.query_partitions(...) as s: async for part, batch in s``
        (see :class:`PartitionStream`; parts as in :meth:`partitions_to_parquet`).

        :raises PartitionCountMismatch: (by the iteration) rows != ``COUNT(*)``.
        """
        return PartitionStream(
            self,
            source,
            by=by,
            parts=parts,
            bounds=bounds,
            via=via,
            streams=streams,
            buffer=buffer,
        )

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

    async def _pager(self, job: str | Job) -> ResultPager:
        if isinstance(job, str):
            job = await self.job(job)
        if job.state != "COMPLETED":
            # A running job's rowCount is the rows so far: pages that match it would
            # pass every check, and a partial result would look complete.
            raise DremioJobError(
                job.id, f"Dremio job {job.id} is {job.state or 'in no state'}, not COMPLETED"
            )
        return ResultPager(self._transport, job.id, job.row_count, self.page_concurrency)

    async def fetch_arrow(self, job: str | Job) -> pa.Table:
        """Fetch a completed job's results as one table, pages fetched concurrently, in order.

        ``job`` is a job id or the :class:`Job` that ``wait()`` returned (which
        saves one status request). The rows are checked against the job's row
        count: a short or missing page never yields a short table.

        :raises DremioResultIncomplete: the rows delivered do not match the job's row count.
        :raises DremioJobError: the job has not completed.
        :raises DremioError: any other failure.
        """
        return await (await self._pager(job)).table()

    async def iter_batches(self, job: str | Job) -> AsyncGenerator[pa.RecordBatch, None]:
        """Yield a completed job's results as record batches, in order.

        At most ``page_concurrency`` pages are held at once, so large results
        stream without being materialised. Every page is checked against the
        job's row count as it arrives.

        :raises DremioResultIncomplete: a page is short, long or missing.
        :raises DremioJobError: the job has not completed.
        :raises DremioError: a page could not be fetched.
        """
        pager = await self._pager(job)
        async with aclosing(pager.batches()) as batches:
            async for batch in batches:
                yield batch

    async def to_parquet(
        self, job: str | Job, path: str | os.PathLike[str], *, row_group_rows: int = 65_536
    ) -> int:
        """Stream a completed job's results into a Parquet file; return the row count.

        The file is written beside ``path`` under a hidden temporary name and
        renamed into place at the end, so ``path`` never holds a partial result; on
        any failure or cancellation the temporary file is removed.

        :raises DremioResultIncomplete: the rows delivered do not match the job's row count.
        :raises DremioJobError: the job has not completed.
        :raises DremioError: a page could not be fetched.
        :raises OSError: the file could not be written.
        """
        # The temporary name is unique per call: two writes onto one path must not
        # share (and corrupt) one temporary file.
        async with BatchStream(self.iter_batches(job), "rest") as batches:
            return await write_parquet_atomically(batches, path, row_group_rows=row_group_rows)

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
        # Each part is one encoded segment: ".." or "a/b" cannot leave /catalog/by-path/.
        encoded = "/".join(path_segment(part) for part in parts)
        body: Mapping[str, Any] = await self._transport.request(
            "GET", f"/catalog/by-path/{encoded}"
        )
        return body


def _check_settings(page_concurrency: int, request_timeout: float, cancel_timeout: float) -> None:
    # Each of these would otherwise misbehave quietly: page_concurrency < 1 skipped
    # pages, a timeout <= 0 never sent a request or never sent a job's cancel.
    if isinstance(page_concurrency, bool) or not isinstance(page_concurrency, int):
        raise DremioConfigError(
            f"page_concurrency must be a whole number, got {page_concurrency!r}"
        )
    if page_concurrency < 1:
        raise DremioConfigError(f"page_concurrency must be at least 1, got {page_concurrency}")
    for name, value in (("request_timeout", request_timeout), ("cancel_timeout", cancel_timeout)):
        if not value > 0:
            raise DremioConfigError(f"{name} must be positive, got {value!r}")


def _check_timeout(timeout: float | None) -> None:
    # A timeout already over would submit the statement only to cancel it at once.
    if timeout is not None and not timeout > 0:
        raise DremioConfigError(f"timeout must be positive (or None), got {timeout!r}")


def _cloud_flight_url(url: str | None) -> str | None:
    """Dremio Cloud's Flight endpoint for its REST URL (US by default, EU for api.eu)."""
    env = os.environ.get("DREMIO_FLIGHT_URL") or None
    host = urlsplit(url).hostname if url else "api.dremio.cloud"
    if env or host not in _CLOUD_FLIGHT:
        return env
    return _CLOUD_FLIGHT[host]


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
