"""The embedded default store: stdlib sqlite3, driven from a worker thread.

Every database call runs in one worker thread at a time (a ``CapacityLimiter``
of 1), never on the event loop. Plain batches of a run's records go to a writer
process instead, once it has started (``writer="process"``, the default for a
file; see ``_sqlite_writer``). The file uses WAL mode, so readers in other
processes never block the writer, and ``busy_timeout`` makes two processes that
write one file wait for each other instead of failing. One engine batch is one
``BEGIN IMMEDIATE`` transaction: once ``record()`` returns, its events survive
a crash of the process (``synchronous=NORMAL``; pass ``synchronous="FULL"`` to
survive power loss as well).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread

from .._telemetry import traceparent
from ..errors import DremioFrameError
from ..orchestration import PriorRun, Record, hand_back
from . import _sqlite_queue as queue
from ._attendance import (
    DEFAULT_CANCEL_POLL,
    DEFAULT_DEAD_AFTER,
    DEFAULT_HEARTBEAT,
    Attendance,
    check_liveness,
)
from ._codec import DEFAULT_MAX_RESULT_BYTES
from ._coordination import CancelOutcome, QueuedRun, encode_params
from ._errors import RunNotFound, StoreConfigError, StoreSchemaError, StoreUnavailable
from ._fold import (
    AttemptRow,
    Fold,
    Row,
    RunRow,
    StateRow,
    TaskRow,
    TaskValues,
    WrittenTasks,
    as_tuple,
)
from ._logs import LogFold, LogPage, LogQuery, log_page_of, log_sql
from ._model import RunInfo, StateEntry, TaskInfo
from ._owner import current_owner
from ._paging import PageSQL, RunPage, RunQuery, page_of
from ._pauses import PauseSQL
from ._sql import MIGRATIONS, columns, mapped_parents, migration, select, upsert, upsert_shared
from ._sqlite_writer import EARLY_FRAMES, PACKAGE_FILE, WriterProcess, plain_ends
from ._state import StateSQL, encode_state_value, entry
from ._views import prior_run, run_info, task_infos

__all__ = ["SQLiteStore"]

T = TypeVar("T")
logger = logging.getLogger("dremioframe_async.store")
SCHEMA_VERSION = len(MIGRATIONS)
# How often a process serving pipelines looks for queued runs (SQLite cannot notify).
QUEUE_POLL = 0.05
# Rows per multi-row upsert, at most (and fewer when SQLite binds fewer values).
_CHUNK = 512
# Runs ended by the store's thread that its writer process is yet to hear of, at most
# (it forgets them with its next batch; one it never hears of keeps a few keys).
_ENDED_KEPT = 10_000
# Every store of this process, so that a forked copy drops what belongs to its parent
# (see ``_forget_parent``); added to, and read at fork(), under ``_FORK_LOCK``.
_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
_FORK_LOCK = threading.Lock()  # one fork() at a time goes through the hooks below
_FORK_HELD = threading.local()  # whether this thread's fork() took ``_FORK_LOCK``


class SQLiteStore:
    """A :class:`RunStore` in one SQLite file, safe to share between processes on one host.

    The connection opens on first use (or ``async with``); opening migrates the
    schema and marks runs whose owner process died as ``INTERRUPTED``. The file's
    folder must exist, unless ``create_folder``. ``url`` is how the store is shown
    (``name``, errors): the URL it was opened from; by default ``sqlite:///`` and
    the path (three slashes before a relative path, four before an absolute one).

    ``writer="process"`` (the default) has a child process write the plain
    batches of runs' records (no errors, no results but small scalars): the loop's
    process then spends about 0.2 µs a record on them instead of folding and
    binding them under its GIL. The child starts with the store's first record,
    and the store's thread writes until it is ready; it leaves when the store
    closes or its process ends. ``writer="thread"`` writes everything in the
    thread (an in-memory database always does).

    :raises StoreConfigError: (a ``ValueError``) for a ``synchronous`` other than
        NORMAL or FULL, a negative ``busy_timeout`` or an unknown ``writer``.
    :raises StoreSchemaError: on first use, when the file has a newer schema.
    :raises StoreUnavailable: on any use, when the file cannot be opened, read or
        written (the message names it).
    """

    # Its record() folds the runner's task records as it folds events (DirectRecorder).
    takes_task_records: Literal[True] = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 30.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        heartbeat: float = DEFAULT_HEARTBEAT,
        dead_after: float = DEFAULT_DEAD_AFTER,
        cancel_poll: float = DEFAULT_CANCEL_POLL,
        url: str | None = None,
        create_folder: bool = False,
        writer: Literal["process", "thread"] = "process",
    ) -> None:
        check_liveness(heartbeat, dead_after)
        if synchronous not in ("NORMAL", "FULL"):
            raise StoreConfigError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if busy_timeout < 0:
            raise StoreConfigError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        if writer not in ("process", "thread"):
            raise StoreConfigError(f"writer must be 'process' or 'thread', got {writer!r}")
        self.path = str(path)
        self.name = url or f"sqlite:///{self.path}"
        self._create_folder = create_folder
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._max_result_bytes = max_result_bytes
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._written = WrittenTasks()
        self._identity: tuple[int, int] | None = None
        self.dead_after = dead_after
        self._attendance = Attendance(self._beat, self._poll, heartbeat, cancel_poll)
        self._process_writer = writer == "process" and self.path != ":memory:"
        self._spawn = self._process_writer  # at the next record
        self._writer: WriterProcess | None = None
        self._ended_here: list[str] = []  # runs ended by the thread, for the child to forget
        # A retired writer's early batches it may not have written (``_sqlite_writer``),
        # which the thread writes before anything else, and the child to reap first.
        self._carry: list[Record] = []
        self._carry_lock = threading.Lock()  # the loop hands some back; the thread writes
        self._to_reap: list[WriterProcess] = []
        # Held while the worker thread uses the connection, and by fork() (see
        # ``_forget_parent``): a forked copy never inherits it in mid-statement.
        self._conn_lock = threading.Lock()
        with _FORK_LOCK:  # not while fork() waits for the stores it knows
            _STORES.add(self)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.name})"

    def _forget_parent(self) -> None:
        """In a forked copy of this process: start afresh on the same file. Its own
        connection and writer process open with its first use; the parent's writer,
        and what it owes, are left to the parent.

        SQLite's connections must not cross fork(): the copy has the parent's record
        of its file locks without the locks, so it wrote unlocked, into a WAL the
        parent had removed (the file was left malformed, or a run's rows went missing
        while its run() said nothing). A connection opened next to an inherited one
        shares that record, so the inherited one is closed here (idle: fork() waits
        for ``_conn_lock``). The copy holds no lock the close could release.
        """
        if self.path != ":memory:":  # an in-memory database is the copy's own copy
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._limiter = None
        self._writer = None  # retired already (``_sqlite_writer``'s fork hook)
        self._spawn = self._process_writer
        self._to_reap, self._carry, self._ended_here = [], [], []
        self._carry_lock = threading.Lock()  # another thread may have held it at fork
        self._written = WrittenTasks()
        self._attendance = self._attendance.fresh()

    def path_hint(self) -> str:
        """For a relative path that exists only as an absolute one: a "did you mean".

        ``sqlite:///tmp/x.sqlite`` is ``./tmp/x.sqlite``, as in SQLAlchemy; this
        package used to read it as ``/tmp/x.sqlite``.
        """
        path = Path(self.path)
        if self.path == ":memory:" or path.is_absolute():
            return ""
        hint = f" (a relative path, from {Path.cwd()}"
        if Path("/", path).parent.is_dir():
            hint += f"; did you mean sqlite:////{path}, four slashes for an absolute path?"
        return hint + ")"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in the worker thread, after every batch the writer
        process was sent: what the store reads or writes here follows them."""
        writer = self._writer
        if writer is not None:
            if writer.owed:
                with contextlib.suppress(ConnectionError):  # retired: dropped below
                    await writer.answer()
            if writer.retired:
                self._drop_writer(writer)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(self._in_thread, fn, args, limiter=self._limiter)

    def _drop_writer(self, writer: WriterProcess) -> None:
        """Write in the thread from now on, starting with what ``writer`` may not
        have written, once it has exited (on the loop's thread)."""
        lost = writer.take_lost()
        if lost:
            with self._carry_lock:
                self._carry.extend(lost)
        if writer not in self._to_reap:
            self._to_reap.append(writer)
        if self._writer is writer:
            self._writer = None

    def _in_thread(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            self._reap()
            with self._conn_lock:
                conn = self._conn if self._conn is not None else self._connect()
                if self._carry:
                    self._write_carry(conn)
                return fn(conn, *args)
        except DremioFrameError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        folder = Path(self.path).parent
        if self.path != ":memory:" and not folder.is_dir():
            if not self._create_folder:
                raise StoreUnavailable(self.name, f"no such folder: {folder}{self.path_hint()}")
            folder.mkdir(parents=True, exist_ok=True)
        # The limiter serialises all use, so any worker thread may use the connection.
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            # SQLite's lower() folds ASCII only: the runs filter lower-cases as Python does.
            conn.create_function(UNICODE_LOWER, 1, _lower, deterministic=True)
            _enable_wal(conn, self._busy_timeout)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            _migrate(conn)
            queue.sweep(conn, self.dead_after)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._identity = file_identity(self.path)
        return conn

    def _check_file(self) -> None:
        """Fail when the file was deleted or replaced: writes to it would vanish silently."""
        if self._identity is not None and file_identity(self.path) != self._identity:
            raise StoreUnavailable(
                self.name,
                "the file was deleted or replaced while this store had it open; "
                "what was written to it since is lost",
            )

    async def record(self, events: Sequence[Record]) -> None:
        """Write one batch of events in one transaction.

        Text SQLite cannot hold (unpaired surrogates; NUL too, for one rule with
        PostgreSQL) is stored escaped (see ``_codec``) rather than failing the batch.

        A plain batch that ends no run goes to the writer process and is answered
        once sent; a run's end, and anything the store does next, waits until the
        child has written it (see ``_sqlite_writer``). If the child then cannot, this
        process's thread writes it, ahead of anything else, and the exception of a
        later ``record()`` of its run hands it back when the thread cannot either.

        :raises StoreUnavailable: when the file cannot be written.
        """
        batch = list(events)
        owner = current_owner()
        writer = self._writer
        if writer is not None:
            # Ready first: a batch is not looked through while the child is starting.
            if writer.usable() and (ends := plain_ends(batch)) is not None:
                ended, self._ended_here = self._ended_here, []
                # The pump takes the run's next batch while the child writes this one,
                # a few batches at most; a run's end waits for all of them. Beyond that
                # many, the oldest answers are read once this one is sent (the child's:
                # a cancelled wait loses nothing): waiting for all of them stalled the
                # pump for the child's whole backlog, 3 ms and more late in a wide run,
                # where the run's end then waited for it.
                early = not ends
                try:
                    frame = await writer.send(owner, batch, ended, early=early)
                    if early:
                        # Sent: the batch is the writer's. A child that fails now takes
                        # it with the other lost frames, and the next exchange has the
                        # thread write them (this call writing it too would hand it
                        # back to its own caller when the thread cannot).
                        with contextlib.suppress(ConnectionError):
                            await writer.make_room(EARLY_FRAMES)
                        return
                    await writer.answer(frame)
                except ConnectionError:
                    pass  # retired: the thread writes it (again, if it landed), below
                else:
                    # Runs the child ended: rows written here are not new any more.
                    self._written.forget(ends)
                    return
            if writer.retired:
                self._drop_writer(writer)
                await self._recording(batch, self._write_upserting, batch, owner)
                return
        # While the child writes too, rows it wrote are unknown here: upsert them all
        # (an insert of one it wrote would fail, and the batch be written twice).
        shared = writer is not None and writer.ready and not writer.retired
        ended = await self._recording(batch, self._write_and_spawn, batch, owner, shared)
        if self._writer is not None and ended:
            self._ended_here.extend(ended)  # the child forgets them with its next batch
            del self._ended_here[:-_ENDED_KEPT]

    async def _recording(self, batch: list[Record], fn: Callable[..., T], *args: Any) -> T:
        """``_call(fn, *args)`` for ``record(batch)``: when it fails, the events of
        ``batch``'s runs that the store still carries go back on the exception."""
        try:
            return await self._call(fn, *args)
        except Exception as exc:
            if self._carry:
                runs = {_run_of(record) for record in batch}
                with self._carry_lock:
                    mine = [r for r in self._carry if _run_of(r) in runs]
                    if mine:
                        self._carry = [r for r in self._carry if _run_of(r) not in runs]
                hand_back(exc, mine)
            raise

    def _reap(self) -> None:
        """Wait until each retired child has exited (in the worker thread): nothing
        it was sent may commit after what this thread writes next."""
        while self._to_reap:
            self._to_reap[0].reap()
            del self._to_reap[0]

    def _write_upserting(self, conn: sqlite3.Connection, events: list[Record], owner: str) -> None:
        self._write(conn, events, owner, upsert=True)

    def _write_carry(self, conn: sqlite3.Connection) -> None:
        """Write the carried batches (see ``_drop_writer``), upserting: some may have
        landed. They stay carried when they cannot be written."""
        with self._carry_lock:
            carried, self._carry = self._carry, []
        try:
            self._write(conn, carried, current_owner(), upsert=True)
        except BaseException:
            with self._carry_lock:
                self._carry[:0] = carried
            raise

    async def start_writer(self) -> bool:
        """Start the writer process now (else it starts with the first record) and
        wait until it takes batches; False when this store writes in its thread
        (``writer="thread"``, an in-memory database, or a child that could not start).

        An application that records runs at once after starting can call it first,
        so that its first runs' batches do not wait for the child.
        """
        # In the worker thread even when the writer is started already: after a start
        # under way there (which may not have set ``_writer`` yet).
        await self._call(lambda conn: self._start_writer())
        writer = self._writer
        if writer is None:
            return False
        return await writer.wait_ready()

    def _write_and_spawn(
        self, conn: sqlite3.Connection, events: list[Record], owner: str, upsert: bool
    ) -> list[str]:
        ended = self._write(conn, events, owner, upsert=upsert)
        self._start_writer()  # once a write went through: the file is there, and is the store's
        return ended

    def _start_writer(self) -> None:
        """Start the writer process if it is due (in the worker thread: one call at a time)."""
        if not self._spawn:
            return
        self._spawn = False
        self._writer = WriterProcess.spawn(
            {
                "path": self.path,
                "url": self.name,
                "busy_timeout": self._busy_timeout,
                "synchronous": self._synchronous,
                "max_result_bytes": self._max_result_bytes,
                "dead_after": self.dead_after,
                "identity": self._identity,  # the file this store has open, no other
                "package": PACKAGE_FILE,  # this copy of the package, no other
            }
        )

    def open_writer(self) -> sqlite3.Connection:
        """The writer process's connection (see ``_sqlite_writer``)."""
        return self._connect()

    def write_batch(self, conn: sqlite3.Connection, events: list[Record], owner: str) -> None:
        """Write one batch for the writer process, for runs of ``owner``."""
        self._write(conn, events, owner)

    def forget_runs(self, run_ids: Iterable[str]) -> None:
        """For the writer process: runs whose end the store's thread wrote."""
        self._written.forget(run_ids)

    def _write(
        self, conn: sqlite3.Connection, events: list[Record], owner: str, *, upsert: bool = False
    ) -> list[str]:
        """Write one batch in one transaction; the ids of the runs it ended.

        ``upsert``: every task row as an upsert, none taken for new (see ``record``).
        """
        fold = Fold(owner, None, self._max_result_bytes).add_all(events)
        keys = _take_keys(fold.runs.values())
        runs = [as_tuple(r) for r in fold.runs.values()]
        attempts = [as_tuple(r) for r in fold.attempts.values()]
        tasks = list(fold.tasks.values())
        states = list(fold.states.values())
        fresh, known = ([], tasks) if upsert else self._written.split(tasks)
        try:
            with _transaction(conn):
                _upsert(conn, RunRow, runs)
                if keys:
                    conn.executemany(_RUN_KEYS, keys)
                _upsert_tasks(conn, fresh, fresh=True)
                _upsert_tasks(conn, known)
                _upsert(conn, AttemptRow, attempts)
                _write_state(conn, states)
                _write_logs(conn, fold.logs)
        except sqlite3.IntegrityError:
            # A row taken for new exists (written through another handle): upsert all.
            with _transaction(conn):
                _upsert(conn, RunRow, runs)
                if keys:
                    conn.executemany(_RUN_KEYS, keys)
                _upsert_tasks(conn, tasks)
                _upsert(conn, AttemptRow, attempts)
                _write_state(conn, states)
                _write_logs(conn, fold.logs)
        self._written.remember(fold.runs.values(), fresh)
        self._check_file()  # after the write, so a deletion during it is seen too
        return [run.run_id for run in fold.runs.values() if run.finished is not None]

    # -- pipeline state -----------------------------------------------------------

    async def state_entries(self, pipeline: str) -> list[StateEntry]:
        """Every key of ``pipeline``'s state, sorted, with who last wrote it."""
        rows = await self._call(_fetch_all, _STATE.select_all, (pipeline,))
        return [entry(row) for row in rows]

    async def list_state(self, pipeline: str) -> dict[str, Any]:
        """``pipeline``'s state as a dict of JSON values."""
        return {e.key: e.value for e in await self.state_entries(pipeline)}

    async def get_state(self, pipeline: str, key: str, default: Any = None) -> Any:
        """The value of one key of ``pipeline``'s state, or ``default``."""
        rows = await self._call(_fetch_all, _STATE.select_one, (pipeline, key))
        return entry(rows[0]).value if rows else default

    async def set_state(self, pipeline: str, key: str, value: Any) -> None:
        """Set one key of ``pipeline``'s state outside any run.

        :raises StateValueError: the key is not a non-empty string or the value is not JSON.
        """
        row = StateRow(pipeline, key, encode_state_value(key, value), time.time(), None, None)
        await self._call(_write_state_now, [row])

    async def delete_state(self, pipeline: str, key: str) -> bool:
        """Remove one key of ``pipeline``'s state; whether it was there."""
        found = await self._call(_fetch_all, _STATE.select_one, (pipeline, key))
        await self._call(_write_state_now, [StateRow(pipeline, key, None, 0.0, None, None)])
        return bool(found)

    async def load_prior_run(self, run_id: str) -> PriorRun:
        """Return ``run_id``'s stored successful results and status for resuming.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        return await self._call(_load_prior, self.dead_after, run_id)

    async def list_runs(
        self, *, pipeline: str | None = None, limit: int | None = 20
    ) -> Sequence[RunInfo]:
        """Return recorded runs, newest first, optionally of one pipeline only."""
        return await self._call(_list_runs, self.dead_after, pipeline, limit)

    async def query_runs(self, query: RunQuery) -> RunPage:
        """Return one page of runs matching ``query``, newest first, with the total."""
        return await self._call(_query_runs, self.dead_after, query)

    async def get_run(self, run_id: str) -> RunInfo:
        """Return one run.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        return await self._call(_get_run, self.dead_after, run_id)

    async def get_tasks(self, run_id: str) -> Sequence[TaskInfo]:
        """Return a run's task instances with their attempts, in first-seen order.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        return await self._call(_get_tasks, run_id)

    async def run_counts(self) -> dict[tuple[str, str], int]:
        """The number of runs by (pipeline, status)."""
        return await self._call(_run_counts, self.dead_after)

    async def pause_schedule(self, pipeline: str, paused: bool = True) -> bool:
        """Pause (or resume) ``pipeline``'s schedule for every process; whether it changed."""
        sql, args = (
            (_PAUSES.pause, (pipeline, time.time())) if paused else (_PAUSES.resume, (pipeline,))
        )
        return bool(await self._call(_change, sql, args))

    async def paused_schedules(self) -> dict[str, float]:
        """The paused pipelines, each with when it was paused."""
        return dict(await self._call(_fetch_all, _PAUSES.select, ()))

    async def get_logs(self, query: LogQuery) -> LogPage:
        """Return one page of a run's captured log lines, in the order they were stored."""
        return await self._call(_get_logs, query)

    async def get_traceparent(self, run_id: str) -> str | None:
        """The W3C trace context of a traced run's span, or None."""
        return await self._call(_get_traceparent, run_id)

    # -- many processes, one store (see _coordination) --------------------------------

    async def enqueue(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        *,
        scheduled_for: float | None = None,
    ) -> str:
        """Queue a run of ``pipeline``; a process serving it claims and runs it. Returns its id."""
        encoded = encode_params(params)
        # The caller's trace context, if any, goes with the run to the process that runs it.
        return await self._call(queue.enqueue, pipeline, encoded, scheduled_for, traceparent())

    async def claim_fire(
        self, pipeline: str, scheduled_for: float, params: Mapping[str, Any] | None = None
    ) -> str | None:
        """Claim a schedule's fire and queue its run; ``None`` when another process has it."""
        encoded = encode_params(params)
        return await self._call(queue.claim_fire, pipeline, scheduled_for, encoded)

    async def claim_next(
        self, limits: Mapping[str, int | None], *, run_id: str | None = None
    ) -> QueuedRun | None:
        """Claim the oldest QUEUED run of these pipelines (name: max active runs, or None)."""
        return await self._call(queue.claim_next, dict(limits), run_id)

    async def wait_queued(self, seconds: float) -> None:
        """Wait before looking for queued runs again: SQLite has no notifications, so poll."""
        await anyio.sleep(min(seconds, QUEUE_POLL))

    async def request_cancel(self, run_id: str) -> CancelOutcome:
        """Ask the process that runs ``run_id`` to cancel it (a queued run ends at once).

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        return await self._call(queue.request_cancel, run_id)

    async def claim_resume(self, run_id: str, by: str) -> None:
        """Record ``by`` as the one run that resumes ``run_id``.

        :raises ResumeRefused: when another resume of it is queued, running or succeeded.
        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        await self._call(queue.claim_resume, run_id, by, False)

    async def enqueue_resume(self, run_id: str) -> str:
        """Queue a run that resumes ``run_id``, claimed as its one resume; return its id.

        It waits in the queue, within its pipeline's ``max_active_runs``, like any run.

        :raises ResumeRefused: when another resume of it is queued, running or succeeded.
        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        by = uuid.uuid4().hex
        await self._call(queue.claim_resume, run_id, by, True)
        return by

    def attend(
        self, run_id: str, on_cancel: Callable[[int], None]
    ) -> AbstractAsyncContextManager[None]:
        """Renew ``run_id``'s heartbeat and deliver its cancel requests while it runs."""
        return self._attendance.attend(run_id, on_cancel)

    async def _beat(self, run_ids: Sequence[str]) -> None:
        await self._call(queue.beat, run_ids)

    async def _poll(self, run_ids: Sequence[str]) -> dict[str, int]:
        return await self._call(queue.poll_cancels, run_ids)

    async def aclose(self) -> None:
        """Close the connection and end the writer process; using the store again
        reopens them."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        with anyio.CancelScope(shield=True):
            # What the writer process was sent is written first (the child's answers,
            # or this thread for what it could not write).
            await self._write_owed()
            writer, self._writer = self._writer, None
            if writer is not None:
                # A ready child writes what it was sent after this and leaves; what a
                # run sends meanwhile goes to the thread, which reaps the child first
                # and writes what it may not have written before anything else.
                writer.shutdown()
                self._drop_writer(writer)
            # After the worker thread's call under way, which may open the file and
            # start the writer.
            await anyio.to_thread.run_sync(self._close_connection, limiter=self._limiter)
            if self._to_reap:
                await anyio.to_thread.run_sync(self._reap, limiter=self._limiter)
            if self._carry:  # frames the child left unanswered (it did not finish in time)
                await self._write_owed()
                await anyio.to_thread.run_sync(self._close_connection, limiter=self._limiter)
        self._spawn, self._ended_here = self._process_writer, []

    async def _write_owed(self) -> None:
        """Wait for the writer's answers, then write what it could not (for aclose):
        at most ``busy_timeout`` and 5 s for the answers."""
        writer = self._writer
        if writer is not None and writer.owed:
            with anyio.move_on_after(self._busy_timeout + 5.0):
                with contextlib.suppress(ConnectionError):  # retired: its frames are lost
                    await writer.answer()
            if writer.retired:
                self._drop_writer(writer)
        if not self._carry:
            return
        try:
            await self._call(_nothing)
        except Exception as exc:
            with self._carry_lock:
                lost, self._carry = len(self._carry), []
            logger.warning(
                "%s closed with %d task record(s) it could not write: %s", self.name, lost, exc
            )

    def _close_connection(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    async def __aenter__(self) -> SQLiteStore:
        await self._call(lambda conn: None)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _upsert(
    conn: sqlite3.Connection, cls: type[Row], rows: Sequence[Sequence[Any]], *, fresh: bool = False
) -> None:
    """Write ``rows`` with as few statements as possible.

    One multi-row statement per chunk costs less CPU than ``executemany``'s
    statement reset, step and GIL release per row (about 4 µs against 6 µs per
    task in benchmarks/store_overhead.py's run). Chunk sizes are powers of two,
    so only a few statements are ever prepared (the connection caches them).
    """
    done, total = 0, len(rows)
    if not total:
        return
    # SQLite before 3.32 binds at most 999 values per statement.
    cap = min(_CHUNK, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0]))
    while done < total:
        n = min(cap, 1 << ((total - done).bit_length() - 1))
        sql = _upsert_sql(cls, n, fresh)
        conn.execute(sql, list(chain.from_iterable(rows[done : done + n])))
        done += n


# Task rows of one batch share most columns as a rule (its run, state, upstream
# tasks, an empty result): only the key and the times (positions 1, 4, 5) differ.
# A run of at least ``_SHARED_MIN`` consecutive rows alike in the others is written
# with those bound once (``upsert_shared``); other rows go as they are. Rows keep
# their order: their rowids are the order the store first heard of them, which
# orders a run's mapped tasks (``_views.in_plan_order``).
_OWN = (1, 4, 5)
_SHARED = tuple(i for i in range(12) if i not in _OWN)
_shared_of = itemgetter(*_SHARED)
_own_of = itemgetter(*_OWN)
_SHARED_MIN = 8


def _upsert_tasks(
    conn: sqlite3.Connection, rows: Sequence[TaskValues], *, fresh: bool = False
) -> None:
    """``_upsert`` of task rows, in order, runs of rows alike but for key and times
    written together."""
    total = len(rows)
    if total < _SHARED_MIN:
        _upsert(conn, TaskRow, rows, fresh=fresh)
        return
    cap = min(
        _CHUNK, (conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - len(_SHARED)) // len(_OWN)
    )
    pending = 0  # rows[pending:first] are still to write as they are
    first = 0
    shared = _shared_of(rows[0])
    for i in range(1, total + 1):
        following = _shared_of(rows[i]) if i < total else None
        if following == shared:
            continue
        if i - first >= _SHARED_MIN:  # rows[first:i] are alike
            _upsert(conn, TaskRow, rows[pending:first], fresh=fresh)
            done = first
            while done < i:
                n = min(cap, 1 << ((i - done).bit_length() - 1))
                args = list(shared)
                args.extend(chain.from_iterable(map(_own_of, rows[done : done + n])))
                conn.execute(_upsert_shared_sql(n, fresh), args)
                done += n
            pending = i
        first, shared = i, following
    _upsert(conn, TaskRow, rows[pending:], fresh=fresh)


_SHARED_SQL: dict[tuple[int, bool], str] = {}


def _upsert_shared_sql(rows: int, fresh: bool) -> str:
    sql = _SHARED_SQL.get((rows, fresh))
    if sql is None:
        sql = _SHARED_SQL[rows, fresh] = upsert_shared(TaskRow, "", _SHARED, rows, fresh=fresh)
    return sql


_STATE = StateSQL("sqlite", "")


def _write_state(conn: sqlite3.Connection, rows: Sequence[StateRow]) -> None:
    for sql, args in _STATE.writes(rows):
        conn.execute(sql, args)


def _write_state_now(conn: sqlite3.Connection, rows: Sequence[StateRow]) -> None:
    with _transaction(conn):
        _write_state(conn, rows)


_PAUSES = PauseSQL("sqlite", "")


def _change(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    with _transaction(conn):
        return conn.execute(sql, args).rowcount


def _fetch_all(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, args).fetchall()


_UPSERT_SQL: dict[tuple[type[Row], int, bool], str] = {}


def _upsert_sql(cls: type[Row], rows: int, fresh: bool) -> str:
    sql = _UPSERT_SQL.get((cls, rows, fresh))
    if sql is None:
        sql = _UPSERT_SQL[cls, rows, fresh] = upsert(cls, "sqlite", "", rows, fresh=fresh)
    return sql


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error.

    IMMEDIATE takes the write lock up front, so a second writer waits for
    ``busy_timeout`` instead of failing on a read-to-write upgrade.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            # Some errors (a full disk, say) have rolled the transaction back already:
            # a ROLLBACK then fails and would hide the error that says why.
            self.conn.execute("ROLLBACK")


def _run_of(record: Record) -> str:
    return record[0] if isinstance(record, tuple) else record.run_id


def _nothing(conn: sqlite3.Connection) -> None:
    return None


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, waiting out another connection that is switching the same new file.

    SQLite reports "database is locked" for a journal-mode change at once,
    without its busy handler, so wait here (this runs in the worker thread).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _migrate(conn: sqlite3.Connection) -> None:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreSchemaError(version, SCHEMA_VERSION)
    if version == SCHEMA_VERSION:
        return
    with _transaction(conn):
        # Re-read under the write lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in migration(step, "sqlite", ""):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# A run's task keys are in run_keys (runs recorded before it have them in runs).
_RUN_KEYS = (
    "INSERT INTO run_keys (run_id, task_keys) VALUES (?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET task_keys = excluded.task_keys"
)
_KEYS_OF_RUN = (
    "COALESCE((SELECT k.task_keys FROM run_keys AS k WHERE k.run_id = runs.run_id), runs.task_keys)"
)
_RUN_COLUMNS = ", ".join(
    f"{_KEYS_OF_RUN} AS task_keys" if name == "task_keys" else name for name in columns(RunRow)
)
_SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM runs"


def _take_keys(runs: Iterable[RunRow]) -> list[tuple[str, str]]:
    """The task keys of ``runs`` for run_keys, taken off their rows for runs."""
    keys = []
    for run in runs:
        if run.task_keys is not None:
            keys.append((run.run_id, run.task_keys))
            run.task_keys = None
    return keys


def _run_row(conn: sqlite3.Connection, run_id: str) -> RunRow:
    row = conn.execute(_SELECT_RUN + " WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    return RunRow(*row)


def _counts(conn: sqlite3.Connection, run_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, state, n in conn.execute(_COUNTS, (run_id,)):
        counts[state] = counts.get(state, 0) + n
    if pending := conn.execute(_PENDING, (run_id,)).fetchone()[0]:
        counts["PENDING"] = counts.get("PENDING", 0) + pending
    return {state: n for state, n in counts.items() if n}


# Task states, less the mapped tasks (counted as their instances: see _sql.mapped_parents).
_COUNTS = (
    "SELECT run_id, state, count(*) FROM tasks WHERE run_id = ?1 GROUP BY state UNION ALL "
    + mapped_parents("", "c.run_id = ?1")
)
# Planned tasks of a run that have no row yet (see _views.in_plan_order).
_PENDING = f"""SELECT count(*) FROM runs, json_each({_KEYS_OF_RUN}) AS j
    WHERE runs.run_id = ?1
    AND NOT EXISTS (SELECT 1 FROM tasks AS t WHERE t.run_id = ?1 AND t.key = j.value)"""


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``: None for ``:memory:``, (-1, -1) for a file that is gone."""
    if path == ":memory:":
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (-1, -1)  # never equal to an open file's identity
    return (st.st_dev, st.st_ino)


def _load_prior(conn: sqlite3.Connection, dead_after: float, run_id: str) -> PriorRun:
    queue.sweep(conn, dead_after)
    run = _run_row(conn, run_id)
    rows = conn.execute(
        "SELECT key, result FROM tasks WHERE run_id = ? AND state = 'SUCCESS' AND result_stored",
        (run_id,),
    ).fetchall()
    return prior_run(run, rows)


def _list_runs(
    conn: sqlite3.Connection, dead_after: float, pipeline: str | None, limit: int | None
) -> list[RunInfo]:
    queue.sweep(conn, dead_after)
    sql = _SELECT_RUN + (" WHERE pipeline = ?" if pipeline is not None else "")
    sql += " ORDER BY started DESC LIMIT ?"
    params = (*(() if pipeline is None else (pipeline,)), -1 if limit is None else limit)
    runs = [RunRow(*row) for row in conn.execute(sql, params).fetchall()]
    return [run_info(run, _counts(conn, run.run_id)) for run in runs]


UNICODE_LOWER = "dfa_lower"


def _lower(text: str | None) -> str | None:
    return None if text is None else text.lower()


def _query_runs(conn: sqlite3.Connection, dead_after: float, query: RunQuery) -> RunPage:
    queue.sweep(conn, dead_after)
    sql = PageSQL(query, "runs", lambda n: "?", lower=UNICODE_LOWER)
    rows = conn.execute(*sql.rows(query, _RUN_COLUMNS)).fetchall()
    runs = [RunRow(*row) for row in (rows if query.after is None else reversed(rows))]
    total: int = conn.execute(*sql.count()).fetchone()[0]

    def more(keyset: tuple[float, str], older: bool) -> bool:
        return conn.execute(*sql.beyond(keyset, older)).fetchone() is not None

    return page_of(query, [run_info(r, _counts(conn, r.run_id)) for r in runs], total, more)


def _get_run(conn: sqlite3.Connection, dead_after: float, run_id: str) -> RunInfo:
    queue.sweep(conn, dead_after)
    return run_info(_run_row(conn, run_id), _counts(conn, run_id))


def _get_tasks(conn: sqlite3.Connection, run_id: str) -> list[TaskInfo]:
    run = _run_row(conn, run_id)
    sql = select(AttemptRow, "") + " WHERE run_id = ?"
    attempts = [AttemptRow(*row) for row in conn.execute(sql, (run_id,))]
    sql = select(TaskRow, "") + " WHERE run_id = ? ORDER BY rowid"
    return task_infos(run, (TaskRow(*row) for row in conn.execute(sql, (run_id,))), attempts)


_LOGS = log_sql("sqlite", "")


def _write_logs(conn: sqlite3.Connection, logs: LogFold) -> None:
    if logs.traces:
        conn.executemany(_LOGS.trace, list(logs.traces.items()))
    if logs.rows:
        conn.executemany(_LOGS.insert, logs.rows)
    if logs.trims:
        conn.executemany(_LOGS.trim, logs.trim_rows())


def _get_logs(conn: sqlite3.Connection, query: LogQuery) -> LogPage:
    sql, args = _LOGS.page(query)
    return log_page_of(query, conn.execute(sql, args).fetchall())


def _run_counts(conn: sqlite3.Connection, dead_after: float) -> dict[tuple[str, str], int]:
    queue.sweep(conn, dead_after)
    rows = conn.execute("SELECT pipeline, status, count(*) FROM runs GROUP BY pipeline, status")
    return {(p or "", s or ""): n for p, s, n in rows}


def _get_traceparent(conn: sqlite3.Connection, run_id: str) -> str | None:
    row = conn.execute(_LOGS.traceparent, (run_id,)).fetchone()
    return None if row is None else str(row[0])


_FORKING: list[SQLiteStore] = []  # the stores whose connection lock fork() took


def _before_fork() -> None:
    """Wait until no store's thread uses its connection (the whole call under way: it
    may wait up to ``busy_timeout`` on another process's lock), and keep it so until
    the fork is done. Runs for ``os.fork()`` and ``multiprocessing``'s fork, not for
    ``subprocess``."""
    _FORK_LOCK.acquire()
    _FORK_HELD.value = True
    for store in list(_STORES):
        store._conn_lock.acquire()
        _FORKING.append(store)  # only once taken: a Ctrl-C may end this loop early


def _after_fork(in_child: bool) -> None:
    if not getattr(_FORK_HELD, "value", False):  # the before hook failed at its start
        return
    _FORK_HELD.value = False
    for store in _FORKING:
        store._conn_lock.release()
        if in_child:
            store._forget_parent()
    _FORKING.clear()
    _FORK_LOCK.release()


def _after_fork_in_parent() -> None:
    _after_fork(in_child=False)


def _after_fork_in_child() -> None:
    _after_fork(in_child=True)


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
