"""``show RUN_ID``: one run's tasks, attempts and errors."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import anyio

from .._masking import mask_text, mask_value
from ..progress import format_duration, format_table, printable
from ..store import RunInfo, RunStore, TaskInfo
from ._common import EXIT_OK, add_command, existing_store, find_run, when, with_store


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``show`` to the command line."""
    text = "show one run's tasks, attempts and errors"
    sub = add_command(commands, common, "show", cmd_show, text, reads_only=True)
    sub.add_argument("run_id", metavar="RUN_ID", help="a run id, or any unique prefix of one")


def cmd_show(args: argparse.Namespace) -> int:
    """Print the run named by an id or a unique prefix of one."""

    async def work(store: RunStore) -> int:
        run = await find_run(store, args.run_id)
        print(_show(run, await store.get_tasks(run.run_id)))
        return EXIT_OK

    return anyio.run(with_store, existing_store(args.store), work)


def _task_rows(tasks: Sequence[TaskInfo]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for t in tasks:
        took = None if t.started is None or t.finished is None else t.finished - t.started
        last = t.attempts[-1] if t.attempts else None
        error = f"{last.error_type}: {last.error_message}" if last and last.error_type else ""
        note = (
            mask_text(error)
            or mask_text(t.reason or "")
            or (t.result_note and f"result {t.result_type}: {t.result_note}")
        )
        rows.append((t.key, t.state.value, len(t.attempts), format_duration(took), note or ""))
    return rows


def _show(run: RunInfo, tasks: Sequence[TaskInfo]) -> str:
    lines = [
        f"run       {run.run_id}",
        f"pipeline  {printable(run.pipeline)}",
        f"status    {run.status.value}",
        f"started   {when(run.started)}",
        f"finished  {when(run.finished)}  ({format_duration(run.duration)})",
        f"params    {printable(json.dumps(mask_value(dict(run.params)), default=str))}",
    ]
    if run.scheduled_for is not None:
        lines.append(f"scheduled {when(run.scheduled_for)} (the schedule's fire time)")
    if run.resumed_from:
        lines.append(f"resumed   from {run.resumed_from}")
    if run.resumed_by:
        lines.append(f"resumed   by {run.resumed_by}")
    if run.cancel_requests:
        lines.append(f"cancel    requested {run.cancel_requests} time(s)")
    headers = ("TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR / REASON")
    lines += ["", format_table(headers, _task_rows(tasks))]
    for t in tasks:
        for a in t.attempts:
            if a.error_type:
                head = f"{t.key} attempt {a.number}: {a.error_type}: {a.error_message}"
                lines += ["", printable(mask_text(head))]
                trace = printable(mask_text(a.error_traceback or "").rstrip())
                lines += ["    " + ln for ln in trace.splitlines()]
    return "\n".join(lines)
