"""Errors of the Dremio REST client.

Every error the client raises on purpose derives from :class:`DremioError`, a
:class:`~dremioframe_async.errors.DremioFrameError`::

    DremioError
    ├── DremioConfigError (also ValueError)     no URL, no credentials, bad combination
    ├── DremioBackendError (also RuntimeError)  used outside asyncio (aiohttp is asyncio-only)
    ├── DremioConnectionError                   network failure, after the retry budget
    ├── DremioAPIError                          a non-2xx response: status, error_message, more_info
    │   ├── DremioBadRequest                    400 (never retried)
    │   ├── DremioAuthError                     401 / 403 (401 re-logs in once with a password)
    │   ├── DremioNotFound                      404
    │   ├── DremioRateLimited                   429, after the retry budget; retry_after
    │   └── DremioServerError                   5xx, after the retry budget for 502/503/504
    └── DremioJobError                          a job did not complete; job_id
        ├── DremioJobFailed                     FAILED; Dremio's errorMessage
        ├── DremioJobCancelled                  CANCELED; Dremio's cancellationReason
        └── DremioJobTimeout (also TimeoutError)  wait(timeout=) elapsed; the job was cancelled

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
    "DremioJobTimeout",
    "DremioNotFound",
    "DremioRateLimited",
    "DremioServerError",
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
    """Dremio could not be reached (after retrying)."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method, self.path, self.reason = method, path, reason
        super().__init__(f"{method} {path}: cannot reach Dremio: {reason}")


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


class DremioJobFailed(DremioJobError):
    """The job ended FAILED; ``error_message`` is Dremio's reason."""

    def __init__(self, job_id: str, error_message: str) -> None:
        self.error_message = error_message
        super().__init__(
            job_id, f"Dremio job {job_id} failed: {error_message or 'no reason given'}"
        )


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
