"""Who may use the UI, and how a state-changing request proves it was meant.

* **Auth.** :class:`BearerAuth` (API clients send ``Authorization: Bearer``;
  browsers sign in once on ``/login`` and get a session cookie) and
  :class:`BasicAuth` (a user name and a scrypt hash from :func:`hash_password`;
  browsers ask for the password themselves). Without auth the UI answers
  loopback clients only, and :func:`check_bind` refuses other addresses.
* **CSRF.** Browsers attach cookies and basic credentials to requests that other
  sites make, so every POST must also carry the signed token that the UI put in a
  ``SameSite=Strict`` cookie and in its pages (``X-CSRF-Token`` header or
  ``csrf_token`` form field). A bearer token is never sent by a browser on its own,
  so a request that carries a valid one needs no CSRF token.
* **Headers.** A strict Content-Security-Policy (scripts and styles from the UI
  itself only, no inline script), no framing, no sniffing, no referrer, no caching.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio.to_thread

from ..errors import DremioFrameError

__all__ = [
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "Guard",
    "UnsafeBind",
    "auth_from_env",
    "check_bind",
    "hash_password",
    "is_loopback",
]

TOKEN_ENV = "DREMIOFRAME_ASYNC_UI_TOKEN"
USER_ENV = "DREMIOFRAME_ASYNC_UI_USER"
HASH_ENV = "DREMIOFRAME_ASYNC_UI_PASSWORD_HASH"
CSRF_COOKIE, SESSION_COOKIE = "dfa_csrf", "dfa_session"
SESSION_SECONDS = 12 * 3600
# scrypt at n=2**14, r=8: about 16 MiB and 50 ms per check, so checks run in a thread
# and a verified Authorization header is remembered (by its HMAC, not in clear).
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class UnsafeBind(DremioFrameError, ValueError):
    """The UI was asked to listen beyond loopback without any auth configured."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"refusing to serve the UI on {host!r} without auth: anyone who can reach it could "
            f"trigger and cancel runs. Set {TOKEN_ENV}, or {USER_ENV} and {HASH_ENV} "
            "(dremioframe-async ui --hash-password), or bind to 127.0.0.1"
        )


@dataclass(frozen=True, slots=True)
class BearerAuth:
    """Accept ``Authorization: Bearer <token>`` (and a browser session opened with it)."""

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.token) < 16:
            raise ValueError("a UI bearer token needs at least 16 characters")


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """Accept HTTP basic auth for ``username`` whose password matches ``password_hash``.

    :raises ValueError: when ``password_hash`` was not made by :func:`hash_password`.
    """

    username: str
    password_hash: str = field(repr=False)

    def __post_init__(self) -> None:
        _parse_hash(self.password_hash)

    @classmethod
    def from_env(cls) -> BasicAuth:
        """From ``DREMIOFRAME_ASYNC_UI_USER`` and ``DREMIOFRAME_ASYNC_UI_PASSWORD_HASH``.

        :raises ValueError: when either is unset or the hash is malformed.
        """
        user, hashed = os.environ.get(USER_ENV), os.environ.get(HASH_ENV)
        if not user or not hashed:
            raise ValueError(f"set both {USER_ENV} and {HASH_ENV}")
        return cls(user, hashed)


Auth = BearerAuth | BasicAuth


def auth_from_env() -> tuple[Auth, ...]:
    """The auth the environment configures: a bearer token and/or a basic user (maybe none).

    :raises ValueError: for a basic user without a hash (or the reverse), or a bad hash.
    """
    found: list[Auth] = []
    if token := os.environ.get(TOKEN_ENV):
        found.append(BearerAuth(token))
    if os.environ.get(USER_ENV) or os.environ.get(HASH_ENV):
        found.append(BasicAuth.from_env())
    return tuple(found)


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` for :class:`BasicAuth` (``scrypt$n$r$p$salt$key``)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    parts = [str(_SCRYPT[k]) for k in ("n", "r", "p")]
    parts += [base64.urlsafe_b64encode(b).decode() for b in (salt, key)]
    return "$".join(["scrypt", *parts])


def _parse_hash(text: str) -> tuple[dict[str, int], bytes, bytes]:
    try:
        scheme, n, r, p, salt, key = text.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        params = {"n": int(n), "r": int(r), "p": int(p)}
        return params, base64.urlsafe_b64decode(salt), base64.urlsafe_b64decode(key)
    except (ValueError, binascii.Error):
        raise ValueError(
            "not a password hash made by dremioframe_async.ui.hash_password (scrypt$n$r$p$salt$key)"
        ) from None


def _verify(password: str, hashed: str) -> bool:
    params, salt, key = _parse_hash(hashed)
    given = hashlib.scrypt(password.encode(), salt=salt, dklen=len(key), maxmem=2**26, **params)
    return hmac.compare_digest(given, key)


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: Sequence[Auth]) -> None:
    """Refuse a non-loopback ``host`` when no auth is configured.

    :raises UnsafeBind: (a ``ValueError``) then.
    """
    if not auth and not is_loopback(host):
        raise UnsafeBind(host)


class Guard:
    """The checks one UI instance makes: credentials, sessions and CSRF tokens."""

    def __init__(self, auth: Sequence[Auth]) -> None:
        self.auth = tuple(auth)
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, float] = {}
        self._verified: dict[bytes, float] = {}

    @property
    def bearer(self) -> bool:
        """Whether a bearer token is accepted (browsers then sign in on ``/login``)."""
        return any(isinstance(a, BearerAuth) for a in self.auth)

    @property
    def basic(self) -> bool:
        """Whether basic auth is accepted (browsers then ask for the password)."""
        return any(isinstance(a, BasicAuth) for a in self.auth)

    def token_ok(self, token: str) -> bool:
        """Whether ``token`` is one of the configured bearer tokens (constant time)."""
        found = False
        for a in self.auth:
            if isinstance(a, BearerAuth):
                found |= hmac.compare_digest(a.token.encode(), token.encode())
        return found

    async def basic_ok(self, header: str) -> bool:
        """Whether a ``Basic ...`` credential matches a configured user and password."""
        digest = hmac.digest(self._secret, header.encode(), "sha256")
        if self._verified.get(digest, 0.0) > time.monotonic():
            return True
        try:
            user, _, password = base64.b64decode(header, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        users = [a for a in self.auth if isinstance(a, BasicAuth)]
        for a in users:
            if not hmac.compare_digest(a.username.encode(), user.encode()):
                continue
            if await anyio.to_thread.run_sync(_verify, password, a.password_hash):
                if len(self._verified) > 1000:
                    self._verified.clear()
                self._verified[digest] = time.monotonic() + 300
                return True
        return False

    def open_session(self) -> str:
        """A new session id for a browser that proved it holds the bearer token."""
        now = time.monotonic()
        self._sessions = {s: t for s, t in self._sessions.items() if t > now}
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + SESSION_SECONDS
        return session

    def session_ok(self, session: str | None) -> bool:
        """Whether ``session`` is a live session id."""
        return session is not None and self._sessions.get(session, 0.0) > time.monotonic()

    def new_csrf(self) -> str:
        """A fresh CSRF token: a nonce and its HMAC under this instance's secret."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def csrf_valid(self, token: str | None) -> bool:
        """Whether ``token`` was made by :meth:`new_csrf` of this instance."""
        if not token:
            return False
        nonce, _, sig = token.partition(".")
        return bool(nonce) and hmac.compare_digest(sig, self._sign(nonce))

    def csrf_matches(self, cookie: str | None, sent: str | None) -> bool:
        """Double submit: the token sent equals the cookie's, and is ours."""
        if not cookie or not sent or not self.csrf_valid(cookie):
            return False
        return hmac.compare_digest(cookie, sent)

    def _sign(self, nonce: str) -> str:
        mac = hmac.digest(self._secret, nonce.encode(), "sha256")
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")
