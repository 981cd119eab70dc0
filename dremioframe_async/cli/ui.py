"""``ui``: serve the web UI over the run store until stopped."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from .._interrupts import interruptible
from ..store import RunStore
from ._common import EXIT_OK, UsageError, add_command, load_pipeline, with_store


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``ui`` to the command line."""
    sub = add_command(
        commands, common, "ui", cmd_ui, "serve the web UI over the run store until stopped"
    )
    sub.add_argument(
        "--pipeline",
        action="append",
        default=[],
        metavar="module:pipeline",
        help="a pipeline the UI can trigger and resume (repeat for more)",
    )
    sub.add_argument("--host", default="127.0.0.1", help="other than loopback needs auth")
    sub.add_argument("--port", type=int, default=8080)
    sub.add_argument(
        "--session-hours",
        type=float,
        default=12.0,
        help="how long a browser stays signed in after /login (default 12)",
    )
    sub.add_argument(
        "--max-streams",
        type=int,
        default=1000,
        help="live-update streams open at once; more get 503 (default 1000)",
    )
    sub.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password from stdin, print its hash for DREMIOFRAME_ASYNC_UI_PASSWORD_HASH",
    )


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM (or print a password hash)."""
    from ..ui._cli import prompt_password_hash, serve_store

    if args.hash_password:
        try:
            print(prompt_password_hash())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return EXIT_OK
    pipelines = [load_pipeline(ref) for ref in args.pipeline]

    async def work(store: RunStore) -> int:
        async def go(stop_cleanup: anyio.Event) -> int:
            await serve_store(
                store,
                pipelines,
                args.host,
                args.port,
                session_seconds=args.session_hours * 3600,
                max_streams=args.max_streams,
            )
            return EXIT_OK  # pragma: no cover - serving ends by a signal

        try:
            await interruptible(go)
        except ValueError as exc:  # refused to bind, or bad auth settings
            raise UsageError(str(exc)) from None
        return EXIT_OK  # Ctrl-C / SIGTERM is how a server is stopped

    return anyio.run(with_store, args.store, work)
