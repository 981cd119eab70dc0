"""``run module:pipeline``: import a pipeline and run it once, with progress."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from .._interrupts import EXIT_INTERRUPTED, interruptible
from ..orchestration import RunResult, RunStatus
from ..progress import Progress, describe, format_duration
from ..store import RunStore
from ._common import (
    EXIT_FAILED,
    EXIT_HISTORY_LOST,
    EXIT_OK,
    EXIT_USAGE,
    add_command,
    error_line,
    find_run,
    load_pipeline,
    parse_params,
    ui_hint,
    with_store,
)
from .logs import LogPrinter, add_log_options


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``run`` to the command line."""
    text = "import a pipeline's module and run it once, with progress"
    # A resume of another pipeline's run is a refusal of what was asked: exit 2.
    sub = add_command(commands, common, "run", cmd_run, text, refusal_exit=EXIT_USAGE)
    sub.add_argument("pipeline", metavar="module:pipeline")
    sub.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    sub.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="re-run only what did not succeed (a run id, or any unique prefix of one)",
    )
    sub.add_argument(
        "--allow-param-change",
        action="store_true",
        help="with --resume: reuse results although --param differs from that run's params",
    )
    add_log_options(sub)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the pipeline once; the exit code says how it ended."""
    pipeline = load_pipeline(args.pipeline)
    params = parse_params(args.param)
    progress = Progress(sys.stderr)
    listeners: list[Any] = [progress]
    if args.log_level is not None:
        listeners.append(LogPrinter(args.log_level, args.log_format, progress.note))

    async def work(store: RunStore) -> int:
        # Like `show`, --resume takes any unique prefix of a run id.
        resume = None if args.resume is None else (await find_run(store, args.resume)).run_id

        async def go(stop_cleanup: anyio.Event) -> int:
            result = await pipeline.run(
                params or None,
                store=store,
                on_event=listeners,
                resume=resume,
                resume_params_changed=args.allow_param_change,
                stop_cleanup=stop_cleanup,
            )
            return _report(result, progress, args.store)

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

    return anyio.run(with_store, args.store, work)


def _report(result: RunResult, progress: Progress, store_url: str | None) -> int:
    print(progress.summary())
    print(f"\nrun {result.run_id} {result.status} in {format_duration(result.duration)}")
    print(ui_hint(store_url, result.run_id))
    if result.history_error is not None:
        error_line("run", describe(result.history_error))
        return EXIT_HISTORY_LOST
    return EXIT_OK if result.status is RunStatus.SUCCESS else EXIT_FAILED
