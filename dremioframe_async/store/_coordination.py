"""What many processes sharing one store agree through it: the values and rules.

The stores implement the statements (``_sqlite_queue``, ``_postgres_queue``,
``_memory``); this module holds what they share:

* **Fire claims.** A schedule's fire is claimed under the unique key
  (pipeline, scheduled time) in the ``fires`` table, in the same transaction
  that queues its run. Every other scheduler loses the claim and skips the fire.
* **The run queue.** A QUEUED run is claimed by one process with a conditional
  update (SQLite, under its write lock) or ``FOR UPDATE SKIP LOCKED``
  (PostgreSQL), which also holds ``max_active_runs`` across processes: the
  claimers of a limited pipeline count its RUNNING runs under a lock.
* **Heartbeats** (see ``_attendance``) decide liveness: a RUNNING run whose
  heartbeat is older than ``dead_after`` is INTERRUPTED, whoever looks.
* **Cancel requests** are a counter on the run; the owner's attendance reads it.
  A QUEUED run is CANCELLED at once.
* **Fencing.** INTERRUPTED is final, as SUCCESS, FAILED and CANCELLED are: an
  owner that was frozen or cut off past ``dead_after`` (its run may be resumed
  elsewhere meanwhile) never turns it back, and its attendance, finding the run
  INTERRUPTED, cancels it as a cancel request would.
* **Resume claims.** A run records the one run that resumes it (``resumed_by``);
  a second resume is refused while that one is queued, running or succeeded.
  ``enqueue_resume`` claims the resume and queues the resuming run (it then waits
  for its pipeline's ``max_active_runs`` like any queued run); ``claim_resume``
  claims it for a run starting at once (``Pipeline.run(resume=...)``), and lets
  through the run that already holds the claim.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..orchestration import ResumeRefused, RunStatus
from ._owner import is_dead

__all__ = [
    "ACTIVE_RESUMER",
    "CancelOutcome",
    "QueuedRun",
    "below_limit",
    "dead_runs",
    "encode_params",
    "resume_refused",
]

# A resume of a run is refused while the run that resumed it is in one of these.
ACTIVE_RESUMER = ("QUEUED", "RUNNING", "SUCCESS")


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """A run taken from the queue by this process, to be run with ``run_id``."""

    run_id: str
    pipeline: str
    params: Mapping[str, Any] = field(default_factory=dict)
    scheduled_for: float | None = None
    queued_at: float | None = None
    resumed_from: str | None = None  # a queued resume: run it with run(resume=...)


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What a cancel request did: the run's status after it, and requests so far."""

    run_id: str
    status: RunStatus
    requests: int

    @property
    def message(self) -> str:
        """One line for an operator."""
        if self.status is RunStatus.QUEUED or (
            self.status is RunStatus.CANCELLED and self.requests == 0
        ):
            return f"run {self.run_id} was cancelled before it started"
        if self.status is not RunStatus.RUNNING:
            return f"run {self.run_id} already ended {self.status.value}: nothing to cancel"
        if self.requests == 1:
            return f"cancel requested for run {self.run_id}: its process cancels it gracefully"
        return f"second cancel requested for run {self.run_id}: its cleanup is stopped too"


def encode_params(params: Mapping[str, Any] | None) -> str:
    """Run parameters as the stores keep them (JSON; what JSON cannot hold, as its repr)."""
    return json.dumps(dict(params or {}), default=repr, allow_nan=False)


def resume_refused(run_id: str, winner: str) -> ResumeRefused:
    """The refusal of a second resume of ``run_id``, naming the run that won."""
    return ResumeRefused(
        run_id,
        f"run {winner} already resumes it (queued, running or succeeded); "
        f"resume {winner} instead if it fails",
    )


def below_limit(limit: int | None, active: int) -> bool:
    """Whether a pipeline with ``active`` RUNNING runs may start one more (None: no limit)."""
    return limit is None or active < limit


def dead_runs(
    running: Iterable[tuple[str, str | None, float | None]], dead_after: float
) -> list[tuple[str, float | None]]:
    """The runs to mark INTERRUPTED among RUNNING runs given as (run_id, owner, last seen).

    Each comes with the cutoff its heartbeat must still be older than when it is
    marked (it may have been renewed since it was read), or None when its process
    is gone, which no heartbeat can undo.
    """
    cutoff = time.time() - dead_after
    return [
        (run_id, None if is_dead(owner or "") else cutoff)
        for run_id, owner, seen in running
        if (seen or 0.0) < cutoff or is_dead(owner or "")
    ]
