"""Turn stored rows into the frozen views the CLI and users read."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from ..orchestration import PriorRun, TaskState
from ._codec import decode_json
from ._fold import AttemptRow, RunRow, TaskRow
from ._model import AttemptInfo, RunInfo, RunStatus, TaskInfo

__all__ = [
    "in_plan_order",
    "pending_count",
    "prior_run",
    "run_info",
    "task_info",
    "task_infos",
]


def run_info(row: RunRow, counts: Mapping[str, int]) -> RunInfo:
    """Build a :class:`RunInfo` from a stored run row and its task-state counts."""
    return RunInfo(
        run_id=row.run_id,
        pipeline=row.pipeline or "",
        status=RunStatus(row.status or RunStatus.RUNNING),
        started=row.started or 0.0,
        finished=row.finished,
        params=decode_json(row.params, {}),
        resumed_from=row.resumed_from,
        owner=row.owner or "",
        counts=dict(counts),
        scheduled_for=row.scheduled_for,
        queued_at=row.queued_at,
        cancel_requests=row.cancel_requests or 0,
        resumed_by=row.resumed_by,
        interval=(
            (row.interval_start, row.interval_end)
            if row.interval_start is not None and row.interval_end is not None
            else None
        ),
        backfill=row.backfill,
    )


def _attempt_info(row: AttemptRow) -> AttemptInfo:
    return AttemptInfo(
        number=row.number,
        state=TaskState(row.state or TaskState.RUNNING),
        started=row.started,
        finished=row.finished,
        error_type=row.error_type,
        error_message=row.error_message,
        error_traceback=row.error_traceback,
        retry_delay=row.retry_delay,
    )


def _with_first_attempt(row: TaskRow, attempts: Iterable[AttemptRow]) -> list[AttemptRow]:
    """Rebuild the first attempt, which is not written when it ended without an error."""
    by_number = {a.number: a for a in attempts}
    first = by_number.get(1)
    if first is None and row.attempts:
        final = row.attempts == 1
        state = row.state if final else TaskState.FAILED.value
        finished = row.finished if final else None
        first = AttemptRow(row.run_id, row.key, 1, state, row.started, finished)
    if first is not None:
        first.started = first.started or row.started
        by_number[1] = first
    return [by_number[n] for n in sorted(by_number)]


def task_info(row: TaskRow, attempts: Iterable[AttemptRow]) -> TaskInfo:
    """Build a :class:`TaskInfo` from a stored task row and its attempt rows."""
    stored = bool(row.result_stored)
    attempts = _with_first_attempt(row, attempts)
    return TaskInfo(
        run_id=row.run_id,
        key=row.key,
        state=TaskState(row.state or TaskState.PENDING),
        started=row.started,
        finished=row.finished,
        attempts=tuple(_attempt_info(a) for a in attempts),
        reason=row.reason or "",
        upstream=tuple(decode_json(row.upstream, [])),
        result=decode_json(row.result) if stored else None,
        result_stored=stored,
        result_type=row.result_type,
        result_note=row.result_note or "",
    )


def task_infos(
    run: RunRow, tasks: Iterable[TaskRow], attempts: Iterable[AttemptRow]
) -> list[TaskInfo]:
    """A run's :class:`TaskInfo` views in plan order (see :func:`in_plan_order`),
    each with its attempts."""
    by_key: dict[str, list[AttemptRow]] = {}
    for attempt in attempts:
        by_key.setdefault(attempt.key, []).append(attempt)
    return [task_info(task, by_key.get(task.key, ())) for task in in_plan_order(run, tasks)]


def prior_run(run: RunRow, results: Iterable[tuple[str, str | None]]) -> PriorRun:
    """What resuming ``run`` needs, given its stored successful results as (key, JSON)."""
    decoded = {key: decode_json(text) for key, text in results}
    params = decode_json(run.params, {})
    return PriorRun(
        run.run_id, run.pipeline or "", params, decoded, run.status or "", run.owner or ""
    )


def in_plan_order(run: RunRow, rows: Iterable[TaskRow]) -> list[TaskRow]:
    """A run's task rows in plan order, with a PENDING row for each task not yet seen.

    ``rows`` come in the order they were first written. The run's planned tasks
    come first, in plan order (their PENDING rows used to be written first), then
    the dynamic ones (``expand`` children), each mapped task's by index. Runs
    recorded without ``task_keys`` have real PENDING rows and are returned as they
    are.
    """
    if run.task_keys is None:
        return list(rows)
    by_key: dict[str, TaskRow | None] = {row.key: row for row in rows}
    ordered = [
        by_key.pop(key, None) or TaskRow(run.run_id, key, TaskState.PENDING.value)
        for key in decode_json(run.task_keys)
    ]
    ordered.extend(_instances_in_index_order([row for row in by_key.values() if row is not None]))
    return ordered


def _instances_in_index_order(rows: list[TaskRow]) -> list[TaskRow]:
    """Dynamic rows with each mapped task's instances together and by index.

    Rows are first written in the order the store first hears of them, which is
    start order with events and may be finish order with task records (a quick
    task's start travels on its final record): either way not the order to show.
    """
    if not rows:
        return rows
    keyed: list[tuple[int, int, TaskRow]] = []
    groups: dict[str, int] = {}
    for pos, row in enumerate(rows):
        parent, bracket, index = row.key[:-1].rpartition("[")
        if bracket and row.key.endswith("]") and index.isdigit():
            keyed.append((groups.setdefault(parent, pos), 1 + int(index), row))
        else:
            keyed.append((pos, 0, row))
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    return [row for _, _, row in keyed]


def pending_count(run: RunRow, seen: Collection[str]) -> int:
    """How many of the run's planned tasks have no row among the keys ``seen``."""
    if run.task_keys is None:
        return 0
    return sum(1 for key in decode_json(run.task_keys) if key not in seen)
