"""The ``dremioframe-async`` command line.

::

    dremioframe-async run module:pipeline [--store URL] [--param k=v ...] [--resume RUN_ID]
    dremioframe-async runs [--pipeline NAME] [--limit N]
    dremioframe-async show RUN_ID
    dremioframe-async graph module:pipeline
    dremioframe-async schedule module:pipeline (--cron EXPR | --interval SECONDS)
    dremioframe-async demo [args ...]
    dremioframe-async ui [--pipeline module:pipeline ...] [--host 127.0.0.1] [--port 8080]
    dremioframe-async bench dremio|engine [options]   (see dremioframe_async.bench)

``module:pipeline`` names a :class:`Pipeline`, or a function declared to
return one (``def build() -> Pipeline``) taking no arguments; nothing else is
ever called. ``module`` is a dotted module (importable from the current
directory) or a path to a ``.py`` file. ``run``, ``graph`` and ``schedule``
import that module, which executes its top-level code: name only code you trust.
Installed modules win over files of the same name in the current directory or
beside the ``.py`` file. The store is ``--store URL``, else
``$DREMIOFRAME_ASYNC_STORE``, else a SQLite file under ``$XDG_DATA_HOME`` (or
``~/.local/share``) ``/dremioframe_async/runs.sqlite``.

``show`` takes any unique prefix of a run id. Errors in arguments, in the
pipeline's module (an import error) or in its definition (a cycle) are one line
on stderr naming the exception type; ``--traceback`` prints the rest.

Ctrl-C (SIGINT, or SIGTERM) cancels the run: running tasks are cancelled, its
``all_done``/``always`` cleanup tasks still run (for up to the pipeline's
``cleanup_grace``), the summary table is printed and the run is recorded as
CANCELLED. A second Ctrl-C stops the cleanup too.

Exit codes: 0 success, 1 the pipeline failed (or an unexpected error), 2 usage
or definition error (bad arguments, a module that cannot be imported, a
``module:pipeline`` that is not a Pipeline, an invalid graph, an unknown or
ambiguous run id, a malformed store URL, a refused resume), 3 the run finished
but its history could not be recorded (its status is printed; the store lost
some of its events), 4 the run store could not be opened or read (nothing ran),
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
import traceback
import typing
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import anyio

from ._interrupts import EXIT_INTERRUPTED, interruptible
from ._masking import mask_text, mask_value
from .bench import add_bench_command
from .errors import DremioFrameError
from .orchestration import (
    ArgumentError,
    Event,
    Pipeline,
    PipelineDefinitionError,
    RunFinished,
    RunResult,
    RunStatus,
    TaskDefinitionError,
)
from .progress import Progress, describe, format_duration, format_table, printable
from .store import (
    RunInfo,
    RunNotFound,
    RunStore,
    SQLiteStore,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    TaskInfo,
    default_store_url,
    open_store,
)
from .store._codec import storable_text

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_HISTORY_LOST, EXIT_STORE = 3, 4


class UsageError(DremioFrameError):
    """Bad command-line input; reported on stderr with exit code 2."""


class PipelineImportError(UsageError):
    """The module named on the command line raised while it was imported or built.

    The message names the module and the user's own exception (type and message);
    the exception itself is ``__cause__`` (``--traceback`` shows it).
    """

    def __init__(self, where: str, cause: BaseException) -> None:
        self.where = where
        self.cause = cause
        super().__init__(f"{describe(cause)}{_hint(cause)} (raised while {where})")


def _hint(error: BaseException) -> str:
    """A word on what a bare ``KeyError('DREMIO_URL')`` most likely means."""
    key = error.args[0] if isinstance(error, KeyError) and error.args else None
    if isinstance(key, str) and key.isupper() and key not in os.environ:
        return f": the environment variable {key} is not set"
    return ""


# ---------------------------------------------------------------- loading pipelines


def load_pipeline(ref: str) -> Pipeline:
    """Resolve ``module:attr`` (dotted module or ``path/to/file.py``) to a Pipeline.

    ``attr`` must be a Pipeline, or a function taking no arguments whose return
    annotation is ``Pipeline``: nothing else is called.

    :raises UsageError: when the reference is malformed or does not lead to a Pipeline.
    :raises PipelineImportError: when importing the module, or the factory, raised.
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
    if isinstance(obj, Pipeline):
        return obj
    _check_factory(ref, obj)
    try:
        built = obj()
    except Exception as exc:
        raise PipelineImportError(f"calling {ref}", exc) from exc
    if not isinstance(built, Pipeline):
        raise UsageError(f"{ref}() returned a {type(built).__name__}, not a Pipeline")
    return built


def _check_factory(ref: str, obj: Any) -> None:
    """Refuse anything but a plain function declared ``-> Pipeline`` with no required arguments."""
    what = f"{ref} is a {type(obj).__name__}"
    if not inspect.isfunction(obj):
        raise UsageError(f"{what}, not a Pipeline or a function returning one")
    if not _is_plain_function(obj):
        # Calling it would only make a coroutine (or generator) and warn that it was never run.
        raise UsageError(f"{ref} is an async or generator function; make it a plain `def`")
    if not _returns_pipeline(obj):
        raise UsageError(
            f"{what} not declared to return a Pipeline: annotate it `-> Pipeline` "
            "(the command line calls nothing else)"
        )
    required = [
        p.name
        for p in inspect.signature(obj).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise UsageError(
            f"{ref} needs arguments ({', '.join(required)}); the command line gives none"
        )


def _is_plain_function(fn: Callable[..., Any]) -> bool:
    return not (
        inspect.iscoroutinefunction(fn)
        or inspect.isgeneratorfunction(fn)
        or inspect.isasyncgenfunction(fn)
    )


def _returns_pipeline(fn: Callable[..., Any]) -> bool:
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that cannot be resolved: read it as written
        hint = fn.__annotations__.get("return")
    if isinstance(hint, str):
        return hint.rsplit(".", 1)[-1] == "Pipeline"
    return isinstance(hint, type) and issubclass(hint, Pipeline)


def _import(name: str) -> Any:
    if name.endswith(".py") or os.sep in name:
        return _import_file(Path(name))
    _add_to_path(os.getcwd())  # console scripts do not put the cwd on sys.path
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(
                f"no module named {name!r} (run from its directory or give a .py path)"
            ) from None
        raise PipelineImportError(f"importing {name}", exc) from exc
    except Exception as exc:
        raise PipelineImportError(f"importing {name}", exc) from exc


def _add_to_path(folder: str) -> None:
    # At the end: a file in the user's folder never shadows an installed module.
    if folder not in sys.path:
        sys.path.append(folder)


def _module_name(path: Path) -> str:
    """The file's stem, unless that name belongs to a module already importable."""
    stem = path.stem
    if stem.isidentifier() and stem not in sys.modules:
        try:
            if importlib.util.find_spec(stem) is None:
                return stem
        except (ImportError, ValueError):
            pass
    return f"_dremioframe_async_user_{abs(hash(str(path.resolve())))}_{stem}"


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    _add_to_path(str(path.resolve().parent))  # let it import its siblings
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise PipelineImportError(f"importing {path}", exc) from exc
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


async def _with_store(url: str | None, work: Callable[[RunStore], Awaitable[int]]) -> int:
    store = open_store(url or default_store_url())
    try:
        return await work(store)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await store.aclose()


def _existing_store(url: str | None) -> str | None:
    """``url``, after checking that a SQLite file named by ``--store`` exists already.

    Opening would create it (and its folders), and a typo in ``--store`` would then
    read as "no runs recorded".

    :raises StoreUnavailable: when it does not.
    """
    if url is None:
        return url  # the configured file: "no runs recorded" is the truth before a first run
    store = open_store(url or default_store_url())  # connects on first use only
    missing = isinstance(store, SQLiteStore) and not Path(store.path).exists()
    if isinstance(store, SQLiteStore) and missing and store.path != ":memory:":
        raise StoreUnavailable(store.name, "no such file: nothing was ever recorded there")
    return url


def _cmd_run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.pipeline)
    params = parse_params(args.param)
    progress = Progress(sys.stderr)

    async def work(store: RunStore) -> int:
        async def go(stop_cleanup: anyio.Event) -> int:
            result = await pipeline.run(
                params or None,
                store=store,
                on_event=progress,
                resume=args.resume,
                resume_params_changed=args.allow_param_change,
                stop_cleanup=stop_cleanup,
            )
            return _report(result, progress)

        code = await interruptible(go)
        if code == EXIT_INTERRUPTED:
            if progress.run_id:
                print(progress.summary())
                print(
                    f"\nrun {progress.run_id} interrupted: recorded as CANCELLED", file=sys.stderr
                )
            else:
                print("interrupted before the run started", file=sys.stderr)
        return code

    return anyio.run(_with_store, args.store, work)


def _report(result: RunResult, progress: Progress) -> int:
    print(progress.summary())
    print(f"\nrun {result.run_id} {result.status} in {format_duration(result.duration)}")
    if result.history_error is not None:
        _error_line("run", describe(result.history_error))
        return EXIT_HISTORY_LOST
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
        async def go(stop_cleanup: anyio.Event) -> int:
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
                stop_cleanup=stop_cleanup,
            )
            return EXIT_OK

        return await interruptible(go)

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
        # Names are stored escaped (storable_text); an undecodable argument matches its escape.
        pipeline = None if args.pipeline is None else storable_text(args.pipeline)
        runs = await store.list_runs(pipeline=pipeline, limit=args.limit)
        print(_runs_table(runs) if runs else "no runs recorded")
        return EXIT_OK

    return anyio.run(_with_store, _existing_store(args.store), work)


def _task_rows(tasks: Sequence[TaskInfo]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for t in tasks:
        took = None if t.started is None or t.finished is None else t.finished - t.started
        last = t.attempts[-1] if t.attempts else None
        error = f"{last.error_type}: {last.error_message}" if last and last.error_type else ""
        note = (
            mask_text(error)
            or mask_text(t.reason or "")
            or (t.result_note and f"result {t.result_type}: {t.result_note}")
        )
        rows.append((t.key, t.state.value, len(t.attempts), format_duration(took), note or ""))
    return rows


def _show(run: RunInfo, tasks: Sequence[TaskInfo]) -> str:
    lines = [
        f"run       {run.run_id}",
        f"pipeline  {printable(run.pipeline)}",
        f"status    {run.status.value}",
        f"started   {_when(run.started)}",
        f"finished  {_when(run.finished)}  ({format_duration(run.duration)})",
        f"params    {printable(json.dumps(mask_value(dict(run.params)), default=str))}",
    ]
    if run.resumed_from:
        lines.append(f"resumed   from {run.resumed_from}")
    headers = ("TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR / REASON")
    lines += ["", format_table(headers, _task_rows(tasks))]
    for t in tasks:
        for a in t.attempts:
            if a.error_type:
                head = f"{t.key} attempt {a.number}: {a.error_type}: {a.error_message}"
                lines += ["", printable(mask_text(head))]
                trace = printable(mask_text(a.error_traceback or "").rstrip())
                lines += ["    " + ln for ln in trace.splitlines()]
    return "\n".join(lines)


async def _find_run(store: RunStore, prefix: str) -> RunInfo:
    """The run whose id is ``prefix`` or the only one starting with it.

    :raises UsageError: when no run, or more than one, matches.
    """
    if not prefix.strip():
        # Every id starts with "": `show "$RUN_ID"` with the variable unset.
        raise UsageError("RUN_ID is empty: give a run id or a prefix of one (see `runs`)")
    prefix = storable_text(prefix)  # ids are stored escaped like this, and a store can take it
    try:
        return await store.get_run(prefix)
    except RunNotFound:
        pass
    matches = [r for r in await store.list_runs(limit=None) if r.run_id.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no run {prefix!r} in the store (nor one whose id starts with it)")
    ids = ", ".join(r.run_id for r in matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise UsageError(
        f"run id prefix {prefix!r} is ambiguous: {len(matches)} runs match ({ids}); give more of it"
    )


def _cmd_show(args: argparse.Namespace) -> int:
    async def work(store: RunStore) -> int:
        run = await _find_run(store, args.run_id)
        print(_show(run, await store.get_tasks(run.run_id)))
        return EXIT_OK

    return anyio.run(_with_store, _existing_store(args.store), work)


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
        async def go(stop_cleanup: anyio.Event) -> int:
            await serve_store(store, pipelines, args.host, args.port)
            return EXIT_OK  # pragma: no cover - serving ends by a signal

        try:
            await interruptible(go)
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


def _version() -> str:
    try:
        return importlib.metadata.version("dremioframe_async")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dremioframe-async",
        description="Run, schedule and inspect dremioframe_async pipelines. "
        "run, graph and schedule import the module you name (executing its code).",
        epilog=(
            "exit codes: 0 success, 1 the pipeline failed, 2 usage error, 3 the run finished "
            "but its history could not be recorded, 4 the run store could not be opened or "
            "read, 130 interrupted"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store_help = "run store URL (default: $DREMIOFRAME_ASYNC_STORE or the user's SQLite file)"
    common = _Parser(add_help=False)
    common.add_argument(
        "--traceback", action="store_true", help="on an error, print the whole traceback"
    )

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> Any:
        sub = commands.add_parser(name, help=help, description=help, parents=[common])
        sub.set_defaults(handler=handler)
        if name not in ("graph", "demo"):
            sub.add_argument("--store", metavar="URL", help=store_help)
        return sub

    run = command("run", _cmd_run, "import a pipeline's module and run it once, with progress")
    run.add_argument("pipeline", metavar="module:pipeline")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--resume", metavar="RUN_ID", help="re-run only what did not succeed")
    run.add_argument(
        "--allow-param-change",
        action="store_true",
        help="with --resume: reuse results although --param differs from that run's params",
    )
    runs = command("runs", _cmd_runs, "list recorded runs, newest first")
    runs.add_argument("--pipeline", metavar="NAME")
    runs.add_argument("--limit", type=_positive_int, default=20, metavar="N")
    show = command("show", _cmd_show, "show one run's tasks, attempts and errors")
    show.add_argument("run_id", metavar="RUN_ID", help="a run id, or any unique prefix of one")
    graph = command("graph", _cmd_graph, "print a pipeline's graph as Mermaid")
    graph.add_argument("pipeline", metavar="module:pipeline")
    _schedule_args(command("schedule", _cmd_schedule, "run a pipeline on a schedule until stopped"))
    _ui_args(command("ui", _cmd_ui, "serve the web UI over the run store until stopped"))
    demo = command("demo", _cmd_demo, "run the bundled demo")
    demo.add_argument("args", nargs=argparse.REMAINDER)
    add_bench_command(commands)
    return parser


def _positive_int(text: str) -> int:
    # 0 would print "no runs recorded" over a full store; SQLite reads -1 as "all".
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


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


# Errors in what the user gave us: arguments, the pipeline's module, its definition.
USAGE_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    StoreConfigError,  # a malformed store URL (StoreURLError) among them
    RunNotFound,
    ArgumentError,
    TaskDefinitionError,
    PipelineDefinitionError,
)


def _fail(args: argparse.Namespace, exc: BaseException, code: int) -> int:
    if args.traceback:
        traceback.print_exception(exc, file=sys.stderr)
    hint = "" if args.traceback or type(exc) is UsageError else " (--traceback for details)"
    text = describe(exc) + ("" if isinstance(exc, PipelineImportError) else _hint(exc))
    _error_line(args.command, text.replace("\n", " | ") + hint)
    return code


def _error_line(command: str | None, text: str) -> None:
    prog = "dremioframe-async" + (f" {command}" if command else "")
    print(f"{prog}: error: {text}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("dremioframe-async").strip() or None
        _error_line(command, f"UsageError: {printable(message)} (see --help)")
        sys.exit(EXIT_USAGE)


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
    except BrokenPipeError:
        # The reader of our output went away (`show ID | head`): not an error of ours.
        # Point stdout at devnull so the interpreter's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK if args.command in ("runs", "show", "graph") else EXIT_FAILED
    except KeyboardInterrupt:
        # Ctrl-C before the run's own handler is installed (a slow import of the
        # user's module, say): a plain interruption, never a traceback.
        _error_line(args.command, "interrupted")
        return EXIT_INTERRUPTED
    except USAGE_ERRORS as exc:
        return _fail(args, exc, EXIT_USAGE)
    except StoreError as exc:
        # Unreachable server, missing driver, unwritable file: one line naming the store.
        return _fail(args, exc, EXIT_STORE)
    except (LookupError, ValueError) as exc:
        if args.command not in ("run", "schedule"):
            return _fail(args, exc, EXIT_FAILED)
        # A resume of another pipeline, a bad cron: what the user asked cannot be done.
        return _fail(args, exc, EXIT_USAGE)
    except Exception as exc:
        return _fail(args, exc, EXIT_FAILED)
