"""``trigger PIPELINE``: queue a run for a process serving that pipeline."""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from .._telemetry import continuing
from ..store import RunStore
from ._common import EXIT_OK, UsageError, add_command, parse_params, with_store


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``trigger`` to the command line."""
    text = "queue a run of a pipeline; a `serve` (or `ui`) process serving it runs it"
    sub = add_command(commands, common, "trigger", cmd_trigger, text)
    sub.add_argument("pipeline", metavar="PIPELINE", help="the pipeline's name")
    sub.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")


def cmd_trigger(args: argparse.Namespace) -> int:
    """Write a QUEUED run and print its id."""
    if not args.pipeline.strip():
        raise UsageError("PIPELINE is empty: give the name of a pipeline a serve process serves")
    params = parse_params(args.param)

    async def work(store: RunStore) -> int:
        try:
            # TRACEPARENT (a W3C trace context, as CI systems and tools pass it): the
            # queued run's span becomes a child of that span, wherever it runs.
            with continuing(os.environ.get("TRACEPARENT")):
                run_id = await store.enqueue(args.pipeline, params)
        except ValueError as exc:  # a parameter JSON cannot hold (NaN, say)
            raise UsageError(f"cannot queue these params: {exc}") from None
        print(run_id)
        return EXIT_OK

    return anyio.run(with_store, args.store, work)
