"""``dremioframe-async ui``: serve the UI over a store until Ctrl-C."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence

from ..orchestration import Pipeline
from ..store import RunStore
from ._app import MAX_STREAMS, ui_app
from ._security import SESSION_SECONDS, auth_from_env, check_bind, hash_password
from ._serve import serve

__all__ = ["prompt_password_hash", "serve_store"]


def prompt_password_hash() -> str:
    """Read a password (twice on a terminal, once from a pipe) and return its hash.

    :raises ValueError: when the password is empty or the two entries differ.
    """
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise ValueError("the password is empty")
    return hash_password(password)


async def serve_store(
    store: RunStore,
    pipelines: Sequence[Pipeline],
    host: str,
    port: int,
    *,
    session_seconds: float = SESSION_SECONDS,
    max_streams: int = MAX_STREAMS,
) -> None:
    """Serve the UI over ``store`` until cancelled; auth comes from the environment.

    :raises UnsafeBind: (a ``ValueError``) for a non-loopback ``host`` without auth.
    :raises ValueError: for ``session_seconds`` <= 0 or ``max_streams`` < 1.
    """
    auth = auth_from_env()
    check_bind(host, auth)
    app = ui_app(store, pipelines, auth, session_seconds=session_seconds, max_streams=max_streams)

    def ready(url: str) -> None:
        kinds = ", ".join(type(a).__name__ for a in auth) or "none (loopback only)"
        print(f"serving the UI at {url} over {store!r}; auth: {kinds}", flush=True)

    await serve(app, host, port, on_ready=ready)
