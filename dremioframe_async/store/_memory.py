"""An in-process store: history lives as long as the object (tests, notebooks, demos)."""

from __future__ import annotations

import time
import uuid
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import anyio
import anyio.lowlevel

from .._telemetry import traceparent
from ..orchestration import PriorRun, Record, RunStatus
from ._attendance import DEFAULT_CANCEL_POLL, Attendance
from ._codec import DEFAULT_MAX_RESULT_BYTES, decode_json
from ._coordination import ACTIVE_RESUMER, CancelOutcome, QueuedRun, encode_params, resume_refused
from ._errors import RunNotFound
from ._fold import AttemptRow, Fold, RunRow, StateRow, TaskRow, merge, task_row
from ._logs import LogPage, LogQuery, MemoryLogs
from ._model import RunInfo, StateEntry, TaskInfo
from ._owner import current_owner
from ._paging import Keyset, RunPage, RunQuery, page_of
from ._state import encode_state_value, entry
from ._views import in_plan_order, pending_count, prior_run, run_info, task_info

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`RunStore` kept in memory, with the same storage rules as the others.

    Results are JSON-encoded exactly as the database stores do, so a pipeline
    resumes the same way whichever store it uses. Every run it holds was made by
    this process, so none is ever found interrupted. Its run queue, fire claims,
    cancel requests and resume claims work within the process.
    """

    name = "memory://"

    def __repr__(self) -> str:
        return "MemoryStore()"

    # Its record() folds the runner's task records as it folds events (DirectRecorder).
    takes_task_records: Literal[True] = True

    def __init__(self, *, max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> None:
        self._max_result_bytes = max_result_bytes
        self._runs: dict[str, RunRow] = {}
        self._tasks: dict[str, dict[str, TaskRow]] = {}
        # Each run's task counts by state, until a record changes the run or its tasks:
        # a list of runs counts each one run once.
        self._counted: dict[str, Counter[str]] = {}
        self._attempts: dict[tuple[str, str], dict[int, AttemptRow]] = {}
        self._logs = MemoryLogs()
        self._fires: set[tuple[str, float]] = set()
        self._queued: anyio.Event | None = None
        self._attendance = Attendance(self._beat, self._poll, 5.0, DEFAULT_CANCEL_POLL)
        self._state: dict[str, dict[str, StateRow]] = {}
        self._pauses: dict[str, float] = {}  # paused schedules: pipeline -> since when

    async def record(self, events: Sequence[Record]) -> None:
        """Fold ``events`` into the history."""
        fold = Fold(current_owner(), None, self._max_result_bytes, escape=False).add_all(events)
        for run_id, run in fold.runs.items():
            self._runs[run_id] = merge(self._runs.get(run_id), run)
            self._counted.pop(run_id, None)
        tasks: dict[str, TaskRow] = {}
        tasks_of = ""
        for (run_id, key), values in fold.tasks.items():
            if run_id != tasks_of:  # a batch holds one run's events, as a rule
                tasks, tasks_of = self._tasks.setdefault(run_id, {}), run_id
                self._counted.pop(run_id, None)
            old = tasks.get(key)
            tasks[key] = task_row(values) if old is None else merge(old, task_row(values))
        for (run_id, key, number), attempt in fold.attempts.items():
            attempts = self._attempts.setdefault((run_id, key), {})
            attempts[number] = merge(attempts.get(number), attempt)
        self._logs.apply(fold.logs)
        for row in fold.states.values():
            self._put_state(row)
        await anyio.lowlevel.checkpoint()

    def _put_state(self, row: StateRow) -> None:
        if row.value is None:
            self._state.get(row.pipeline, {}).pop(row.key, None)
        else:
            self._state.setdefault(row.pipeline, {})[row.key] = row

    # -- pipeline state -----------------------------------------------------------

    async def state_entries(self, pipeline: str) -> list[StateEntry]:
        """Every key of ``pipeline``'s state, sorted, with who last wrote it."""
        await anyio.lowlevel.checkpoint()
        rows = sorted(self._state.get(pipeline, {}).values(), key=lambda r: r.key)
        return [entry((r.pipeline, r.key, r.value, r.updated, r.run_id, r.task)) for r in rows]

    async def list_state(self, pipeline: str) -> dict[str, Any]:
        """``pipeline``'s state as a dict of JSON values."""
        return {e.key: e.value for e in await self.state_entries(pipeline)}

    async def get_state(self, pipeline: str, key: str, default: Any = None) -> Any:
        """The value of one key of ``pipeline``'s state, or ``default``."""
        await anyio.lowlevel.checkpoint()
        row = self._state.get(pipeline, {}).get(key)
        return default if row is None else decode_json(row.value)

    async def set_state(self, pipeline: str, key: str, value: Any) -> None:
        """Set one key of ``pipeline``'s state outside any run.

        :raises StateValueError: the key is not a non-empty string or the value is not JSON.
        """
        text = encode_state_value(key, value)
        await anyio.lowlevel.checkpoint()
        self._put_state(StateRow(pipeline, key, text, time.time(), None, None))

    async def delete_state(self, pipeline: str, key: str) -> bool:
        """Remove one key of ``pipeline``'s state; whether it was there."""
        await anyio.lowlevel.checkpoint()
        return self._state.get(pipeline, {}).pop(key, None) is not None

    def _run_row(self, run_id: str) -> RunRow:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    def _info(self, row: RunRow) -> RunInfo:
        counted = self._counted.get(row.run_id)
        if counted is not None:
            return run_info(row, counted)
        tasks = self._tasks.get(row.run_id, {})
        counts = Counter(
            t.state or "PENDING" for k, t in tasks.items() if f"{k}[0]" not in tasks
        )  # a mapped task counts as its instances (see _sql.not_mapped)
        if pending := pending_count(row, tasks):
            counts["PENDING"] += pending
        self._counted[row.run_id] = counts
        return run_info(row, counts)

    async def load_prior_run(self, run_id: str) -> PriorRun:
        """Return ``run_id``'s stored successful results for resuming.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        await anyio.lowlevel.checkpoint()
        run = self._run_row(run_id)
        tasks = self._tasks.get(run_id, {}).values()
        return prior_run(
            run, ((t.key, t.result) for t in tasks if t.state == "SUCCESS" and t.result_stored)
        )

    async def list_runs(
        self, *, pipeline: str | None = None, limit: int | None = 20
    ) -> Sequence[RunInfo]:
        """Return recorded runs, newest first, optionally of one pipeline only."""
        await anyio.lowlevel.checkpoint()
        rows = [r for r in self._runs.values() if pipeline is None or r.pipeline == pipeline]
        rows.sort(key=lambda r: r.started or 0.0, reverse=True)
        return [self._info(r) for r in rows[:limit]]

    async def query_runs(self, query: RunQuery) -> RunPage:
        """Return one page of runs matching ``query``, newest first, with the total."""
        await anyio.lowlevel.checkpoint()
        keyed = sorted(
            ((r.started or 0.0, r.run_id), r)
            for r in self._runs.values()
            if query.admits(r.pipeline or "", r.status or "", r.backfill, r.started or 0.0)
        )
        keys = [k for k, _ in keyed]
        cursor = query.cursor
        if cursor is None or query.before is not None:
            end = len(keyed) if cursor is None else bisect_left(keys, cursor)
            chosen = keyed[max(0, end - query.limit) : end][::-1]
        else:
            start = bisect_right(keys, cursor)
            chosen = keyed[start : start + query.limit][::-1]

        def more(keyset: Keyset, older: bool) -> bool:
            return (
                bisect_left(keys, keyset) > 0 if older else bisect_right(keys, keyset) < len(keys)
            )

        return page_of(query, [self._info(r) for _, r in chosen], len(keyed), more)

    async def get_run(self, run_id: str) -> RunInfo:
        """Return one run.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        await anyio.lowlevel.checkpoint()
        return self._info(self._run_row(run_id))

    async def get_tasks(self, run_id: str) -> Sequence[TaskInfo]:
        """Return a run's task instances with their attempts, in first-seen order.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        await anyio.lowlevel.checkpoint()
        return self.task_views(run_id)

    def task_count(self, run_id: str) -> int:
        """How many task instances of ``run_id`` this store holds (0 for an unknown run)."""
        return len(self._tasks.get(run_id, ()))

    def task_views(self, run_id: str) -> list[TaskInfo]:
        """:meth:`get_tasks` as a plain call, for the owner of this store: it may build a
        large run's views in a worker thread while nothing records into the store.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        rows = in_plan_order(self._run_row(run_id), self._tasks.get(run_id, {}).values())
        return [task_info(t, self._attempts.get((run_id, t.key), {}).values()) for t in rows]

    async def pause_schedule(self, pipeline: str, paused: bool = True) -> bool:
        """Pause (or resume) ``pipeline``'s schedule; whether that changed anything."""
        await anyio.lowlevel.checkpoint()
        if not paused:
            return self._pauses.pop(pipeline, None) is not None
        if pipeline in self._pauses:
            return False
        self._pauses[pipeline] = time.time()
        return True

    async def paused_schedules(self) -> dict[str, float]:
        """The paused pipelines, each with when it was paused."""
        await anyio.lowlevel.checkpoint()
        return dict(self._pauses)

    async def run_counts(self) -> dict[tuple[str, str], int]:
        """The number of runs by (pipeline, status)."""
        await anyio.lowlevel.checkpoint()
        return dict(Counter((r.pipeline or "", r.status or "") for r in self._runs.values()))

    async def get_traceparent(self, run_id: str) -> str | None:
        """The W3C trace context of a traced run's span, or None."""
        await anyio.lowlevel.checkpoint()
        return self._logs.traces.get(run_id)

    async def get_logs(self, query: LogQuery) -> LogPage:
        """Return one page of a run's captured log lines, in the order they were stored."""
        await anyio.lowlevel.checkpoint()
        return self._logs.page(query)

    # -- the run queue and the other coordination of _coordination, in-process ---------

    def _queue(self, pipeline: str, params: str, scheduled_for: float | None) -> str:
        run_id, now = uuid.uuid4().hex, time.time()
        if self._queued is not None:
            self._queued.set()
        self._runs[run_id] = RunRow(
            run_id, pipeline, RunStatus.QUEUED, now, params=params, queued_at=now,
            scheduled_for=scheduled_for,
        )  # fmt: skip
        return run_id

    async def enqueue(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        *,
        scheduled_for: float | None = None,
    ) -> str:
        """Queue a run of ``pipeline``; returns its id (see ``SQLiteStore.enqueue``)."""
        await anyio.lowlevel.checkpoint()
        run_id = self._queue(pipeline, encode_params(params), scheduled_for)
        if (caller := traceparent()) is not None:  # the caller's trace, for the run to continue
            self._logs.traces[run_id] = caller
        return run_id

    async def claim_fire(
        self, pipeline: str, scheduled_for: float, params: Mapping[str, Any] | None = None
    ) -> str | None:
        """Claim a schedule's fire and queue its run; ``None`` when it was claimed before."""
        await anyio.lowlevel.checkpoint()
        if (pipeline, scheduled_for) in self._fires:
            return None
        self._fires.add((pipeline, scheduled_for))
        return self._queue(pipeline, encode_params(params), scheduled_for)

    async def claim_next(
        self, limits: Mapping[str, int | None], *, run_id: str | None = None
    ) -> QueuedRun | None:
        """Claim the oldest QUEUED run of these pipelines (name: max active runs, or None)."""
        await anyio.lowlevel.checkpoint()
        active = Counter(r.pipeline for r in self._runs.values() if r.status == "RUNNING")
        queued = sorted(
            (r for r in self._runs.values() if r.status == "QUEUED" and r.pipeline in limits),
            key=lambda r: (r.queued_at or 0.0, r.run_id),
        )
        for row in queued:
            limit = limits[row.pipeline or ""]
            if (run_id is None or row.run_id == run_id) and (
                limit is None or active[row.pipeline] < limit
            ):
                row.status, row.owner = RunStatus.RUNNING, current_owner()
                row.started = row.heartbeat = time.time()
                params = decode_json(row.params, {})
                return QueuedRun(
                    row.run_id,
                    row.pipeline or "",
                    params,
                    row.scheduled_for,
                    row.queued_at,
                    row.resumed_from,
                )
        return None

    async def wait_queued(self, seconds: float) -> None:
        """Return when a run is queued in this store, or after ``seconds``."""
        if self._queued is None:
            self._queued = anyio.Event()
        with anyio.move_on_after(seconds):
            await self._queued.wait()
        self._queued = anyio.Event()

    async def request_cancel(self, run_id: str) -> CancelOutcome:
        """Ask the run to cancel (a queued run ends at once).

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        await anyio.lowlevel.checkpoint()
        row = self._run_row(run_id)
        status = RunStatus(row.status or "RUNNING")
        if status is RunStatus.QUEUED:
            row.status, row.finished = RunStatus.CANCELLED, time.time()
            return CancelOutcome(run_id, RunStatus.CANCELLED, 0)
        if status is RunStatus.RUNNING:
            row.cancel_requests = (row.cancel_requests or 0) + 1
            self._attendance.wake()
        return CancelOutcome(run_id, status, row.cancel_requests or 0)

    async def claim_resume(self, run_id: str, by: str) -> None:
        """Record ``by`` as the one run that resumes ``run_id``.

        :raises ResumeRefused: when another resume of it is queued, running or succeeded.
        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        await anyio.lowlevel.checkpoint()
        self._claim_resume(run_id, by, queued=False)

    async def enqueue_resume(self, run_id: str) -> str:
        """Queue the one run resuming ``run_id`` (see ``SQLiteStore.enqueue_resume``).

        :raises ResumeRefused: when another resume of it is queued, running or succeeded.
        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        await anyio.lowlevel.checkpoint()
        by = uuid.uuid4().hex
        self._claim_resume(run_id, by, queued=True)
        if self._queued is not None:
            self._queued.set()
        return by

    def _claim_resume(self, run_id: str, by: str, *, queued: bool) -> None:
        row = self._run_row(run_id)
        winner = self._runs.get(row.resumed_by or "")
        if winner is not None and winner.run_id != by and winner.status in ACTIVE_RESUMER:
            raise resume_refused(run_id, winner.run_id)
        row.resumed_by = by
        now = time.time()
        status = RunStatus.QUEUED if queued else RunStatus.RUNNING
        self._runs.setdefault(
            by,
            RunRow(by, row.pipeline, status, now, resumed_from=run_id, params=row.params,
                   owner=None if queued else current_owner(), heartbeat=None if queued else now,
                   scheduled_for=row.scheduled_for, queued_at=now if queued else None),
        )  # fmt: skip

    def attend(
        self, run_id: str, on_cancel: Callable[[int], None]
    ) -> AbstractAsyncContextManager[None]:
        """Deliver ``run_id``'s cancel requests while it runs."""
        return self._attendance.attend(run_id, on_cancel)

    async def _beat(self, run_ids: Sequence[str]) -> None:
        now = time.time()
        for run_id in run_ids:
            if (row := self._runs.get(run_id)) is not None:
                row.heartbeat = now

    async def _poll(self, run_ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for row in (self._runs.get(run_id) for run_id in run_ids):
            if row is not None and (row.cancel_requests or row.status == "INTERRUPTED"):
                fenced = 1 if row.status == "INTERRUPTED" else 0  # see _coordination
                found[row.run_id] = max(row.cancel_requests or 0, fenced)
        return found

    async def aclose(self) -> None:
        """Nothing to release; kept for the protocol."""
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
