"""Errors of the Dremio REST client.

Every error the client raises on purpose derives from :class:`DremioError`, a
:class:`~dremioframe_async.errors.DremioFrameError`::

    DremioError
    ├── DremioConfigError (also ValueError)     bad or missing URL, credentials or TLS option
    ├── DremioBackendError (also RuntimeError)  used outside asyncio (aiohttp is asyncio-only)
    ├── DremioConnectionError                   network failure or no answer in time, after the
    │                                           retry budget; ``sent`` says whether it may have
    │                                           reached Dremio
    ├── DremioTLSError                          the server's certificate was refused (never retried)
    ├── DremioSubmitUncertain                   POST /sql may have reached Dremio but no usable
    │                                           reply came: not re-sent, the statement may have run
    ├── DremioStatementUncertain                a data-changing statement's job was lost track of
    │                                           after submission: cancelled, never re-submitted
    ├── DremioAPIError                          a non-2xx response: status, error_message, more_info
    │   ├── DremioBadRequest                    400 (never retried)
    │   ├── DremioAuthError                     401 / 403 (401 re-logs in once with a password)
    │   ├── DremioNotFound                      404
    │   ├── DremioRateLimited                   429, after the retry budget; retry_after
    │   └── DremioServerError                   5xx, after the retry budget (GETs retry 500/502/
    │                                           503/504, POST /sql only 503)
    ├── DremioJobError                          a job did not complete; job_id
    │   ├── DremioJobFailed                     FAILED; Dremio's errorMessage
    │   │   └── DremioJobFailedTransient        ... of the cluster, not the statement (retryable)
    │   ├── DremioJobCancelled                  CANCELED; Dremio's cancellationReason
    │   └── DremioJobTimeout (also TimeoutError)  wait(timeout=) elapsed; the job was cancelled
    ├── DremioResultIncomplete                  the rows delivered do not match the job's row
    │                                           count: job_id, expected, received
    └── PartitionCountMismatch                  a partitioned read's parts do not add up to
                                                COUNT(*) (``_partitions``)

Messages are built in ``__init__`` from structured arguments and never contain a
token, a password or a request header.
"""

from __future__ import annotations

from ..errors import DremioFrameError

__all__ = [
    "DremioAPIError",
    "DremioAuthError",
    "DremioBackendError",
    "DremioBadRequest",
    "DremioConfigError",
    "DremioConnectionError",
    "DremioError",
    "DremioJobCancelled",
    "DremioJobError",
    "DremioJobFailed",
    "DremioJobFailedTransient",
    "DremioJobTimeout",
    "DremioNotFound",
    "DremioRateLimited",
    "DremioResultIncomplete",
    "DremioServerError",
    "DremioSubmitUncertain",
    "DremioTLSError",
]


class DremioError(DremioFrameError):
    """Root of the Dremio client's errors."""


class DremioConfigError(DremioError, ValueError):
    """The client was given an incomplete or contradictory configuration."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"Dremio client configuration: {problem}")


class DremioBackendError(DremioError, RuntimeError):
    """The client was used under an async library other than asyncio."""

    def __init__(self, library: str) -> None:
        self.library = library
        super().__init__(
            f"the Dremio client uses aiohttp, which runs on asyncio only; it was used under "
            f"{library!r}. Run Dremio tasks with anyio's asyncio backend."
        )


class DremioConnectionError(DremioError):
    """Dremio could not be reached, or did not answer in time (after retrying).

    ``sent`` is False only when the request provably never left the client (the
    connection could not be opened), so a statement cannot have run.
    """

    def __init__(self, method: str, path: str, reason: str, *, sent: bool = True) -> None:
        self.method, self.path, self.reason, self.sent = method, path, reason, sent
        super().__init__(f"{method} {path}: cannot reach Dremio: {reason}")


class DremioTLSError(DremioError):
    """The TLS handshake failed, e.g. the server's certificate is not trusted."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method, self.path, self.reason = method, path, reason
        super().__init__(
            f"{method} {path}: TLS with Dremio failed: {reason}. For a private CA pass "
            "ssl='/path/to/ca.pem' (or set DREMIO_SSL_CA)"
        )


class DremioSubmitUncertain(DremioError):
    """A SQL submission may have reached Dremio, but no usable reply came back.

    The request was not sent again, because the statement may already be running
    (an ``INSERT`` sent twice inserts twice). Check Dremio's job list before
    re-running it. ``reason`` says what happened (a timeout, a lost reply, a
    gateway error). Tasks never retry it (``never_retry``), whatever ``retry_on`` says.
    """

    never_retry = True

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"POST {path}: the statement may have run on Dremio, but no usable reply came back "
            f"({reason}); it was not sent again"
        )


class DremioAPIError(DremioError):
    """Dremio answered with a non-2xx status.

    ``error_message`` and ``more_info`` are Dremio's ``errorMessage`` and ``moreInfo``.
    """

    def __init__(
        self, method: str, path: str, status: int, error_message: str = "", more_info: str = ""
    ) -> None:
        self.method, self.path, self.status = method, path, status
        self.error_message, self.more_info = error_message, more_info
        detail = f": {error_message}" if error_message else ""
        more = f" ({more_info})" if more_info and more_info != error_message else ""
        super().__init__(f"{method} {path} -> HTTP {status}{detail}{more}")


class DremioBadRequest(DremioAPIError):
    """400: the request itself is wrong; retrying cannot help."""


class DremioAuthError(DremioAPIError):
    """401 (bad or expired credentials) or 403 (forbidden)."""


class DremioNotFound(DremioAPIError):
    """404: no such job, catalog entity or endpoint."""


class DremioRateLimited(DremioAPIError):
    """429: Dremio asked to slow down; ``retry_after`` is its Retry-After in seconds."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        error_message: str = "",
        more_info: str = "",
        *,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(method, path, status, error_message, more_info)


class DremioServerError(DremioAPIError):
    """5xx: Dremio (or a proxy in front of it) failed."""


class DremioJobError(DremioError):
    """A job ended without completing."""

    def __init__(self, job_id: str, message: str) -> None:
        self.job_id = job_id
        super().__init__(message)


# Dremio prefixes a failure's message with its error type ("RESOURCE ERROR: ...").
# These types describe the cluster's state at the time, not the statement, so
# the same statement can succeed later.
_TRANSIENT_FAILURES = (
    "RESOURCE ERROR",
    "OUT_OF_MEMORY ERROR",
    "CONNECTION ERROR",
    "CONCURRENT_MODIFICATION ERROR",
)


class DremioJobFailed(DremioJobError):
    """The job ended FAILED; ``error_message`` is Dremio's reason.

    :func:`job_failed` picks :class:`DremioJobFailedTransient` when Dremio's
    message marks a failure of the cluster rather than of the statement.
    """

    transient = False

    def __init__(self, job_id: str, error_message: str) -> None:
        self.error_message = error_message
        super().__init__(
            job_id, f"Dremio job {job_id} failed: {error_message or 'no reason given'}"
        )


class DremioJobFailedTransient(DremioJobFailed):
    """The job FAILED for a reason of the cluster's (``RESOURCE ERROR``, ``OUT_OF_MEMORY
    ERROR``, ``CONNECTION ERROR``, ``CONCURRENT_MODIFICATION ERROR``): the same statement
    can succeed later, so Dremio tasks retry it."""

    transient = True


def job_failed(job_id: str, error_message: str) -> DremioJobFailed:
    """The error for a FAILED job: transient when Dremio's message says so."""
    if error_message.lstrip().upper().startswith(_TRANSIENT_FAILURES):
        return DremioJobFailedTransient(job_id, error_message)
    return DremioJobFailed(job_id, error_message)


class DremioJobCancelled(DremioJobError):
    """The job ended CANCELED; ``reason`` is Dremio's cancellationReason."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.reason = reason
        super().__init__(
            job_id, f"Dremio job {job_id} was cancelled: {reason or 'no reason given'}"
        )


class DremioJobTimeout(DremioJobError, TimeoutError):
    """``wait(timeout=)`` elapsed before the job ended; the job was sent a cancel request."""

    def __init__(self, job_id: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(job_id, f"Dremio job {job_id} did not finish within {timeout:g} s")


class DremioResultIncomplete(DremioError):
    """The rows delivered for a job do not match its row count: nothing partial is returned.

    ``expected`` is the job's row count, ``received`` the rows delivered, and
    ``detail`` names the page that was wrong.
    """

    def __init__(self, job_id: str, expected: int, received: int, detail: str = "") -> None:
        self.job_id, self.expected, self.received, self.detail = job_id, expected, received, detail
        more = f" ({detail})" if detail else ""
        super().__init__(
            f"Dremio job {job_id}: expected {expected:,} rows, received {received:,}{more}; "
            "the result is incomplete"
        )
