"""``open_store(url)``: pick and configure a store from one string (CLI, env var)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def open_store(url: str) -> RunStore:
    """Create the store ``url`` names; it connects on first use.

    ``memory://``; ``sqlite:///abs/path.sqlite``, ``sqlite://rel/path.sqlite`` or a
    plain file path; ``postgresql://user@host:port/db`` (also ``postgres://``),
    with an optional ``?schema=name`` (default ``dremioframe_async``).

    :raises StoreURLError: (a ``ValueError``) for any other scheme.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        if not url:
            raise StoreURLError(url)
        return SQLiteStore(url)
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite" and rest:
        return SQLiteStore(rest)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    raise StoreURLError(url)


def _postgres(url: str) -> PostgresStore:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), "dremioframe_async")
    # asyncpg would send unknown query parameters to the server as settings.
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return PostgresStore(urlunsplit(parts._replace(query=rest)), schema=schema)
