"""Frozen read views of recorded runs (the :class:`RunStore` protocol is in ``_protocol``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..orchestration import RunStatus, TaskState

__all__ = ["AttemptInfo", "RunInfo", "RunStatus", "TaskInfo"]


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


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One recorded run. ``counts`` maps task state to the number of tasks in it.

    ``scheduled_for`` is the schedule's fire time (epoch seconds) for a run a
    schedule started, kept by its resumes; ``queued_at`` when it entered the run
    queue; ``cancel_requests`` how many cancels were asked for it (the second
    stops its cleanup); ``resumed_by`` the run that resumes it, once one was accepted.
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

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while the run has no end."""
        return None if self.finished is None else self.finished - self.started
