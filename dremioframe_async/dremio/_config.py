"""Where the client connects and how it authenticates, resolved once from arguments and env.

Everything here is checked before any network I/O, so a mistyped URL or a
missing CA file fails at construction with :class:`DremioConfigError`, not after
a retry budget. The resolved :class:`DremioConfig` (and its :class:`TlsOptions`)
is shared by the REST transport and the Arrow Flight path.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from .._masking import mask_text
from ._errors import DremioConfigError

__all__ = [
    "CLOUD_URL",
    "DremioConfig",
    "Secret",
    "SslOption",
    "TlsOptions",
    "redact_url",
    "resolve_config",
    "resolve_tls",
]

CLOUD_URL = "https://api.dremio.cloud"

SslOption = ssl.SSLContext | str | os.PathLike[str] | bool | None
"""What ``ssl=`` accepts: a context, a CA-bundle path, ``True`` (system CAs) or ``False``."""

_FALSE = frozenset({"0", "false", "no", "off"})
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class Secret:
    """A token or password: its repr and str never show the value."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How to verify the server's certificate on ``https`` (and ``grpc+tls``) connections.

    ``context`` (given by the caller) wins; else ``ca_file`` is a PEM bundle of
    trusted CAs added to nothing else; else the system's CAs. ``verify=False``
    turns verification off (only for a test server you trust).
    """

    verify: bool = True
    ca_file: Path | None = None
    context: ssl.SSLContext | None = None

    def ssl_for_aiohttp(self) -> ssl.SSLContext | bool:
        """The value for aiohttp's ``ssl=`` (blocking when a CA file is read: use a thread).

        :raises DremioConfigError: the CA file cannot be read or holds no certificate.
        """
        if self.context is not None:
            return self.context
        if not self.verify:
            return False
        if self.ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise DremioConfigError(f"cannot load the CA bundle {self.ca_file}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class DremioConfig:
    """A resolved configuration: ``root`` is the server, ``api`` the REST prefix below it.

    ``root`` never holds user info: credentials given in the URL are moved to
    ``username``/``password``.
    """

    root: str
    api: str
    auth: Literal["pat", "password"]
    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    project_id: str | None = None
    tls: TlsOptions = field(default_factory=TlsOptions)

    @property
    def cloud(self) -> bool:
        """Whether this is Dremio Cloud (project-scoped paths, PAT only)."""
        return self.project_id is not None


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` and secret-keyed query
    values masked (for messages and reprs)."""
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return mask_text(f"{head}{sep}{authority}{slash}{tail}")


def _check_url(url: str) -> SplitResult:
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (parses the port: raises ValueError when it is not a number)
    except ValueError as exc:
        raise DremioConfigError(f"malformed URL {shown!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise DremioConfigError(
            f"the URL must start with http:// or https://, got {shown!r} "
            "(for example http://localhost:9047)"
        )
    if not parts.hostname:
        raise DremioConfigError(f"the URL {shown!r} names no host")
    if parts.query or parts.fragment:
        raise DremioConfigError(f"the URL {shown!r} must not have a query or a fragment")
    return parts


def _split_userinfo(parts: SplitResult) -> tuple[str, str | None, str | None]:
    """The URL without user info, and the user name and password it held."""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    root = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return root, user, password


def _env_flag(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in _FALSE | _TRUE:
        return value in _TRUE
    raise DremioConfigError(f"{name} must be true or false, got {raw!r}")


def resolve_tls(ssl_option: SslOption, env: Mapping[str, str] | None = None) -> TlsOptions:
    """Turn ``ssl=`` (else ``DREMIO_SSL_CA`` / ``DREMIO_SSL_VERIFY``) into :class:`TlsOptions`.

    :raises DremioConfigError: an unsupported value, or a CA path that is not a file.
    """
    env = os.environ if env is None else env
    if isinstance(ssl_option, ssl.SSLContext):
        return TlsOptions(context=ssl_option)
    if isinstance(ssl_option, bool):
        return TlsOptions(verify=ssl_option)
    if ssl_option is None:
        verify = _env_flag(env, "DREMIO_SSL_VERIFY")
        if verify is False:
            return TlsOptions(verify=False)
        ssl_option = env.get("DREMIO_SSL_CA") or None
        if ssl_option is None:
            return TlsOptions()
    if not isinstance(ssl_option, str | os.PathLike):
        raise DremioConfigError(
            f"ssl= takes an ssl.SSLContext, a CA-bundle path, True or False, "
            f"got {type(ssl_option).__name__}"
        )
    ca_file = Path(ssl_option)
    if not ca_file.is_file():
        raise DremioConfigError(f"the CA bundle {str(ca_file)!r} is not a file")
    return TlsOptions(ca_file=ca_file)


def resolve_config(
    url: str | None,
    token: str | None,
    username: str | None,
    password: str | None,
    project_id: str | None,
    env: Mapping[str, str] | None = None,
    ssl_option: SslOption = None,
) -> DremioConfig:
    """Merge arguments with ``DREMIO_*`` environment variables; arguments win.

    A URL's ``user:password@`` becomes the username and password (it may not be
    combined with other credentials) and never appears in ``root``.

    :raises DremioConfigError: no URL or a malformed one (Software), no credentials,
        contradictory credentials, a password on Cloud, or a bad TLS option.
    """
    env = os.environ if env is None else env
    project_id = project_id or env.get("DREMIO_PROJECT_ID") or None
    url = url or env.get("DREMIO_URL") or (CLOUD_URL if project_id else None)
    if not url:
        raise DremioConfigError("no URL: pass url= or set DREMIO_URL")
    root, url_user, url_password = _split_userinfo(_check_url(url))
    if url_user is not None:
        if token is not None or username is not None:
            raise DremioConfigError(
                f"credentials in the URL {redact_url(url)!r} and in arguments: give one of them"
            )
        username, password = url_user, url_password if url_password is not None else password
    if token is None and username is None:
        token = env.get("DREMIO_PAT") or None
        username = env.get("DREMIO_USERNAME") or None
    if username is not None and password is None:
        password = env.get("DREMIO_PASSWORD") or None
    tls = resolve_tls(ssl_option, env)
    api = f"/v0/projects/{quote(project_id, safe='')}" if project_id else "/api/v3"
    if token:
        return DremioConfig(root, api, "pat", token=Secret(token), project_id=project_id, tls=tls)
    if project_id:
        raise DremioConfigError("Dremio Cloud needs a personal access token (token= or DREMIO_PAT)")
    if username and password:
        return DremioConfig(
            root, api, "password", username=username, password=Secret(password), tls=tls
        )
    raise DremioConfigError(
        "no credentials: pass token= (or DREMIO_PAT), or username= and password= "
        "(or DREMIO_USERNAME and DREMIO_PASSWORD)"
    )
