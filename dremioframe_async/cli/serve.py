"""``serve PATH...``: schedules, the UI and its API, and run execution, until stopped.

``PATH`` is a folder of pipeline modules (every ``*.py`` in it not starting with
``_``) or ``module:attr``. Every :class:`Pipeline` and :class:`Schedule` at the
top level of a module is served. A module that fails to import is reported, and
the others are served. SIGTERM and Ctrl-C drain (see ``dremioframe_async.service``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from .._interrupts import interruptible
from ..orchestration import Pipeline
from ..schedule import Schedule
from ..store import RunStore
from ._common import (
    EXIT_OK,
    UsageError,
    _import,
    _import_file,
    add_command,
    error_line,
    load_pipeline,
    positive_int,
    with_store,
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``serve`` to the command line."""
    text = "serve pipelines: run their schedules, the UI and API, and queued runs, until stopped"
    sub = add_command(commands, common, "serve", cmd_serve, text)
    sub.add_argument(
        "paths", nargs="+", metavar="PATH", help="a folder of pipeline modules, or module:attr"
    )
    sub.add_argument("--host", default="127.0.0.1", help="other than loopback needs auth")
    sub.add_argument("--port", type=int, default=8080)
    sub.add_argument("--max-runs", type=positive_int, metavar="N", help="runs at once here")
    sub.add_argument(
        "--drain-grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/Ctrl-C, how long running runs get to finish before they are cancelled",
    )


def load_targets(paths: list[str]) -> tuple[list[Pipeline | Schedule], list[str]]:
    """Pipelines and schedules found in ``paths``, and one line per module that failed."""
    found: list[Pipeline | Schedule] = []
    errors: list[str] = []
    for path in paths:
        for source, load in _loaders(path):
            try:
                found.extend(load())
            except Exception as exc:
                errors.append(f"{source}: {exc}")
    return found, errors


def _loaders(path: str) -> Iterator[tuple[str, Any]]:
    folder = Path(path)
    if folder.is_dir():
        modules = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
        if not modules:
            raise UsageError(f"{path} holds no pipeline modules (*.py)")
        for module in modules:
            yield str(module), lambda m=module: _served(_import_file(m))
    elif ":" in path:
        yield path, lambda: [_reference(path)]
    else:
        raise UsageError(f"{path!r} is neither a folder nor module:attr")


def _served(module: Any) -> list[Pipeline | Schedule]:
    return [v for v in vars(module).values() if isinstance(v, Pipeline | Schedule)]


def _reference(ref: str) -> Pipeline | Schedule:
    module, _, attr = ref.rpartition(":")
    value = getattr(_import(module), attr, None)
    return value if isinstance(value, Schedule) else load_pipeline(ref)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C; a second one stops the cleanup of cancelled runs."""
    from ..service import serve
    from ..ui._security import auth_from_env

    items, errors = load_targets(args.paths)
    for line in errors:
        error_line("serve", f"not served: {line}")
    if not items:
        raise UsageError("nothing to serve: no Pipeline or Schedule was found")
    auth = auth_from_env()

    async def work(store: RunStore) -> int:
        def ready(url: str) -> None:
            names = sorted({(i.pipeline if isinstance(i, Schedule) else i).name for i in items})
            print(f"serving {', '.join(names)} at {url} over {store!r}", flush=True)
            for each in items:
                if isinstance(each, Schedule):
                    print(f"schedule: {each.pipeline.name} {each.describe()}", flush=True)

        async def go(stop_cleanup: anyio.Event) -> int:
            await serve(
                items,
                store,
                host=args.host,
                port=args.port,
                max_runs=args.max_runs,
                drain_grace=args.drain_grace,
                auth=auth,
                stop_cleanup=stop_cleanup,
                on_ready=ready,
            )
            return EXIT_OK  # pragma: no cover - serving ends by a signal

        try:
            await interruptible(go)
        except ValueError as exc:  # refused to bind, or bad auth settings
            raise UsageError(str(exc)) from None
        print("stopped: every run of this process has ended", file=sys.stderr, flush=True)
        return EXIT_OK  # SIGTERM / Ctrl-C is how a service is stopped

    return anyio.run(with_store, args.store, work)
