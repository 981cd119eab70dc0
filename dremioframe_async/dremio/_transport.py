"""HTTP for the Dremio client: one aiohttp session, auth, retries, error mapping.

This is the only module that touches aiohttp. Every aiohttp failure is turned
into a :mod:`._errors` type here, with ``raise ... from exc``; log lines carry the
method, path and status, never a header or a body.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import sniffio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from yarl import URL

from ._config import DremioConfig, Secret
from ._errors import (
    DremioAPIError,
    DremioAuthError,
    DremioBackendError,
    DremioBadRequest,
    DremioConfigError,
    DremioConnectionError,
    DremioError,
    DremioNotFound,
    DremioRateLimited,
    DremioServerError,
    DremioSubmitUncertain,
    DremioTLSError,
)

__all__ = ["RetryPolicy", "Transport", "is_transient", "retry_wait"]

logger = logging.getLogger("dremioframe_async.dremio")

Loads = Callable[[str], Any]
# Statuses worth repeating an idempotent request for (429 is handled on its own).
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
# A POST that creates something is repeated only after 503: Dremio (or its proxy)
# refused it outright. After a 500/502/504 it may have run.
_REFUSED_STATUSES = frozenset({503})
_ERRORS_BY_STATUS: dict[int, type[DremioAPIError]] = {
    400: DremioBadRequest,
    401: DremioAuthError,
    403: DremioAuthError,
    404: DremioNotFound,
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The budget for transient faults: ``attempts`` in all, within ``max_time`` seconds.

    ``max_time`` is a deadline for the whole call, retries and a hung server
    included: each attempt may take only what is left of it (and at most the
    client's ``request_timeout``). Waits grow from ``backoff`` (doubling, capped
    at ``max_backoff``); a 429's Retry-After is honoured up to ``max_backoff``;
    no wait runs past the deadline.
    """

    attempts: int = 5
    max_time: float = 60.0
    backoff: float = 0.1
    max_backoff: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise DremioConfigError(
                f"RetryPolicy.attempts must be a whole number, got {self.attempts!r}"
            )
        if self.attempts < 1:
            raise DremioConfigError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if not self.max_time > 0:
            raise DremioConfigError(f"RetryPolicy.max_time must be positive, got {self.max_time!r}")
        if not (self.backoff >= 0 and self.max_backoff >= 0):
            raise DremioConfigError("RetryPolicy.backoff and max_backoff must not be negative")


def is_transient(exc: BaseException, *, idempotent: bool = True) -> bool:
    """Whether a failed request is worth repeating.

    Idempotent requests (GETs, cancel, login) are repeated after connection
    errors, 429 and 500/502/503/504. A request that is not idempotent (POST
    /sql) only when it provably never left the client, or after 429 and 503.
    """
    if isinstance(exc, DremioRateLimited):
        return True
    if isinstance(exc, DremioConnectionError):
        return idempotent or not exc.sent
    if isinstance(exc, DremioServerError):
        return exc.status in (_TRANSIENT_STATUSES if idempotent else _REFUSED_STATUSES)
    return False


def retry_wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    """A tenacity wait: Retry-After when Dremio gave one, else capped exponential backoff."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, DremioRateLimited) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), policy.max_backoff)
        return float(min(policy.backoff * 2 ** (state.attempt_number - 1), policy.max_backoff))

    return wait


class _StopAt(stop_base):
    """Stop when the next wait would end past ``deadline`` (tenacity computes it first)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return anyio.current_time() + retry_state.upcoming_sleep >= self.deadline


def _may_have_run(exc: DremioError) -> bool:
    if isinstance(exc, DremioConnectionError):
        return exc.sent
    return isinstance(exc, DremioServerError) and exc.status not in _REFUSED_STATUSES


def _api_error(
    method: str, path: str, status: int, body: Any, headers: Mapping[str, str]
) -> DremioAPIError:
    body = body if isinstance(body, dict) else {}
    message = str(body.get("errorMessage") or "")
    more = str(body.get("moreInfo") or "")
    if status == 429:
        return DremioRateLimited(
            method, path, status, message, more, retry_after=_retry_after(headers)
        )
    cls = _ERRORS_BY_STATUS.get(status, DremioServerError if status >= 500 else DremioAPIError)
    return cls(method, path, status, message, more)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP-date: not worth parsing, fall back to backoff
        return None


class Transport:
    """One pooled aiohttp session to one Dremio, with its credentials and retry policy."""

    def __init__(
        self,
        config: DremioConfig,
        *,
        retry: RetryPolicy,
        max_connections: int = 64,
        request_timeout: float = 300.0,
    ) -> None:
        self.config = config
        self.retry = retry
        self._max_connections = max_connections
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._bearer: Secret | None = config.token
        self._login_generation = 0
        self._login_lock: anyio.Lock | None = None

    async def open(self) -> None:
        """Create the session (inside the running loop) and log in if needed.

        :raises DremioBackendError: not running on asyncio.
        :raises DremioAuthError: the username/password was refused.
        """
        library = sniffio.current_async_library()
        if library != "asyncio":
            raise DremioBackendError(library)
        tls = self.config.tls
        # Reading a CA bundle is file I/O: keep it off the event loop.
        ssl_value = await anyio.to_thread.run_sync(tls.ssl_for_aiohttp)
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=ssl_value)
        timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        # RetryPolicy.attempts counts every request: aiohttp's own re-send of an
        # idempotent request on a dropped connection would double them (its switch
        # is private; aiohttp's test client turns it off the same way).
        self._session._retry_connection = False
        self._login_lock = anyio.Lock()
        if self.config.auth == "password":
            await self._login(self._login_generation)

    async def close(self) -> None:
        """Close the session; safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        loads: Loads = json.loads,
        idempotent: bool = True,
    ) -> Any:
        """Send one API request below the REST prefix; retry transient faults within budget.

        ``path`` must be percent-encoded already: it is sent as given, never
        normalised (so an encoded ``..`` cannot climb out of its endpoint). A
        request that is not ``idempotent`` is repeated only when it provably did
        not reach Dremio or Dremio refused it (429, 503).

        :raises DremioSubmitUncertain: a non-idempotent request may have reached
            Dremio, but no usable answer came back.
        :raises DremioError: a typed error for the final failure.
        """
        deadline = anyio.current_time() + self.retry.max_time
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts) | _StopAt(deadline),
            wait=retry_wait(self.retry),
            retry=retry_if_exception(lambda exc: is_transient(exc, idempotent=idempotent)),
            sleep=anyio.sleep,
            reraise=True,
            before_sleep=_log_retry,
        )
        try:
            return await retrying(self._authed, method, path, body, params, loads, deadline)
        except (DremioConnectionError, DremioServerError) as exc:
            if idempotent or not _may_have_run(exc):
                raise
            raise DremioSubmitUncertain(self.config.api + path, str(exc)) from exc

    async def _authed(
        self,
        method: str,
        path: str,
        body: Any,
        params: Mapping[str, str] | None,
        loads: Loads,
        deadline: float,
    ) -> Any:
        generation = self._login_generation
        url = self.config.api + path
        try:
            return await self._send(method, url, body, params, loads, deadline)
        except DremioAuthError as exc:
            if exc.status != 401 or self.config.auth != "password":
                raise
        # The login token expired (or the server restarted): log in again, once.
        # A 401 means Dremio refused the request, so sending it again is safe.
        await self._login(generation, deadline)
        return await self._send(method, url, body, params, loads, deadline)

    async def _login(self, generation: int, deadline: float | None = None) -> None:
        assert self._login_lock is not None
        async with self._login_lock:
            if generation != self._login_generation:
                return  # another request logged in again meanwhile
            assert self.config.password is not None
            body = {"userName": self.config.username, "password": self.config.password.value}
            if deadline is None:
                deadline = anyio.current_time() + self.retry.max_time
            reply = await self._send(
                "POST", "/apiv2/login", body, None, json.loads, deadline, auth=False
            )
            self._bearer = Secret(str(reply["token"]))
            self._login_generation += 1
            logger.debug("logged in to Dremio as %s", self.config.username)

    async def _send(
        self,
        method: str,
        path: str,
        body: Any,
        params: Mapping[str, str] | None,
        loads: Loads,
        deadline: float,
        *,
        auth: bool = True,
    ) -> Any:
        if self._session is None:
            raise DremioError("the Dremio client is not open: use `async with DremioClient(...)`")
        headers = {"Authorization": f"Bearer {self._bearer.value}"} if auth and self._bearer else {}
        budget = min(self._request_timeout, deadline - anyio.current_time())
        if budget <= 0:
            # Nothing has been sent: a POST that stops here cannot have run.
            raise DremioConnectionError(
                method, path, "the retry budget (max_time) is used up", sent=False
            )
        # `connect` is separate so that a connection that could not even be opened
        # is told apart from a request that may have been sent.
        limit = budget if math.isfinite(budget) else None  # aiohttp cannot time infinity
        timeout = aiohttp.ClientTimeout(total=limit, connect=limit)
        url = URL(self.config.root + path, encoded=True)
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, url, json=body, params=params, headers=headers, timeout=timeout
            ) as resp:
                text = await resp.text()
                status, resp_headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("%s %s failed: %s", method, path, type(exc).__name__)
            raise _connection_error(method, path, exc, budget) from exc
        logger.debug(
            "%s %s -> %d (%.1f ms)", method, path, status, (time.perf_counter() - started) * 1e3
        )
        if status >= 400:
            raise _api_error(method, path, status, _json_or_none(text), resp_headers)
        if not text:
            return None
        try:
            return loads(text)
        except ValueError as exc:  # not Dremio's JSON: a proxy's page, or a cut body
            reason = f"the reply is not JSON, perhaps a proxy's page ({exc})"
            raise DremioConnectionError(method, path, reason) from exc


def _connection_error(
    method: str, path: str, exc: BaseException, budget: float
) -> DremioConnectionError | DremioTLSError:
    if isinstance(exc, aiohttp.ClientSSLError):
        return DremioTLSError(method, path, _describe(exc))
    # Opening the connection failed (refused, DNS, connect timeout): nothing was sent.
    not_sent = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    if isinstance(exc, TimeoutError) and not not_sent:
        reason = f"no answer within {budget:.3g} s"
    else:
        reason = _describe(exc)
    return DremioConnectionError(method, path, reason, sent=not not_sent)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    logger.info("retrying after attempt %d (%s) in %.2f s", state.attempt_number, exc, delay)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name the host and the OS error, never request headers.
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
