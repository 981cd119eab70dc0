"""What the runner needs from a run store, stated here so the engine imports no store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import StoreError
from ._errors import ArgumentError
from ._events import Event
from ._states import TaskState

__all__ = [
    "DirectRecorder",
    "HistoryIncomplete",
    "PriorRun",
    "Record",
    "ResumeRefused",
    "RunAttendant",
    "RunRecorder",
    "TaskRecord",
    "hand_back",
    "handed_back",
]

TaskRecord = tuple[
    str,  # run_id
    str,  # key
    TaskState,  # state
    float,  # time
    int,  # attempt
    BaseException | None,  # error
    Any,  # result
    str,  # reason
    tuple[str, ...],  # upstream
    Mapping[str, str | None] | None,  # state_writes
    str,  # pipeline
    float | None,  # started: the task's first start, or None when a record said it
]
"""A :class:`TaskStateChanged` as a plain tuple, for a :class:`DirectRecorder`.

Building a frozen event costs more than a tuple of the same fields; when
nobody but the store reads a run's task changes, the runner hands these over.
A first attempt's ``RUNNING`` is handed over only when the task is still
running as the store takes a batch; ``started`` on a later record carries it.
"""

Record = Event | TaskRecord
"""What a :class:`DirectRecorder` may find in a batch."""


@dataclass(frozen=True, slots=True)
class PriorRun:
    """What a resumed run takes over from an earlier one.

    ``results`` holds the stored results of the tasks that succeeded and whose
    results could be stored; every other task of the pipeline runs again.
    ``status`` is the run's stored status (``RUNNING`` means its owner, named by
    ``owner``, is still alive); ``params_changed`` names the parameters the
    resumed run changed, when the caller allowed that.
    """

    run_id: str
    pipeline: str
    params: Mapping[str, Any]
    results: Mapping[str, Any]
    status: str = ""
    owner: str = ""
    params_changed: tuple[str, ...] = field(default=())

    @property
    def reuse_reason(self) -> str:
        """The reason recorded on each task whose result this run reuses."""
        if not self.params_changed:
            return f"resumed from run {self.run_id}"
        changed = ", ".join(self.params_changed)
        return f"resumed from run {self.run_id}, computed with other params ({changed})"


@runtime_checkable
class RunRecorder(Protocol):
    """A sink for a run's events that can also hand back an earlier run for resuming.

    ``record`` receives events in emission order, in batches. The runner awaits
    the batch holding ``RunStarted`` before any task starts (a run that cannot
    be recorded does not start), the others off the tasks' path, and the last
    one (shielded, bounded) before ``run()`` returns or re-raises. A batch that
    fails is retried, together with the events that follow it, within a budget;
    what is still unrecorded then is reported as ``RunResult.history_error``.

    A recorder may return from ``record`` before a batch in the middle of a run is
    written, if the run's last batch waits for it. One that then cannot write it
    hands it back: the exception a later ``record`` of the same run raises carries
    those events (:func:`hand_back`), and the runner retries them ahead of that
    batch and counts them in ``HistoryIncomplete.lost``.
    """

    async def record(self, events: Sequence[Event]) -> None: ...

    async def load_prior_run(self, run_id: str) -> PriorRun:
        """Return the run to resume; raise ``LookupError`` when it is unknown."""
        ...


@runtime_checkable
class DirectRecorder(Protocol):
    """A recorder that folds :data:`TaskRecord` tuples as it folds events.

    When a run has no listener, the runner emits a ``TaskRecord`` instead of
    each ``TaskStateChanged`` (every other event as usual): the store gets the
    same batches, in the same order, with the same meaning. The declaration
    counts only on the class that defines the ``record`` in use, so a subclass
    that overrides ``record`` gets events unless it declares it again.
    """

    takes_task_records: Literal[True]

    async def record(self, events: Sequence[Record]) -> None: ...


@runtime_checkable
class RunAttendant(Protocol):
    """A recorder shared by many processes: it attends the runs it records.

    ``attend`` keeps a run's heartbeat while it runs and calls ``on_cancel(n)``
    when the n-th cancel request for it arrives from any process (the first
    cancels the run gracefully, the second stops its cleanup). ``claim_resume``
    records the one run that resumes another, and refuses a second.
    """

    def attend(
        self, run_id: str, on_cancel: Callable[[int], None]
    ) -> AbstractAsyncContextManager[None]: ...

    async def claim_resume(self, run_id: str, by: str) -> None: ...


class HistoryIncomplete(StoreError):
    """Run ``run_id`` ended, but ``lost`` of its events could not be recorded in ``store``.

    Found on ``RunResult.history_error``; ``raise_for_status()`` raises it when
    the run itself succeeded. The store's own error is the ``__cause__``.
    """

    def __init__(self, run_id: str, store: str, lost: int, cause: BaseException) -> None:
        self.run_id = run_id
        self.store = store
        self.lost = lost
        super().__init__(
            f"run {run_id}: {lost} event(s) could not be recorded in {store}, so its history "
            f"is incomplete ({type(cause).__name__}: {cause})"
        )


class ResumeRefused(ArgumentError):
    """``run(resume=run_id)`` would be unsafe; the message says why and how to proceed."""

    def __init__(self, run_id: str, problem: str) -> None:
        self.run_id = run_id
        self.problem = problem
        super().__init__(f"cannot resume run {run_id}: {problem}")


_HANDED_BACK = "dremioframe_async_unrecorded"


def hand_back(error: BaseException, records: Sequence[Record]) -> None:
    """Have ``error``, raised by ``record``, carry ``records``: events of the same
    run that ``record`` had returned for but could not write, in order."""
    if records:
        setattr(error, _HANDED_BACK, [*handed_back(error), *records])


def handed_back(error: BaseException) -> list[Record]:
    """The events ``error`` carries back to the runner (see :func:`hand_back`)."""
    carried = getattr(error, _HANDED_BACK, None)
    return list(carried) if isinstance(carried, list) else []
