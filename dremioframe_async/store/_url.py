"""``open_store(url)``: pick and configure a store from one string (CLI, env var)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._attendance import DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT
from ._errors import StoreURLError
from ._memory import MemoryStore
from ._model import RunStore
from ._postgres import PostgresStore
from ._sqlite import SQLiteStore

__all__ = ["default_store_url", "open_store"]

ENV_VAR = "DREMIOFRAME_ASYNC_STORE"


def default_store_url() -> str:
    """``$DREMIOFRAME_ASYNC_STORE``, else a SQLite file under the user's data directory."""
    if url := os.environ.get(ENV_VAR):
        return url
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(data, 'dremioframe_async', 'runs.sqlite').resolve()}"


_SCHEMES = ("memory", "sqlite", "postgresql", "postgres")
# A known scheme followed by a colon but not by "//": a URL with a slash missing.
_MALFORMED = re.compile(rf"(?i)({'|'.join(_SCHEMES)}):(?!//)(.*)", re.DOTALL)


def open_store(url: str) -> RunStore:
    """Create the store ``url`` names; it connects on first use.

    ``memory://``; ``sqlite:///abs/path.sqlite``, ``sqlite://rel/path.sqlite`` or a
    plain file path; ``postgresql://user@host:port/db`` (also ``postgres://``),
    with an optional ``?schema=name`` (default ``dremioframe_async``). SQLite and
    PostgreSQL URLs also take the liveness settings ``heartbeat`` and ``dead_after``
    (seconds): ``sqlite:///runs.sqlite?heartbeat=2&dead_after=10``.

    :raises StoreURLError: (a ``ValueError``) for any other scheme, and for a
        known scheme missing its ``//`` (``sqlite:/tmp/x.sqlite`` would otherwise
        name a file called ``sqlite:/tmp/x.sqlite``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        if not url:
            raise StoreURLError(url)
        if malformed := _MALFORMED.fullmatch(url):
            raise StoreURLError(url, _did_you_mean(*malformed.groups()))
        return SQLiteStore(url)
    scheme = scheme.lower()
    if scheme == "memory" and not rest:
        return MemoryStore()
    if scheme == "sqlite" and rest:
        path, _, query = rest.partition("?")
        settings = parse_qsl(query, keep_blank_values=True)
        unknown = sorted({key for key, _ in settings if key not in _LIVENESS})
        if unknown:  # a misspelt dead_after would otherwise be dropped in silence
            hint = f"a SQLite store URL takes only heartbeat= and dead_after=, not {unknown}"
            raise StoreURLError(url, hint)
        heartbeat, dead_after = _liveness(url, settings)
        return SQLiteStore(path, heartbeat=heartbeat, dead_after=dead_after)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    raise StoreURLError(url)


def _did_you_mean(scheme: str, rest: str) -> str:
    scheme = scheme.lower()
    if scheme == "sqlite" and rest.startswith("/"):
        return f"did you mean sqlite://{rest} (three slashes for an absolute path)?"
    if scheme == "sqlite":
        return (
            f"did you mean sqlite://{rest} or the plain path ./{rest}?"
            if rest
            else ("sqlite: needs a path: sqlite:///abs/path.sqlite or sqlite://rel/path.sqlite")
        )
    if scheme == "memory":
        return "did you mean memory:// ?"
    return f"did you mean {scheme}://{rest.lstrip('/')} ?"


def _postgres(url: str) -> PostgresStore:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": a typo in the URL, not a failure
        raise StoreURLError(url, str(exc)) from None
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), "dremioframe_async")
    # asyncpg would send unknown query parameters to the server as settings.
    ours = ("schema", *_LIVENESS)
    rest = urlencode([(k, v) for k, v in query if k not in ours])
    dsn = urlunsplit(parts._replace(query=rest))
    heartbeat, dead_after = _liveness(url, query)
    return PostgresStore(dsn, schema=schema, heartbeat=heartbeat, dead_after=dead_after)


_LIVENESS = ("heartbeat", "dead_after")


def _liveness(url: str, query: list[tuple[str, str]]) -> tuple[float, float]:
    """The ``heartbeat`` and ``dead_after`` settings of a store URL's query."""
    settings = {"heartbeat": DEFAULT_HEARTBEAT, "dead_after": DEFAULT_DEAD_AFTER}
    for key, value in query:
        if key in _LIVENESS:
            try:
                settings[key] = float(value)
            except ValueError:
                hint = f"{key} must be a number of seconds, got {value!r}"
                raise StoreURLError(url, hint) from None
    return settings["heartbeat"], settings["dead_after"]
