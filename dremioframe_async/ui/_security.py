"""Who may use the UI, and how a state-changing request proves it was meant.

* **Auth.** :class:`BearerAuth` (API clients send ``Authorization: Bearer``;
  browsers sign in once on ``/login`` and get a session cookie) and
  :class:`BasicAuth` (a user name and a scrypt hash from :func:`hash_password`;
  browsers ask for the password themselves). Without auth the UI answers
  loopback clients only, and :func:`check_bind` refuses other addresses.
* **CSRF.** Browsers attach cookies and basic credentials to requests that other
  sites make, so every POST must also carry the signed token that the UI put in a
  ``SameSite=Strict`` cookie and in its pages (``X-CSRF-Token`` header or
  ``csrf_token`` form field). The token is bound to who sent it (an HMAC over the
  session id, or the basic credential): cookies are not port-scoped, so a page on
  another port of the host can plant a token of its own in the cookie, and only the
  binding makes such a token worthless. A POST whose ``Origin`` (or
  ``Sec-Fetch-Site``) names another origin is refused outright. Over HTTPS the
  cookies are ``__Host-`` cookies, which no sibling host or plain-HTTP page can set.
  A bearer token is never sent by a browser on its own, so a request that carries
  a valid one needs no CSRF token.
* **Password checks.** scrypt costs about 16 MiB and 50 ms, so at most
  :data:`HASH_CHECKS` run at once; a verified credential is remembered for
  :data:`VERIFIED_SECONDS`; a client that keeps failing (password or token) is
  answered 429 with ``Retry-After`` without any check; an unknown user is checked
  against a dummy hash, so timing does not tell which users exist.
* **Headers.** A strict Content-Security-Policy (scripts and styles from the UI
  itself only, no inline script), no framing, no sniffing, no referrer, no caching.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import DremioFrameError

__all__ = [
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "Guard",
    "TooManyFailures",
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
_SCRYPT_MAXMEM = 2**26  # what a check may use; hashes that need more are refused at start
HASH_CHECKS = 2  # scrypt checks at once: 2 x 16 MiB, whatever the number of clients
VERIFIED_SECONDS = 300.0
FREE_FAILURES = 5  # failed sign-ins a client may make before it has to wait
MAX_LOCKOUT = 300.0
_MAX_TRACKED = 4096  # clients whose failures are remembered (oldest forgotten first)
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
    "Server": "dremioframe_async",  # not aiohttp's name and version
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


class TooManyFailures(DremioFrameError):
    """A client failed to authenticate too often; it may try again in ``retry_after`` s."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed sign-ins: try again in {math.ceil(retry_after)} s")


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
        parsed = params, base64.urlsafe_b64decode(salt), base64.urlsafe_b64decode(key)
    except (ValueError, binascii.Error):
        raise ValueError(
            "not a password hash made by dremioframe_async.ui.hash_password (scrypt$n$r$p$salt$key)"
        ) from None
    _check_cost(**params)
    return parsed


def _check_cost(n: int, r: int, p: int) -> None:
    """Refuse, at start-up, a hash every check of which would fail or exhaust the server."""
    # scrypt needs 128 * n * r bytes (plus a little); each check must fit in _SCRYPT_MAXMEM.
    power_of_two = n > 1 and n & (n - 1) == 0
    if not power_of_two or not 1 <= r <= 64 or not 1 <= p <= 16 or 129 * n * r > _SCRYPT_MAXMEM:
        raise ValueError(
            f"password hash parameters n={n}, r={r}, p={p} are out of bounds: n must be a power "
            f"of two and 128*n*r at most {_SCRYPT_MAXMEM // 2**20} MiB; "
            "make a new hash with dremioframe-async ui --hash-password"
        )


def _verify(password: str, hashed: str) -> bool:
    params, salt, key = _parse_hash(hashed)
    given = hashlib.scrypt(
        password.encode(), salt=salt, dklen=len(key), maxmem=_SCRYPT_MAXMEM, **params
    )
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


class _Failures:
    """Failed sign-ins per client: after :data:`FREE_FAILURES`, each next try must wait
    twice as long as the last (up to :data:`MAX_LOCKOUT`). Bounded in size."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def wait(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next try (0 when it may try)."""
        count, last = self._seen.get(client, (0, 0.0))
        if count < FREE_FAILURES:
            return 0.0
        return max(0.0, last + self._delay(count) - time.monotonic())

    def failed(self, client: str) -> None:
        count, _ = self._seen.pop(client, (0, 0.0))
        self._seen[client] = (count + 1, time.monotonic())
        while len(self._seen) > _MAX_TRACKED:
            self._seen.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._seen.pop(client, None)

    @staticmethod
    def _delay(count: int) -> float:
        return float(min(MAX_LOCKOUT, 2 ** (count - FREE_FAILURES)))


class Guard:
    """The checks one UI instance makes: credentials, sessions and CSRF tokens."""

    def __init__(self, auth: Sequence[Auth], *, session_seconds: float = SESSION_SECONDS) -> None:
        if not session_seconds > 0:
            raise ValueError(f"session_seconds must be > 0, got {session_seconds!r}")
        self.auth = tuple(auth)
        self.session_seconds = session_seconds
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, float] = {}
        self._verified: dict[bytes, float] = {}
        self._failures = _Failures()
        # Dedicated threads: scrypt's 16 MiB buffers stay in their few malloc arenas
        # instead of one arena per worker thread of a shared pool.
        self._checks: ThreadPoolExecutor | None = None
        basics = [a for a in self.auth if isinstance(a, BasicAuth)]
        # Unknown users are checked against this, at the cost of the real hashes.
        self._dummy = basics[0].password_hash if basics else ""

    @property
    def bearer(self) -> bool:
        """Whether a bearer token is accepted (browsers then sign in on ``/login``)."""
        return any(isinstance(a, BearerAuth) for a in self.auth)

    @property
    def basic(self) -> bool:
        """Whether basic auth is accepted (browsers then ask for the password)."""
        return any(isinstance(a, BasicAuth) for a in self.auth)

    def throttle(self, client: str) -> None:
        """Refuse ``client`` while it must wait after repeated failures.

        :raises TooManyFailures: then, with the seconds left.
        """
        if (left := self._failures.wait(client)) > 0:
            raise TooManyFailures(left)

    def record(self, client: str, ok: bool) -> None:
        """Count a sign-in by ``client`` that succeeded or failed."""
        if ok:
            self._failures.succeeded(client)
        else:
            self._failures.failed(client)

    def token_ok(self, token: str, client: str = "") -> bool:
        """Whether ``token`` is one of the configured bearer tokens (constant time).

        :raises TooManyFailures: when ``client`` failed too often lately.
        """
        self.throttle(client)
        found = False
        for a in self.auth:
            if isinstance(a, BearerAuth):
                found |= hmac.compare_digest(a.token.encode(), token.encode())
        self.record(client, found)
        return found

    async def basic_ok(self, header: str, client: str = "") -> bool:
        """Whether a ``Basic ...`` credential matches a configured user and password.

        :raises TooManyFailures: when ``client`` failed too often lately.
        """
        digest = hmac.digest(self._secret, header.encode(), "sha256")
        if self._verified.get(digest, 0.0) > time.monotonic():
            return True  # a browser sends it with every request: no scrypt each time
        try:
            user, _, password = base64.b64decode(header, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            self.throttle(client)
            self._failures.failed(client)
            return False
        if not await self.password_ok(user, password, client):
            return False
        now = time.monotonic()
        if len(self._verified) > 1000:
            self._verified = {d: t for d, t in self._verified.items() if t > now}
            if len(self._verified) > 1000:
                self._verified.clear()
        self._verified[digest] = now + VERIFIED_SECONDS
        return True

    async def password_ok(self, user: str, password: str, client: str = "") -> bool:
        """Whether ``user`` and ``password`` match a basic user (one scrypt check either way,
        at most :data:`HASH_CHECKS` at once).

        :raises TooManyFailures: when ``client`` failed too often lately.
        """
        self.throttle(client)
        # Counted as failed until it succeeds, so that a burst of concurrent guesses is
        # throttled at once rather than after every one of them has been checked.
        self._failures.failed(client)
        hashed, known = self._dummy, False
        for a in self.auth:
            if isinstance(a, BasicAuth) and hmac.compare_digest(a.username.encode(), user.encode()):
                hashed, known = a.password_hash, True
        if not hashed:
            return False
        if self._checks is None:
            self._checks = ThreadPoolExecutor(HASH_CHECKS, thread_name_prefix="dfa-ui-password")
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._checks, _verify, password, hashed) and known
        if ok:
            self._failures.succeeded(client)
        return ok

    def close(self) -> None:
        """Stop the password-checking threads (checks under way finish on their own)."""
        if self._checks is not None:
            self._checks.shutdown(wait=False, cancel_futures=True)
            self._checks = None

    def open_session(self) -> str:
        """A new session id for a browser that proved who it is."""
        now = time.monotonic()
        self._sessions = {s: t for s, t in self._sessions.items() if t > now}
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + self.session_seconds
        return session

    def close_session(self, session: str | None) -> None:
        """End ``session`` (sign out); unknown ids are ignored."""
        if session is not None:
            self._sessions.pop(session, None)

    def session_ok(self, session: str | None) -> bool:
        """Whether ``session`` is a live session id."""
        return session is not None and self._sessions.get(session, 0.0) > time.monotonic()

    def new_csrf(self, binding: str = "") -> str:
        """A fresh CSRF token bound to ``binding`` (who the request comes from): a nonce
        and an HMAC over both under this instance's secret."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce, binding)}"

    def csrf_valid(self, token: str | None, binding: str = "") -> bool:
        """Whether ``token`` was made by :meth:`new_csrf` of this instance for ``binding``."""
        if not token:
            return False
        nonce, _, sig = token.partition(".")
        return bool(nonce) and hmac.compare_digest(sig, self._sign(nonce, binding))

    def csrf_matches(self, cookie: str | None, sent: str | None, binding: str = "") -> bool:
        """Double submit: the token sent equals the cookie's, and is ours for ``binding``."""
        if not cookie or not sent or not self.csrf_valid(cookie, binding):
            return False
        return hmac.compare_digest(cookie, sent)

    def _sign(self, nonce: str, binding: str) -> str:
        message = f"{nonce}\x00{binding}".encode()
        mac = hmac.digest(self._secret, message, "sha256")
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")
