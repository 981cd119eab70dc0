"""The parser, the dispatch to a command's handler, and how errors become exit codes.

A command is a module of this package with ``register(commands, common)``; it
is listed once in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from .._argv import glue_dash_values
from .._interrupts import EXIT_INTERRUPTED
from ..bench import add_bench_command
from ..orchestration import ArgumentError, PipelineDefinitionError, TaskDefinitionError
from ..progress import describe, printable
from ..store import RunNotFound, StoreConfigError, StoreError
from . import (
    backfill,
    cancel,
    demo,
    graph,
    logs,
    pause,
    run,
    runs,
    schedule,
    serve,
    show,
    state,
    trigger,
    ui,
)
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    PipelineImportError,
    UsageError,
    error_line,
    hint,
)

# Each registers its subcommand; --help lists them in this order.
COMMANDS = (
    run,
    runs,
    show,
    logs,
    graph,
    schedule,
    backfill,
    state,
    serve,
    trigger,
    cancel,
    pause,
    ui,
    demo,
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
    common = _Parser(add_help=False)
    common.add_argument(
        "--traceback", action="store_true", help="on an error, print the whole traceback"
    )
    for command in COMMANDS:
        command.register(commands, common)
    add_bench_command(commands)
    return parser


def _fail(args: argparse.Namespace, exc: BaseException, code: int) -> int:
    if args.traceback:
        traceback.print_exception(exc, file=sys.stderr)
    more = "" if args.traceback or type(exc) is UsageError else " (--traceback for details)"
    text = describe(exc) + ("" if isinstance(exc, PipelineImportError) else hint(exc))
    error_line(args.command, one_line(text) + more)
    return code


def one_line(text: str) -> str:
    """A message of several lines as one: ``problems:`` then its items, ``; `` between."""
    parts = [line.strip().removeprefix("- ").strip() for line in text.splitlines()]
    joined = ""
    for part in filter(None, parts):
        joined += ("" if not joined else " " if joined.endswith(":") else "; ") + part
    return joined


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("dremioframe-async").strip() or None
        error_line(command, f"UsageError: {printable(message)} (see --help)")
        sys.exit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dremioframe-async``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before a command's own handler listens (building the parser, a slow
        # import of the user's module): a plain interruption, never a traceback.
        command = argv[0] if argv and not argv[0].startswith("-") else None
        error_line(command, "interrupted")
        return EXIT_INTERRUPTED


def _main(argv: list[str]) -> int:
    if argv[:1] == ["demo"]:
        # Everything after "demo" belongs to the demo, options included (REMAINDER
        # in a subparser would reject a leading option).
        return demo.run_demo(argv[1:])
    parser = _parser()
    args = parser.parse_args(glue_dash_values(argv))
    try:
        return int(args.handler(args))
    except BrokenPipeError:
        # The reader of our output went away (`show ID | head`): not an error of ours.
        # Point stdout at devnull so the interpreter's final flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK if getattr(args, "reads_only", False) else EXIT_FAILED
    except USAGE_ERRORS as exc:
        return _fail(args, exc, EXIT_USAGE)
    except StoreError as exc:
        # Unreachable server, missing driver, unwritable file: one line naming the store.
        return _fail(args, exc, EXIT_STORE)
    except (LookupError, ValueError) as exc:
        # A resume of another pipeline, a bad cron: `run` and `schedule` say exit 2.
        return _fail(args, exc, getattr(args, "refusal_exit", EXIT_FAILED))
    except Exception as exc:
        return _fail(args, exc, EXIT_FAILED)
