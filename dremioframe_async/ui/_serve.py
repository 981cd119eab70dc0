"""Serving the UI on its own (what ``dremioframe-async ui`` does)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from http import HTTPStatus

import anyio
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from ._security import SECURITY_HEADERS, check_bind
from ._state import UI_KEY, UIState

log = logging.getLogger("dremioframe_async.ui")

__all__ = ["app_runner", "serve"]


async def serve(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    on_ready: Callable[[str], object] | None = None,
) -> None:
    """Serve ``app`` until cancelled, then stop it cleanly.

    ``app`` is a :func:`ui_app` or an application that mounts one. ``on_ready``
    gets the URL once the server listens (``port=0`` picks a free port).

    :raises UnsafeBind: (a ``ValueError``) for a non-loopback ``host`` when a UI in
        ``app`` has no auth, before anything listens.
    """
    for ui in _uis(app):
        check_bind(host, ui.guard.auth)
    runner = app_runner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        if on_ready is not None:
            bound = runner.addresses[0][1] if runner.addresses else port
            shown = f"[{host}]" if ":" in host else host
            on_ready(f"http://{shown}:{bound}/")
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await runner.cleanup()


def _uis(app: web.Application) -> Iterator[UIState]:
    """The UIs in ``app``: itself, or its sub-applications, at any depth."""
    if UI_KEY in app:
        yield app[UI_KEY]
    # aiohttp keeps sub-applications here; it has no public accessor for them.
    for sub in getattr(app, "_subapps", ()):
        yield from _uis(sub)


class _QuietHandler(RequestHandler):
    """Answers what aiohttp refuses before any handler runs (a request line over
    8,190 bytes, malformed headers) like the UI answers: with its security headers,
    without echoing the input, and with one log line instead of a traceback."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response is under way: aiohttp's rule
            return super().handle_error(request, status, exc, message)
        if status >= 500:
            log.error("the UI failed to answer a request from %s: %r", request.remote, exc)
        else:
            log.info("refused a malformed request from %s (%s)", request.remote, status)
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        response = web.Response(
            status=status, text=f"{status} {phrase}\n", headers=SECURITY_HEADERS
        )
        response.force_close()
        return response


class _QuietServer(Server):
    def __call__(self) -> RequestHandler:
        return _QuietHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # aiohttp builds its Server in Application._make_handler, with no hook for the
        # handler class: the subclass only swaps which RequestHandler it makes.
        server.__class__ = _QuietServer
        return server


def app_runner(app: web.Application) -> web.AppRunner:
    """An ``AppRunner`` for an application that holds a UI: requests aiohttp refuses
    before any handler (oversized, malformed) are answered with the UI's headers."""
    return _Runner(app, access_log=None, shutdown_timeout=5.0)
