"""The ``RunStore`` protocol: what every store (memory, SQLite, PostgreSQL) offers.

Apart from the value types (``_model``) so that those, the pages (``_paging``)
and the coordination records (``_coordination``) import nothing back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

from ..orchestration import RunRecorder
from ._coordination import CancelOutcome, QueuedRun
from ._model import RunInfo, TaskInfo
from ._paging import RunPage, RunQuery

__all__ = ["RunStore"]


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
