"""Serving the UI on its own (what ``dremioframe-async ui`` does)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anyio
from aiohttp import web

from ._security import check_bind
from ._state import UI_KEY, UIState

__all__ = ["serve"]


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
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
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
