"""Where a Dremio Flight endpoint is, how to trust it, and Dremio's session cookie."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow.flight as flight

from .._masking import mask_text
from ._config import TlsOptions
from ._errors import DremioConfigError

__all__ = [
    "CLOUD_FLIGHT_URL",
    "PROJECT_HEADER",
    "CookieJar",
    "FlightOptions",
    "grpc_tls",
    "validate_flight_url",
]

CLOUD_FLIGHT_URL = "grpc+tls://data.dremio.cloud:443"
PROJECT_HEADER = b"catalog"
"""Dremio Cloud's project id, sent as a session property (a gRPC header) on every call.

Dremio documents ``catalog=<project id>`` as the connection property that picks a
non-default project for its Flight clients; without it Dremio Cloud runs the query
in the organisation's default project.
"""
_SCHEMES = ("grpc", "grpc+tcp", "grpc+tls")


@dataclass(frozen=True, slots=True)
class FlightOptions:
    """Where the Flight endpoint is and how reads are bounded.

    ``read_ahead`` is the most record batches a stream holds before its consumer
    takes them; ``max_streams`` the most reads (worker threads) at once. TLS for
    ``grpc+tls`` comes from the client's shared ``ssl=`` setting.
    """

    url: str
    read_ahead: int = 4
    max_streams: int = 8


def validate_flight_url(url: str) -> str:
    """Return ``url`` if it is a usable Flight location.

    :raises DremioConfigError: not ``grpc://``, ``grpc+tcp://`` or ``grpc+tls://`` with a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise DremioConfigError(
            f"flight_url must look like grpc+tcp://host:32010 or grpc+tls://host:443, "
            f"not {_redact(url)!r}"
        )
    if parts.username or parts.password:
        raise DremioConfigError("flight_url must not carry credentials: use token= or username=")
    return url


def grpc_tls(tls: TlsOptions) -> dict[str, Any]:
    """FlightClient's TLS arguments from the client's shared TLS options (blocking: reads files).

    gRPC takes trusted CAs as PEM bytes, not an ``ssl.SSLContext``: a context's
    loaded CA certificates are passed on in PEM form, and a context that does not
    verify turns verification off.

    :raises DremioConfigError: the CA bundle cannot be read.
    """
    if tls.context is not None:
        if tls.context.verify_mode == ssl.CERT_NONE:
            return {"disable_server_verification": True}
        certs = tls.context.get_ca_certs(binary_form=True)
        if not certs:
            return {}
        return {"tls_root_certs": "".join(ssl.DER_cert_to_PEM_cert(c) for c in certs).encode()}
    if not tls.verify:
        return {"disable_server_verification": True}
    if tls.ca_file is None:
        return {}
    try:
        return {"tls_root_certs": tls.ca_file.read_bytes()}
    except OSError as exc:
        raise DremioConfigError(f"cannot load the CA bundle {tls.ca_file}: {exc}") from exc


def _redact(url: str) -> str:
    return mask_text(url)


class _CookieMiddleware(flight.ClientMiddleware):  # type: ignore[misc]
    def __init__(self, jar: CookieJar) -> None:
        super().__init__()
        self.jar = jar

    def sending_headers(self) -> dict[str, str]:
        cookie = self.jar.header()
        return {"cookie": cookie} if cookie else {}

    def received_headers(self, headers: dict[str, list[str]]) -> None:
        for key, values in headers.items():
            if key.lower() == "set-cookie":
                self.jar.store(values)


class CookieJar(flight.ClientMiddlewareFactory):  # type: ignore[misc]
    """Dremio 21+ answers the first call with a session cookie and expects it back."""

    def __init__(self) -> None:
        super().__init__()
        self._cookies: dict[str, str] = {}
        self._lock = threading.Lock()

    def start_call(self, info: Any) -> _CookieMiddleware:
        return _CookieMiddleware(self)

    def store(self, values: list[str]) -> None:
        with self._lock:
            for value in values:
                name, _, rest = value.partition("=")
                self._cookies[name.strip()] = rest.split(";", 1)[0].strip()

    def header(self) -> str:
        with self._lock:
            return "; ".join(f"{k}={v}" for k, v in self._cookies.items())
