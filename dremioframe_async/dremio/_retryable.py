"""Which Dremio errors can succeed when the work is tried again (for task retries)."""

from __future__ import annotations

from ._errors import (
    DremioConnectionError,
    DremioJobFailedTransient,
    DremioRateLimited,
    DremioServerError,
)

__all__ = ["RETRYABLE_ERRORS"]

RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    DremioConnectionError,
    DremioRateLimited,
    DremioServerError,
    DremioJobFailedTransient,
)
"""Connection errors (after the client's own budget), 429, 5xx and job failures Dremio
marks as transient. Never auth errors, bad requests, SQL errors (a FAILED job),
incomplete results or :class:`DremioSubmitUncertain` (repeating it could run a
statement twice)."""
