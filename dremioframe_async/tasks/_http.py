"""HTTP calls as tasks on aiohttp, and a Slack/webhook alert built on them.

Only failures a second attempt can fix are retried by default: connection
errors, 429 (the engine waits at least the server's ``Retry-After``) and
502/503/504. A request that is not idempotent (POST, PATCH) is retried after a
connection error only when it provably never left (the connection was refused),
so a lost reply never sends it twice.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json as jsonlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from yarl import URL

from .._masking import head_without_secrets, margin
from .._telemetry import traceparent
from ..orchestration import RunContext, Task
from ._clients import client_resource_options, run_client
from ._common import (
    REDACTED,
    Credential,
    CredentialValue,
    TaskLibraryError,
    is_secret_name,
    redact,
    redact_url,
    require_asyncio,
    resolve,
    with_default_retry,
)

__all__ = [
    "HttpConnectionError",
    "HttpError",
    "HttpResponse",
    "HttpStatusError",
    "HttpTask",
    "HttpTransientError",
    "SlackAlertTask",
]

ResultKind = Literal["json", "text", "bytes", "response"]
_RESULT_KINDS = ("json", "text", "bytes", "response")
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_REFUSED_STATUS = frozenset({429, 503})  # the server says it did not act on the request
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BODY_TAIL = 500
_CHUNK = 1 << 16
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10

HTTP_RESOURCE = "http"
"""The run resource (one aiohttp session) HTTP tasks use when given no ``session=``."""


class HttpError(TaskLibraryError):
    """An HTTP task failed; the URL in the message has its secrets redacted."""


class HttpStatusError(HttpError):
    """The server answered with a status outside ``expect_status``."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.method, self.url, self.status, self.body = method, url, status, body
        tail = f": {body}" if body else ""
        super().__init__(f"{method} {url} answered {status}{tail}")


class HttpTransientError(HttpStatusError):
    """429, 502, 503 or 504: worth another attempt, after ``retry_after`` seconds if given."""

    def __init__(
        self, method: str, url: str, status: int, body: str, retry_after: float | None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(method, url, status, body)


class HttpConnectionError(HttpError):
    """The request could not be completed (refused, reset, DNS ...); may be retried."""

    def __init__(self, method: str, url: str, reason: str) -> None:
        self.method, self.url, self.reason = method, url, reason
        super().__init__(f"{method} {url} failed: {reason}")


class _HttpNotSent(HttpConnectionError):
    """The connection failed before the request was sent: safe to retry any method."""


class _HttpMaybeSent(HttpConnectionError):
    """The connection broke after the request may have reached the server."""


@dataclass(frozen=True, slots=True)
class _Request:
    """One request of an attempt: the first, or one a redirect asked for."""

    method: str
    url: str | URL
    headers: Mapping[str, str]
    params: Mapping[str, str] | None
    json: Any
    data: Any


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


@asynccontextmanager
async def open_session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session for the task library: the engine's retries are the only ones.

    aiohttp re-sends an idempotent request once on its own when a connection
    drops; under ``retries=3`` that made eight requests instead of four. Its
    switch is private (aiohttp's own test client turns it off the same way).
    """
    async with aiohttp.ClientSession() as session:
        session._retry_connection = False
        yield session


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A finished response (``result="response"``): status, headers and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    url: str

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding, errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def _expected(expect: int | Iterable[int]) -> frozenset[int]:
    codes = frozenset([expect] if isinstance(expect, int) else expect)
    if not codes or not all(isinstance(c, int) and 100 <= c <= 599 for c in codes):
        raise ValueError(f"expect_status must be HTTP status codes, got {expect!r}")
    return codes


def _guarded(values: Mapping[str, CredentialValue] | None) -> dict[str, CredentialValue]:
    return {
        k: Credential(v) if isinstance(v, str) and is_secret_name(k) else v
        for k, v in (values or {}).items()
    }


def _transient_errors(method: str) -> tuple[type[BaseException], ...]:
    if method in _IDEMPOTENT:
        return (HttpTransientError, HttpConnectionError)
    return (HttpTransientError, _HttpNotSent)


class HttpTask(Task):
    """Send one HTTP request; return the body as JSON, text, bytes or an :class:`HttpResponse`.

    Header values, ``url`` and ``data`` may be :class:`Credential` objects, looked up
    when the task runs (from ``run(context={...})`` or the environment). Values
    of headers whose names look like credentials (``Authorization``,
    ``X-Api-Key`` ...) and secrets in the URL are never shown in the repr or in
    errors. The body is read whole, up to ``max_bytes`` (64 MiB by default;
    ``None`` for no limit): a larger one fails the task instead of filling memory.

    Every HTTP task of a run shares one aiohttp session (one connection pool),
    the run's ``"http"`` resource; ``session=`` names another run resource or
    passes an open ``aiohttp.ClientSession`` (aiohttp then keeps its own single
    re-send of an idempotent request on a dropped connection; the run's session
    does not, so ``retries=3`` means at most four requests).

    Redirects (301, 302, 303, 307, 308) are followed, at most
    :data:`MAX_REDIRECTS` of them, unless ``follow_redirects=False`` (the 3xx is
    then the response). 303, and 301/302 after a POST, become a GET without a
    body; 307/308 keep the method and body. A redirect that leaves the origin
    (another scheme, host or port) never takes credentials along: every header
    whose name looks like a credential, or whose value is a :class:`Credential`,
    is dropped, and a request with a body is not followed there at all.

    :raises HttpStatusError: a status outside ``expect_status`` (not retried by default).
    :raises HttpTransientError: 429/502/503/504 (retried when ``retries`` is set).
    :raises HttpConnectionError: the request could not be completed.
    :raises HttpError: a body over ``max_bytes``, not JSON with ``result="json"``,
        more than :data:`MAX_REDIRECTS` redirects (the message shows the chain), or
        a body that a redirect would carry to another origin.
    :raises ValueError: bad ``method``, ``result`` or ``expect_status`` (at construction).
    """

    def __init__(
        self,
        name: str,
        url: CredentialValue,
        method: str = "GET",
        *,
        headers: Mapping[str, CredentialValue] | None = None,
        json: Any = None,
        data: bytes | CredentialValue | None = None,
        params: Mapping[str, CredentialValue] | None = None,
        expect_status: int | Iterable[int] = range(200, 300),
        result: ResultKind = "json",
        session: aiohttp.ClientSession | str | None = None,
        max_bytes: int | None = 64 << 20,
        follow_redirects: bool = True,
        **options: Any,
    ) -> None:
        if result not in _RESULT_KINDS:
            raise ValueError(f"result must be one of {', '.join(_RESULT_KINDS)}, got {result!r}")
        if json is not None and data is not None:
            raise ValueError("give json or data, not both")
        self.url, self.method = url, method.upper()
        # Credential-looking values are kept as Secrets, so no repr of the task shows them.
        self.headers = _guarded(headers)
        self.params = _guarded(params)
        self.json, self.data, self.result_kind = json, data, result
        self.expect_status = _expected(expect_status)
        self.session, self.max_bytes = session, max_bytes
        self.follow_redirects = follow_redirects
        options = client_resource_options(self, session, HTTP_RESOURCE, options)
        options = with_default_retry(options, _transient_errors(self.method))
        super().__init__(name, self._execute, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.method} {self._shown_url()}>"

    def _shown_url(self) -> str:
        return f"<{self.url!r}>" if isinstance(self.url, Credential) else redact_url(self.url)

    # -- the request -------------------------------------------------------------------

    async def _execute(self, context: RunContext | None = None) -> Any:
        require_asyncio(type(self).__name__, "aiohttp")
        url = resolve(self.url, context)
        if not url:
            raise HttpError(f"{self.name}: no URL (the secret {self.url!r} is not set)")
        headers = {k: resolve(v, context) or "" for k, v in self.headers.items()}
        if (parent := traceparent()) is not None and "traceparent" not in headers:
            headers["traceparent"] = parent  # the called service joins the attempt's trace
        params = {k: resolve(v, context) or "" for k, v in self.params.items()}
        secrets = self._secrets(url, headers, params, context)
        shown = (
            redact(redact_url(url), secrets) if not isinstance(self.url, Credential) else REDACTED
        )
        json, data = self.payload(context)
        request = _Request(self.method, url, headers, params or None, json, data)
        session_of = run_client(self.session, HTTP_RESOURCE, context, "session", open_session)
        async with session_of as session:
            try:
                return await self._send(session, request, shown, secrets)
            except aiohttp.ClientConnectorError as exc:
                raise _HttpNotSent(self.method, shown, redact(str(exc), secrets)) from exc
            except (aiohttp.ClientError, OSError) as exc:
                reason = redact(str(exc) or type(exc).__name__, secrets)
                raise _HttpMaybeSent(self.method, shown, reason) from exc
            except ValueError as exc:  # aiohttp's word for a request it cannot build
                reason = redact(str(exc), secrets)
                raise HttpError(f"{self.method} {shown}: bad request: {reason}") from exc

    def payload(self, context: RunContext | None) -> tuple[Any, Any]:
        """The ``(json, data)`` to send; subclasses build theirs from the context."""
        data = self.data if isinstance(self.data, bytes) else resolve(self.data, context)
        return self.json, data

    def _secrets(
        self,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str],
        context: RunContext | None,
    ) -> list[str]:
        found = [v for k, v in headers.items() if is_secret_name(k)]
        found += [headers[k] for k, v in self.headers.items() if isinstance(v, Credential)]
        found += [v for k, v in params.items() if is_secret_name(k)]
        found += [params[k] for k, v in self.params.items() if isinstance(v, Credential)]
        if isinstance(self.url, Credential):
            found.append(url)
        if isinstance(self.data, Credential):
            found.append(resolve(self.data, context) or "")
        # "Bearer <token>": the token alone must go too, wherever it is echoed.
        found += [v.split(" ", 1)[1] for v in list(found) if " " in v]
        return found

    async def _send(
        self,
        session: aiohttp.ClientSession,
        request: _Request,
        shown: str,
        secrets: list[str],
    ) -> Any:
        chain = [shown]
        for hop in range(MAX_REDIRECTS + 1):
            async with session.request(
                request.method, request.url, headers=request.headers, params=request.params,
                json=request.json, data=request.data, allow_redirects=False,
            ) as response:  # fmt: skip
                target = self._redirect_target(response, shown)
                if target is None:
                    if response.status not in self.expect_status:
                        raise await self._status_error(response, shown, secrets)
                    return await self._read(response, shown)
            if hop == MAX_REDIRECTS:
                break
            chain.append(redact(redact_url(str(target)), secrets))
            request = self._redirected(request, response, target, chain[-1], shown)
        raise HttpError(
            f"{self.method} {shown}: too many redirects ({MAX_REDIRECTS}): {' -> '.join(chain)}"
        )

    def _redirect_target(self, response: aiohttp.ClientResponse, shown: str) -> URL | None:
        location = response.headers.get("Location")
        if not self.follow_redirects or response.status not in _REDIRECTS or not location:
            return None
        try:
            target = response.url.join(URL(location))
        except ValueError as exc:
            raise HttpError(f"{self.method} {shown}: a redirect to a bad URL ({exc})") from exc
        if target.scheme not in ("http", "https"):
            raise HttpError(f"{self.method} {shown}: a redirect to a {target.scheme!r} URL")
        return target

    def _redirected(
        self, request: _Request, response: aiohttp.ClientResponse, target: URL, to: str, shown: str
    ) -> _Request:
        """The request a redirect asks for.

        303 (and 301/302 after a POST) becomes a GET without a body; 307 and 308
        keep the method and body. Leaving the origin (scheme, host or port)
        drops every credential header, and refuses to carry a body at all.
        """
        status, method = response.status, request.method
        json, data = request.json, request.data
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, json, data = "GET", None, None
        headers = request.headers
        if _origin(target) != _origin(response.url):
            if json is not None or data is not None:
                raise HttpError(
                    f"{self.method} {shown}: a {status} redirect to another origin ({to}) "
                    "would send the request body there; not followed"
                )
            headers = {k: v for k, v in headers.items() if not self._is_credential(k)}
        return _Request(method, target, headers, None, json, data)

    def _is_credential(self, header: str) -> bool:
        """A header that never leaves the origin the task was given."""
        return is_secret_name(header) or isinstance(self.headers.get(header), Credential)

    async def _status_error(
        self, response: aiohttp.ClientResponse, shown: str, secrets: list[str]
    ) -> HttpStatusError:
        raw = await response.content.read(_BODY_TAIL + margin(secrets))
        body = head_without_secrets(
            raw.decode("utf-8", errors="replace").strip(), _BODY_TAIL, secrets
        )
        if response.status in _TRANSIENT_STATUS:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if self.method in _IDEMPOTENT or response.status in _REFUSED_STATUS:
                return HttpTransientError(self.method, shown, response.status, body, retry_after)
        return HttpStatusError(self.method, shown, response.status, body)

    async def _read(self, response: aiohttp.ClientResponse, shown: str) -> Any:
        body = await self._bounded_body(response, shown)
        if self.result_kind == "json":
            try:
                return jsonlib.loads(body) if body else None
            except ValueError as exc:
                raise HttpError(f"{self.method} {shown}: the body is not JSON ({exc})") from exc
        if self.result_kind == "text":
            return body.decode(response.charset or "utf-8", errors="replace")
        if self.result_kind == "bytes":
            return body
        return HttpResponse(response.status, dict(response.headers), body, shown)

    async def _bounded_body(self, response: aiohttp.ClientResponse, shown: str) -> bytes:
        """The whole body, refusing (before reading it all) one larger than ``max_bytes``."""
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            body += chunk
            if self.max_bytes is not None and len(body) > self.max_bytes:
                raise HttpError(
                    f"{self.method} {shown}: the body exceeds max_bytes={self.max_bytes}"
                )
        return bytes(body)


def _default_alert(context: RunContext | None) -> str:
    if context is None:
        return "A pipeline task failed."
    failures = context.failures
    if not failures:
        return f"Run {context.run_id}: no upstream task failed."
    lines = [f"Run {context.run_id}: {len(failures)} task(s) failed"]
    lines += [f"• {key}: {type(err).__name__}: {err}" for key, err in failures.items()]
    return "\n".join(lines)


AlertText = str | Callable[[RunContext | None], str]


class SlackAlertTask(HttpTask):
    """Post a message to a Slack (or compatible) incoming webhook.

    ``text`` is a string, formatted with ``run_id``, ``failed_tasks`` (their keys,
    comma-separated) and ``failures`` (one line per failed upstream task with its
    error), or a function of the run context. The default lists the failures;
    pair it with ``trigger_rule="one_failed"``. The webhook URL is a secret: it
    defaults to ``$SLACK_WEBHOOK_URL`` and is never shown.
    """

    def __init__(
        self,
        name: str,
        webhook_url: CredentialValue | None = None,
        *,
        text: AlertText = _default_alert,
        **options: Any,
    ) -> None:
        self.text = text
        url = webhook_url if webhook_url is not None else Credential.from_env("SLACK_WEBHOOK_URL")
        # A webhook URL is its own credential: keep it a Credential so it is never shown.
        options.setdefault("result", "text")
        super().__init__(
            name, url if isinstance(url, Credential) else Credential(url), "POST", **options
        )

    def render(self, context: RunContext | None) -> str:
        """The message for this run."""
        if callable(self.text):
            return self.text(context)
        failures = context.failures if context is not None else {}
        lines = [f"• {k}: {type(e).__name__}: {e}" for k, e in failures.items()]
        return self.text.format_map(
            {
                "run_id": context.run_id if context is not None else "",
                "failed_tasks": ", ".join(failures),
                "failures": "\n".join(lines),
            }
        )

    def payload(self, context: RunContext | None) -> tuple[Any, Any]:
        return {"text": self.render(context)}, None
