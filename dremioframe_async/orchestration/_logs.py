"""Task log capture: every log record emitted during a task attempt, kept per attempt.

Capture is one :class:`logging.Handler` on the root logger, added while at least
one capturing run is going and removed after the last one: the user's own
loggers, levels and handlers are never changed. Which attempt a record belongs
to is carried by a context variable set around each attempt, so it follows the
task into the coroutines it starts and the worker thread of a plain function
(anyio copies the context into the thread). A record emitted outside any
attempt is ignored.

A plain task (the runner's fast path: one attempt, nothing else to set up) costs
less: the runner sets the variable to ``(run logs, node)`` and never resets it,
and the attempt's :class:`AttemptLog` is made with its first line. The attempt
is open while the node is RUNNING; the run ends it where the node settles
(:meth:`RunLogs.end`), before the node's final state is emitted. A line filed
later (a thread or a stray coroutine the task left behind) finds the node
settled and is ignored. Each runner puts back the value the run started with
(``Run.log_outside``) when it starts and before any other task, so code outside
attempts sees what it would see without the plain path: in a run nested in a
task, that task's capture. In a run that captures, a task that opts out sets the
variable to None for its attempt (:class:`Uncaptured`).

Each attempt keeps a bounded buffer (the newest ``max_lines`` lines and
``max_bytes`` bytes of text). The lines travel on the run's event stream as
:class:`~._events.TaskLogged` events: while the attempt runs, a flusher sends
what is new every ``flush_interval`` seconds (so a UI can tail it), and the
attempt's end sends the rest before its final state. Each event says which line
is the oldest still kept, so a store drops what the buffer dropped, and a
reader shows a marker where lines were lost.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from ._errors import ArgumentError
from ._events import LogLine, TaskLogged
from ._states import TaskState

__all__ = [
    "CAPTURE_LOCK",
    "CURRENT_LOG",
    "AttemptLog",
    "LogCapture",
    "RunLogs",
    "ShippedLogs",
    "TaskLogger",
    "Uncaptured",
    "run_logs",
    "shipped_logs",
    "task_logger",
]

# An attempt's log, or a plain task's ``(RunLogs, node)`` (its log made with its first line).
CURRENT_LOG: contextvars.ContextVar[AttemptLog | tuple[RunLogs, Any] | None] = (
    contextvars.ContextVar("dremioframe_async_attempt_log", default=None)
)
_RUNNING = TaskState.RUNNING
_FORMAT = logging.Formatter("%(message)s")  # message, then the traceback of exc_info


@dataclass(frozen=True, slots=True)
class LogCapture:
    """How a run captures its tasks' log lines (``pipeline.run(capture_logs=...)``).

    :param max_lines: newest lines kept per attempt; older ones are dropped, with a marker.
    :param max_bytes: at most this much message text (UTF-8) kept per attempt.
    :param level: records below this level are not kept (the loggers' own levels
        apply first: capture never changes them).
    :param flush_interval: seconds between sending a running attempt's new lines.
    :raises ArgumentError: for a limit that is not a whole number >= 1, or an
        interval that is not a positive number.
    """

    max_lines: int = 1000
    max_bytes: int = 1 << 20
    level: int = logging.NOTSET
    flush_interval: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_lines", "max_bytes", "level"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ArgumentError(f"LogCapture: {name} must be a whole number, got {value!r}")
        if self.max_lines < 1 or self.max_bytes < 1:
            raise ArgumentError("LogCapture: max_lines and max_bytes must be >= 1")
        interval = self.flush_interval
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ArgumentError(
                f"LogCapture: flush_interval must be a positive number, got {interval!r}"
            )


class AttemptLog:
    """The bounded buffer of one attempt's lines; written from any thread.

    Also the attempt's capture scope (``with``): entering makes it the current
    attempt of this context, leaving sends its lines. Its buffer is made, and the
    run's flusher told of it, with the first line: an attempt that logs nothing
    costs a context variable and one lock.
    """

    __slots__ = ("attempt", "buffer", "key", "open", "run", "sent", "seq", "token")

    def __init__(self, run: RunLogs, key: str, attempt: int) -> None:
        self.run = run
        self.key = key
        self.attempt = attempt
        self.buffer: _Buffer | None = None
        self.seq = 0  # lines appended so far (and lines dropped before they came back)
        self.sent = 0  # the seq of the last line handed to the event stream
        self.open = True

    def __enter__(self) -> AttemptLog:
        self.token = CURRENT_LOG.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        CURRENT_LOG.reset(self.token)
        self.close()

    def close(self) -> None:
        """End the attempt: a thread left behind by a timeout logs no more here, and
        the lines not sent yet are sent.

        Without the capture lock when no thread is filing a line: a handler checks
        ``open`` under the lock, so one that holds it may have seen it still open;
        waiting for the lock then lets that line in before the rest is sent. One
        that takes the lock after ``open`` went False files nothing (an attempt
        that logs nothing costs no lock).
        """
        self.open = False
        if _LOCK.locked():
            with _LOCK:
                pass
        if self.buffer is not None:
            self.run.open.discard(self)
            self.run.send(self)

    def append(self, record: logging.LogRecord | _Shipped, message: str) -> None:
        """Keep one line (the caller holds the capture lock)."""
        settings = self.run.settings
        limit = settings.max_bytes
        size = len(message) if message.isascii() else len(message.encode("utf-8", "replace"))
        if size > limit:  # one line larger than the whole budget: keep its start
            message = message.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")
            size = limit
        buffer = self.buffer
        if buffer is None:
            buffer = self.buffer = _Buffer()
            self.run.open.add(self)  # the flusher sends its lines while it runs
        self.seq += 1
        buffer.lines.append(
            LogLine(self.seq, record.created, record.levelname, record.name, message)
        )
        buffer.sizes.append(size)
        buffer.bytes += size
        while len(buffer.lines) > settings.max_lines or buffer.bytes > limit:
            buffer.lines.popleft()
            buffer.bytes -= buffer.sizes.popleft()

    def take_new(self) -> tuple[tuple[LogLine, ...], int] | None:
        """Lines not sent yet and the oldest seq still kept; None when nothing changed."""
        new = self.seq - self.sent
        if not new or self.buffer is None:
            return None
        kept = self.buffer.lines
        lines = tuple(kept[i] for i in range(max(0, len(kept) - new), len(kept)))
        self.sent = self.seq
        first = kept[0].seq if kept else self.seq + 1
        return lines, first


class Uncaptured:
    """The scope of an attempt whose task opts out (``capture_logs=False``) in a run
    that captures: what it logs is captured nowhere, not even by a task whose run
    this one is nested in."""

    __slots__ = ("token",)

    def __enter__(self) -> Uncaptured:
        self.token = CURRENT_LOG.set(None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        CURRENT_LOG.reset(self.token)


class _Buffer:
    """An attempt's kept lines and their sizes, made with its first line."""

    __slots__ = ("bytes", "lines", "sizes")

    def __init__(self) -> None:
        self.lines: deque[LogLine] = deque()
        self.sizes: deque[int] = deque()
        self.bytes = 0


class ShippedLogs:
    """What an executor needs to capture an attempt's lines elsewhere and hand them back.

    ``limits`` is ``(max_lines, max_bytes, level)`` for the capture on the worker;
    ``add(lines, dropped)`` files the lines it sends back, as
    ``(time, level, logger, message)`` tuples, under the attempt (``dropped``: lines
    the worker had to drop first, counted so the marker says how many).
    """

    __slots__ = ("limits", "log")

    def __init__(self, log: AttemptLog) -> None:
        self.log = log
        settings = log.run.settings
        self.limits = (settings.max_lines, settings.max_bytes, settings.level)

    def add(self, lines: Sequence[tuple[float, str, str, str]], dropped: int = 0) -> None:
        log = self.log
        with _LOCK:
            if not log.open:
                return
            log.seq += dropped
            for created, level, logger, message in lines:
                log.append(_Shipped(created, level, logger), message)


class _Shipped:
    """The fields of a record that came back from another process."""

    __slots__ = ("created", "levelname", "name")

    def __init__(self, created: float, levelname: str, name: str) -> None:
        self.created = created
        self.levelname = levelname
        self.name = name


def shipped_logs() -> ShippedLogs | None:
    """The current attempt's :class:`ShippedLogs`, or None when it captures nothing."""
    log = _attempt_log(CURRENT_LOG.get())
    return ShippedLogs(log) if log is not None and log.open else None


def _attempt_log(current: AttemptLog | tuple[RunLogs, Any] | None) -> AttemptLog | None:
    """The attempt log ``current`` stands for, a plain task's made now; None: outside one."""
    if isinstance(current, tuple):
        run, node = current
        with _LOCK:
            return run.log_of(node)
    return current


class _CaptureHandler(logging.Handler):
    """The one root handler: files each record under the attempt in the context."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.users = 0

    def handle(self, record: logging.LogRecord) -> bool:
        # Overridden rather than ``emit`` to skip Handler.handle's lock: the
        # buffers have their own, and most records (outside attempts) need none.
        log = CURRENT_LOG.get()
        if log is None:
            return False
        if isinstance(log, tuple):  # a plain task's: its log is made with its first line
            run, node = log
            if node.state is not _RUNNING or record.levelno < run.settings.level:
                return False
            message = self._format(record)
            if message is None:
                return False
            with _LOCK:
                attempt = run.log_of(node)
                if attempt is not None and attempt.open:
                    attempt.append(record, message)
            return True
        if not log.open or record.levelno < log.run.settings.level:
            return False
        message = self._format(record)
        if message is None:
            return False
        with _LOCK:
            if log.open:
                log.append(record, message)
        return True

    def _format(self, record: logging.LogRecord) -> str | None:
        try:
            return _FORMAT.format(record)
        except Exception:
            self.handleError(record)
            return None

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() is used
        self.handle(record)


_LOCK = threading.Lock()
CAPTURE_LOCK = _LOCK  # the runner checks it when a plain task settles (``RunLogs.end``)
_HANDLER = _CaptureHandler()
_HANDLERS_LOCK = getattr(logging, "_lock", None) or threading.RLock()  # logging's own


def _install() -> None:
    with _LOCK:
        _HANDLER.users += 1
        if _HANDLER.users == 1:
            logging.getLogger().addHandler(_HANDLER)


def _uninstall() -> None:
    with _LOCK:
        _HANDLER.users -= 1
        if _HANDLER.users == 0:
            remove_handler(logging.getLogger(), _HANDLER)


def remove_handler(logger: logging.Logger, handler: logging.Handler) -> None:
    """``logger.removeHandler(handler)`` without making a record in flight skip a handler.

    ``Logger.removeHandler`` deletes from the list that another thread may be
    walking in ``callHandlers`` at that moment, and the walk then skips the handler
    that moved into the removed one's place: the user's handler, or another task's
    capture (CPython gh-79366). The list is replaced by a
    copy instead, so a walk in progress finishes on the list it started with.
    (``addHandler`` appends, which skips nothing.) Taken under logging's own lock,
    as its methods do.
    """
    with _HANDLERS_LOCK:
        if handler in logger.handlers:
            logger.handlers = [h for h in logger.handlers if h is not handler]


class RunLogs:
    """One run's capture: an :class:`AttemptLog` per attempt, and sending their lines."""

    def __init__(self, run_id: str, pipeline: str, settings: LogCapture, emit: Any) -> None:
        self.run_id = run_id
        self.pipeline = pipeline
        self.settings = settings
        self._emit = emit
        self.open: set[AttemptLog] = set()
        # Plain tasks' attempt logs, each made with its first line (see the module's doc).
        self.lazy: dict[Any, AttemptLog] = {}

    def attempt(self, key: str, number: int) -> AttemptLog:
        """The scope capturing what is logged in it as attempt ``number`` of ``key``."""
        return AttemptLog(self, key, number)

    def log_of(self, node: Any) -> AttemptLog | None:
        """The log of plain task ``node``'s attempt, made now if need be; None once the
        node is no longer RUNNING. The caller holds the capture lock."""
        log = self.lazy.get(node)
        if log is None:
            if node.state is not _RUNNING:
                return None
            log = self.lazy[node] = AttemptLog(self, node.key, node.attempts)
        return log

    def end(self, node: Any) -> None:
        """End plain task ``node``'s attempt, whose final state was just set: send its
        lines. The runner calls it only when a log was made, or when a thread holds the
        capture lock, which may be making one (it sees the new state once it is done)."""
        if _LOCK.locked():
            with _LOCK:
                pass
        log = self.lazy.pop(node, None)
        if log is not None:
            log.close()

    def send(self, log: AttemptLog) -> None:
        """Emit ``log``'s lines not sent yet, if any."""
        with _LOCK:
            new = log.take_new()
        if new is not None:
            lines, first = new
            self._emit(TaskLogged(self.run_id, self.pipeline, log.key, log.attempt, lines, first))

    def flush(self) -> None:
        """Send the new lines of every running attempt."""
        for log in list(self.open):
            if log.seq != log.sent:
                self.send(log)

    async def flusher(self) -> None:
        """Flush every ``flush_interval`` seconds until cancelled."""
        while True:
            await anyio.sleep(self.settings.flush_interval)
            self.flush()


@asynccontextmanager
async def run_logs(
    run_id: str, pipeline: str, settings: LogCapture | None, emit: Any
) -> AsyncIterator[RunLogs | None]:
    """Capture for one run while the block runs; None when off or nobody listens."""
    if settings is None or emit is None:
        yield None
        return
    logs = RunLogs(run_id, pipeline, settings, emit)
    _install()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(logs.flusher)
            try:
                yield logs
            finally:
                tg.cancel_scope.cancel()
    finally:
        _uninstall()


def capture_settings(value: object) -> LogCapture | None:
    """``run(capture_logs=...)``: True (defaults), False (off) or a :class:`LogCapture`.

    :raises ArgumentError: for anything else.
    """
    if value is True:
        return _DEFAULT
    if value is False:
        return None
    if isinstance(value, LogCapture):
        return value
    raise ArgumentError(
        f"capture_logs must be True, False or a LogCapture, got {type(value).__name__}"
    )


_DEFAULT = LogCapture()


class TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """``context.log``: a logger bound to the task, whose INFO lines are always captured.

    Records go through the logger as usual (to the user's handlers, at the user's
    levels). A record the logger's level would drop is still kept in the task's
    log, at INFO and above, without reaching any other handler.
    """

    def __init__(self, logger: logging.Logger, run_id: str, key: str) -> None:
        super().__init__(logger, {"dremioframe_run_id": run_id, "dremioframe_task": key})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}  # type: ignore[dict-item]
        return msg, kwargs

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(level):
            super().log(level, msg, *args, **kwargs)
            return
        log = CURRENT_LOG.get()
        if log is None:
            return
        run = log[0] if isinstance(log, tuple) else log.run
        if level < max(logging.INFO, run.settings.level):
            return
        exc_info = kwargs.get("exc_info")
        if exc_info is True or (isinstance(exc_info, BaseException)):
            exc_info = (
                sys.exc_info()
                if exc_info is True
                else (type(exc_info), exc_info, exc_info.__traceback__)
            )
        record = logging.LogRecord(self.logger.name, level, "", 0, msg, args, exc_info or None)
        _HANDLER.handle(record)


def task_logger(name: str, run_id: str, key: str) -> TaskLogger:
    """The ``context.log`` of task instance ``key`` (a task named ``name``) in ``run_id``."""
    return TaskLogger(logging.getLogger(f"dremioframe_async.task.{name}"), run_id, key)
