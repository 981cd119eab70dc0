"""The ``dremioframe-async`` command line.

::

    dremioframe-async run module:pipeline [--store URL] [--param k=v ...] [--resume RUN_ID]
    dremioframe-async runs [--pipeline NAME] [--limit N]
    dremioframe-async show RUN_ID
    dremioframe-async graph module:pipeline
    dremioframe-async schedule module:pipeline (--cron EXPR | --interval SECONDS)
    dremioframe-async demo [args ...]
    dremioframe-async ui [--pipeline module:pipeline ...] [--host 127.0.0.1] [--port 8080]

``module:pipeline`` names a :class:`Pipeline` or a zero-argument callable
returning one; ``module`` is a dotted module (importable from the current
directory) or a path to a ``.py`` file. The store is ``--store URL``, else
``$DREMIOFRAME_ASYNC_STORE``, else a SQLite file under ``$XDG_DATA_HOME`` (or
``~/.local/share``) ``/dremioframe_async/runs.sqlite``.

Exit codes: 0 success, 1 the pipeline failed, 2 usage error (bad arguments,
an unloadable ``module:pipeline``, an unknown run id or store URL), 130
interrupted (Ctrl-C / SIGINT or SIGTERM; the run is recorded as CANCELLED).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from .errors import DremioFrameError
from .orchestration import Event, Pipeline, RunFinished, RunResult, RunStatus
from .progress import Progress, format_duration, format_table, one_line
from .store import RunInfo, RunStore, StoreURLError, TaskInfo, default_store_url, open_store

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(DremioFrameError):
    """Bad command-line input; reported on stderr with exit code 2."""


# ---------------------------------------------------------------- loading pipelines


def load_pipeline(ref: str) -> Pipeline:
    """Resolve ``module:attr`` (dotted module or ``path/to/file.py``) to a Pipeline.

    :raises UsageError: when the reference is malformed or does not lead to a Pipeline.
    """
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected module:pipeline (e.g. my_etl:pipeline), got {ref!r}")
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Pipeline):
        obj = obj()
    if not isinstance(obj, Pipeline):
        raise UsageError(f"{ref} is a {type(obj).__name__}, not a Pipeline (or a factory of one)")
    return obj


def _import(name: str) -> Any:
    if name.endswith(".py") or os.sep in name:
        return _import_file(Path(name))
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # console scripts do not put the cwd on sys.path
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise UsageError(
                f"no module named {name!r} (run from its directory or give a .py path)"
            ) from None
        raise


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # let it import its siblings
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs; each value is parsed as JSON when it is JSON, else kept as text.

    :raises UsageError: for a pair without ``=``.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param takes key=value, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


# ---------------------------------------------------------------- running


async def _until_signal(scope: anyio.CancelScope, caught: list[int]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            caught.append(signum)
            scope.cancel()
            return


async def _interruptible(work: Callable[[], Awaitable[int]]) -> int:
    """Run ``work``; SIGINT/SIGTERM cancel it (the engine records the run CANCELLED)."""
    caught: list[int] = []
    code = EXIT_INTERRUPTED
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_until_signal, tg.cancel_scope, caught)
            code = await work()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One error (a bad resume id, a cron typo) should read as itself, not as a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return EXIT_INTERRUPTED if caught else code


async def _with_store(url: str | None, work: Callable[[RunStore], Awaitable[int]]) -> int:
    store = open_store(url or default_store_url())
    try:
        return await work(store)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await store.aclose()


def _cmd_run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.pipeline)
    params = parse_params(args.param)
    progress = Progress(sys.stderr)

    async def work(store: RunStore) -> int:
        async def go() -> int:
            result = await pipeline.run(
                params or None, store=store, on_event=progress, resume=args.resume
            )
            return _report(result, progress)

        code = await _interruptible(go)
        if code == EXIT_INTERRUPTED:
            print(f"run {progress.run_id} interrupted: recorded as CANCELLED", file=sys.stderr)
        return code

    return anyio.run(_with_store, args.store, work)


def _report(result: RunResult, progress: Progress) -> int:
    print(progress.summary())
    print(f"\nrun {result.run_id} {result.status} in {format_duration(result.duration)}")
    return EXIT_OK if result.status is RunStatus.SUCCESS else EXIT_FAILED


def _cmd_schedule(args: argparse.Namespace) -> int:
    from .schedule import schedule_pipeline

    pipeline = load_pipeline(args.pipeline)
    params = parse_params(args.param)

    def announce(event: Event) -> None:
        if isinstance(event, RunFinished):
            took = format_duration(event.time - event.started)
            print(f"run {event.run_id} {event.status} in {took}", flush=True)

    async def work(store: RunStore) -> int:
        async def go() -> int:
            await schedule_pipeline(
                pipeline,
                interval=args.interval,
                cron=args.cron,
                overlap=args.overlap,
                catch_up=args.catch_up,
                store=store,
                context=params or None,
                max_runs=args.max_runs,
                on_event=announce,
            )
            return EXIT_OK

        return await _interruptible(go)

    return anyio.run(_with_store, args.store, work)


# ---------------------------------------------------------------- reading history


def _when(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _runs_table(runs: Sequence[RunInfo]) -> str:
    rows = [
        (
            r.run_id,
            r.pipeline,
            r.status.value,
            _when(r.started),
            format_duration(r.duration),
            f"{r.counts.get('SUCCESS', 0)}/{sum(r.counts.values())}",
        )
        for r in runs
    ]
    return format_table(("RUN ID", "PIPELINE", "STATUS", "STARTED", "DURATION", "OK/TASKS"), rows)


def _cmd_runs(args: argparse.Namespace) -> int:
    async def work(store: RunStore) -> int:
        runs = await store.list_runs(pipeline=args.pipeline, limit=args.limit)
        print(_runs_table(runs) if runs else "no runs recorded")
        return EXIT_OK

    return anyio.run(_with_store, args.store, work)


def _task_rows(tasks: Sequence[TaskInfo]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for t in tasks:
        took = None if t.started is None or t.finished is None else t.finished - t.started
        last = t.attempts[-1] if t.attempts else None
        error = f"{last.error_type}: {last.error_message}" if last and last.error_type else ""
        note = error or t.reason or (t.result_note and f"result {t.result_type}: {t.result_note}")
        rows.append((t.key, t.state.value, len(t.attempts), format_duration(took), one_line(note)))
    return rows


def _show(run: RunInfo, tasks: Sequence[TaskInfo]) -> str:
    lines = [
        f"run       {run.run_id}",
        f"pipeline  {run.pipeline}",
        f"status    {run.status.value}",
        f"started   {_when(run.started)}",
        f"finished  {_when(run.finished)}  ({format_duration(run.duration)})",
        f"params    {json.dumps(dict(run.params))}",
    ]
    if run.resumed_from:
        lines.append(f"resumed   from {run.resumed_from}")
    headers = ("TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR / REASON")
    lines += ["", format_table(headers, _task_rows(tasks))]
    for t in tasks:
        for a in t.attempts:
            if a.error_type:
                lines += ["", f"{t.key} attempt {a.number}: {a.error_type}: {a.error_message}"]
                lines += ["    " + ln for ln in (a.error_traceback or "").rstrip().splitlines()]
    return "\n".join(lines)


def _cmd_show(args: argparse.Namespace) -> int:
    async def work(store: RunStore) -> int:
        try:
            run = await store.get_run(args.run_id)
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        print(_show(run, await store.get_tasks(args.run_id)))
        return EXIT_OK

    return anyio.run(_with_store, args.store, work)


def _cmd_graph(args: argparse.Namespace) -> int:
    print(load_pipeline(args.pipeline).visualize())
    return EXIT_OK


def _cmd_ui(args: argparse.Namespace) -> int:
    from .ui._cli import prompt_password_hash, serve_store

    if args.hash_password:
        try:
            print(prompt_password_hash())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return EXIT_OK
    pipelines = [load_pipeline(ref) for ref in args.pipeline]

    async def work(store: RunStore) -> int:
        async def go() -> int:
            await serve_store(store, pipelines, args.host, args.port)
            return EXIT_OK  # pragma: no cover - serving ends by a signal

        try:
            await _interruptible(go)
        except ValueError as exc:  # refused to bind, or bad auth settings
            raise UsageError(str(exc)) from None
        return EXIT_OK  # Ctrl-C / SIGTERM is how a server is stopped

    return anyio.run(_with_store, args.store, work)


def _cmd_demo(args: argparse.Namespace) -> int:
    return _demo(list(args.args))


def _demo(argv: list[str]) -> int:
    try:
        demo = importlib.import_module("dremioframe_async.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "dremioframe_async.demo":
            raise
        print("the demo is not part of this installation of dremioframe_async", file=sys.stderr)
        return EXIT_FAILED
    code = demo.main(argv)
    return int(code or 0)


# ---------------------------------------------------------------- argument parsing


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dremioframe-async",
        description="Run, schedule and inspect dremioframe_async pipelines.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store_help = "run store URL (default: $DREMIOFRAME_ASYNC_STORE or the user's SQLite file)"

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> Any:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        if name not in ("graph", "demo"):
            sub.add_argument("--store", metavar="URL", help=store_help)
        return sub

    run = command("run", _cmd_run, "run a pipeline once, with live progress")
    run.add_argument("pipeline", metavar="module:pipeline")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--resume", metavar="RUN_ID", help="re-run only what did not succeed")
    runs = command("runs", _cmd_runs, "list recorded runs, newest first")
    runs.add_argument("--pipeline", metavar="NAME")
    runs.add_argument("--limit", type=int, default=20, metavar="N")
    show = command("show", _cmd_show, "show one run's tasks, attempts and errors")
    show.add_argument("run_id", metavar="RUN_ID")
    graph = command("graph", _cmd_graph, "print a pipeline's graph as Mermaid")
    graph.add_argument("pipeline", metavar="module:pipeline")
    _schedule_args(command("schedule", _cmd_schedule, "run a pipeline on a schedule until stopped"))
    _ui_args(command("ui", _cmd_ui, "serve the web UI over the run store until stopped"))
    demo = command("demo", _cmd_demo, "run the bundled demo")
    demo.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _schedule_args(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("pipeline", metavar="module:pipeline")
    when = sub.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='e.g. "*/5 * * * *" (local time)')
    when.add_argument("--interval", type=float, metavar="SECONDS")
    sub.add_argument("--overlap", choices=("skip", "queue", "allow"), default="skip")
    sub.add_argument("--catch-up", action="store_true", help="run fires that were missed")
    sub.add_argument("--max-runs", type=int, metavar="N")
    sub.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")


def _ui_args(sub: argparse.ArgumentParser) -> None:
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
        "--hash-password",
        action="store_true",
        help="read a password from stdin, print its hash for DREMIOFRAME_ASYNC_UI_PASSWORD_HASH",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dremioframe-async``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        # Everything after "demo" belongs to the demo, options included (REMAINDER
        # in a subparser would reject a leading option).
        return _demo(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (UsageError, StoreURLError) as exc:
        print(f"dremioframe-async {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (LookupError, ValueError) as exc:
        if args.command not in ("run", "schedule"):
            raise
        # A resume id the store does not know, a resume of another pipeline, a bad cron.
        print(f"dremioframe-async {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
