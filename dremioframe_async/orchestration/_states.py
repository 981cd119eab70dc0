"""Task states and trigger rules: the vocabulary every other module speaks."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FINAL_STATES", "RunStatus", "TaskState", "TriggerRule"]


class TaskState(StrEnum):
    """Where one task instance stands within one run."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


FINAL_STATES = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.UPSTREAM_FAILED,
        TaskState.SKIPPED,
        TaskState.CANCELLED,
    }
)


class RunStatus(StrEnum):
    """How a run stands: the engine ends a run SUCCESS, FAILED or CANCELLED.

    QUEUED is a run waiting in a store's run queue for a process to claim it;
    RUNNING is a run still going, as a store shows it; INTERRUPTED a run whose
    process died before it finished, as a store finds it. FAILED means some task
    ended FAILED or UPSTREAM_FAILED, even if an alert task ran.
    """

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"


class TriggerRule(StrEnum):
    """When a task runs, given how its upstream tasks ended (Airflow's set)."""

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"
