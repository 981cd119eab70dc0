"""An in-process store: history lives as long as the object (tests, notebooks, demos)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence

import anyio.lowlevel

from ..orchestration import Event, PriorRun
from ._codec import DEFAULT_MAX_RESULT_BYTES, decode_json
from ._errors import RunNotFound
from ._fold import AttemptRow, Fold, RunRow, TaskRow, merge, task_row
from ._logs import LogPage, LogQuery, MemoryLogs
from ._model import RunInfo, TaskInfo
from ._owner import current_owner
from ._paging import Keyset, RunPage, RunQuery, page_of
from ._views import in_plan_order, pending_count, run_info, task_info

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`RunStore` kept in memory, with the same storage rules as the others.

    Results are JSON-encoded exactly as the database stores do, so a pipeline
    resumes the same way whichever store it uses. Every run it holds was made by
    this process, so none is ever found interrupted.
    """

    name = "memory://"

    def __repr__(self) -> str:
        return "MemoryStore()"

    def __init__(self, *, max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> None:
        self._max_result_bytes = max_result_bytes
        self._runs: dict[str, RunRow] = {}
        self._tasks: dict[str, dict[str, TaskRow]] = {}
        self._attempts: dict[tuple[str, str], dict[int, AttemptRow]] = {}
        self._logs = MemoryLogs()

    async def record(self, events: Sequence[Event]) -> None:
        """Fold ``events`` into the history."""
        fold = Fold(current_owner(), None, self._max_result_bytes, escape=False).add_all(events)
        for run_id, run in fold.runs.items():
            self._runs[run_id] = merge(self._runs.get(run_id), run)
        tasks: dict[str, TaskRow] = {}
        tasks_of = ""
        for (run_id, key), values in fold.tasks.items():
            if run_id != tasks_of:  # a batch holds one run's events, as a rule
                tasks, tasks_of = self._tasks.setdefault(run_id, {}), run_id
            old = tasks.get(key)
            tasks[key] = task_row(values) if old is None else merge(old, task_row(values))
        for (run_id, key, number), attempt in fold.attempts.items():
            attempts = self._attempts.setdefault((run_id, key), {})
            attempts[number] = merge(attempts.get(number), attempt)
        self._logs.apply(fold.logs)
        await anyio.lowlevel.checkpoint()

    def _run_row(self, run_id: str) -> RunRow:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    def _info(self, row: RunRow) -> RunInfo:
        tasks = self._tasks.get(row.run_id, {})
        counts = Counter(t.state or "PENDING" for t in tasks.values())
        if pending := pending_count(row, tasks):
            counts["PENDING"] += pending
        return run_info(row, counts)

    async def load_prior_run(self, run_id: str) -> PriorRun:
        """Return ``run_id``'s stored successful results for resuming.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        await anyio.lowlevel.checkpoint()
        run = self._run_row(run_id)
        tasks = self._tasks.get(run_id, {}).values()
        results = {
            t.key: decode_json(t.result) for t in tasks if t.state == "SUCCESS" and t.result_stored
        }
        params = decode_json(run.params, {})
        return PriorRun(
            run_id, run.pipeline or "", params, results, run.status or "", run.owner or ""
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
            if (query.pipeline is None or r.pipeline == query.pipeline)
            and (query.status is None or r.status == query.status.value)
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
        rows = in_plan_order(self._run_row(run_id), self._tasks.get(run_id, {}).values())
        return [task_info(t, self._attempts.get((run_id, t.key), {}).values()) for t in rows]

    async def run_counts(self) -> dict[tuple[str, str], int]:
        """The number of runs by (pipeline, status)."""
        await anyio.lowlevel.checkpoint()
        return dict(Counter((r.pipeline or "", r.status or "") for r in self._runs.values()))

    async def get_logs(self, query: LogQuery) -> LogPage:
        """Return one page of a run's captured log lines, in the order they were stored."""
        await anyio.lowlevel.checkpoint()
        return self._logs.page(query)

    async def aclose(self) -> None:
        """Nothing to release; kept for the protocol."""
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
