"""Serving the UI on its own (what ``dremioframe-async ui`` does)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from aiohttp import web

from ._security import check_bind
from ._state import UI_KEY

__all__ = ["serve"]


async def serve(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    on_ready: Callable[[str], object] | None = None,
) -> None:
    """Serve ``app`` (from :func:`ui_app`) until cancelled, then stop it cleanly.

    ``on_ready`` gets the URL once the server listens (``port=0`` picks a free port).

    :raises UnsafeBind: (a ``ValueError``) for a non-loopback ``host`` without auth,
        before anything listens.
    """
    check_bind(host, app[UI_KEY].guard.auth)
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
