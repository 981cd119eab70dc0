"""``trigger PIPELINE``: queue a run for a process serving that pipeline."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import anyio

from .._telemetry import continuing
from ..store import RunStore
from ._common import EXIT_OK, UsageError, add_command, existing_store, parse_params, with_store


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``trigger`` to the command line."""
    text = "queue a run of a pipeline; a `serve` (or `ui`) process serving it runs it"
    sub = add_command(commands, common, "trigger", cmd_trigger, text)
    sub.add_argument("pipeline", metavar="PIPELINE", help="the pipeline's name")
    sub.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")


def cmd_trigger(args: argparse.Namespace) -> int:
    """Write a QUEUED run and print its id; note a pipeline the store never ran."""
    if not args.pipeline.strip():
        raise UsageError("PIPELINE is empty: give the name of a pipeline a serve process serves")
    try:
        args.pipeline.encode("utf-8")
    except UnicodeEncodeError:  # bytes the terminal's encoding could not decode
        raise UsageError(f"PIPELINE {args.pipeline!r} is not valid UTF-8 text") from None
    params = parse_params(args.param)

    async def work(store: RunStore) -> int:
        known = await store.list_runs(pipeline=args.pipeline, limit=1)
        try:
            # TRACEPARENT (a W3C trace context, as CI systems and tools pass it): the
            # queued run's span becomes a child of that span, wherever it runs.
            with continuing(os.environ.get("TRACEPARENT")):
                run_id = await store.enqueue(args.pipeline, params)
        except ValueError as exc:  # a parameter JSON cannot hold (NaN, say)
            raise UsageError(f"cannot queue these params: {exc}") from None
        print(run_id)
        if not known:  # a typo queues a run that no process will ever take
            print(
                f"note: this store has no run of pipeline {args.pipeline!r} yet; the run waits "
                "until a process serving a pipeline of that name takes it",
                file=sys.stderr,
            )
        return EXIT_OK

    # A typo in --store would otherwise make a new file holding a run nobody serves.
    return anyio.run(with_store, existing_store(args.store), work)
