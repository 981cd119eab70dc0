"""Async Dremio REST client (aiohttp) returning pyarrow tables.

``DremioClient`` is the entry point; errors derive from ``DremioError``.
"""

from __future__ import annotations

from ._client import FINAL_JOB_STATES, PAGE_SIZE, DremioClient, Job, split_path
from ._config import Secret, TlsOptions
from ._errors import (
    DremioAPIError,
    DremioAuthError,
    DremioBackendError,
    DremioBadRequest,
    DremioConfigError,
    DremioConnectionError,
    DremioError,
    DremioJobCancelled,
    DremioJobError,
    DremioJobFailed,
    DremioJobFailedTransient,
    DremioJobTimeout,
    DremioNotFound,
    DremioRateLimited,
    DremioResultIncomplete,
    DremioServerError,
    DremioSubmitUncertain,
    DremioTLSError,
)
from ._retryable import RETRYABLE_ERRORS
from ._transport import RetryPolicy
from ._types import arrow_schema, arrow_type

__all__ = [
    "FINAL_JOB_STATES",
    "PAGE_SIZE",
    "RETRYABLE_ERRORS",
    "DremioAPIError",
    "DremioAuthError",
    "DremioBackendError",
    "DremioBadRequest",
    "DremioClient",
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
    "Job",
    "RetryPolicy",
    "Secret",
    "TlsOptions",
    "arrow_schema",
    "arrow_type",
    "split_path",
]
