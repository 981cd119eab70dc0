"""Frozen read views of recorded runs, and the :class:`RunStore` protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..orchestration import RunRecorder, RunStatus, TaskState

if TYPE_CHECKING:
    from ._coordination import CancelOutcome, QueuedRun
    from ._paging import RunPage, RunQuery

__all__ = ["AttemptInfo", "RunInfo", "RunStatus", "RunStore", "TaskInfo"]


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


@runtime_checkable
class RunStore(RunRecorder, Protocol):
    """A run recorder whose history can be listed and read back.

    Every store marks runs whose owning process died as ``INTERRUPTED`` when it
    is opened and whenever runs are listed or read (see ``_owner`` for the rule).
    """

    async def list_runs(
        self, *, pipeline: str | None = None, limit: int | None = 20
    ) -> Sequence[RunInfo]:
        """Return recorded runs, newest first."""
        ...

    async def get_run(self, run_id: str) -> RunInfo:
        """Return one run.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        ...

    async def query_runs(self, query: RunQuery) -> RunPage:
        """Return one page of runs matching ``query``, newest first, with the total.

        Database stores answer from indexes, so deep pages cost what the first does.
        """
        ...

    async def get_tasks(self, run_id: str) -> Sequence[TaskInfo]:
        """Return a run's task instances with their attempts, in first-seen order.

        :raises RunNotFound: (a ``LookupError``) when ``run_id`` is unknown.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the store can be reopened by using it again."""
        ...

    # -- many processes, one store (see _coordination) --------------------------------

    async def enqueue(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        *,
        scheduled_for: float | None = None,
    ) -> str:
        """Queue a run of ``pipeline`` (status QUEUED); return its id."""
        ...

    async def claim_fire(
        self, pipeline: str, scheduled_for: float, params: Mapping[str, Any] | None = None
    ) -> str | None:
        """Claim a schedule's fire once across processes and queue its run; None if lost."""
        ...

    async def claim_next(
        self, limits: Mapping[str, int | None], *, run_id: str | None = None
    ) -> QueuedRun | None:
        """Claim the oldest QUEUED run of these pipelines within their max active runs."""
        ...

    async def wait_queued(self, seconds: float) -> None:
        """Return when a run may have been queued, or after ``seconds``."""
        ...

    async def request_cancel(self, run_id: str) -> CancelOutcome:
        """Ask for ``run_id`` to be cancelled wherever it runs."""
        ...

    async def claim_resume(self, run_id: str, by: str) -> None:
        """Record ``by`` as the one run resuming ``run_id``; refuse a second."""
        ...

    def attend(
        self, run_id: str, on_cancel: Callable[[int], None]
    ) -> AbstractAsyncContextManager[None]:
        """Keep ``run_id``'s heartbeat and deliver its cancel requests while it runs."""
        ...
