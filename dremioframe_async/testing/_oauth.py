"""Dremio's OAuth authorization server, ``POST /oauth/token``, for FakeDremio.

Dremio (Enterprise, v26; Dremio Cloud at ``login.dremio.cloud``) hands out OAuth
access tokens there, outside ``/api/v3``. Its API reference documents the request
parameters (form-encoded body) and the token object answered. FakeDremio serves two
of its grants:

- ``client_credentials``: a service user's ``client_id`` and ``client_secret``, in the
  body or, as RFC 6749 (section 2.3.1) requires servers to accept, as HTTP Basic;
- ``urn:ietf:params:oauth:grant-type:token-exchange`` of a personal access token
  (``subject_token_type`` ``urn:ietf:params:oauth:token-type:dremio:personal-access-token``).

The access token it issues is a session token like a login's: it works as a bearer
token over REST and Flight until ``FakeDremio.expire_sessions``. Errors follow RFC 6749
(section 5.2), which Dremio's reference does not spell out.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from collections.abc import Callable, Mapping

from aiohttp import web

__all__ = ["OAuthServer"]

CLIENT_CREDENTIALS = "client_credentials"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
PAT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:dremio:personal-access-token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SCOPE = "dremio.all"
# Dremio's default access-token lifetime, in seconds (its reference: one hour).
LIFETIME_S = 3600
_FORM = "application/x-www-form-urlencoded"


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    """An RFC 6749 error answer (no caching, as section 5.1 asks of token answers)."""
    body = {"error": error, "error_description": description}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """``client_id`` and ``client_secret`` from an ``Authorization: Basic`` header."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


class OAuthServer:
    """``POST /oauth/token`` of one FakeDremio.

    ``client_id`` and ``client_secret`` are the service user's client credentials it
    accepts (generated; set them to any pair before a client asks for a token).
    ``issue`` makes a session token; ``pat_ok`` says whether a string is the server's
    personal access token.
    """

    def __init__(self, issue: Callable[[], str], pat_ok: Callable[[str], bool]) -> None:
        self.client_id = str(uuid.uuid4())
        self.client_secret = secrets.token_urlsafe(24)
        self._issue = issue
        self._pat_ok = pat_ok

    def __repr__(self) -> str:
        return f"OAuthServer(client_id={self.client_id!r})"

    async def token(self, request: web.Request) -> web.Response:
        """Answer a token request with Dremio's OAuth token object, or an RFC 6749 error."""
        if request.content_type != _FORM:
            # RFC 6749 (sections 4.4.2, 3.2) and Dremio's examples: form-encoded only.
            return _oauth_error(400, "invalid_request", f"The body must be {_FORM}")
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        scopes = set(fields.get("scope", SCOPE).split())
        if scopes != {SCOPE}:
            return _oauth_error(400, "invalid_scope", f"Supported scope: {SCOPE}")
        grant = fields.get("grant_type", "")
        if grant == CLIENT_CREDENTIALS:
            return self._client_credentials(fields, request.headers.get("Authorization", ""))
        if grant == TOKEN_EXCHANGE:
            return self._token_exchange(fields)
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type: {grant!r}")

    def _client_credentials(self, fields: Mapping[str, str], header: str) -> web.Response:
        given = _basic_credentials(header) if header else None
        if given is None:
            given = (fields.get("client_id", ""), fields.get("client_secret", ""))
        same_id = secrets.compare_digest(given[0].encode(), self.client_id.encode())
        same_secret = secrets.compare_digest(given[1].encode(), self.client_secret.encode())
        if not (same_id and same_secret):
            return _oauth_error(401, "invalid_client", "Invalid client credentials")
        return self._granted()

    def _token_exchange(self, fields: Mapping[str, str]) -> web.Response:
        kind = fields.get("subject_token_type", "")
        if kind != PAT_TOKEN_TYPE:
            return _oauth_error(400, "invalid_request", f"Unsupported subject_token_type {kind!r}")
        if not self._pat_ok(fields.get("subject_token", "")):
            return _oauth_error(400, "invalid_grant", "The subject token is not valid")
        return self._granted()

    def _granted(self) -> web.Response:
        body = {
            "access_token": self._issue(),
            "expires_in": LIFETIME_S,
            "token_type": "Bearer",
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "scope": SCOPE,
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})
