"""``schedule module:pipeline``: run a pipeline on a schedule until stopped.

It says when it starts and when the next fire is due, prints one line per run
(with each failed task and its error), and exits 3 when some run's history
could not be recorded, as ``run`` does.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

import anyio

from .._interrupts import interruptible
from ..orchestration import RunResult
from ..progress import describe, format_duration, printable
from ..schedule import Schedule
from ..store import RunStore
from ._common import (
    EXIT_HISTORY_LOST,
    EXIT_OK,
    EXIT_USAGE,
    add_command,
    error_line,
    load_pipeline,
    parse_params,
    with_store,
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``schedule`` to the command line."""
    text = "run a pipeline on a schedule until stopped"
    # A bad cron expression is a refusal of what was asked: exit 2.
    sub = add_command(commands, common, "schedule", cmd_schedule, text, refusal_exit=EXIT_USAGE)
    sub.add_argument("pipeline", metavar="module:pipeline")
    when = sub.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='e.g. "*/5 * * * *" (local time)')
    when.add_argument(
        "--interval", type=float, metavar="SECONDS", help="fires at multiples of it (epoch)"
    )
    sub.add_argument("--overlap", choices=("skip", "queue", "allow"), default="skip")
    sub.add_argument("--catch-up", action="store_true", help="run fires that were missed")
    sub.add_argument("--max-runs", type=int, metavar="N")
    sub.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")


class _Reporter:
    """One line per finished run; counts the runs whose history was lost."""

    def __init__(self) -> None:
        self.history_lost = 0

    def __call__(self, result: RunResult) -> None:
        took = format_duration(result.duration)
        print(f"run {result.run_id} {result.status} in {took}", flush=True)
        for key, error in result.errors.items():
            print(printable(f"  {key}: {describe(error)}"), flush=True)
        if result.history_error is not None:
            self.history_lost += 1
            error_line("schedule", describe(result.history_error))


def cmd_schedule(args: argparse.Namespace) -> int:
    """Run the pipeline on its schedule until interrupted (or ``--max-runs``)."""
    from ..schedule import schedule_pipeline

    pipeline = load_pipeline(args.pipeline)
    params = parse_params(args.param)
    # Validates the schedule (exit 2) and gives the first fire time to announce.
    plan = Schedule(pipeline, interval=args.interval, cron=args.cron)
    reporter = _Reporter()

    async def work(store: RunStore) -> int:
        first = next(plan.fire_times(time.time()))
        print(
            f"scheduling {pipeline.name} {plan.describe()} over {store!r}; next fire at "
            f"{datetime.fromtimestamp(first).astimezone().isoformat(timespec='seconds')}",
            flush=True,
        )

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
                stop_cleanup=stop_cleanup,
                on_result=reporter,
            )
            return EXIT_OK

        code = await interruptible(go)
        if reporter.history_lost:
            error_line("schedule", f"{reporter.history_lost} run(s) lost part of their history")
            return EXIT_HISTORY_LOST
        return code

    return anyio.run(with_store, args.store, work)
