"""Async Dremio client returning pyarrow tables: REST (aiohttp) and Arrow Flight.

``DremioClient`` is the entry point; errors derive from ``DremioError``.
"""

from __future__ import annotations

from ._client import FINAL_JOB_STATES, PAGE_SIZE, DremioClient, Job, Via, split_path
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
from ._flight import CLOUD_FLIGHT_URL
from ._partition_reads import PartitionStream
from ._partitions import Partition, PartitionCountMismatch
from ._retryable import RETRYABLE_ERRORS
from ._statements import DATA_CHANGING_VERBS, DremioStatementUncertain, is_data_changing
from ._stream import BatchStream
from ._transport import RetryPolicy
from ._types import arrow_schema, arrow_type

__all__ = [
    "CLOUD_FLIGHT_URL",
    "DATA_CHANGING_VERBS",
    "FINAL_JOB_STATES",
    "PAGE_SIZE",
    "RETRYABLE_ERRORS",
    "BatchStream",
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
    "DremioStatementUncertain",
    "DremioSubmitUncertain",
    "DremioTLSError",
    "Job",
    "Partition",
    "PartitionCountMismatch",
    "PartitionStream",
    "RetryPolicy",
    "Secret",
    "TlsOptions",
    "Via",
    "arrow_schema",
    "arrow_type",
    "is_data_changing",
    "split_path",
]
