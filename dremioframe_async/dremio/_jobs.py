"""Dremio jobs over REST: the job snapshot, and how a submission, a wait and a cancel
behave when the caller gives up.

``DremioClient.submit``, ``wait`` and ``cancel`` are the public face. A statement's
``POST /sql`` runs in a shielded task, so a cancelled caller never aborts it half-way,
and the job it created is cancelled before the cancellation propagates; a wait that
gives up before its job ends sends one cancel request, bounded and quiet.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ._errors import DremioError, DremioJobCancelled, job_failed
from ._results import row_count
from ._transport import Transport

__all__ = ["FINAL_JOB_STATES", "Job", "cancel_quietly", "poll_until_final", "post_sql"]

logger = logging.getLogger("dremioframe_async.dremio")

FINAL_JOB_STATES = frozenset({"COMPLETED", "FAILED", "CANCELED"})


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of a Dremio job's status."""

    id: str
    state: str
    row_count: int = 0
    error_message: str = ""
    cancellation_reason: str = ""
    started_at: str | None = None
    ended_at: str | None = None

    @property
    def final(self) -> bool:
        """Whether the job has ended (COMPLETED, FAILED or CANCELED)."""
        return self.state in FINAL_JOB_STATES

    @classmethod
    def from_json(cls, job_id: str, body: Mapping[str, Any]) -> Job:
        """Build a snapshot from ``GET /job/{id}``'s body.

        :raises DremioError: its ``rowCount`` is not a number of rows.
        """
        return cls(
            id=job_id,
            state=str(body.get("jobState", "")),
            row_count=row_count(body.get("rowCount") or 0, job_id),
            error_message=str(body.get("errorMessage") or ""),
            cancellation_reason=str(body.get("cancellationReason") or ""),
            started_at=body.get("startedAt"),
            ended_at=body.get("endedAt"),
        )


@dataclass(slots=True)
class _Submission:
    """What the POST /sql of one ``submit`` produced (filled in by its shielded task)."""

    job_id: str | None = None
    error: Exception | None = None


async def post_sql(
    transport: Transport,
    body: dict[str, Any],
    cancel_timeout: float,
    cancel: Callable[[str], Awaitable[None]],
) -> str:
    """POST ``body`` to ``/sql`` once; return the job id (``cancel``: a quiet cancel)."""
    # The POST runs in its own shielded task: a cancelled caller cannot abort it
    # half-way, but bounds it by cancel_timeout and cancels the job it created.
    outcome = _Submission()
    shield = anyio.CancelScope(shield=True)
    done = anyio.Event()

    async def post() -> None:
        try:
            with shield:
                reply = await transport.request("POST", "/sql", body=body, idempotent=False)
                outcome.job_id = _job_id(reply)
        except Exception as exc:  # handed to the caller below, outside the task group
            outcome.error = exc
        finally:
            done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(post)
            try:
                await done.wait()
            except anyio.get_cancelled_exc_class():
                # The job may exist already: learn its id (bounded) to cancel it.
                shield.deadline = anyio.current_time() + cancel_timeout
                raise
    except anyio.get_cancelled_exc_class():
        await _abandon(outcome, cancel_timeout, cancel)
        raise
    if outcome.error is not None:
        raise outcome.error
    assert outcome.job_id is not None  # post() sets one of the two
    return outcome.job_id


async def _abandon(
    outcome: _Submission, cancel_timeout: float, cancel: Callable[[str], Awaitable[None]]
) -> None:
    if outcome.job_id is not None:
        await cancel(outcome.job_id)
    elif outcome.error is None:
        logger.warning(
            "a SQL submission was cancelled and Dremio did not answer within %g s: "
            "a job may have been created and left running",
            cancel_timeout,
        )


def _job_id(reply: Any) -> str:
    if isinstance(reply, dict) and reply.get("id"):
        return str(reply["id"])
    raise DremioError("Dremio accepted the SQL but its reply holds no job id")


async def poll_until_final(
    read: Callable[[str], Awaitable[Job]],
    job_id: str,
    on_status: Callable[[Job], object] | None,
    delays: tuple[float, float],
) -> Job:
    """Read the job's status (``read``), at growing intervals, until it ends.

    :raises DremioJobFailed: the job FAILED.
    :raises DremioJobCancelled: the job was CANCELED.
    """
    delay, max_delay = delays
    while True:
        job = await read(job_id)
        if on_status is not None:
            on_status(job)
        if job.state == "COMPLETED":
            return job
        if job.state == "FAILED":
            raise job_failed(job_id, job.error_message)
        if job.state == "CANCELED":
            raise DremioJobCancelled(job_id, job.cancellation_reason)
        await anyio.sleep(delay)
        delay = min(delay * 1.5, max_delay)


async def cancel_quietly(
    cancel: Callable[[str], Awaitable[None]], job_id: str, seconds: float
) -> None:
    """Send one cancel request for the job (shielded, within ``seconds``); log, never raise."""
    with anyio.move_on_after(seconds, shield=True) as scope:
        try:
            await cancel(job_id)
        except DremioError as exc:
            logger.warning("could not cancel Dremio job %s: %s", job_id, exc)
        else:
            logger.info("cancelled Dremio job %s", job_id)
    if scope.cancelled_caught:
        logger.warning("cancelling Dremio job %s took over %g s", job_id, seconds)
