"""``ui_app()``: the aiohttp application, its middleware (auth, CSRF, headers) and sign-in."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import anyio
from aiohttp import web
from yarl import URL

from .._metrics import enable_metrics
from ..orchestration import Pipeline
from ..store import RunInfo, RunStore, TaskInfo
from . import _forms as forms
from ._actions import add_action_routes
from ._api import add_api_routes
from ._launcher import PipelineEntry, RunLauncher
from ._live import LiveRuns
from ._logs import add_log_routes
from ._metrics import add_metrics_route
from ._respond import html_page, json_error
from ._security import (
    CSRF_COOKIE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Auth,
    BasicAuth,
    BearerAuth,
    Guard,
    TooManyFailures,
    is_loopback,
)
from ._state import CSRF_KEY, KIND_KEY, UI_KEY, RequestUrls, UIState
from ._streams import StreamHub
from ._views import add_page_routes

__all__ = ["run_launcher", "run_listener", "ui_app"]

log = logging.getLogger("dremioframe_async.ui")
STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Reachable without credentials: the sign-in page and the stylesheet and script.
_OPEN_ROUTES = frozenset({"login", "login_post", "static"})
# Headers a reverse proxy adds: without auth, the UI answers only its own host's
# clients, and a proxy on that host would hand it the network's.
_FORWARDED = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
TARPIT = 1.0  # seconds a throttled request waits before its 429
MAX_STREAMS = 1000  # open live-update streams; each holds a connection and a coroutine
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def ui_app(
    store: RunStore,
    pipelines: Iterable[Pipeline | PipelineEntry] | None = None,
    auth: Auth | Sequence[Auth] | None = None,
    *,
    poll_interval: float = 1.0,
    max_runs: int | None = None,
    session_seconds: float = SESSION_SECONDS,
    max_streams: int = MAX_STREAMS,
) -> web.Application:
    """The web UI over ``store``, as an application to serve or mount as a sub-app.

    ``app.add_subapp("/pipelines/", ui_app(store, [etl]))``. ``pipelines`` are the
    ones the UI can trigger and resume (a :class:`PipelineEntry` adds a schedule,
    which the UI runs and can pause, and the trigger form's default params); the
    pipelines page also lists every other pipeline the store has runs of. Runs of
    this process show live once their events reach
    :func:`run_listener`; the UI's own runs always do. Other runs are read from the
    store every ``poll_interval`` seconds. Without ``auth`` only loopback clients
    are answered, and never through a proxy (a request with ``Forwarded`` or
    ``X-Forwarded-*`` headers is refused). Triggers queue runs in ``store``; the UI
    runs the queued runs of its pipelines (at most ``max_runs`` at once), as every
    process serving them does. A browser session opened on ``/login`` lasts
    ``session_seconds`` (12 h by default) or until ``/logout``. At most
    ``max_streams`` live-update streams are open at once; more get 503 with
    ``Retry-After``.

    :raises ValueError: for two pipelines with one name, a ``poll_interval`` or
        ``session_seconds`` <= 0, or ``max_streams`` < 1.
    """
    entries = _entries(pipelines or ())
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")
    auths: tuple[Auth, ...] = (
        (auth,) if isinstance(auth, BearerAuth | BasicAuth) else tuple(auth or ())
    )
    live = LiveRuns()
    streams = StreamHub(max_streams, partial(_read_stored, store), poll_interval)
    state = UIState(
        store=store,
        pipelines=entries,
        live=live,
        launcher=RunLauncher(store, entries, live, max_runs=max_runs),
        guard=Guard(auths, session_seconds=session_seconds),
        poll_interval=poll_interval,
        streams=streams,
    )
    registry = enable_metrics()  # GET /metrics reports this process's runs from now on
    for name in entries:  # served pipelines first among the labelled ones (PIPELINE_LABELS)
        registry.pipeline_label(name)
    app = web.Application(middlewares=[_headers, _guard])
    app[UI_KEY] = state
    app.cleanup_ctx.append(_lifespan)
    app.on_shutdown.append(_closing)
    _routes(app.router)
    return app


async def _read_stored(store: RunStore, run_id: str) -> tuple[RunInfo, Sequence[TaskInfo]]:
    run = await store.get_run(run_id)
    return run, await store.get_tasks(run_id)


def run_listener(app: web.Application) -> LiveRuns:
    """The ``on_event`` listener that shows this process's runs live in the UI ``app``.

    ``await pipeline.run(store=store, on_event=run_listener(ui))``.
    """
    return app[UI_KEY].live


def run_launcher(app: web.Application) -> RunLauncher:
    """The UI's launcher: ``await run_launcher(ui).trigger("etl", {"day": ...})`` starts a
    run in the UI's loop, recorded in its store and cancellable from its pages."""
    return app[UI_KEY].launcher


def _entries(pipelines: Iterable[Pipeline | PipelineEntry]) -> dict[str, PipelineEntry]:
    entries: dict[str, PipelineEntry] = {}
    for item in pipelines:
        entry = item if isinstance(item, PipelineEntry) else PipelineEntry(item)
        if not isinstance(entry.pipeline, Pipeline):
            raise TypeError(f"pipelines= takes Pipeline or PipelineEntry objects, got {item!r}")
        if entry.pipeline.name in entries:
            raise ValueError(f"two pipelines named {entry.pipeline.name!r}")
        entries[entry.pipeline.name] = entry
    return entries


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    state = app[UI_KEY]
    state.closing = anyio.Event()
    try:
        async for _ in state.launcher.lifespan():
            yield
    finally:
        state.guard.close()


async def _closing(app: web.Application) -> None:
    # Open event streams end here; aiohttp's cleanup would otherwise wait for them.
    if (closing := app[UI_KEY].closing) is not None:
        closing.set()


def _routes(router: web.UrlDispatcher) -> None:
    add_page_routes(router)
    add_action_routes(router)
    router.add_get("/login", login_handler, name="login")
    router.add_post("/login", login_post, name="login_post")
    router.add_post("/logout", logout_post, name="logout")
    add_api_routes(router)
    add_log_routes(router)
    add_metrics_route(router)
    router.add_static("/static/", STATIC, name="static", append_version=False)


# ---------------------------------------------------------------- middleware


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    except Exception:
        # Answer here, with the headers and without the traceback (it is logged).
        log.exception("the UI failed to answer %s %s", request.method, request.path)
        response = web.Response(status=500, text="internal error (logged by the server)")
    if not response.prepared:  # a stream has sent its headers already (set below)
        response.headers.update(SECURITY_HEADERS)
    return response


def _wants_html(request: web.Request) -> bool:
    return not request.path.startswith(_api_prefix(request)) and "text/html" in request.headers.get(
        "Accept", ""
    )


def _api_prefix(request: web.Request) -> str:
    return str(request.app.router["api_runs"].url_for()).rsplit("/runs", 1)[0]


def cookie_name(request: web.Request, name: str) -> str:
    """``name``, as a ``__Host-`` cookie over HTTPS: a sibling host or a plain-HTTP page
    of the same host cannot set those (nor can they carry a Domain)."""
    return f"__Host-{name}" if request.secure else name


async def _identify(request: web.Request, guard: Guard) -> tuple[str, str] | None:
    """``(kind, binding)``: kind is ``bearer``, ``basic``, ``session`` or ``anonymous``,
    and binding what a CSRF token of this requester is bound to. None: not allowed in.

    :raises TooManyFailures: for a client that failed to sign in too often lately.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    client = request.remote or ""
    if scheme.lower() == "bearer" and guard.bearer:
        return ("bearer", "") if guard.token_ok(credentials.strip(), client) else None
    if scheme.lower() == "basic" and guard.basic:
        if await guard.basic_ok(credentials.strip(), client):
            return "basic", f"basic {credentials.strip()}"
        return None
    session = request.cookies.get(cookie_name(request, SESSION_COOKIE))
    if guard.session_ok(session):
        return "session", f"session {session}"
    if not guard.auth:
        # A loopback peer, and a loopback Host too: a page whose DNS name was rebound
        # to 127.0.0.1 (the browser then sends its own name) gets nothing. Nor does a
        # request a proxy passed on: its peer is the proxy, not the client.
        host = URL(f"//{request.host}").host
        proxied = any(h in request.headers for h in _FORWARDED)
        local = is_loopback(request.remote) and is_loopback(host) and not proxied
        return ("anonymous", "") if local else None
    return None


def _same_origin(request: web.Request) -> bool:
    """Whether a state-changing request comes from the UI's own pages, as far as the
    browser says: ``Origin`` equal to the UI's (scheme aside: a proxy may end TLS),
    else a ``Sec-Fetch-Site`` of ``same-origin`` or ``none``. Under the UI's
    ``Referrer-Policy: no-referrer`` Chromium sends ``Origin: null`` even for its own
    forms, so ``null`` defers to ``Sec-Fetch-Site`` (and is refused without it).
    Clients that send neither header (scripts, curl) are judged by the CSRF token."""
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if origin is not None and origin != "null":
        try:
            sent, ours = URL(origin), URL(f"//{request.host}")
        except ValueError:
            return False
        return (
            sent.host is not None
            and sent.host.lower() == (ours.host or "").lower()
            and sent.explicit_port == ours.explicit_port
        )
    if origin == "null" and site is None:
        return False
    return site in (None, "same-origin", "none")


def _refuse(request: web.Request, guard: Guard) -> web.StreamResponse:
    if not guard.auth:
        text = (
            "this UI has no auth configured and answers loopback clients (by a loopback name, "
            "not through a proxy) only"
        )
        return json_error(text, 403)
    if _wants_html(request) and guard.bearer and "Authorization" not in request.headers:
        # The sign-in page takes the token (and the password when basic auth is on too):
        # a basic challenge here would leave a browser no way to give the token.
        raise web.HTTPSeeOther(RequestUrls(request).login())
    response = json_error("authentication required", 401)
    challenge = 'Basic realm="dremioframe_async", charset="UTF-8"' if guard.basic else "Bearer"
    response.headers["WWW-Authenticate"] = challenge
    return response


async def _csrf_sent(request: web.Request) -> str | None:
    if (token := request.headers.get("X-CSRF-Token")) is not None:
        return token
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def too_many(exc: TooManyFailures) -> web.Response:
    """429 with ``Retry-After`` for a client that failed to sign in too often, after a
    short pause: a client hammering the UI then holds its connections instead of the
    event loop, and signed-in users stay served."""
    await anyio.sleep(min(TARPIT, exc.retry_after / 2))  # never past the lockout itself
    response = json_error(str(exc), 429)
    response.headers["Retry-After"] = str(math.ceil(exc.retry_after))
    return response


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[UI_KEY].guard
    route = request.match_info.route.resource
    name = route.name if route is not None else None
    try:
        found = await _identify(request, guard)
    except TooManyFailures as exc:
        return await too_many(exc)
    if found is None and name not in _OPEN_ROUTES:
        return _refuse(request, guard)
    kind, binding = found or ("", "")
    request[KIND_KEY] = kind
    csrf_cookie = cookie_name(request, CSRF_COOKIE)
    cookie = request.cookies.get(csrf_cookie)
    fresh = not guard.csrf_valid(cookie, binding)
    request[CSRF_KEY] = guard.new_csrf(binding) if fresh or cookie is None else cookie
    if request.method not in _SAFE_METHODS and kind != "bearer":
        if not _same_origin(request):
            return json_error("cross-origin request refused", 403)
        if not guard.csrf_matches(cookie, await _csrf_sent(request), binding):
            return json_error("missing or wrong CSRF token (reload the page and try again)", 403)
    response = await handler(request)
    if fresh and not response.prepared:
        response.set_cookie(
            csrf_cookie,
            request[CSRF_KEY],
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
    return response


# ---------------------------------------------------------------- signing in


async def login_handler(request: web.Request) -> web.Response:
    failed = request.query.get("failed") == "1"
    guard = request.app[UI_KEY].guard
    form = forms.login_page(
        RequestUrls(request), request[CSRF_KEY], failed, token=guard.bearer, password=guard.basic
    )
    return html_page(request, "Sign in", form)


async def _signed_in(request: web.Request, guard: Guard) -> bool:
    """Whether the sign-in form holds the bearer token, or a basic user's password.

    :raises TooManyFailures: for a client that failed too often lately.
    """
    form = await request.post()
    token, user, password = (form.get(k) for k in ("token", "user", "password"))
    client = request.remote or ""
    if guard.bearer and isinstance(token, str) and token:
        return guard.token_ok(token, client)
    if guard.basic and isinstance(user, str) and isinstance(password, str) and user:
        return await guard.password_ok(user, password, client)
    return False


async def login_post(request: web.Request) -> web.Response:
    guard = request.app[UI_KEY].guard
    urls = RequestUrls(request)
    try:
        ok = await _signed_in(request, guard)
    except TooManyFailures as exc:
        return await too_many(exc)
    if not ok:
        raise web.HTTPSeeOther(urls.login() + "?failed=1")
    response = web.HTTPSeeOther(urls.runs())
    response.set_cookie(
        cookie_name(request, SESSION_COOKIE),
        guard.open_session(),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=max(1, math.ceil(guard.session_seconds)),
    )
    raise response


async def logout_post(request: web.Request) -> web.Response:
    guard = request.app[UI_KEY].guard
    name = cookie_name(request, SESSION_COOKIE)
    guard.close_session(request.cookies.get(name))
    response = web.HTTPSeeOther(RequestUrls(request).login())
    response.del_cookie(name, path="/")
    raise response
