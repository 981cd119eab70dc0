"""FakeDremio: a real HTTP server on loopback speaking Dremio's REST API.

It serves ``/apiv2/login`` and the resource paths below both ``/api/v3``
(Software) and ``/v0/projects/{project_id}`` (Cloud), runs SQL for real through
DuckDB on registered Arrow tables (off the event loop), and can inject faults
and latency. Jobs advance lazily: a job's SQL runs when it is first looked at
after its latency has passed, so the server owns no background tasks and can
be started and stopped from any task. This module holds the server's life and its
knobs; the routes, handlers and jobs are in ``_rest``.
"""

from __future__ import annotations

import re
import secrets
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Literal, Self

import anyio
import pyarrow as pa
from aiohttp import web

from ._catalog import CatalogView
from ._flight import FakeFlightServer, FlightAuth
from ._flightsql import FlightSql
from ._model import CannedResponse, FakeJob, Fault, Hold, JobSlots, RecordedRequest
from ._oauth import OAuthServer
from ._rest import RestApi, SlowJobs
from ._sql import SqlEngine

__all__ = ["FakeDremio"]


class FakeDremio(RestApi):
    """A Dremio stand-in for tests and demos, over real HTTP on 127.0.0.1.

    ``url`` is set once started; ``token`` is a personal access token it accepts;
    ``username``/``password`` are what its ``/apiv2/login`` accepts;
    ``project_id`` is the Dremio Cloud project it serves; ``oauth`` is its ``/oauth/token``
    (``oauth.client_id``/``oauth.client_secret``: the client credentials it accepts).
    ``job_latency`` is how long each job stays STARTING/RUNNING; ``max_running_jobs``
    (None: no limit) is how many jobs run at once, the rest waiting QUEUED in submission order, as
    on a Dremio with a bounded queue. Flight queries are jobs too: they take
    their turn and their latency before the first batch. ``request_latency``
    delays every response, as a network would. With ``ssl_context`` (a server context holding
    a certificate) it serves ``https``.

    With ``flight=True`` it also serves Arrow Flight at ``flight_url``, with the
    same tables and credentials; ``flight`` is that server, with its knobs
    (``fail_mid_stream``, ``reject_tokens``, ``slow_batches``, ``unavailable_next``)
    and its log of ``calls``. With ``flight_certificate`` (PEM certificate and
    key) Flight is served over ``grpc+tls``.
    """

    def __init__(
        self,
        job_latency: float = 0.0,
        *,
        request_latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "dremio",
        password: str | None = None,
        project_id: str = "fake-project",
        engine_connections: int = 4,
        max_running_jobs: int | None = None,
        flight: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        flight_certificate: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.job_latency = job_latency
        self._slots = JobSlots(max_running_jobs)
        self._stopping = threading.Event()
        self.request_latency = request_latency
        self.host, self.port = host, port
        self.token = secrets.token_urlsafe(24)
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.project_id = project_id
        self.ssl_context = ssl_context
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, FakeJob] = {}
        self._engine = SqlEngine(engine_connections)
        self._catalog = CatalogView(self._engine, username)
        self._started_ms = int(time.time() * 1000)
        self._sessions: set[str] = set()
        self._issued: list[str] = []
        self.oauth = OAuthServer(self._issue_token, lambda token: token == self.token)
        self._canned: list[CannedResponse] = []
        self._faults: list[Fault] = []
        self._holds: list[Hold] = []
        self._short_pages: list[Fault] = []
        self._extra_rows: list[tuple[str, int]] = []
        self._late_cancels = 0
        self._runner: web.AppRunner | None = None
        self._job_locks: dict[str, anyio.Lock] = {}
        self._serve_flight = flight
        self._flight_certificate = flight_certificate
        self._flight: FakeFlightServer | None = None

    def __repr__(self) -> str:
        state = self.url if self._runner else "not started"
        return f"FakeDremio({state}, jobs={len(self.jobs)}, tables={len(self._engine.paths)})"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:53211`` (``https`` with ``ssl_context``)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and start serving.

        :raises ImportError: DuckDB is missing (``pip install 'dremioframe_async[testing]'``).
        """
        await anyio.to_thread.run_sync(self._engine.check)
        app = web.Application(middlewares=[self._middleware])
        self._routes(app)
        # Held requests are released on close; the bound only guards a stuck handler.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
        self._runner = runner
        if self._serve_flight:
            auth = FlightAuth(self._password_ok, self._issue_token, self._token_ok)
            sql = FlightSql(self._engine.snapshot)
            tls = self._flight_certificate
            self._flight = await anyio.to_thread.run_sync(
                FakeFlightServer, self._flight_execute, auth, self.host, tls, sql
            )

    async def close(self) -> None:
        """Stop serving and release the SQL engine (shielded: always completes)."""
        runner, self._runner = self._runner, None
        flight, self._flight = self._flight, None
        self._stopping.set()
        for hold in self._holds:
            hold.release()
        with anyio.CancelScope(shield=True):
            if flight is not None:
                await anyio.to_thread.run_sync(flight.shutdown)
            if runner is not None:
                await runner.cleanup()
            await anyio.to_thread.run_sync(self._engine.close)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def flight(self) -> FakeFlightServer:
        """The Arrow Flight endpoint (``FakeDremio(flight=True)``, started).

        :raises RuntimeError: Flight was not asked for, or the server is not started.
        """
        if self._flight is None:
            raise RuntimeError("start FakeDremio(flight=True) to serve Arrow Flight")
        return self._flight

    @property
    def flight_url(self) -> str:
        """The Flight endpoint's location, e.g. ``grpc+tcp://127.0.0.1:53212``."""
        return self.flight.url

    @property
    def max_running_jobs(self) -> int | None:
        """How many jobs run at once (None: no limit)."""
        return self._slots.limit

    def _latency_for(self, sql: str) -> tuple[CannedResponse | None, float, float]:
        """The canned answer for ``sql``, its latency, and its wait for a slot (taken now)."""
        canned = next((c for c in self._canned if c.matches(sql)), None)
        latency = canned.latency if canned and canned.latency is not None else self.job_latency
        return canned, latency, self._slots.queue_delay(latency, time.monotonic())

    def _flight_execute(self, sql: str) -> pa.Table:
        """Run SQL for the Flight endpoint (a gRPC thread), honouring canned answers."""
        _, latency, queued = self._latency_for(sql)
        if queued + latency > 0:
            self._stopping.wait(queued + latency)  # a job's turn and run time, as over REST
        canned = next(
            (c for c in self._canned if c.matches(sql) and not isinstance(c, SlowJobs)), None
        )
        if canned is not None and canned.error is not None:
            raise RuntimeError(canned.error)
        if canned is not None and canned.table is not None:
            return canned.table
        return self._engine.execute(sql)

    def _password_ok(self, username: str, password: str) -> bool:
        # Dremio takes a personal access token in the password's place (Flight, JDBC, ODBC).
        return username == self.username and password in (self.password, self.token)

    def _issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self._sessions.add(token)
        self._issued.append(token)
        return token

    def _token_ok(self, token: str) -> bool:
        return token == self.token or token in self._sessions

    # -- configuration ------------------------------------------------------------------------

    def add_table(self, path: str, table: pa.Table) -> None:
        """Serve ``table`` at the dotted Dremio ``path`` (``"space.folder.sales"``)."""
        self._engine.add_table(path, table)

    @property
    def tables(self) -> list[str]:
        """The registered table paths, dotted."""
        return [".".join(parts) for parts in self._engine.paths]

    def add_response(
        self,
        sql: str,
        *,
        table: pa.Table | None = None,
        error: str | None = None,
        match: Literal["exact", "substring"] = "exact",
        latency: float | None = None,
    ) -> None:
        """Answer SQL matching ``sql`` with ``table`` (or a FAILED job with ``error``)."""
        self._canned.insert(0, CannedResponse(sql, match, table, error, latency))

    def fail_jobs(self, sql_substring: str, error: str = "injected job failure") -> None:
        """Jobs whose SQL contains ``sql_substring`` end FAILED with ``error``."""
        self.add_response(sql_substring, error=error, match="substring")

    def slow_jobs(self, sql_substring: str, latency: float) -> None:
        """Jobs whose SQL contains ``sql_substring`` stay RUNNING for ``latency`` seconds."""
        self._canned.insert(0, SlowJobs(sql_substring, "substring", latency=latency))

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        path: str | None = None,
        method: str | None = None,
        message: str = "injected fault",
        after: int = 0,
    ) -> None:
        """Answer the next ``count`` requests (matching ``path``/``method``) with ``status``,
        after letting ``after`` of them through."""
        self._faults.append(Fault(count, status, path, method, message=message, after=after))

    def rate_limit_next(
        self, count: int = 1, retry_after: float = 0.05, *, path: str | None = None
    ) -> None:
        """Answer the next ``count`` requests with 429 and ``Retry-After: retry_after``."""
        fault = Fault(count, 429, path, retry_after=retry_after, message="Too many requests")
        self._faults.append(fault)

    def disconnect_next(self, count: int = 1, *, path: str | None = None) -> None:
        """Drop the connection, without an answer, for the next ``count`` requests."""
        self._faults.append(Fault(count, 0, path, disconnect=True))

    def lose_reply_next(
        self, count: int = 1, *, path: str | None = "/sql", method: str | None = None
    ) -> None:
        """Handle the next ``count`` matching requests, then drop the connection unanswered.

        A submission still creates its job: the client cannot know whether it ran.
        """
        self._faults.append(Fault(count, 0, path, method, lose_reply=True))

    def fail_status_polls(self, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` job-status requests (``GET /job/{id}``) with ``status``."""
        pattern = re.compile(r"/job/[^/]+$")
        self._faults.append(Fault(count, status, method="GET", pattern=pattern))

    def cancel_too_late(self, count: int = 1) -> None:
        """The next ``count`` cancel requests land after their job ended: the job runs to
        its end first and the cancel is refused, as when Dremio finishes a statement
        just before the cancel arrives."""
        self._late_cancels += count

    def short_pages(self, count: int = 1, *, missing: int | None = 1, after: int = 0) -> None:
        """The next ``count`` results pages (after ``after`` good ones) lose their last
        ``missing`` rows (None: all rows).

        The reported ``rowCount`` stays the job's, as with a proxy that cuts a body.
        """
        self._short_pages.append(Fault(count, 200, short_by=missing, after=after))

    def inflate_row_count(self, by: int, sql_substring: str = "") -> None:
        """Jobs submitted from now on whose SQL contains ``sql_substring`` report ``by``
        more rows (job status and results) than they deliver."""
        self._extra_rows.insert(0, (sql_substring.lower(), by))

    def hold_next(
        self,
        count: int | None = 1,
        *,
        path: str | None = None,
        method: str | None = None,
        after: int = 0,
    ) -> Hold:
        """Hold the next ``count`` matching requests (None: all; the first ``after`` pass)
        unanswered until released.

        The returned :class:`Hold` has ``arrived`` (an event set when one has come
        in) and ``release()``. Held requests are recorded once answered.
        """
        hold = Hold(path, method, count, after)
        self._holds.append(hold)
        return hold

    def suspend(self) -> Hold:
        """Act like a suspended server: accept connections, answer nothing until :meth:`resume`."""
        return self.hold_next(None)

    def resume(self) -> None:
        """Answer every held request and stop holding new ones."""
        for hold in self._holds:
            hold.release()
        self._holds.clear()

    def clear_faults(self) -> None:
        """Undo every fault injected so far, for the requests and jobs that come next.

        Failing and slow jobs (``fail_jobs``, ``slow_jobs``, ``add_response(error=)``),
        the ``*_next`` faults, ``fail_status_polls``, ``short_pages``,
        ``inflate_row_count`` and held requests (released) all end; so do the
        Flight endpoint's (``flight.clear_faults()``). Tables, canned results and
        latencies stay. Jobs already submitted keep what they were given.
        """
        self._canned = [c for c in self._canned if c.error is None and not isinstance(c, SlowJobs)]
        self._faults.clear()
        self._short_pages.clear()
        self._extra_rows.clear()
        self.resume()
        if self._flight is not None:
            self._flight.clear_faults()

    def expire_sessions(self) -> None:
        """Forget every login token, so the next request with one gets 401."""
        self._sessions.clear()

    @property
    def issued_tokens(self) -> tuple[str, ...]:
        """Every session token handed out: logins, Flight handshakes, OAuth (for leak checks)."""
        return tuple(self._issued)

    def requests_to(self, path_substring: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests whose path contains ``path_substring``."""
        return [
            r
            for r in self.requests
            if path_substring in r.path and (method is None or r.method == method)
        ]

    @property
    def cancelled_jobs(self) -> list[str]:
        """Ids of the jobs a cancel request was received for."""
        return [r.path.split("/")[-2] for r in self.requests_to("/cancel", "POST")]
