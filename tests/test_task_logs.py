"""Task log capture: attribution under concurrency, bounds, opt-outs, the user's config kept.

Engine tests run on asyncio and trio; the store tests run on memory, SQLite and
PostgreSQL (asyncio, through the shared store fixtures).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import _store_fixtures
import anyio
import pytest

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import (
    ArgumentError,
    Event,
    LogCapture,
    TaskLogged,
    TaskState,
    TaskStateChanged,
    _logs,
)
from dremioframe_async.store import LogEntry, LogQuery, MemoryStore, RunStore, drop_marker
from dremioframe_async.store._codec import storable_text

store_factory = _store_fixtures.store_factory
store = _store_fixtures.store

SHARED = logging.getLogger("tests.shared_library")


@pytest.fixture
def shared_logger_at_info() -> Iterator[None]:
    """The user's configuration in these tests: a library logger at INFO."""
    before = SHARED.level
    SHARED.setLevel(logging.INFO)
    try:
        yield
    finally:
        SHARED.setLevel(before)


def library_call(who: str, n: int) -> None:
    """A third-party function, shared by every task, that logs through its own logger."""
    SHARED.info("%s library line %d", who, n)


async def read_all(store: Any, run_id: str, **kw: Any) -> list[LogEntry]:
    lines: list[LogEntry] = []
    after = 0
    while True:
        page = await store.get_logs(LogQuery(run_id, after=after, limit=700, **kw))
        lines.extend(page.lines)
        after = page.next_after
        if not page.more:
            return lines


def build_concurrent(n: int, attempts: dict[str, int], lock: threading.Lock) -> Pipeline:
    """``n`` tasks, each logging 5 lines naming its key and attempt.

    A third of them are plain functions (worker threads); the others are
    coroutines whose lines come from a child task they start, the shared library
    logger and ``context.log``. Every tenth fails its first attempt and retries.
    """
    p = Pipeline("many", max_concurrency=n)

    def attempt_of(key: str) -> int:
        with lock:
            attempts[key] = attempts.get(key, 0) + 1
            return attempts[key]

    for i in range(n):
        key = f"t{i}"
        if i % 3 == 0:

            def sync_body(key: str = key, i: int = i) -> None:
                a = attempt_of(key)
                for j in range(5):
                    library_call(f"{key}#{a}", j)
                if i % 10 == 0 and a == 1:
                    raise RuntimeError("first attempt fails")

            p.add_task(task(name=key, retries=1)(sync_body)())
        else:

            async def async_body(context: Any = None, key: str = key, i: int = i) -> None:
                a = attempt_of(key)
                context.log.info("%s#%d own line 0", key, a)
                async with anyio.create_task_group() as tg:  # a child task of the task
                    tg.start_soon(_child_logs, f"{key}#{a}")
                library_call(f"{key}#{a}", 3)
                await anyio.sleep(0)
                context.log.warning("%s#%d own line 4", key, a)
                if i % 10 == 0 and a == 1:
                    raise RuntimeError("first attempt fails")

            p.add_task(task(name=key, retries=1)(async_body)())
    return p


async def _child_logs(who: str) -> None:
    for j in (1, 2):
        await anyio.sleep(0)  # interleave with every other task's lines
        SHARED.info("%s child line %d", who, j)


@pytest.mark.anyio
async def test_every_line_belongs_to_its_task_and_attempt(shared_logger_at_info: None) -> None:
    n = 1000
    attempts: dict[str, int] = {}
    memory = MemoryStore()
    result = await build_concurrent(n, attempts, threading.Lock()).run(store=memory)
    assert result.status == "SUCCESS"
    lines = await read_all(memory, result.run_id)
    per_attempt: dict[tuple[str, int], list[LogEntry]] = {}
    for line in lines:
        who = re.match(r"(t\d+)#(\d+) ", line.message)
        assert who is not None, line
        # Attributed to the task and attempt that emitted it, none to another.
        assert (line.key, line.attempt) == (who[1], int(who[2])), line
        per_attempt.setdefault((line.key, line.attempt), []).append(line)
    expected = {(f"t{i}", a) for i in range(n) for a in (1, 2) if a == 1 or i % 10 == 0}
    assert set(per_attempt) == expected  # none lost: every attempt has its lines
    for found in per_attempt.values():
        assert [x.seq for x in found] == [1, 2, 3, 4, 5]
        assert all(x.dropped_before == 0 for x in found)


@pytest.mark.anyio
async def test_capture_leaves_the_users_logging_config_alone() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    mine = logging.getLogger("dremioframe_async.task.quiet")
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    user_handler = Collect()
    root.addHandler(user_handler)
    during: list[list[logging.Handler]] = []

    @task(name="quiet")
    async def quiet(context: Any = None) -> None:
        during.append(list(root.handlers))
        context.log.info("kept in the task log only")
        logging.getLogger("tests.unconfigured").info("dropped by the user's levels")

    events: list[Event] = []
    try:
        await Pipeline("cfg").add_task(quiet()).run(on_event=events.append)
    finally:
        root.removeHandler(user_handler)
    assert root.handlers == handlers
    assert root.level == level
    assert mine.level == logging.NOTSET
    assert len(during[0]) == len(handlers) + 2  # the user's and, for the run, the capture's
    # context.log's INFO line is captured though the root level (WARNING) drops it ...
    logged = [e for e in events if isinstance(e, TaskLogged)]
    assert [line.message for e in logged for line in e.lines] == ["kept in the task log only"]
    # ... and the user's own handler did not get it: their levels still rule there.
    assert [r.getMessage() for r in seen] == []


@pytest.mark.anyio
async def test_opting_out_per_run_and_per_task(shared_logger_at_info: None) -> None:
    @task(name="chatty")
    async def chatty() -> None:
        SHARED.info("chatty line")

    @task(name="secret", capture_logs=False)
    async def secret() -> None:
        SHARED.info("secret line")

    def pipeline() -> Pipeline:
        return Pipeline("opt").add_task(chatty()).add_task(secret())

    events: list[Event] = []
    await pipeline().run(on_event=events.append)
    logged = [
        (e.key, line.message) for e in events if isinstance(e, TaskLogged) for line in e.lines
    ]
    assert logged == [("chatty", "chatty line")]
    events.clear()
    await pipeline().run(on_event=events.append, capture_logs=False)
    assert not any(isinstance(e, TaskLogged) for e in events)
    assert logging.getLogger().handlers == [
        h for h in logging.getLogger().handlers if type(h).__name__ != "_CaptureHandler"
    ]


def test_capture_settings_are_checked() -> None:
    with pytest.raises(ArgumentError, match="max_lines"):
        LogCapture(max_lines=0)
    with pytest.raises(ArgumentError, match="flush_interval"):
        LogCapture(flush_interval=0)
    with pytest.raises(ArgumentError, match="capture_logs"):
        anyio.run(functools.partial(Pipeline("x").run, capture_logs="yes"))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="capture_logs must be True or False"):
        task(capture_logs=1)(lambda: None)  # type: ignore[call-overload]


def _chatty_pipeline(lines: int, halfway: anyio.Event) -> Pipeline:
    @task(name="chatty")
    async def chatty() -> None:
        log = logging.getLogger("tests.chatty")
        log.setLevel(logging.INFO)
        try:
            for i in range(1, lines // 2 + 1):
                log.info("line %d", i)
            await halfway.wait()  # the first half has been sent and stored: trims hit rows
            for i in range(lines // 2 + 1, lines + 1):
                log.info("line %d", i)
        finally:
            log.setLevel(logging.NOTSET)

    return Pipeline("bounded").add_task(chatty())


def _when_logged(halfway: anyio.Event) -> Any:
    def listener(event: Event) -> None:
        if isinstance(event, TaskLogged):
            halfway.set()

    return listener


@pytest.mark.asyncio
async def test_ten_thousand_lines_keep_the_newest_thousand(store: RunStore) -> None:
    halfway = anyio.Event()
    result = await _chatty_pipeline(10_000, halfway).run(
        store=store,
        on_event=_when_logged(halfway),
        capture_logs=LogCapture(flush_interval=0.01),
    )
    lines = await read_all(store, result.run_id, key="chatty")
    assert [x.message for x in lines] == [f"line {i}" for i in range(9001, 10_001)]
    assert [x.seq for x in lines] == list(range(9001, 10_001))
    assert lines[0].dropped_before == 9000
    assert not any(x.dropped_before for x in lines[1:])
    assert "9000 earlier lines dropped" in drop_marker(lines[0].dropped_before)
    # Paging by id reads the same lines in pages, and an attempt filter selects them.
    page = await store.get_logs(LogQuery(result.run_id, key="chatty", attempt=1, limit=10))
    assert page.more
    assert [x.seq for x in page.lines] == list(range(9001, 9011))
    after = await store.get_logs(LogQuery(result.run_id, after=page.next_after, limit=5))
    assert [x.seq for x in after.lines] == list(range(9011, 9016))


@pytest.mark.asyncio
async def test_the_byte_bound_keeps_the_newest_megabyte(store: RunStore) -> None:
    @task(name="wide")
    async def wide() -> None:
        log = logging.getLogger("tests.wide")
        log.setLevel(logging.INFO)
        try:
            for i in range(300):
                log.info("%03d %s", i, "x" * 9_996)  # 10,000 bytes a line
        finally:
            log.setLevel(logging.NOTSET)

    result = await Pipeline("wide").add_task(wide()).run(store=store)
    lines = await read_all(store, result.run_id)
    assert len(lines) == 104  # 1 MiB / 10,000 bytes: the newest 104 lines
    assert lines[0].message.startswith("196 ")
    assert lines[0].dropped_before == 196
    assert sum(len(x.message) for x in lines) <= 1 << 20


@pytest.mark.anyio
async def test_a_timed_out_threads_later_lines_belong_to_no_attempt(
    shared_logger_at_info: None,
) -> None:
    attempt_two_logged, late_line_logged = threading.Event(), threading.Event()
    calls: list[int] = []

    @task(name="stuck", retries=1, timeout=0.5)
    def stuck() -> None:
        calls.append(len(calls) + 1)
        n = calls[-1]
        SHARED.info("attempt %d starts", n)
        if n == 1:  # times out; its thread goes on and logs once attempt 2 runs
            attempt_two_logged.wait(20)
            SHARED.info("late line of attempt 1")
            late_line_logged.set()
            return
        attempt_two_logged.set()
        late_line_logged.wait(20)  # attempt 2 is still open when the late line comes

    memory = MemoryStore()
    result = await Pipeline("late").add_task(stuck()).run(store=memory)
    assert result.status == "SUCCESS"
    assert late_line_logged.is_set()
    lines = await read_all(memory, result.run_id)
    assert [(x.attempt, x.message) for x in lines] == [
        (1, "attempt 1 starts"),
        (2, "attempt 2 starts"),
    ]


@pytest.mark.anyio
async def test_a_bare_coroutine_tasks_lines_are_its_own(shared_logger_at_info: None) -> None:
    """Tasks without retries or a timeout (the runner's inline capture): each line is
    filed under its task, and a thread one leaves behind logs into no attempt."""
    ended, late_logged = threading.Event(), threading.Event()

    def late() -> None:
        ended.wait(20)
        SHARED.info("late line of quiet")
        late_logged.set()

    @task(name="quiet")
    async def quiet() -> None:
        threading.Thread(target=contextvars.copy_context().run, args=(late,)).start()

    @task(name="loud")
    async def loud() -> None:
        SHARED.info("line of loud")
        await anyio.sleep(0)
        SHARED.info("second line of loud")

    @task(name="after")
    def after() -> None:  # in a thread: waits for the late line without holding the loop
        ended.set()
        assert late_logged.wait(20)

    q, lo, af = quiet(), loud(), after()
    q >> af
    lo >> af
    memory = MemoryStore()
    result = await Pipeline("left").add_task(q).add_task(lo).run(store=memory)
    assert result.status == "SUCCESS"
    lines = await read_all(memory, result.run_id)
    assert [(x.key, x.attempt, x.seq, x.message) for x in lines] == [
        ("loud", 1, 1, "line of loud"),
        ("loud", 1, 2, "second line of loud"),
    ]


def test_a_closed_attempt_files_no_line_even_with_none_before(
    shared_logger_at_info: None,
) -> None:
    """An attempt that logged nothing, then closed: a line from its context after that
    (a thread left behind) is neither filed nor sent by the run's flusher."""
    sent: list[Any] = []
    run = _logs.RunLogs("r", "p", LogCapture(), sent.append)
    log = run.attempt("quiet", 1)
    _logs._install()
    try:
        token = _logs.CURRENT_LOG.set(log)
        left_behind = contextvars.copy_context()
        _logs.CURRENT_LOG.reset(token)
        log.close()
        left_behind.run(SHARED.info, "late line")
        run.flush()
    finally:
        _logs._uninstall()
    assert sent == []
    assert log.buffer is None
    assert run.open == set()


@pytest.mark.anyio
async def test_the_capture_level_drops_lower_records(shared_logger_at_info: None) -> None:
    @task(name="mixed")
    async def mixed(context: Any = None) -> None:
        SHARED.info("library info")
        SHARED.warning("library warning")
        context.log.info("own info")
        try:
            raise KeyError("k")
        except KeyError:
            context.log.error("own error", exc_info=True)

    events: list[Event] = []
    settings = LogCapture(level=logging.WARNING)
    await Pipeline("levels").add_task(mixed()).run(on_event=events.append, capture_logs=settings)
    lines = [line for e in events if isinstance(e, TaskLogged) for line in e.lines]
    assert [(x.level, x.message.splitlines()[0]) for x in lines] == [
        ("WARNING", "library warning"),
        ("ERROR", "own error"),
    ]
    assert "KeyError: 'k'" in lines[1].message  # the traceback is part of the line


@pytest.mark.asyncio
async def test_lines_a_database_cannot_hold_are_stored_escaped(store: RunStore) -> None:
    @task(name="odd")
    async def odd() -> None:
        logging.getLogger("tests.odd").warning("nul \x00 and lone \udc80 here")

    result = await Pipeline("odd").add_task(odd()).run(store=store)
    assert result.history_error is None
    (line,) = await read_all(store, result.run_id)
    expected = "nul \x00 and lone \udc80 here"
    if not isinstance(store, MemoryStore):
        expected = storable_text(expected)
    assert line.message == expected


@pytest.mark.anyio
async def test_a_plain_tasks_lines_come_before_its_end_and_a_copy_of_its_context_files_none_later(
    shared_logger_at_info: None,
) -> None:
    """The runner's plain path makes a task's log with its first line and ends it where
    the task settles: the lines are sent before the task's final state, and a thread
    holding a copy of the task's context files nothing once the task has ended, though
    a later task runs in the same runner meanwhile."""
    later, late_logged = threading.Event(), threading.Event()

    def late() -> None:
        later.wait(20)
        SHARED.info("late line of first")
        late_logged.set()

    @task(name="first")
    async def first() -> None:
        SHARED.info("line of first")
        threading.Thread(target=contextvars.copy_context().run, args=(late,)).start()

    @task(name="second")
    async def second() -> None:
        later.set()  # the thread logs while this task runs, after ``first`` ended
        assert await anyio.to_thread.run_sync(late_logged.wait, 20)
        SHARED.info("line of second")

    f, s = first(), second()
    f >> s
    events: list[Event] = []
    result = await Pipeline("plain_lines").add_task(f).run(on_event=events.append)
    assert result.status == "SUCCESS"
    logged = [
        (e.key, line.message) for e in events if isinstance(e, TaskLogged) for line in e.lines
    ]
    assert logged == [("first", "line of first"), ("second", "line of second")]
    for key in ("first", "second"):
        sent = next(i for i, e in enumerate(events) if isinstance(e, TaskLogged) and e.key == key)
        ended = next(
            i
            for i, e in enumerate(events)
            if isinstance(e, TaskStateChanged) and e.key == key and e.state is TaskState.SUCCESS
        )
        assert sent < ended, key


class _PlainNode:
    """What the capture reads of a plain task's node."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.attempts = 1
        self.state = _logs.TaskState.RUNNING


def test_a_plain_tasks_line_after_its_end_is_neither_filed_nor_sent(
    shared_logger_at_info: None,
) -> None:
    sent: list[Any] = []
    run = _logs.RunLogs("r", "p", LogCapture(), sent.append)
    node = _PlainNode("quiet")
    _logs._install()
    try:
        context = contextvars.copy_context()
        context.run(_logs.CURRENT_LOG.set, (run, node))
        context.run(SHARED.info, "its line")
        node.state = _logs.TaskState.SUCCESS
        run.end(node)
        context.run(SHARED.info, "late line")
        run.flush()
    finally:
        _logs._uninstall()
    assert [line.message for e in sent for line in e.lines] == ["its line"]
    assert run.lazy == {}
    assert run.open == set()


class _PausingNode(_PlainNode):
    """A node whose state, read by ``filer`` under the capture lock, is read as RUNNING
    and then held there until ``release()`` says go: a thread that saw the task
    running, and has not made its log yet, while the task settles."""

    def __init__(self, key: str, release: Any) -> None:
        super().__init__(key)
        self.filer: int | None = None
        self.read_running = threading.Event()
        self._release = release

    @property  # type: ignore[override]
    def state(self) -> _logs.TaskState:
        value = self._state
        if threading.get_ident() == self.filer and _logs.CAPTURE_LOCK.locked():
            self.read_running.set()
            self._release()
        return value

    @state.setter
    def state(self, value: _logs.TaskState) -> None:
        self._state = value


def test_a_plain_tasks_end_waits_for_a_line_being_filed_in_another_thread(
    shared_logger_at_info: None,
) -> None:
    """A thread that saw the task running under the capture lock, and has not made its
    log yet, when the task settles: the end waits for it and sends its line; nothing
    is made for the task after its end."""
    sent: list[Any] = []
    run = _logs.RunLogs("r", "p", LogCapture(), sent.append)
    returned = threading.Event()
    main = threading.get_ident()

    def main_waits_in_end() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code is _logs.RunLogs.end.__code__:
                return True
            frame = frame.f_back
        return False

    def until_main_is_in_end() -> None:
        # Until the main thread is inside ``end`` (blocked on the capture lock) or has
        # returned from it: a check on each tick, not a guess at how long it takes.
        while not main_waits_in_end() and not returned.wait(0.001):
            pass

    node = _PausingNode("busy", until_main_is_in_end)
    context = contextvars.copy_context()
    context.run(_logs.CURRENT_LOG.set, (run, node))

    def filing() -> None:
        node.filer = threading.get_ident()
        context.run(SHARED.info, "filed")

    _logs._install()
    try:
        thread = threading.Thread(target=filing)
        thread.start()
        assert node.read_running.wait(20)
        node.state = _logs.TaskState.SUCCESS
        run.end(node)
        returned.set()
        thread.join(20)
    finally:
        _logs._uninstall()
    assert [line.message for e in sent for line in e.lines] == ["filed"]
    assert run.lazy == {}
    assert run.open == set()


@pytest.mark.anyio
async def test_a_nested_runs_lines_go_where_they_would_in_either_order(
    shared_logger_at_info: None,
) -> None:
    """A task that runs a pipeline of its own: the inner tasks' lines are theirs, an
    inner task that opts out is captured nowhere, and lines outside the inner run's
    attempts (a resource opening) are the outer task's, whichever inner task ran
    first on the runner (a plain task leaves its capture set: the runner puts the
    run's back), on either backend."""

    @task(name="y")
    async def y() -> None:  # plain: the runner's fast path
        SHARED.info("line of inner y")

    @task(name="z", capture_logs=False, timeout=30)  # not plain; opts out
    async def z() -> None:
        SHARED.info("line of inner z")

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[str]:
        SHARED.info("opening w's resource")  # before w's attempt
        yield "resource"

    @task(name="w", resources=("res",))  # not plain
    async def w(res: str) -> None:
        SHARED.info("line of inner w")

    def lines(of: list[Event]) -> list[tuple[str, str]]:
        return [(e.key, ln.message) for e in of if isinstance(e, TaskLogged) for ln in e.lines]

    async def outer_and_inner(plain_first: bool) -> tuple[list[Any], list[Any]]:
        yy, zz, ww = y(), z(), w()
        if plain_first:
            yy >> zz >> ww
        else:
            zz >> ww >> yy
        inner = Pipeline("inner", max_concurrency=1, resources={"res": opened})
        inner.add_task(yy if plain_first else zz)
        inner_events: list[Event] = []

        @task(name="x")
        async def x() -> None:
            SHARED.info("line of outer x")
            await inner.run(on_event=inner_events.append)
            SHARED.info("x again")

        events: list[Event] = []
        result = await Pipeline("outer").add_task(x()).run(on_event=events.append)
        assert result.status == "SUCCESS"
        return lines(events), sorted(lines(inner_events))

    outer, inner = await outer_and_inner(plain_first=True)
    assert (outer, inner) == await outer_and_inner(plain_first=False)
    assert outer == [
        ("x", "line of outer x"),
        ("x", "opening w's resource"),  # the resource opens in the outer task's run
        ("x", "x again"),
    ]
    assert inner == [("w", "line of inner w"), ("y", "line of inner y")]
