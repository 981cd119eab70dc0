"""FakeDremio's Arrow Flight endpoint: DuckDB results streamed as Arrow record batches.

It speaks the subset of Flight that Dremio serves and its clients use: the
basic-token handshake (``Authorization: Basic`` in, ``Authorization: Bearer`` out;
the password may be a personal access token, and the base64 may lack its padding,
as Arrow's Go client sends it), bearer tokens on every call, ``GetFlightInfo`` with
the SQL as the descriptor's command, and ``DoGet`` streaming the result. Flight SQL
commands, prepared statements (``DoAction``) and updates (``DoPut``) are read by
:mod:`._flightsql`. Credentials come from the owning :class:`FakeDremio`, so a PAT
or a login works on REST and Flight alike.

gRPC runs every call on its own server thread, so everything here is blocking
code; the knobs and the call log are guarded by one lock.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from . import _protobuf as pb
from ._ddl import parse_ddl
from ._flightsql import FlightSql

__all__ = ["FakeFlightServer", "FlightAuth", "FlightCall"]

_MAX_PENDING_TICKETS = 1024
_DDL_SCHEMA = pa.schema([("ok", pa.bool_()), ("summary", pa.utf8())])


@dataclass(frozen=True, slots=True)
class FlightCall:
    """One Flight call FakeDremio's Flight endpoint received, recorded when it ended.

    ``method`` is ``handshake``, ``get_flight_info``, ``do_get`` or ``do_action`` (its
    ``sql`` is then the action's type); ``status`` is ``ok``, ``failed``, ``cancelled``
    (the client cancelled the stream), ``unauthenticated``, ``unavailable`` or
    ``unsupported`` (an action not served); ``project`` is the ``catalog`` header
    (Dremio Cloud's project id) and ``context`` the ``schema`` session header, when
    sent. No token is recorded.
    """

    method: str
    sql: str
    user: str
    status: str
    batches: int = 0
    rows: int = 0
    error: str = ""
    project: str | None = None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class FlightAuth:
    """How the Flight endpoint checks credentials (the owning FakeDremio's rules)."""

    check_password: Callable[[str, str], bool]
    issue_token: Callable[[], str]
    token_valid: Callable[[str], bool]


@dataclass(slots=True)
class _Knobs:
    reject_tokens: int = 0
    unavailable: int = 0
    fail_after_batches: int | None = None
    fail_message: str = "injected failure mid-stream"
    fail_unavailable: bool = False
    fail_silently: bool = False
    fail_count: int = 0
    batch_delay: float = 0.0
    batch_rows: int = 65_536


@dataclass(slots=True)
class _Pending:
    sql: str
    table: pa.Table
    user: str


class _Caller(flight.ServerMiddleware):  # type: ignore[misc]
    """Per-call state: who called, and the bearer header a handshake hands back."""

    def __init__(self, user: str, headers: dict[str, list[str]], reply_token: str | None) -> None:
        self.user, self.reply_token = user, reply_token
        self.project = _header(headers, "catalog")
        self.context = _header(headers, "schema")

    def sending_headers(self) -> dict[str, str]:
        if self.reply_token is None:
            return {}
        return {"authorization": f"Bearer {self.reply_token}"}


class _HeaderAuth(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Checks ``authorization`` on every call: Basic on the handshake, Bearer elsewhere."""

    def __init__(self, server: FakeFlightServer) -> None:
        super().__init__()
        self.server = server

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> _Caller:
        scheme, _, credential = (_header(headers, "authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            user = self.server.check_basic(credential)
            return _Caller(user, headers, self.server.auth.issue_token())
        if scheme.lower() == "bearer" and self.server.check_bearer(credential):
            return _Caller("token", headers, None)
        self.server.record(FlightCall(_method_name(info), "", "", "unauthenticated"))
        raise flight.FlightUnauthenticatedError("Unauthorized: a valid token is required")


class _NoHandshake(flight.ServerAuthHandler):  # type: ignore[misc]
    """The handshake's work is the middleware's; this only lets the Handshake call through."""

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""


class FakeFlightServer(flight.FlightServerBase):  # type: ignore[misc]
    """A Flight server on 127.0.0.1 running SQL through ``execute`` (FakeDremio's DuckDB).

    With ``certificate`` (PEM certificate and key) it serves ``grpc+tls``.

    Knobs: :meth:`fail_mid_stream`, :meth:`reject_tokens`, :meth:`slow_batches`,
    :meth:`unavailable_next`, ``batch_rows``. Every call is recorded in :attr:`calls`
    as a :class:`FlightCall` once it ends, ``status="cancelled"`` when the client
    cancelled it.
    """

    def __init__(
        self,
        execute: Callable[[str], pa.Table],
        auth: FlightAuth,
        host: str = "127.0.0.1",
        certificate: tuple[bytes, bytes] | None = None,
        sql: FlightSql | None = None,
    ) -> None:
        self.execute, self.auth, self.sql = execute, auth, sql
        self._lock = threading.Lock()
        self._knobs = _Knobs()
        self._pending: dict[bytes, _Pending] = {}
        self._calls: list[FlightCall] = []
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._ids = itertools.count(1)
        scheme = "grpc+tls" if certificate else "grpc+tcp"
        tls = [flight.CertKeyPair(*certificate)] if certificate else None
        super().__init__(
            f"{scheme}://{host}:0",
            auth_handler=_NoHandshake(),
            middleware={"auth": _HeaderAuth(self)},
            tls_certificates=tls,
        )
        self.url = f"{scheme}://{host}:{self.port}"

    # -- knobs --------------------------------------------------------------------------------

    @property
    def batch_rows(self) -> int:
        """Rows per streamed record batch (default 65,536)."""
        return self._knobs.batch_rows

    @batch_rows.setter
    def batch_rows(self, rows: int) -> None:
        self._knobs.batch_rows = max(1, rows)

    def fail_mid_stream(
        self,
        after_batches: int = 1,
        message: str = "injected failure mid-stream",
        count: int = 1,
        *,
        unavailable: bool = False,
        silently: bool = False,
    ) -> None:
        """Break the next ``count`` streams after ``after_batches`` batches.

        The error is a server error carrying ``message``, UNAVAILABLE (a lost
        connection) with ``unavailable=True``, or none at all with ``silently=True``:
        the stream just ends early, as a proxy that cuts it cleanly would.
        """
        with self._lock:
            self._knobs.fail_after_batches, self._knobs.fail_message = after_batches, message
            self._knobs.fail_count, self._knobs.fail_unavailable = count, unavailable
            self._knobs.fail_silently = silently

    def clear_faults(self) -> None:
        """Undo ``fail_mid_stream``, ``reject_tokens`` and ``unavailable_next``
        (``batch_rows`` and ``batch_delay`` stay)."""
        with self._lock:
            self._knobs = _Knobs(
                batch_delay=self._knobs.batch_delay, batch_rows=self._knobs.batch_rows
            )

    def reject_tokens(self, count: int = 1_000_000) -> None:
        """Refuse the next ``count`` calls as unauthenticated, whatever their credentials."""
        with self._lock:
            self._knobs.reject_tokens = count

    def unavailable_next(self, count: int = 1) -> None:
        """Answer the next ``count`` GetFlightInfo calls with UNAVAILABLE."""
        with self._lock:
            self._knobs.unavailable = count

    def slow_batches(self, delay: float) -> None:
        """Wait ``delay`` seconds before every batch but the first; a cancel stops the wait."""
        with self._lock:
            self._knobs.batch_delay = delay

    @property
    def calls(self) -> list[FlightCall]:
        """The calls that have ended, in the order they ended."""
        with self._lock:
            return list(self._calls)

    def wait_for_call(
        self, predicate: Callable[[FlightCall], bool], timeout: float
    ) -> FlightCall | None:
        """Block until a recorded call satisfies ``predicate`` (or ``timeout`` passes)."""
        with self._changed:
            found: list[FlightCall] = []

            def ready() -> bool:
                found[:] = [c for c in self._calls if predicate(c)]
                return bool(found)

            self._changed.wait_for(ready, timeout)
            return found[0] if found else None

    # -- auth (called by the middleware) ------------------------------------------------------

    def check_basic(self, credential: str) -> str:
        try:
            # Unpadded base64 is accepted, as Dremio's decoder does: Arrow's Go client sends it.
            padded = credential + "=" * (-len(credential) % 4)
            user, _, password = base64.b64decode(padded).decode().partition(":")
        except ValueError:
            user, password = "", ""
        if self._take_rejection() or not self.auth.check_password(user, password):
            self.record(FlightCall("handshake", "", user, "unauthenticated"))
            raise flight.FlightUnauthenticatedError("Invalid username or password")
        self.record(FlightCall("handshake", "", user, "ok"))
        return user

    def check_bearer(self, token: str) -> bool:
        return not self._take_rejection() and self.auth.token_valid(token)

    def _take_rejection(self) -> bool:
        with self._lock:
            if self._knobs.reject_tokens > 0:
                self._knobs.reject_tokens -= 1
                return True
            return False

    def record(self, call: FlightCall) -> None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    # -- Flight RPCs --------------------------------------------------------------------------

    def get_flight_info(self, context: Any, descriptor: flight.FlightDescriptor) -> Any:
        command = bytes(descriptor.command or b"")
        request = self.sql.request(command) if self.sql is not None else None
        # Metadata commands are recorded under their message's name.
        if request is None:
            sql = command.decode(errors="replace")
        else:
            sql = request.sql or request.command
        caller = context.get_middleware("auth")
        user, where = caller.user, {"project": caller.project, "context": caller.context}
        with self._lock:
            unavailable = self._knobs.unavailable > 0
            self._knobs.unavailable -= int(unavailable)
        if unavailable:
            self.record(FlightCall("get_flight_info", sql, user, "unavailable", **where))
            raise flight.FlightUnavailableError("injected: the server is unavailable")
        try:
            table = request.table if request is not None and request.table is not None else None
            table = self.execute(sql) if table is None else table
        except Exception as exc:  # the SQL failed: Dremio says so with its message
            message = _first_line(str(exc))
            self.record(FlightCall("get_flight_info", sql, user, "failed", error=message))
            raise flight.FlightServerError(message) from exc
        handle = f"{next(self._ids)}-{secrets.token_hex(8)}".encode()
        with self._lock:
            while len(self._pending) >= _MAX_PENDING_TICKETS:
                self._pending.pop(next(iter(self._pending)))
            self._pending[handle] = _Pending(sql, table, user)
        self.record(FlightCall("get_flight_info", sql, user, "ok", rows=table.num_rows, **where))
        # A Flight SQL client gets Flight SQL's ticket message; a plain one, the handle.
        ticket = FlightSql.ticket(handle) if request is not None else handle
        endpoint = flight.FlightEndpoint(ticket, [self.url])
        return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, -1)

    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> Any:
        command = bytes(descriptor.command or b"")
        schema = self.sql.schema_of(command) if self.sql is not None else None
        if schema is None:
            request = self.sql.request(command) if self.sql is not None else None
            sql = request.sql if request else command.decode(errors="replace")
            # DDL must not run twice (here and when executed): its answer's shape is known.
            # A query is planned by Dremio; here it runs.
            schema = _DDL_SCHEMA if parse_ddl(sql) else self.execute(sql).schema
        return flight.SchemaResult(schema)

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [
            ("CreatePreparedStatement", "Flight SQL: prepare a query"),
            ("ClosePreparedStatement", "Flight SQL: release a prepared query"),
        ]

    def do_action(self, context: Any, action: flight.Action) -> Iterator[flight.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        if self.sql is None:
            raise NotImplementedError(f"action {action.type} is not supported")
        user = context.get_middleware("auth").user
        known = action.type in ("CreatePreparedStatement", "ClosePreparedStatement")
        self.record(FlightCall("do_action", action.type, user, "ok" if known else "unsupported"))
        if action.type == "CreatePreparedStatement":
            return iter([flight.Result(pa.py_buffer(self.sql.create_prepared(body)))])
        if action.type == "ClosePreparedStatement":
            self.sql.close_prepared(body)
            return iter([])
        # CloseSession (ADBC sends it on close) and the rest: gRPC's UNIMPLEMENTED.
        raise NotImplementedError(f"action {action.type} is not supported")

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        """Flight SQL updates (``CommandStatementUpdate``): run it, answer the row count."""
        unpacked = pb.unpack_any(bytes(descriptor.command or b""))
        if unpacked is None or unpacked[0] != "CommandStatementUpdate":
            raise NotImplementedError("DoPut serves Flight SQL's CommandStatementUpdate only")
        sql = pb.text(pb.decode(unpacked[1]) or {}, 1) or ""
        try:
            table = self.execute(sql)
        except Exception as exc:
            raise flight.FlightServerError(_first_line(str(exc))) from exc
        records = table.column(1)[0].as_py() if "Records" in table.column_names else -1
        writer.write(pa.py_buffer(pb.encode([(1, int(records or 0))])))

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.GeneratorStream:
        with self._lock:
            pending = self._pending.pop(FlightSql.handle(bytes(ticket.ticket)), None)
            knobs = _Knobs(**{f: getattr(self._knobs, f) for f in _Knobs.__dataclass_fields__})
            if self._knobs.fail_count > 0:
                self._knobs.fail_count -= 1
            else:
                knobs.fail_after_batches = None
        if pending is None:
            self.record(FlightCall("do_get", "", "", "failed", error="unknown ticket"))
            raise flight.FlightServerError("unknown or already used ticket")
        log = _StreamLog(pending.sql, pending.user)
        return flight.GeneratorStream(
            pending.table.schema, self._batches(context, pending.table, knobs, log)
        )

    def _batches(
        self, context: Any, table: pa.Table, knobs: _Knobs, log: _StreamLog
    ) -> Iterator[pa.RecordBatch]:
        try:
            for batch in table.to_batches(max_chunksize=knobs.batch_rows):
                if knobs.fail_after_batches is not None and log.batches >= knobs.fail_after_batches:
                    log.status, log.error = "failed", knobs.fail_message
                    if knobs.fail_silently:
                        return
                    if knobs.fail_unavailable:
                        raise flight.FlightUnavailableError(knobs.fail_message)
                    raise flight.FlightServerError(knobs.fail_message)
                if knobs.batch_delay and log.batches and self._wait(context, knobs.batch_delay):
                    break
                log.batches += 1
                log.rows += batch.num_rows
                yield batch
        finally:
            if context.is_cancelled():
                log.status = "cancelled"
            self.record(log.call())

    def _wait(self, context: Any, delay: float) -> bool:
        """Sleep ``delay`` seconds in small steps; True if the call was cancelled meanwhile."""
        step = min(delay, 0.01)
        waited = 0.0
        while waited < delay:
            if context.is_cancelled() or self._closing.wait(step):
                return True
            waited += step
        return bool(context.is_cancelled())

    def shutdown(self) -> None:
        """Stop serving; slow streams stop waiting at once (blocking: call from a thread)."""
        self._closing.set()
        super().shutdown()


@dataclass(slots=True)
class _StreamLog:
    sql: str
    user: str
    status: str = "ok"
    batches: int = 0
    rows: int = 0
    error: str = ""

    def call(self) -> FlightCall:
        return FlightCall(
            "do_get", self.sql, self.user, self.status, self.batches, self.rows, self.error
        )


def _header(headers: dict[str, list[str]], name: str) -> str | None:
    for key, values in headers.items():
        if key.lower() == name and values:
            return str(values[0])
    return None


def _method_name(info: Any) -> str:
    return str(getattr(info.method, "name", info.method)).lower()


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text
