"""Arrow Flight for the Dremio client: blocking pyarrow.flight calls kept off the loop.

pyarrow.flight is blocking gRPC. Each read runs in its own worker thread (at
most ``max_streams`` at once, under this transport's own limiter) that asks for
the FlightInfo, opens DoGet and reads record batches, handing each one to the
event loop through a bounded memory stream: when the consumer is slow the
worker blocks on the send, so at most ``read_ahead`` batches are held. Closing
or cancelling the consumer cancels the gRPC call (``reader.cancel()``), which
makes a blocked ``read_chunk`` return at once, and waits (bounded) for the
worker to end. Every Flight error is mapped to the ``DremioError`` tree
(:mod:`._flight_errors`) before it leaves the worker. Every call has a deadline
(:mod:`._flight_deadline`): a server that stops answering fails the read within
``request_timeout``, and its worker ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import anyio
import anyio.from_thread
import pyarrow as pa
import pyarrow.flight as flight
from anyio.lowlevel import EventLoopToken, current_token
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._config import DremioConfig, Secret
from ._errors import (
    DremioAuthError,
    DremioConfigError,
    DremioConnectionError,
    DremioError,
    DremioResultIncomplete,
)
from ._flight_deadline import Deadline, Waiting
from ._flight_errors import (
    FLIGHT_JOB,
    flight_message,
    is_tls_failure,
    map_flight_error,
    plaintext_hint,
    unavailable_is_safe_to_retry,
)
from ._flight_options import (
    CLOUD_FLIGHT_URL,
    PROJECT_HEADER,
    CookieJar,
    FlightOptions,
    grpc_tls,
    validate_flight_url,
)
from ._stream import StreamStats
from ._transport import RetryPolicy

__all__ = ["CLOUD_FLIGHT_URL", "FlightOptions", "FlightTransport", "map_flight_error"]

logger = logging.getLogger("dremioframe_async.dremio")

# A worker blocked in gRPC returns within milliseconds of reader.cancel(); this
# bounds how long closing a stream waits for it before leaving it to finish alone.
_JOIN_TIMEOUT = 1.0


# -- one read's shared state ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Done:
    rows: int


@dataclass(frozen=True, slots=True)
class _Failed:
    error: DremioError


_Item: TypeAlias = "pa.RecordBatch | _Done | _Failed"


class _Cancelled(Exception):
    """The consumer went away; the worker stops quietly."""


class _Unavailable(Exception):
    """UNAVAILABLE from the server: retried only while no batch has been handed over."""

    def __init__(self, error: Exception, call: str) -> None:
        super().__init__(call)
        self.error, self.call = error, call


def _may_repeat(failure: _Unavailable) -> bool:
    """Whether asking again cannot run the statement twice.

    Only a handshake or GetFlightInfo that never reached Dremio, or that Dremio
    refused outright, may be repeated. Once GetFlightInfo has answered, the query
    runs on Dremio; a failed DoGet is not retried, as re-asking would run it again.
    """
    return failure.call in ("Handshake", "GetFlightInfo") and unavailable_is_safe_to_retry(
        failure.error
    )


def _guarded(call: str, deadline: Deadline, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one blocking Flight call; map its failure (UNAVAILABLE stays retryable)."""
    try:
        return fn(*args)
    except StopIteration:
        raise
    except flight.FlightTimedOutError as exc:  # a gRPC deadline: say which limit it was
        raise deadline.expired(call) from exc
    except flight.FlightUnavailableError as exc:
        if is_tls_failure(flight_message(exc)):  # a refused certificate stays refused
            raise map_flight_error(exc, call, deadline.timeout) from exc
        raise _Unavailable(exc, call) from exc
    except Exception as exc:
        raise map_flight_error(exc, call, deadline.timeout) from exc


def _final_error(failure: _Unavailable, url: str) -> DremioError:
    """The error for an UNAVAILABLE that is not retried (again).

    A call that may be repeated never reached Dremio or was refused by it: the
    statement cannot have run (``sent=False``).
    """
    error = map_flight_error(failure.error, failure.call, None)
    if not isinstance(error, DremioConnectionError):
        return error
    reason = error.reason if url.startswith("grpc+tls") else plaintext_hint(error.reason)
    return DremioConnectionError(
        "FLIGHT", failure.call, reason, sent=error.sent and not _may_repeat(failure)
    )


@dataclass(slots=True, eq=False)  # compared and hashed by identity: a limiter borrower
class _Call:
    """What the loop and the worker thread share for one read."""

    finished: anyio.Event
    stats: StreamStats
    cancelled: threading.Event = field(default_factory=threading.Event)
    waiting: Waiting = field(default_factory=Waiting)
    reader: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self) -> None:
        """Stop the worker: cancel the gRPC call it may be blocked in (thread-safe)."""
        self.cancelled.set()
        with self.lock:
            if self.reader is not None:
                self.reader.cancel()

    def attach(self, reader: Any) -> None:
        with self.lock:
            if self.cancelled.is_set():
                reader.cancel()
                raise _Cancelled
            self.reader = reader

    def detach(self) -> None:
        with self.lock:
            self.reader = None


@dataclass(frozen=True, slots=True)
class _Query:
    sql: str
    context: Sequence[str] | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Dremio's ``schema`` session property: the SQL context as a quoted dotted path."""
        if not self.context:
            return []
        path = ".".join('"' + part.replace('"', '""') + '"' for part in self.context)
        return [(b"schema", path.encode())]


# -- the transport ----------------------------------------------------------------------------


class FlightTransport:
    """One pyarrow FlightClient to one Dremio Flight endpoint, with its credentials."""

    def __init__(
        self,
        config: DremioConfig,
        options: FlightOptions,
        retry: RetryPolicy,
        *,
        request_timeout: float = 300.0,
    ) -> None:
        self.config, self.options, self.retry = config, options, retry
        self.request_timeout = request_timeout
        validate_flight_url(options.url)
        if options.read_ahead < 1 or options.max_streams < 1:
            raise DremioConfigError("read_ahead and max_streams must be at least 1")
        self._limiter = anyio.CapacityLimiter(options.max_streams)
        self._client: flight.FlightClient | None = None
        self._lock = threading.Lock()
        self._bearer: Secret | None = config.token
        self._generation = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"FlightTransport({self.options.url!r})"

    async def close(self) -> None:
        """Close the gRPC channel (shielded); running reads were cancelled by their consumers."""
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(client.close)

    # -- reads (loop side) --------------------------------------------------------------------

    async def batches(
        self,
        sql: str,
        *,
        context: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (a gRPC deadline, not a scope)
        stats: StreamStats | None = None,
    ) -> AsyncGenerator[pa.RecordBatch, None]:
        """Yield the query's record batches; at most ``read_ahead`` are held at once.

        ``context`` (a path) is sent as Dremio's ``schema`` session property.

        :raises DremioAuthError: the credentials were refused.
        :raises DremioConnectionError: the endpoint is unreachable, the stream broke, or
            the server sent nothing for ``request_timeout`` seconds.
        :raises DremioJobFailed: Dremio reported an error (its message is carried).
        :raises DremioJobTimeout: ``timeout`` seconds passed.
        """
        call = _Call(anyio.Event(), stats or StreamStats())
        # The call, not the task, holds the slot: an abandoned stream is closed by the
        # event loop's generator finaliser, in another task.
        await self._limiter.acquire_on_behalf_of(call)
        try:
            send, receive = anyio.create_memory_object_stream[_Item](self.options.read_ahead - 1)
            deadline = Deadline(timeout, self.request_timeout, self.retry.max_time)
            worker = threading.Thread(
                target=self._work,
                args=(call, _Query(sql, context), deadline, send, current_token()),
                name="dremio-flight-read",
                # A worker is joined (bounded) when its stream closes; daemon only so
                # that one stuck in a dead connection cannot hold up interpreter exit.
                daemon=True,
            )
            worker.start()
            try:
                with receive:
                    while not isinstance(item := await self._next(call, deadline, receive), _Done):
                        if isinstance(item, _Failed):
                            raise item.error
                        call.stats.taken()
                        yield item
            finally:
                call.cancel()
                receive.close()
                with anyio.CancelScope(shield=True), anyio.move_on_after(_JOIN_TIMEOUT):
                    await call.finished.wait()
        finally:
            self._limiter.release_on_behalf_of(call)

    async def _next(
        self, call: _Call, deadline: Deadline, receive: MemoryObjectReceiveStream[_Item]
    ) -> _Item:
        """The worker's next item, unless it has waited on the server past ``request_timeout``.

        A cancelled ``receive`` loses no item: anyio hands none to a receiver whose
        cancellation is pending, and none is taken from a waiter already woken.
        """
        while True:
            try:
                return receive.receive_nowait()
            except anyio.WouldBlock:
                pass
            except anyio.EndOfStream:
                break
            with anyio.move_on_after(call.waiting.patience(self.request_timeout)):
                try:
                    return await receive.receive()
                except anyio.EndOfStream:
                    break
            if call.waiting.over(self.request_timeout):
                call.cancel()  # the worker's blocked read returns at once, or ends later
                raise deadline.stalled(call.waiting.call)
        raise DremioConnectionError("FLIGHT", "DoGet", "the stream ended without its end")

    async def table(
        self,
        sql: str,
        *,
        context: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (a gRPC deadline, not a scope)
    ) -> pa.Table:
        """The whole result as one table (only once every batch has arrived).

        :raises DremioError: as :meth:`batches`.
        """
        stats = StreamStats()
        stream = self.batches(sql, context=context, timeout=timeout, stats=stats)
        async with aclosing(stream):
            batches = [batch async for batch in stream]
        # The batches carry the schema; FlightInfo's is only needed for an empty result.
        return pa.Table.from_batches(batches, schema=None if batches else stats.schema_seen)

    # -- the worker thread --------------------------------------------------------------------

    def _work(
        self,
        call: _Call,
        query: _Query,
        deadline: Deadline,
        send: MemoryObjectSendStream[_Item],
        token: EventLoopToken,
    ) -> None:
        final: _Item | None = None
        try:
            rows = 0
            for batch in self._read(call, query, deadline):
                rows += batch.num_rows
                call.stats.read(batch.num_rows)
                anyio.from_thread.run(send.send, batch, token=token)
            final = _Done(rows)
        except (_Cancelled, anyio.BrokenResourceError, anyio.ClosedResourceError):
            final = None
        except DremioError as exc:
            final = _Failed(exc)
        except Exception as exc:  # anything unforeseen still reaches the caller, typed
            final = _Failed(map_flight_error(exc, "DoGet", deadline.timeout))
        finally:
            self._hand_over(call, send, token, final)

    def _hand_over(
        self,
        call: _Call,
        send: MemoryObjectSendStream[_Item],
        token: EventLoopToken,
        final: _Item | None,
    ) -> None:
        try:
            if final is not None:
                anyio.from_thread.run(send.send, final, token=token)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the consumer left first: nobody is waiting for the outcome
        except RuntimeError:  # the event loop itself is gone (its run ended meanwhile)
            send.close()  # nothing runs on a finished loop: closing here races nobody
            return
        try:
            anyio.from_thread.run_sync(send.close, token=token)
            anyio.from_thread.run_sync(call.finished.set, token=token)
        except RuntimeError:  # the event loop itself is gone (its run ended meanwhile)
            send.close()

    def _read(self, call: _Call, query: _Query, deadline: Deadline) -> Iterator[pa.RecordBatch]:
        """The result's batches; UNAVAILABLE is retried only before the query can have run,
        and only while the retry budget lasts."""
        for attempt in range(1, self.retry.attempts + 1):
            delivered = False
            try:
                for batch in self._attempt(call, query, deadline):
                    delivered = True
                    yield batch
                return
            except _Unavailable as failure:
                delay = self._delay(attempt)
                if (
                    delivered
                    or attempt == self.retry.attempts
                    or not _may_repeat(failure)
                    or not deadline.may_back_off(delay)
                ):
                    raise _final_error(failure, self.options.url) from failure.error
                self._back_off(call, delay, failure.error)

    def _attempt(self, call: _Call, query: _Query, deadline: Deadline) -> Iterator[pa.RecordBatch]:
        info = self._flight_info(query, deadline)
        call.stats.schema(info.schema)
        rows, schema = 0, None
        for endpoint in info.endpoints:
            # GetFlightInfo cannot be interrupted: a consumer may have left meanwhile,
            # and a DoGet would start the query on Dremio only to cancel it.
            if call.cancelled.is_set():
                raise _Cancelled
            options = self._options(deadline.stream(), deadline, query.headers())
            call.waiting.begin("DoGet")  # pyarrow's do_get waits for the stream's schema
            try:
                reader = _guarded(
                    "DoGet", deadline, self._connection().do_get, endpoint.ticket, options
                )
            finally:
                call.waiting.end()
            call.attach(reader)
            try:
                for batch in self._chunks(call, reader, deadline):
                    schema = schema or batch.schema
                    if not batch.schema.equals(schema):  # endpoints disagree: no one table
                        reader.cancel()  # stop the rest of this endpoint's stream
                        raise DremioError(
                            f"the Flight result changed to another schema mid-way: "
                            f"{schema.names} then {batch.schema.names}"
                        )
                    rows += batch.num_rows
                    yield batch
            finally:
                call.detach()
        if info.total_records is not None and info.total_records >= 0:
            self._check_rows(rows, info.total_records)

    def _chunks(self, call: _Call, reader: Any, deadline: Deadline) -> Iterator[pa.RecordBatch]:
        while True:
            call.waiting.begin("DoGet")
            try:
                chunk = _guarded("DoGet", deadline, reader.read_chunk)
            except StopIteration:
                return
            except DremioError:
                if call.cancelled.is_set():
                    raise _Cancelled from None
                raise
            finally:
                call.waiting.end()
            if chunk.data is not None:
                yield chunk.data

    @staticmethod
    def _check_rows(received: int, expected: int) -> None:
        if received != expected:
            detail = "the Flight stream ended early" if received < expected else "too many rows"
            raise DremioResultIncomplete(FLIGHT_JOB, expected, received, detail)

    def _flight_info(self, query: _Query, deadline: Deadline) -> Any:
        descriptor = flight.FlightDescriptor.for_command(query.sql.encode())
        generation = self._generation
        options = self._options(deadline.unary("GetFlightInfo"), deadline, query.headers())
        try:
            return _guarded(
                "GetFlightInfo", deadline, self._connection().get_flight_info, descriptor, options
            )
        except DremioAuthError as exc:
            if self.config.auth != "password" or exc.status != 401:
                raise
        # The login token expired (or the server restarted): log in again, once.
        self._authenticate(generation, deadline)
        options = self._options(deadline.unary("GetFlightInfo"), deadline, query.headers())
        return _guarded(
            "GetFlightInfo", deadline, self._connection().get_flight_info, descriptor, options
        )

    def _delay(self, attempt: int) -> float:
        return float(min(self.retry.backoff * 2 ** (attempt - 1), self.retry.max_backoff))

    def _back_off(self, call: _Call, delay: float, exc: Exception) -> None:
        logger.info("Flight unavailable (%s); retrying in %.2f s", flight_message(exc), delay)
        if call.cancelled.wait(delay):
            raise _Cancelled

    # -- connection and credentials (worker side) ---------------------------------------------

    def _connection(self) -> flight.FlightClient:
        with self._lock:
            if self._closed:
                raise DremioError("the Dremio client is closed")
            if self._client is None:
                tls = grpc_tls(self.config.tls) if self.options.url.startswith("grpc+tls") else {}
                self._client = flight.FlightClient(
                    self.options.url, middleware=[CookieJar()], **tls
                )
            return self._client

    def _base_headers(self) -> list[tuple[bytes, bytes]]:
        if self.config.project_id:
            return [(PROJECT_HEADER, self.config.project_id.encode())]
        return []

    def _options(
        self, timeout: float | None, deadline: Deadline, extra: list[tuple[bytes, bytes]]
    ) -> flight.FlightCallOptions:
        if self._bearer is None:
            self._authenticate(self._generation, deadline)
        assert self._bearer is not None
        bearer = (b"authorization", f"Bearer {self._bearer.value}".encode())
        headers = [*self._base_headers(), *extra, bearer]
        return flight.FlightCallOptions(headers=headers, timeout=timeout)

    def _authenticate(self, generation: int, deadline: Deadline) -> None:
        """Flight's basic-token handshake: username/password in, a bearer token out."""
        assert self.config.username is not None
        assert self.config.password is not None
        with self._lock:
            if generation != self._generation and self._bearer is not None:
                return  # another read logged in again meanwhile
        limit = deadline.unary("Handshake")
        options = flight.FlightCallOptions(headers=self._base_headers(), timeout=limit)
        handshake = self._connection().authenticate_basic_token
        user, password = self.config.username, self.config.password.value
        started = time.monotonic()
        try:
            _, value = _guarded("Handshake", deadline, handshake, user, password, options)
        except DremioError as exc:
            # On a connection that never opened, gRPC reports the handshake's deadline
            # as an internal error ("Could not finish writing before closing").
            if isinstance(exc, DremioAuthError) or time.monotonic() - started < limit - 0.05:
                raise
            raise deadline.expired("Handshake") from exc
        token = value.decode() if isinstance(value, bytes) else str(value)
        with self._lock:
            self._bearer = Secret(token.removeprefix("Bearer ").removeprefix("bearer "))
            self._generation += 1
        logger.debug("Flight handshake as %s succeeded", self.config.username)
