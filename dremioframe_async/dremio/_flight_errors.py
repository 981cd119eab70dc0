"""pyarrow.flight's errors mapped into the client's ``DremioError`` tree."""

from __future__ import annotations

import pyarrow.flight as flight

from ._errors import (
    DremioAuthError,
    DremioConnectionError,
    DremioError,
    DremioJobCancelled,
    DremioJobTimeout,
    DremioTLSError,
    job_failed,
)

__all__ = [
    "FLIGHT_JOB",
    "flight_message",
    "is_tls_failure",
    "map_flight_error",
    "plaintext_hint",
    "unavailable_is_safe_to_retry",
]

# gRPC's words for a connection that was never opened: the call cannot have reached Dremio.
_NOT_CONNECTED = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "name resolution",
    "no route to host",
)

FLIGHT_JOB = "(flight)"
"""The job id in errors: Flight gives no Dremio job id to the client."""


def flight_message(exc: BaseException) -> str:
    """The server's message from a pyarrow Flight error, without gRPC's debug context."""
    text = str(exc)
    for marker in (". Detail:", ". gRPC client debug context:"):
        text = text.split(marker, 1)[0]
    if ", with message: " in text and text.startswith("Flight "):
        text = text.split(", with message: ", 1)[1]
    return text.strip()


def map_flight_error(exc: Exception, call: str, timeout: float | None) -> DremioError:
    """Translate a pyarrow.flight (or Arrow) error into the client's error tree."""
    message = flight_message(exc)
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return DremioAuthError("FLIGHT", call, 401, message)
    if isinstance(exc, flight.FlightUnauthorizedError):
        return DremioAuthError("FLIGHT", call, 403, message)
    if isinstance(exc, flight.FlightUnavailableError):
        if is_tls_failure(message):
            return DremioTLSError("FLIGHT", call, message)
        sent = not _never_connected(message)
        return DremioConnectionError("FLIGHT", call, message, sent=sent)
    if isinstance(exc, flight.FlightTimedOutError):
        return DremioJobTimeout(FLIGHT_JOB, timeout or 0.0)
    if isinstance(exc, flight.FlightCancelledError):
        return DremioJobCancelled(FLIGHT_JOB, message)
    if isinstance(exc, flight.FlightError):
        return job_failed(FLIGHT_JOB, message)  # transient cluster failures stay retryable
    return DremioConnectionError("FLIGHT", call, f"{type(exc).__name__}: {message}")


def is_tls_failure(message: str) -> bool:
    """Whether gRPC's UNAVAILABLE is a refused certificate (final) rather than a lost peer."""
    lowered = message.lower()
    return any(word in lowered for word in ("certificate", "ssl", "tls", "handshake failed"))


def plaintext_hint(message: str) -> str:
    """``message``, with a hint when a plaintext connection was closed as it opened.

    A TLS server closes a ``grpc+tcp`` connection at its first bytes, and gRPC
    only says "Socket closed": the likeliest cause is the scheme.
    """
    if _never_connected(message) and "socket closed" in message.lower():
        return (
            f"{message} (the server closed the connection as soon as it opened: "
            "if it serves TLS, use a grpc+tls:// flight_url)"
        )
    return message


def unavailable_is_safe_to_retry(exc: BaseException) -> bool:
    """Whether an UNAVAILABLE call can be repeated without running its statement twice.

    Yes when the connection was never opened, or when the server itself answered
    UNAVAILABLE (a refusal, like HTTP 503: pyarrow then reports the server's own
    message, not "Flight returned unavailable error"). No when an open connection
    broke: the statement may already be running.
    """
    message = flight_message(exc)
    return _never_connected(message) or not str(exc).startswith("Flight returned")


def _never_connected(message: str) -> bool:
    lowered = message.lower()
    return any(words in lowered for words in _NOT_CONNECTED)
