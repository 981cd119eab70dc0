"""``logs RUN [TASK]``: a run's captured task log lines; also how ``run`` prints them live."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

import anyio

from ..orchestration import Event, LogLine, TaskLogged
from ..progress import printable
from ..store import LogEntry, LogQuery, LogReader, RunStatus, RunStore, drop_marker
from ._common import EXIT_OK, UsageError, add_command, existing_store, find_run, when, with_store

__all__ = ["LogPrinter", "add_log_options", "register"]

_GOING = (RunStatus.QUEUED, RunStatus.RUNNING)  # a followed run may still log
FOLLOW_INTERVAL = 0.5  # seconds between reads of a followed run's new lines
PAGE = 1000


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``logs`` to the command line."""
    text = "print a run's captured task log lines (one task's with TASK)"
    sub = add_command(commands, common, "logs", cmd_logs, text, reads_only=True)
    sub.add_argument("run_id", metavar="RUN_ID", help="a run id, or any unique prefix of one")
    sub.add_argument("task", metavar="TASK", nargs="?", help="a task key (all tasks if omitted)")
    sub.add_argument("--attempt", type=int, metavar="N", help="only attempt N (from 1)")
    sub.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new lines until the run ends"
    )
    sub.add_argument(
        "--format", choices=("text", "json"), default="text", help="json: one object per line"
    )


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the lines, then (``--follow``) the new ones until the run has ended."""
    if args.attempt is not None and args.attempt < 1:
        raise UsageError(f"--attempt counts from 1, got {args.attempt}")

    async def work(store: RunStore) -> int:
        if not isinstance(store, LogReader):  # pragma: no cover - every store reads logs
            raise UsageError(f"{store!r} keeps no task logs")
        run = await find_run(store, args.run_id)
        query = LogQuery(run.run_id, args.task, args.attempt, 0, PAGE)
        show = _text_line if args.format == "text" else _json_line
        following = args.follow and run.status in _GOING
        while True:
            page = await store.get_logs(query)
            for line in page.lines:
                print(show(run.run_id, line), flush=following)
            query = LogQuery(run.run_id, args.task, args.attempt, page.next_after, PAGE)
            if page.more:
                continue
            if not following:
                return EXIT_OK
            await anyio.sleep(FOLLOW_INTERVAL)
            # One more read after the run ends: its last lines land with its end.
            following = (await store.get_run(run.run_id)).status in _GOING

    return anyio.run(with_store, existing_store(args.store), work)


def _text_line(run_id: str, line: LogEntry) -> str:
    text = f"{line.key}#{line.attempt} {when(line.time)} {line.level} {line.logger}: {line.message}"
    marker = f"{line.key}#{line.attempt} {drop_marker(line.dropped_before)}\n"
    return (marker if line.dropped_before else "") + printable(text)


def _json_line(run_id: str, line: LogEntry) -> str:
    return json.dumps({"run_id": run_id, **line.json_fields()})


# ---------------------------------------------------------------- run --log-level


def add_log_options(sub: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format`` for a command that runs a pipeline."""
    sub.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="print the tasks' log lines at LEVEL and above on stderr, prefixed with the task key",
    )
    sub.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one JSON object per line",
    )


class LogPrinter:
    """An ``on_event`` listener printing captured task lines at ``level`` and above."""

    def __init__(self, level: str, fmt: str, write: Callable[[str], None] | None = None) -> None:
        self.threshold = logging.getLevelName(level)
        self.json = fmt == "json"
        self._write = write if write is not None else _stderr(sys.stderr)

    def __call__(self, event: Event) -> None:
        if not isinstance(event, TaskLogged):
            return
        for line in event.lines:
            if logging.getLevelName(line.level) >= self.threshold:
                self._write(self._format(event, line))

    def _format(self, event: TaskLogged, line: LogLine) -> str:
        if self.json:
            return json.dumps(
                {
                    "run_id": event.run_id,
                    "task": event.key,
                    "attempt": event.attempt,
                    "time": line.time,
                    "level": line.level,
                    "logger": line.logger,
                    "message": line.message,
                }
            )
        return printable(f"[{event.key}] {line.level} {line.logger}: {line.message}")


def _stderr(stream: TextIO) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    return write
