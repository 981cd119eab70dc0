"""``state PIPELINE [KEY]``: show a pipeline's state (what ``context.state`` holds)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from ..progress import format_table
from ..store import RunStore, StateStore
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_command,
    existing_store,
    when,
    with_store,
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``state`` to the command line."""
    text = "show a pipeline's state (context.state), or one key of it as JSON"
    sub = add_command(commands, common, "state", cmd_state, text, reads_only=True)
    sub.add_argument("pipeline", metavar="PIPELINE", help="the pipeline's name")
    sub.add_argument("key", nargs="?", metavar="KEY")


def cmd_state(args: argparse.Namespace) -> int:
    """Print every key (table) or one key's value (JSON); exit 1 for an unknown key."""

    async def work(store: RunStore) -> int:
        if not isinstance(store, StateStore):
            raise UsageError(f"{store!r} keeps no pipeline state")
        entries = await store.state_entries(args.pipeline)
        if args.key is not None:
            found = [e for e in entries if e.key == args.key]
            if not found:
                print(f"no key {args.key!r} in the state of {args.pipeline!r}")
                return EXIT_FAILED
            print(json.dumps(found[0].value, indent=2, sort_keys=True))
            return EXIT_OK
        if not entries:
            print(f"no state recorded for pipeline {args.pipeline!r}")
            return EXIT_OK
        rows = [
            (e.key, _short(e.value), when(e.updated), e.run_id or "-", e.task or "-")
            for e in entries
        ]
        print(format_table(("KEY", "VALUE", "UPDATED", "RUN ID", "TASK"), rows))
        return EXIT_OK

    return anyio.run(with_store, existing_store(args.store), work)


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."
