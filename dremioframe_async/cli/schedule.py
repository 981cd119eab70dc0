"""``schedule module:pipeline``: run a pipeline on a schedule until stopped."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from .._interrupts import interruptible
from ..orchestration import Event, RunFinished
from ..progress import format_duration
from ..store import RunStore
from ._common import EXIT_OK, EXIT_USAGE, add_command, load_pipeline, parse_params, with_store


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``schedule`` to the command line."""
    text = "run a pipeline on a schedule until stopped"
    # A bad cron expression is a refusal of what was asked: exit 2.
    sub = add_command(commands, common, "schedule", cmd_schedule, text, refusal_exit=EXIT_USAGE)
    sub.add_argument("pipeline", metavar="module:pipeline")
    when = sub.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='e.g. "*/5 * * * *" (local time)')
    when.add_argument("--interval", type=float, metavar="SECONDS")
    sub.add_argument("--overlap", choices=("skip", "queue", "allow"), default="skip")
    sub.add_argument("--catch-up", action="store_true", help="run fires that were missed")
    sub.add_argument("--max-runs", type=int, metavar="N")
    sub.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")


def cmd_schedule(args: argparse.Namespace) -> int:
    """Run the pipeline on its schedule until interrupted (or ``--max-runs``)."""
    from ..schedule import schedule_pipeline

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

    return anyio.run(with_store, args.store, work)
