"""``pause [PIPELINE] [--lift]``: pause or resume a schedule for every process on a store."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import anyio

from ..store import RunStore, SchedulePauses
from ._common import EXIT_OK, UsageError, add_command, existing_store, with_store


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``pause`` to the command line."""
    text = (
        "pause a pipeline's schedule for every process on the store (serve, ui, schedule), "
        "or lift the pause with --lift; with no pipeline, list the paused schedules"
    )
    sub = add_command(commands, common, "pause", cmd_pause, text)
    sub.add_argument("pipeline", metavar="PIPELINE", nargs="?", help="the pipeline's name")
    sub.add_argument("--lift", action="store_true", help="resume the schedule instead")


def cmd_pause(args: argparse.Namespace) -> int:
    """Write or lift the pause; list the pauses when no pipeline is named."""
    if args.pipeline is None and args.lift:
        raise UsageError("--lift needs the PIPELINE whose schedule to resume")

    async def work(store: RunStore) -> int:
        if not isinstance(store, SchedulePauses):
            raise UsageError(f"{type(store).__name__} keeps no schedule pauses")
        if args.pipeline is None:
            paused = await store.paused_schedules()
            for name, since in sorted(paused.items()):
                moment = datetime.fromtimestamp(since, UTC)
                print(f"{name}\tpaused since {moment:%Y-%m-%d %H:%M:%S} UTC")
            if not paused:
                print("no schedule is paused")
            return EXIT_OK
        changed = await store.pause_schedule(args.pipeline, paused=not args.lift)
        state = "resumed" if args.lift else "paused"
        print(f"{args.pipeline}: schedule {state}" + ("" if changed else " already"))
        if not args.lift and not await store.list_runs(pipeline=args.pipeline, limit=1):
            print(f"note: no run of {args.pipeline!r} is recorded in this store (check the name)")
        return EXIT_OK

    return anyio.run(with_store, existing_store(args.store), work)
