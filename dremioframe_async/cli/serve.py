"""``serve PATH...``: schedules, the UI and its API, and run execution, until stopped.

``PATH`` is a folder of pipeline modules (every ``*.py`` in it not starting with
``_``) or ``module:attr``. Every :class:`Pipeline` and :class:`Schedule` at the
top level of a module is served. A module that fails to import is reported, and
the others are served. A store that cannot be opened at start is an error (exit 4);
one lost later is retried. SIGTERM and Ctrl-C drain (see ``dremioframe_async.service``).
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
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/Ctrl-C, how long running runs get to finish before they are cancelled",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return value


def load_targets(paths: list[str]) -> tuple[list[Pipeline | Schedule], list[str]]:
    """Pipelines and schedules found in ``paths``, and one line per module that failed.

    Different pipelines sharing a name are all left out (with their schedules),
    with one line naming their modules: which one was meant cannot be told.
    """
    found: list[tuple[str, Pipeline | Schedule]] = []
    errors: list[str] = []
    for path in paths:
        for source, load in _loaders(path):
            try:
                found.extend((source, item) for item in load())
            except Exception as exc:
                errors.append(f"{source}: {exc}")
    clashes = _clashes(found)
    for name, sources in clashes.items():
        errors.append(
            f"{', '.join(sources)}: different pipelines are named {name!r}; none of them is served"
        )
    return [item for _, item in found if _pipeline(item).name not in clashes], errors


def _pipeline(item: Pipeline | Schedule) -> Pipeline:
    return item.pipeline if isinstance(item, Schedule) else item


def _clashes(found: list[tuple[str, Pipeline | Schedule]]) -> dict[str, list[str]]:
    """The names two different pipelines share, each with the modules defining them."""
    seen: dict[str, list[tuple[Pipeline, str]]] = {}
    for source, item in found:
        pipeline = _pipeline(item)
        same = seen.setdefault(pipeline.name, [])
        if not any(known is pipeline for known, _ in same):
            same.append((pipeline, source))
    return {name: [s for _, s in same] for name, same in seen.items() if len(same) > 1}


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
        # A store that cannot be opened now (a wrong URL, a database that does not
        # exist) is an error at start, not a "serving" line followed by retries.
        await store.list_runs(limit=1)

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
