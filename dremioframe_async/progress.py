"""A live progress display and a final summary table, fed by a run's events.

``Progress`` is an ``on_event`` listener: ``await p.run(on_event=Progress())``.
On a terminal it keeps one status line up to date (tasks done, running,
failed, retries); elsewhere (CI logs, pipes) it prints one line per retry and
per failure instead. ``summary()`` renders the per-task table afterwards.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from .orchestration import (
    FINAL_STATES,
    Event,
    RunFinished,
    RunStarted,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
)

__all__ = ["Progress", "format_duration", "format_table", "one_line"]


def format_duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain left-aligned text table with a header rule."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def one_line(text: str, width: int = 80) -> str:
    """The first line of ``text``, cut to ``width`` characters."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


@dataclass(slots=True)
class _TaskLine:
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    error: str = ""
    reason: str = ""


class Progress:
    """Listener rendering a run's progress to ``stream`` (default: stderr).

    :param live: redraw one status line in place; default: when ``stream`` is a terminal.
    :param min_interval: seconds between redraws, so 10,000 events cost few writes.
    """

    def __init__(
        self, stream: TextIO | None = None, *, live: bool | None = None, min_interval: float = 0.1
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.min_interval = min_interval
        self.pipeline = ""
        self.run_id = ""
        self.status = ""
        self.retries = 0
        self.tasks: dict[str, _TaskLine] = {}
        self._last_draw = 0.0

    def __call__(self, event: Event) -> None:
        """Take one event (the engine calls this in emission order)."""
        if isinstance(event, TaskStateChanged):
            self._task(event)
        elif isinstance(event, TaskRetrying):
            self.retries += 1
            self.tasks.setdefault(event.key, _TaskLine()).attempts = event.attempt
            self._note(f"retry {event.key}: attempt {event.attempt} failed: {_err(event.error)}")
        elif isinstance(event, RunStarted):
            self.pipeline, self.run_id = event.pipeline, event.run_id
            self.tasks = {key: _TaskLine() for key in event.task_keys}
        elif isinstance(event, RunFinished):
            self.status = event.status
            self.close()
            return
        self._draw()

    def _task(self, event: TaskStateChanged) -> None:
        line = self.tasks.setdefault(event.key, _TaskLine())
        line.state, line.attempts = event.state, max(line.attempts, event.attempt)
        line.reason = event.reason or line.reason
        if event.state is TaskState.RUNNING:
            line.started = line.started or event.time
        elif event.state in FINAL_STATES:
            line.finished = event.time
        if event.error is not None:
            line.error = _err(event.error)
        if event.state is TaskState.FAILED:
            self._note(f"failed {event.key}: {line.error}")

    def counts(self) -> dict[str, int]:
        """Tasks done (in a final state), running, failed, and retries so far."""
        states = [t.state for t in self.tasks.values()]
        return {
            "done": sum(s in FINAL_STATES for s in states),
            "running": states.count(TaskState.RUNNING),
            "failed": states.count(TaskState.FAILED) + states.count(TaskState.UPSTREAM_FAILED),
            "retries": self.retries,
        }

    def status_line(self) -> str:
        """``etl: 12/200 done, 8 running, 1 failed, 3 retries``."""
        c = self.counts()
        return (
            f"{self.pipeline}: {c['done']}/{len(self.tasks)} done, {c['running']} running, "
            f"{c['failed']} failed, {c['retries']} retries"
        )

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.live or (not force and now - self._last_draw < self.min_interval):
            return
        self._last_draw = now
        self.stream.write("\r\x1b[2K" + self.status_line())
        self.stream.flush()

    def _note(self, text: str) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self._draw(force=True)

    def close(self) -> None:
        """Draw the final status line and end it (live mode only)."""
        if self.live:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()

    def summary(self) -> str:
        """The per-task table: state, attempts, duration and error or reason."""
        rows = [
            (
                key,
                t.state.value,
                t.attempts,
                format_duration(
                    None if t.started is None else (t.finished or t.started) - t.started
                ),
                one_line(t.error or t.reason),
            )
            for key, t in self.tasks.items()
        ]
        return format_table(("TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR / REASON"), rows)


def _err(error: BaseException) -> str:
    return one_line(f"{type(error).__name__}: {error}")
