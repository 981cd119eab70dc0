"""``backfill module:pipeline --start --end (--every | --cron)``: one run per data interval.

Resumable: the same command run again (after Ctrl-C, say) runs only the
intervals that have no finished run; ``--rerun-failed`` adds the failed ones,
``--rerun-all`` runs everything. ``--list`` prints each interval's latest run
without running anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from .._interrupts import EXIT_INTERRUPTED, interruptible
from ..orchestration import RunResult, RunStatus
from ..progress import format_table
from ..store import RunStore
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_command,
    load_pipeline,
    parse_params,
    with_store,
)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``backfill`` to the command line."""
    text = "run a pipeline once per data interval of a date range (resumable)"
    sub = add_command(commands, common, "backfill", cmd_backfill, text, refusal_exit=EXIT_USAGE)
    sub.add_argument("pipeline", metavar="module:pipeline")
    sub.add_argument("--start", required=True, help="ISO date or datetime (UTC unless it says)")
    sub.add_argument("--end", required=True, help="exclusive: the last interval ends here")
    step = sub.add_mutually_exclusive_group(required=True)
    step.add_argument("--every", metavar="DURATION", help="e.g. 1d, 6h, 1h30m, 1w")
    step.add_argument("--cron", metavar="EXPR", help="intervals between consecutive ticks")
    sub.add_argument("--max-active", type=int, default=1, metavar="N", help="runs at once")
    again = sub.add_mutually_exclusive_group()
    again.add_argument("--rerun-failed", action="store_true", help="also rerun failed intervals")
    again.add_argument("--rerun-all", action="store_true", help="rerun every interval")
    sub.add_argument("--list", action="store_true", help="show the intervals' runs; run nothing")
    sub.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")


class _Progress:
    """One line per finished run, and a running count, on stderr."""

    def __init__(self) -> None:
        self.total = self.done = self.failed = 0

    def start(self, todo: Sequence[Any], skipped: Sequence[tuple[Any, str]]) -> None:
        self.total = len(todo)
        print(f"backfill: {len(todo)} interval(s) to run, {len(skipped)} skipped", file=sys.stderr)

    def finished(self, interval: Any, result: RunResult) -> None:
        self.done += 1
        self.failed += result.status is not RunStatus.SUCCESS
        print(
            f"[{self.done}/{self.total}] {interval.start.isoformat()} -> "
            f"{interval.end.isoformat()} {result.status.value} (run {result.run_id})",
            file=sys.stderr,
            flush=True,
        )


def cmd_backfill(args: argparse.Namespace) -> int:
    """Run (or ``--list``) the backfill; exit 1 when a run failed, 130 when interrupted."""
    from ..backfill import backfill

    pipeline = load_pipeline(args.pipeline)
    params = parse_params(args.param)
    rerun = "all" if args.rerun_all else "failed" if args.rerun_failed else "missing"
    if args.list:
        return anyio.run(with_store, args.store, lambda store: _list(args, pipeline.name, store))
    progress = _Progress()

    async def work(store: RunStore) -> int:
        async def go(stop_cleanup: anyio.Event) -> int:
            result = await backfill(
                pipeline,
                start=args.start,
                end=args.end,
                every=args.every,
                cron=args.cron,
                store=store,
                max_active=args.max_active,
                rerun=rerun,  # type: ignore[arg-type]
                context=params or None,
                on_start=progress.start,
                on_run=progress.finished,
                stop_cleanup=stop_cleanup,
            )
            print(
                f"backfill {result.backfill_id}: {len(result.runs)} run(s), "
                f"{len(result.failed)} failed, {len(result.skipped)} skipped"
            )
            return EXIT_FAILED if result.failed else EXIT_OK

        code = await interruptible(go)
        if code == EXIT_INTERRUPTED:
            print(
                f"backfill interrupted after {progress.done} of {progress.total} run(s); "
                "run the same command again to continue",
                file=sys.stderr,
            )
        return code

    return anyio.run(with_store, args.store, work)


async def _list(args: argparse.Namespace, pipeline: str, store: RunStore) -> int:
    from ..backfill import intervals

    found = intervals(args.start, args.end, every=args.every, cron=args.cron)
    latest: dict[tuple[str, str], Any] = {}
    for run in await store.list_runs(pipeline=pipeline, limit=None):
        if run.interval is not None:
            latest.setdefault(run.interval, run)
    rows = []
    for i in found:
        last = latest.get((i.start.isoformat(), i.end.isoformat()))
        status = last.status.value if last is not None else "-"
        rows.append((i.start.isoformat(), i.end.isoformat(), status, last.run_id if last else "-"))
    print(format_table(("INTERVAL START", "INTERVAL END", "STATUS", "RUN ID"), rows))
    return EXIT_OK
