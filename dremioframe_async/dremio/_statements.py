"""Statements that change data: how to recognise them, and how they run at most once.

A data-changing statement (INSERT, MERGE, UPDATE, DELETE, CREATE, DROP, ALTER,
COPY, OPTIMIZE, VACUUM, ...) must never be submitted twice once it may have
reached Dremio: an INSERT that runs twice inserts twice. So the client runs such
a statement as a REST job (a job id is a handle it can poll again, where a
broken Flight stream is not), and when it loses track of the job after
submitting it (status polls that keep failing, a ``timeout``), it cancels the
job, as for any query, and raises :class:`DremioStatementUncertain`, which
carries ``never_retry``: the engine does not retry it whatever a task's
``retry_on`` says. A SELECT may still be re-run.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow as pa

from ._errors import DremioError, DremioJobError, DremioJobTimeout

if TYPE_CHECKING:
    from ._client import DremioClient

__all__ = [
    "DATA_CHANGING_VERBS",
    "DremioStatementUncertain",
    "follow_statement",
    "is_data_changing",
]

DATA_CHANGING_VERBS = frozenset(
    {
        "INSERT",
        "MERGE",
        "UPDATE",
        "DELETE",
        "CREATE",
        "DROP",
        "ALTER",
        "COPY",
        "OPTIMIZE",
        "VACUUM",
        "TRUNCATE",
        "ROLLBACK",
        "REFRESH",
        "GRANT",
        "REVOKE",
    }
)
"""First words of statements that change data or metadata."""

_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_WORD = re.compile(r"[A-Za-z_]+")


def is_data_changing(sql: str) -> bool:
    """Whether ``sql`` may change data: its first word is a data-changing verb.

    Comments and leading parentheses are skipped. A ``WITH`` statement counts as
    data-changing when any data-changing verb appears in it outside quotes
    (erring on the side of never re-running: a SELECT taken for a write is only
    not retried).
    """
    text = _QUOTED.sub(" ", _COMMENT.sub(" ", sql))
    words = [w.upper() for w in _WORD.findall(text)]
    if not words:
        return False
    if words[0] == "WITH":
        return any(w in DATA_CHANGING_VERBS for w in words[1:])
    return words[0] in DATA_CHANGING_VERBS


class DremioStatementUncertain(DremioError):
    """A data-changing statement was submitted as job ``job_id``, then its outcome was lost.

    The client stopped following the job (``reason``: status reads that kept
    failing, a timeout) and asked Dremio to cancel it, but the cancel may have
    come too late. It was not submitted again, and tasks never retry this
    error (``never_retry``): check the job in Dremio before running it again.
    """

    never_retry = True

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id, self.reason = job_id, reason
        super().__init__(
            f"Dremio job {job_id}: a data-changing statement was submitted, but its outcome "
            f"could not be followed ({reason}); the job was asked to cancel and the statement "
            "was not submitted again: check the job in Dremio before re-running it"
        )


async def follow_statement(
    client: DremioClient,
    job_id: str,
    timeout: float | None,  # noqa: ASYNC109  (a timeout must also cancel the job)
) -> pa.Table:
    """``DremioClient.follow_statement``: wait for the job, then read its (small) result."""
    try:
        job = await client.wait(job_id, timeout=timeout)
    except DremioJobTimeout as exc:
        raise DremioStatementUncertain(job_id, f"no final state within {exc.timeout:g} s") from exc
    except DremioJobError:
        raise  # the job ended without completing: nothing ran twice, nothing to hide
    except DremioError as exc:  # wait() sent the cancel; it may have come too late
        raise DremioStatementUncertain(job_id, f"{type(exc).__name__}: {exc}") from exc
    try:
        return await client.fetch_arrow(job)
    except DremioError as exc:
        raise DremioStatementUncertain(
            job_id, f"the job COMPLETED but its result could not be read: {exc}"
        ) from exc
