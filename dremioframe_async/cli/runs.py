"""``runs``: list recorded runs, newest first."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import anyio

from ..progress import format_duration, format_table
from ..store import RunInfo, RunQuery, RunStore
from ..store._codec import storable_text
from ._common import EXIT_OK, add_command, existing_store, positive_int, when, with_store


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``runs`` to the command line."""
    text = "list recorded runs, newest first"
    sub = add_command(commands, common, "runs", cmd_runs, text, reads_only=True)
    sub.add_argument("--pipeline", metavar="NAME")
    sub.add_argument("--limit", type=positive_int, default=20, metavar="N")


def cmd_runs(args: argparse.Namespace) -> int:
    """Print the table of runs."""

    async def work(store: RunStore) -> int:
        # Names are stored escaped (storable_text); an undecodable argument matches its escape.
        pipeline = None if args.pipeline is None else storable_text(args.pipeline)
        runs = await store.list_runs(pipeline=pipeline, limit=args.limit)
        print(_runs_table(runs) if runs else await _nothing_listed(store, args.pipeline))
        return EXIT_OK

    return anyio.run(with_store, existing_store(args.store), work)


async def _nothing_listed(store: RunStore, pipeline: str | None) -> str:
    """Why the list is empty: an empty store, or a filter that matched nothing."""
    if pipeline is None:
        return "no runs recorded"
    others = (await store.query_runs(RunQuery(limit=1))).total
    plural = "run" if others == 1 else "runs"
    return f"no runs of pipeline {pipeline!r} ({others} {plural} of other pipelines)"


def _runs_table(runs: Sequence[RunInfo]) -> str:
    rows = [
        (
            r.run_id,
            r.pipeline,
            r.status.value,
            when(r.started),
            when(r.scheduled_for) if r.scheduled_for is not None else "",
            format_duration(r.duration),
            f"{r.counts.get('SUCCESS', 0)}/{sum(r.counts.values())}",
        )
        for r in runs
    ]
    return format_table(
        ("RUN ID", "PIPELINE", "STATUS", "STARTED", "SCHEDULED FOR", "DURATION", "OK/TASKS"), rows
    )
