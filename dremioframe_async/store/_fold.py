"""Fold a batch of engine events into row patches: one semantics for every store.

A patch field left ``None`` means "keep what is stored". Each store applies
the patches as upserts (SQL) or with :func:`merge` (memory), so a batch of
20,000 events becomes a few thousand row writes in one transaction.

Task patches, one or two per task instance, are the hot path: they are kept as
plain lists in :class:`TaskRow` column order, ready for ``executemany``, and a
run's PENDING tasks get no row at all (the run row lists its task keys; the
views derive PENDING from it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, TypeVar

import anyio.lowlevel

from .._masking import mask_text
from ..orchestration import (
    FINAL_STATES,
    Record,
    RunFinished,
    RunStarted,
    RunStatus,
    TaskLogged,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
)
from ._codec import DEFAULT_MAX_RESULT_BYTES, encode_error, encode_result_fields, storable_text
from ._logs import LogFold

__all__ = [
    "AttemptRow",
    "Fold",
    "RunRow",
    "StateRow",
    "TaskRow",
    "TaskValues",
    "WrittenTasks",
    "fold_sliced",
    "merge",
]


@dataclass(slots=True)
class RunRow:
    run_id: str
    pipeline: str | None = None
    status: str | None = None
    started: float | None = None
    finished: float | None = None
    params: str | None = None
    resumed_from: str | None = None
    owner: str | None = None
    owner_key: int | None = None
    task_keys: str | None = None
    scheduled_for: float | None = None
    heartbeat: float | None = None
    cancel_requests: int | None = None
    queued_at: float | None = None
    resumed_by: str | None = None
    interval_start: str | None = None
    interval_end: str | None = None
    backfill: str | None = None


@dataclass(slots=True)
class TaskRow:
    run_id: str
    key: str
    state: str | None = None
    attempts: int | None = None
    started: float | None = None
    finished: float | None = None
    reason: str | None = None
    upstream: str | None = None
    result: str | None = None
    result_stored: bool | None = None
    result_type: str | None = None
    result_note: str | None = None


@dataclass(slots=True)
class AttemptRow:
    run_id: str
    key: str
    number: int
    state: str | None = None
    started: float | None = None
    finished: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    retry_delay: float | None = None


@dataclass(slots=True)
class StateRow:
    """One pipeline-state write; ``value`` None deletes the key."""

    pipeline: str
    key: str
    value: str | None
    updated: float
    run_id: str | None
    task: str | None


Row = RunRow | TaskRow | AttemptRow
R = TypeVar("R", RunRow, TaskRow, AttemptRow)

# Statuses a run never leaves once recorded (mirrors _sql.FINAL_STATUSES).
_FINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED"})
# Fields where the first stored value wins, and where the larger one wins.
_FIRST_WINS = frozenset({"started"})
_MAX_WINS = frozenset({"attempts"})


_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in (RunRow, TaskRow, AttemptRow)}


def _keep(text: str) -> str:
    return text


@lru_cache(maxsize=1024)
def _upstream_json(upstream: tuple[str, ...], escape: bool) -> str:
    # Fan-outs repeat the same upstream tuple thousands of times: encode it once.
    return json.dumps([storable_text(k) for k in upstream] if escape else list(upstream))


def _keys_json(keys: Sequence[str], text: Callable[[str], str]) -> str:
    """A run's task keys as stored text, each as ``text`` stores it.

    One look at all of them first: keys that are ASCII and hold no NUL are stored
    as they are (most runs), so a 10^6-task run skips a million calls.
    """
    joined = "".join(keys)
    if text is _keep or (joined.isascii() and "\x00" not in joined):
        return json.dumps(keys)  # a tuple is written as a JSON array too
    return json.dumps([text(k) for k in keys])


def merge(old: R | None, new: R) -> R:
    """Apply patch ``new`` over stored row ``old`` (memory store; SQL upserts mirror it)."""
    if old is None:
        return new
    for name in _NAMES[type(new)]:
        value = getattr(new, name)
        current = getattr(old, name)
        if value is None or (name in _FIRST_WINS and current is not None):
            continue
        if name == "status" and current in _FINAL:
            continue
        if name in _MAX_WINS and current is not None:
            value = max(value, current)
        setattr(old, name, value)
    return old


def as_tuple(row: Row) -> tuple[Any, ...]:
    """The row's values in column order (the order of the dataclass fields)."""
    return tuple(getattr(row, name) for name in _NAMES[type(row)])


# A TaskRow patch as a list in column order, and the positions the fold writes.
TaskValues = list[Any]
_STATE, _ATTEMPTS, _STARTED, _FINISHED, _REASON, _UPSTREAM = 2, 3, 4, 5, 6, 7
_RESULT = slice(8, 12)  # result, result_stored, result_type, result_note
_RUNNING, _PENDING, _SUCCESS = TaskState.RUNNING, TaskState.PENDING, TaskState.SUCCESS
_VALUES = {state: state.value for state in TaskState}
_NONE_RESULT = encode_result_fields(None)
_FINAL_VALUES = frozenset(state.value for state in FINAL_STATES)


def task_row(values: TaskValues) -> TaskRow:
    """The :class:`TaskRow` of a task patch."""
    return TaskRow(*values)


class Fold:
    """Accumulate the patches of one batch, keyed so later events update earlier rows."""

    def __init__(
        self,
        owner: str,
        owner_key: int | None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        *,
        escape: bool = True,
    ) -> None:
        # Databases get text they can hold (see _codec.storable_text), applied the same
        # way in every batch so keys match across rows and the run's task_keys.
        self.escape = escape
        self._text = storable_text if escape else _keep
        self._run_ids: dict[str, str] = {}
        self._upstreams: dict[tuple[str, ...], str] = {}  # each upstream tuple's JSON
        self.owner = owner
        self.owner_key = owner_key
        self.max_result_bytes = max_result_bytes
        self.runs: dict[str, RunRow] = {}
        self.tasks: dict[tuple[str, str], TaskValues] = {}
        self.attempts: dict[tuple[str, str, int], AttemptRow] = {}
        self.logs = LogFold(self._text)
        self.states: dict[tuple[str, str], StateRow] = {}

    def add_all(self, events: Iterable[Record]) -> Fold:
        """Fold every event (or task record), in order; returns self."""
        change = self._change
        for event in events:
            if isinstance(event, tuple):
                change(*event)
            elif isinstance(event, TaskStateChanged):
                e = event
                change(
                    e.run_id,
                    e.key,
                    e.state,
                    e.time,
                    e.attempt,
                    e.error,
                    e.result,
                    e.reason,
                    e.upstream,
                    e.state_writes,
                    e.pipeline,
                )
            elif isinstance(event, TaskRetrying):
                self._retrying(event)
            elif isinstance(event, RunStarted):
                self._run_started(event)
            elif isinstance(event, TaskLogged):
                self.logs.add(event)
            else:
                self._run_finished(event)
        return self

    def _run(self, run_id: str) -> RunRow:
        row = self.runs.get(run_id)
        if row is None:
            row = self.runs[run_id] = RunRow(self._text(run_id))
        return row

    def _new_task(self, run_id: str, key: str) -> TaskValues:
        stored = self._run_ids.get(run_id)
        if stored is None:  # one run per batch, as a rule: check its id once
            stored = self._run_ids[run_id] = self._text(run_id)
        return [stored, self._text(key), *_EMPTY]

    def _task(self, run_id: str, key: str) -> TaskValues:
        row = self.tasks.get((run_id, key))
        if row is None:
            row = self.tasks[run_id, key] = self._new_task(run_id, key)
        return row

    def _attempt(self, run_id: str, key: str, number: int) -> AttemptRow:
        row = self.attempts.get((run_id, key, number))
        if row is None:
            row = AttemptRow(self._text(run_id), self._text(key), number)
            self.attempts[run_id, key, number] = row
        return row

    def _run_started(self, event: RunStarted) -> None:
        row = self._run(event.run_id)
        row.pipeline, row.status, row.started = (
            self._text(event.pipeline),
            RunStatus.RUNNING,
            event.time,
        )
        row.params = json.dumps(dict(event.params), default=repr)
        row.resumed_from = event.resumed_from
        row.owner, row.owner_key = self.owner, self.owner_key
        row.heartbeat = time.time()  # the recording clock: liveness compares with it
        row.task_keys = _keys_json(event.task_keys, self._text)
        row.interval_start, row.interval_end, row.backfill = self._interval(event.params)
        self.logs.trace(event)

    def _interval(self, params: Any) -> tuple[str | None, str | None, str | None]:
        """A backfill's or a schedule's data interval, as given in the run's params."""
        found = (params.get(name) for name in ("interval_start", "interval_end", "backfill_id"))
        start, end, backfill = (self._text(v) if isinstance(v, str) else None for v in found)
        return start, end, backfill

    def _run_finished(self, event: RunFinished) -> None:
        row = self._run(event.run_id)
        row.status, row.finished = event.status, event.time

    def _change(
        self,
        run_id: str,
        key: str,
        state: TaskState,
        at: float,
        attempt: int,
        error: BaseException | None,
        result: Any,
        reason: str,
        upstream: tuple[str, ...],
        writes: Mapping[str, str | None] | None,
        pipeline: str,
        started: float | None = None,
    ) -> None:
        """Fold a task's change of state (a ``TaskStateChanged`` or a ``TaskRecord``)."""
        where = (run_id, key)
        row = self.tasks.get(where)
        if row is None:
            # A new row, inline (most records of a batch make one). Its key is stored
            # as it is when it is ASCII without NUL, without a call (``storable_text``).
            stored = self._run_ids.get(run_id)
            if stored is None:
                stored = self._run_ids[run_id] = self._text(run_id)
            if not self.escape or (key.isascii() and "\x00" not in key):
                text = key
            else:
                text = self._text(key)
            row = self.tasks[where] = [stored, text, *_EMPTY]
            if upstream:
                ups = self._upstreams.get(upstream)
                if ups is None:
                    ups = self._upstreams[upstream] = _upstream_json(upstream, self.escape)
                row[_UPSTREAM] = ups
        elif row[_UPSTREAM] is None and upstream:
            row[_UPSTREAM] = _upstream_json(upstream, self.escape)
        if started is not None and row[_STARTED] is None:
            row[_STARTED] = started  # the start of a task whose RUNNING was not recorded
        row[_STATE] = _VALUES[state]
        if attempt and (row[_ATTEMPTS] or 0) < attempt:
            row[_ATTEMPTS] = attempt
        # A first attempt that ends without an error gets no attempt row: the task
        # row holds its start, end and state (the views rebuild it). That halves
        # the writes of a typical run; later and failed attempts are written.
        if state is _RUNNING:
            if row[_STARTED] is None:
                row[_STARTED] = at
            if attempt > 1:
                begun = self._attempt(run_id, key, attempt)
                begun.state, begun.started = _RUNNING.value, at
            return
        if state is _PENDING:
            return
        row[_FINISHED], row[_REASON] = at, self._text(mask_text(reason)) if reason else reason
        if state is _SUCCESS:
            row[_RESULT] = (
                _NONE_RESULT
                if result is None
                else encode_result_fields(result, self.max_result_bytes)
            )
            if writes:
                self._state_writes(pipeline, run_id, key, at, writes)
        if attempt > 1 or (attempt and error is not None):
            self._end_attempt(run_id, key, attempt, at, error, _VALUES[state])

    def _state_writes(
        self, pipeline: str, run_id: str, task: str, at: float, writes: Mapping[str, str | None]
    ) -> None:
        # Later writes of a key in one batch win: they succeeded later.
        pipeline, run_id, task = (self._text(t) for t in (pipeline, run_id, task))
        for key, value in writes.items():
            text = self._text(key)
            stored = None if value is None else self._text(value)
            self.states[pipeline, text] = StateRow(pipeline, text, stored, at, run_id, task)

    def _end_attempt(
        self,
        run_id: str,
        key: str,
        number: int,
        at: float,
        error: BaseException | None,
        state: str,
    ) -> None:
        attempt = self._attempt(run_id, key, number)
        attempt.state, attempt.finished = state, at
        if error is not None:
            encoded = encode_error(error)
            attempt.error_type, attempt.error_message = encoded.type, self._text(encoded.message)
            attempt.error_traceback = self._text(encoded.traceback)

    def _retrying(self, event: TaskRetrying) -> None:
        row = self._task(event.run_id, event.key)
        row[_ATTEMPTS] = max(row[_ATTEMPTS] or 0, event.attempt)
        failed = TaskState.FAILED.value
        self._end_attempt(event.run_id, event.key, event.attempt, event.time, event.error, failed)
        self._attempt(event.run_id, event.key, event.attempt).retry_delay = event.delay


_EMPTY = (None,) * (len(_NAMES[TaskRow]) - 2)

HOLD = 0.001  # seconds of folding between two yields to the loop
_FOLD_SLICE = 64  # events folded between two looks at the clock


async def fold_sliced(fold: Fold, events: Sequence[Record]) -> Fold:
    """``fold.add_all(events)`` on the loop, yielding at least every ``HOLD`` seconds.

    Folding is CPU work under the GIL in any thread; a worker thread doing it
    while the loop is busy waits for the GIL until the loop goes idle.
    """
    if len(events) <= _FOLD_SLICE:
        return fold.add_all(events)
    if not isinstance(events, list | tuple):
        events = list(events)  # a deque, say: sliced below
    since = time.perf_counter()
    for i in range(0, len(events), _FOLD_SLICE):
        fold.add_all(events[i : i + _FOLD_SLICE])
        if time.perf_counter() - since >= HOLD:
            await anyio.lowlevel.checkpoint()
            since = time.perf_counter()
    return fold


class WrittenTasks:
    """The task rows a store has written, per run that has not ended.

    A task row not among them is new, and a plain ``INSERT`` of new rows costs
    a third to two fifths less than the upsert (SQLite and PostgreSQL alike,
    measured on this project's benchmark machine). Only the store recording a
    run writes its rows; a store that finds a row it took for new falls back to
    the upsert. A run's keys are dropped when its end is written.
    """

    def __init__(self) -> None:
        self._runs: dict[str, set[str]] = {}

    def split(self, tasks: list[TaskValues]) -> tuple[list[TaskValues], list[TaskValues]]:
        """``(new, written)`` task rows, by whether this store wrote them already."""
        new: list[TaskValues] = []
        written: list[TaskValues] = []
        for row in tasks:
            keys = self._runs.get(row[0])
            (written if keys is not None and row[1] in keys else new).append(row)
        return new, written

    def remember(self, runs: Iterable[RunRow], new: list[TaskValues]) -> None:
        """Note ``new`` rows as written (call after the commit); forget runs that ended.

        A row written in a final state is not noted: its task changes no more (most
        rows of a wide run, whose keys would otherwise be held until its end). Were
        one written again, its insert would fail and the batch be upserted instead.
        """
        for row in new:
            if row[_STATE] in _FINAL_VALUES:
                continue
            keys = self._runs.get(row[0])
            if keys is None:
                keys = self._runs[row[0]] = set()
            keys.add(row[1])
        for run in runs:
            if run.finished is not None:
                self._runs.pop(run.run_id, None)

    def forget(self, run_ids: Iterable[str]) -> None:
        """Forget runs whose end another writer wrote."""
        for run_id in run_ids:
            self._runs.pop(run_id, None)

    def runs(self) -> dict[str, set[str]]:
        """A copy of what is remembered, by run id (for tests)."""
        return {run_id: set(keys) for run_id, keys in self._runs.items()}
