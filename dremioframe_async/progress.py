"""A live progress display and a final summary table, fed by a run's events.

``Progress`` is an ``on_event`` listener: ``await p.run(on_event=Progress())``.
On a terminal it keeps one status line up to date (tasks done, running,
failed, retries); elsewhere (CI logs, pipes) it prints one line per retry and
per failure instead. ``summary()`` renders the per-task table afterwards.

Every message is shown whole, with its exception type: long ones are wrapped,
never cut, and control characters are escaped (``\x1b`` is printed as those
four characters), so text from a task cannot drive the terminal.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from ._masking import error_text, mask_text
from .orchestration import (
    FINAL_STATES,
    Event,
    RunFinished,
    RunStarted,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
)

__all__ = [
    "Progress",
    "describe",
    "format_duration",
    "format_table",
    "output_width",
    "printable",
]

MIN_WRAP = 30  # the wrapped column never gets narrower than this


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


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` with control and other unprintable characters escaped.

    Newlines are kept when ``newlines`` is true (escaped too otherwise); every
    other character of Unicode category C (controls, format characters such as
    bidi overrides, lone surrogates) is shown as its Python escape, ``\x1b``.
    """
    if text.isprintable() and "\n" not in text:
        return text
    return "".join(
        c
        if (c == "\n" and newlines) or not unicodedata.category(c).startswith("C")
        else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


def describe(error: BaseException) -> str:
    """``TypeName: message``, whole, printable and masked (no secret-keyed value or
    URL password is printed)."""
    text = mask_text(error_text(error))
    name = type(error).__name__
    return printable(f"{name}: {text}" if text else name)


def output_width() -> int | None:
    """``$COLUMNS``, else the terminal's width; None (no wrapping) when stdout is not a terminal."""
    if os.environ.get("COLUMNS", "").isdigit() or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _wrap(text: str, width: int | None) -> list[str]:
    lines = printable(text).splitlines() or [""]
    if width is None:
        return lines
    wrapped: list[str] = []
    for line in lines:
        wrapped += textwrap.wrap(
            line, width, break_on_hyphens=False, drop_whitespace=False, replace_whitespace=False
        ) or [""]
    return [w.rstrip() for w in wrapped]


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, width: int | None = 0
) -> str:
    """A plain left-aligned text table with a header rule.

    The last column is wrapped so that lines fit in ``width`` characters (0: the
    terminal's width, see :func:`output_width`; None: no wrapping); nothing is
    ever cut. Every cell is made printable; only the last one may span several lines.
    """
    head = [printable(str(c), newlines=False) for c in headers]
    body = [[printable(str(c), newlines=False) for c in row[:-1]] for row in rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head) - 1)]
    if width == 0:
        width = output_width()
    room = None if width is None else max(MIN_WRAP, width - sum(widths) - 2 * len(widths))
    lasts = [_wrap(str(row[-1]), room) for row in rows]
    widths.append(max(len(line) for cell in [[head[-1]], *lasts] for line in cell))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    for cells, last in zip(body, lasts, strict=True):
        out.append(line([*cells, last[0]]))
        out += [line([""] * len(cells) + [more]) for more in last[1:]]
    return "\n".join(out)


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

    def expect(self, keys: Iterable[str]) -> None:
        """Count ``keys`` (a fan-out's instances, once their number is known) before
        their first event, so the totals shown stay put while they start."""
        for key in keys:
            self.tasks.setdefault(key, _TaskLine())

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
        name = printable(self.pipeline, newlines=False)
        return (
            f"{name}: {c['done']}/{len(self.tasks)} done, {c['running']} running, "
            f"{c['failed']} failed, {c['retries']} retries"
        )

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.live or (not force and now - self._last_draw < self.min_interval):
            return
        self._last_draw = now
        self.stream.write("\r\x1b[2K" + self.status_line())
        self.stream.flush()

    def note(self, text: str) -> None:
        """Print a line of text above the status line (which is redrawn after it)."""
        self._note(text)

    def _note(self, text: str) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K")
        # Whole and printable; the lines after the first are indented under it.
        self.stream.write(printable(text).replace("\n", "\n    ") + "\n")
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
                t.error or t.reason,
            )
            for key, t in self.tasks.items()
        ]
        return format_table(("TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR / REASON"), rows)


def _err(error: BaseException) -> str:
    return describe(error)
