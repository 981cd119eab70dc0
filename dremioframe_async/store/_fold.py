"""Fold a batch of engine events into row patches: one semantics for every store.

A patch field left ``None`` means "keep what is stored". Each store applies
the patches as upserts (SQL) or with :func:`merge` (memory), so a batch of
20,000 events becomes a few thousand row writes in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, TypeVar

from ..orchestration._events import Event, RunFinished, RunStarted, TaskRetrying, TaskStateChanged
from ..orchestration._states import TaskState
from ._codec import DEFAULT_MAX_RESULT_BYTES, encode_error, encode_result

__all__ = ["AttemptRow", "Fold", "RunRow", "TaskRow", "merge"]


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


Row = RunRow | TaskRow | AttemptRow
R = TypeVar("R", RunRow, TaskRow, AttemptRow)

# Fields where the first stored value wins, and where the larger one wins.
_FIRST_WINS = frozenset({"started"})
_MAX_WINS = frozenset({"attempts"})


_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in (RunRow, TaskRow, AttemptRow)}


@lru_cache(maxsize=1024)
def _upstream_json(upstream: tuple[str, ...]) -> str:
    # Fan-outs repeat the same upstream tuple thousands of times: encode it once.
    return json.dumps(list(upstream))


def merge(old: R | None, new: R) -> R:
    """Apply patch ``new`` over stored row ``old`` (memory store; SQL upserts mirror it)."""
    if old is None:
        return new
    for name in _NAMES[type(new)]:
        value = getattr(new, name)
        current = getattr(old, name)
        if value is None or (name in _FIRST_WINS and current is not None):
            continue
        if name in _MAX_WINS and current is not None:
            value = max(value, current)
        setattr(old, name, value)
    return old


def as_tuple(row: Row) -> tuple[Any, ...]:
    """The row's values in column order (the order of the dataclass fields)."""
    return tuple(getattr(row, name) for name in _NAMES[type(row)])


class Fold:
    """Accumulate the patches of one batch, keyed so later events update earlier rows."""

    def __init__(
        self, owner: str, owner_key: int | None, max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    ) -> None:
        self.owner = owner
        self.owner_key = owner_key
        self.max_result_bytes = max_result_bytes
        self.runs: dict[str, RunRow] = {}
        self.tasks: dict[tuple[str, str], TaskRow] = {}
        self.attempts: dict[tuple[str, str, int], AttemptRow] = {}

    def tables(self) -> tuple[tuple[type[Row], Collection[Row]], ...]:
        """Each row type with its patches, in the order they are written."""
        return (
            (RunRow, self.runs.values()),
            (TaskRow, self.tasks.values()),
            (AttemptRow, self.attempts.values()),
        )

    def add_all(self, events: Iterable[Event]) -> Fold:
        """Fold every event, in order; returns self."""
        for event in events:
            if isinstance(event, TaskStateChanged):
                self._task_state(event)
            elif isinstance(event, TaskRetrying):
                self._retrying(event)
            elif isinstance(event, RunStarted):
                self._run_started(event)
            else:
                self._run_finished(event)
        return self

    def _run(self, run_id: str) -> RunRow:
        row = self.runs.get(run_id)
        if row is None:
            row = self.runs[run_id] = RunRow(run_id)
        return row

    def _task(self, run_id: str, key: str) -> TaskRow:
        row = self.tasks.get((run_id, key))
        if row is None:
            row = self.tasks[run_id, key] = TaskRow(run_id, key)
        return row

    def _attempt(self, run_id: str, key: str, number: int) -> AttemptRow:
        row = self.attempts.get((run_id, key, number))
        if row is None:
            row = self.attempts[run_id, key, number] = AttemptRow(run_id, key, number)
        return row

    def _run_started(self, event: RunStarted) -> None:
        row = self._run(event.run_id)
        row.pipeline, row.status, row.started = event.pipeline, "RUNNING", event.time
        row.params = json.dumps(dict(event.params), default=repr)
        row.resumed_from = event.resumed_from
        row.owner, row.owner_key = self.owner, self.owner_key
        for key in event.task_keys:
            task = self._task(event.run_id, key)
            if task.state is None:
                task.state = TaskState.PENDING.value

    def _run_finished(self, event: RunFinished) -> None:
        row = self._run(event.run_id)
        row.status, row.finished = event.status, event.time

    def _task_state(self, event: TaskStateChanged) -> None:
        task = self._task(event.run_id, event.key)
        task.state = event.state.value
        if task.upstream is None and event.upstream:
            task.upstream = _upstream_json(event.upstream)
        if event.attempt:
            task.attempts = max(task.attempts or 0, event.attempt)
        # A first attempt that ends without an error gets no attempt row: the task
        # row holds its start, end and state (the views rebuild it). That halves
        # the writes of a typical run; later and failed attempts are written.
        if event.state is TaskState.RUNNING:
            task.started = task.started or event.time
            if event.attempt > 1:
                attempt = self._attempt(event.run_id, event.key, event.attempt)
                attempt.state, attempt.started = TaskState.RUNNING.value, event.time
            return
        if event.state is TaskState.PENDING:
            return
        task.finished, task.reason = event.time, event.reason
        if event.state is TaskState.SUCCESS:
            self._result(task, event.result)
        if event.attempt > 1 or (event.attempt and event.error is not None):
            self._end_attempt(event, event.state.value)

    def _end_attempt(self, event: TaskStateChanged | TaskRetrying, state: str) -> None:
        attempt = self._attempt(event.run_id, event.key, event.attempt)
        attempt.state, attempt.finished = state, event.time
        if event.error is not None:
            error = encode_error(event.error)
            attempt.error_type, attempt.error_message = error.type, error.message
            attempt.error_traceback = error.traceback

    def _retrying(self, event: TaskRetrying) -> None:
        task = self._task(event.run_id, event.key)
        task.attempts = max(task.attempts or 0, event.attempt)
        self._end_attempt(event, TaskState.FAILED.value)
        self._attempt(event.run_id, event.key, event.attempt).retry_delay = event.delay

    def _result(self, task: TaskRow, value: Any) -> None:
        encoded = encode_result(value, self.max_result_bytes)
        task.result, task.result_stored = encoded.json, encoded.stored
        task.result_type, task.result_note = encoded.type, encoded.note
