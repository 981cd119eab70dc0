"""At most one submission of a data-changing statement per task instance.

A task instance submits its statement once. A retried attempt (after a
connection error, an attempt ``timeout=``, anything) picks up the job the first
attempt submitted instead of submitting again: if that job completed, the
retry returns its result; if it failed or was cancelled, the retry raises that.
An attempt interrupted while its submission was in flight leaves no job id to
pick up, so later attempts raise :class:`DremioSubmitUncertain` rather than risk
a second run.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import anyio
import pyarrow as pa

from ..dremio import DremioClient, DremioSubmitUncertain
from ..orchestration import RunContext

__all__ = ["OnceSubmitted"]

_INTERRUPTED = ""  # a submission interrupted in flight: its job id, if any, is unknown


class OnceSubmitted:
    """The job each task instance submitted, kept as long as the instance's context lives.

    The engine gives every attempt of one task instance the same context
    object, so the context identifies the instance across its retries.
    """

    def __init__(self) -> None:
        self._jobs: dict[int, str] = {}

    async def run(
        self,
        client: DremioClient,
        sql: str,
        context: RunContext,
        timeout: float | None = None,  # noqa: ASYNC109  (the client cancels the job on expiry)
        sql_context: Sequence[str] | None = None,
    ) -> pa.Table:
        """Submit ``sql`` the first time, then follow that one job in every later attempt.

        :raises DremioSubmitUncertain: an earlier attempt was interrupted while submitting.
        """
        key = id(context)
        job_id = self._jobs.get(key)
        if job_id == _INTERRUPTED:
            raise DremioSubmitUncertain("/sql", "an earlier attempt was interrupted submitting it")
        if job_id is None:
            job_id = await self._submit(client, sql, sql_context, key, context)
        return await client.follow_statement(job_id, timeout=timeout)

    async def _submit(
        self,
        client: DremioClient,
        sql: str,
        sql_context: Sequence[str] | None,
        key: int,
        context: object,
    ) -> str:
        weakref.finalize(context, self._jobs.pop, key, None)
        try:
            job_id = await client.submit(sql, sql_context)
        except anyio.get_cancelled_exc_class():
            self._jobs[key] = _INTERRUPTED  # the POST may have created a job
            raise
        self._jobs[key] = job_id
        return job_id
