"""Frozen read views of recorded runs and pipeline state, and the StateStore protocol.

The :class:`RunStore` protocol is in ``_protocol``: it names the pages and the
coordination records, which import these views.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..orchestration import RunStatus, TaskState

__all__ = [
    "INTERRUPTED_REASON",
    "AttemptInfo",
    "RunInfo",
    "RunStatus",
    "StateEntry",
    "StateStore",
    "TaskInfo",
]

# The reason of a task that was RUNNING when its run's process died: the store ends
# it CANCELLED, with this reason, when it marks the run INTERRUPTED.
INTERRUPTED_REASON = "interrupted: the run's process ended while this was running"


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """One attempt of one task instance. ``state`` is RUNNING until the attempt ends."""

    number: int
    state: TaskState
    started: float | None
    finished: float | None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    retry_delay: float | None = None


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One task instance of a recorded run.

    ``result`` is the stored result when ``result_stored``; otherwise
    ``result_type`` names the result's type and ``result_note`` says why it was
    not stored (such tasks run again on resume).
    """

    run_id: str
    key: str
    state: TaskState
    started: float | None
    finished: float | None
    attempts: tuple[AttemptInfo, ...] = ()
    reason: str = ""
    upstream: tuple[str, ...] = ()
    result: Any = None
    result_stored: bool = False
    result_type: str | None = None
    result_note: str = ""

    @property
    def interrupted(self) -> bool:
        """Whether the task was running when its run's process died (see INTERRUPTED)."""
        return self.reason == INTERRUPTED_REASON


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One recorded run. ``counts`` maps task state to the number of tasks in it.

    ``scheduled_for`` is the schedule's fire time (epoch seconds) for a run a
    schedule started, kept by its resumes; ``queued_at`` when it entered the run
    queue; ``cancel_requests`` how many cancels were asked for it (the second
    stops its cleanup); ``resumed_by`` the run that resumes it, once one was accepted.
    ``interval`` is the run's data interval (start, end: timezone-aware ISO
    strings) when its params carry ``interval_start`` and ``interval_end`` (a
    backfill's or a schedule's run); ``backfill`` the id of the backfill it
    belongs to.
    """

    run_id: str
    pipeline: str
    status: RunStatus
    started: float
    finished: float | None
    params: Mapping[str, Any] = field(default_factory=dict)
    resumed_from: str | None = None
    owner: str = ""
    counts: Mapping[str, int] = field(default_factory=dict)
    scheduled_for: float | None = None
    queued_at: float | None = None
    cancel_requests: int = 0
    resumed_by: str | None = None
    interval: tuple[str, str] | None = None
    backfill: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while the run has no end."""
        return None if self.finished is None else self.finished - self.started


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One key of a pipeline's state: its value and who last wrote it.

    ``run_id`` and ``task`` are None for a value set with ``store.set_state``.
    """

    pipeline: str
    key: str
    value: Any
    updated: float | None
    run_id: str | None = None
    task: str | None = None


@runtime_checkable
class StateStore(Protocol):
    """A store that keeps pipeline state (memory, SQLite and PostgreSQL all do)."""

    async def state_entries(self, pipeline: str) -> list[StateEntry]:
        """Every key of ``pipeline``'s state, sorted, with who last wrote it."""
        ...

    async def list_state(self, pipeline: str) -> dict[str, Any]:
        """``pipeline``'s state as a dict of JSON values."""
        ...

    async def get_state(self, pipeline: str, key: str, default: Any = None) -> Any:
        """The value of one key of ``pipeline``'s state, or ``default``."""
        ...

    async def set_state(self, pipeline: str, key: str, value: Any) -> None:
        """Set one key of ``pipeline``'s state outside any run.

        :raises StateValueError: the key is not a non-empty string or the value is not JSON.
        """
        ...

    async def delete_state(self, pipeline: str, key: str) -> bool:
        """Remove one key of ``pipeline``'s state; whether it was there."""
        ...
