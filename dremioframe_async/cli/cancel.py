"""``cancel RUN_ID``: ask the process that runs a run, wherever it is, to cancel it."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from ..store import RunStatus, RunStore
from ._common import EXIT_FAILED, EXIT_OK, add_command, existing_store, find_run, with_store


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cancel`` to the command line."""
    text = (
        "cancel a run wherever it runs: the first request cancels it gracefully "
        "(cleanup tasks still run), a second stops the cleanup; a queued run ends at once"
    )
    sub = add_command(commands, common, "cancel", cmd_cancel, text)
    sub.add_argument("run_id", metavar="RUN_ID", help="a run id, or any unique prefix of one")


def cmd_cancel(args: argparse.Namespace) -> int:
    """Write a cancel request; exit 1 when the run had already ended."""

    async def work(store: RunStore) -> int:
        run = await find_run(store, args.run_id)
        outcome = await store.request_cancel(run.run_id)
        print(outcome.message)
        ended = outcome.status not in (RunStatus.RUNNING, RunStatus.QUEUED) and not (
            outcome.status is RunStatus.CANCELLED and outcome.requests == 0
        )
        return EXIT_FAILED if ended else EXIT_OK

    return anyio.run(with_store, existing_store(args.store), work)
