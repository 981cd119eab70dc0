"""``open_store(url)``: pick and configure a store from one string (CLI, env var)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._attendance import DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT
from ._errors import StoreURLError
from ._memory import MemoryStore
from ._postgres import PostgresStore
from ._protocol import RunStore
from ._sqlite import SQLiteStore

__all__ = ["default_store_url", "open_store"]

ENV_VAR = "DREMIOFRAME_ASYNC_STORE"


def default_store_url() -> str:
    """``$DREMIOFRAME_ASYNC_STORE``, else a SQLite file under the user's data directory."""
    if url := os.environ.get(ENV_VAR):
        return url
    return f"sqlite:///{_default_path()}"  # an absolute path: four slashes in all


def _default_path() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data, "dremioframe_async", "runs.sqlite").resolve()


_SCHEMES = ("memory", "sqlite", "postgresql", "postgres")
# A known scheme followed by a colon but not by "//": a URL with a slash missing.
_MALFORMED = re.compile(rf"(?i)({'|'.join(_SCHEMES)}):(?!//)(.*)", re.DOTALL)
_SQLITE_FORMS = "sqlite:///relative/path.sqlite or sqlite:////absolute/path.sqlite"


def open_store(url: str) -> RunStore:
    """Create the store ``url`` names; it connects on first use.

    ``memory://``; SQLite as SQLAlchemy reads it: ``sqlite:///runs.sqlite`` is
    relative to the working directory, ``sqlite:////var/lib/runs.sqlite`` is
    absolute (``sqlite:///:memory:`` is a SQLite database in memory), or a plain
    file path; ``postgresql://user@host:port/db`` (also ``postgres://``), with an
    optional ``?schema=name`` (default ``dremioframe_async``). SQLite and
    PostgreSQL URLs also take the liveness settings ``heartbeat`` and ``dead_after``
    (seconds): ``sqlite:///runs.sqlite?heartbeat=2&dead_after=10``; SQLite URLs take
    ``writer=process`` (the default) or ``writer=thread`` (see SQLiteStore). The store's
    ``name`` is the URL as given. A SQLite file's folder must exist (except the
    default file's, which is created).

    :raises StoreURLError: (a ``ValueError``) for any other scheme, for a known
        scheme missing its ``//`` (``sqlite:/tmp/x.sqlite`` would otherwise name a
        file called ``sqlite:/tmp/x.sqlite``), and for the SQLite forms that read
        differently elsewhere (``sqlite://x.sqlite``, five slashes); the message
        says which URL was probably meant.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        if not url:
            raise StoreURLError(url)
        if malformed := _MALFORMED.fullmatch(url):
            raise StoreURLError(url, _did_you_mean(*malformed.groups()))
        return _sqlite(url, url)
    scheme = scheme.lower()
    if scheme == "memory" and not rest:
        return MemoryStore()
    if scheme == "sqlite":
        rest, _, query = rest.partition("?")
        settings = parse_qsl(query, keep_blank_values=True)
        unknown = sorted({key for key, _ in settings if key not in (*_LIVENESS, "writer")})
        if unknown:  # a misspelt dead_after would otherwise be dropped in silence
            hint = (
                f"a SQLite store URL takes only heartbeat=, dead_after= and writer=, not {unknown}"
            )
            raise StoreURLError(url, hint)
        heartbeat, dead_after = _liveness(url, settings)
        writer = dict(settings).get("writer", "process")
        if writer not in ("process", "thread"):
            raise StoreURLError(url, f"writer must be process or thread, got {writer!r}")
        path = _sqlite_path(url, rest)
        return _sqlite(
            path,
            url,
            heartbeat=heartbeat,
            dead_after=dead_after,
            writer="thread" if writer == "thread" else "process",
        )
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    raise StoreURLError(url)


def _sqlite(
    path: str,
    url: str,
    *,
    heartbeat: float = DEFAULT_HEARTBEAT,
    dead_after: float = DEFAULT_DEAD_AFTER,
    writer: Literal["process", "thread"] = "process",
) -> SQLiteStore:
    # Only the default file's folder is ours to create: a typo elsewhere is an error.
    create = path != ":memory:" and Path(path).resolve() == _default_path()
    return SQLiteStore(
        path,
        url=url,
        create_folder=create,
        heartbeat=heartbeat,
        dead_after=dead_after,
        writer=writer,
    )


def _sqlite_path(url: str, rest: str) -> str:
    """The path in ``sqlite://`` + ``rest``: after a third slash, as SQLAlchemy reads it."""
    if not rest.strip("/"):
        raise StoreURLError(url, f"sqlite:// needs a path: {_SQLITE_FORMS}")
    if not rest.startswith("/"):  # SQLAlchemy reads sqlite://x as a host named x
        raise StoreURLError(
            url,
            f"did you mean sqlite:///{rest} (relative to the working directory) "
            f"or sqlite:////{rest} (absolute)?",
        )
    path = rest[1:]
    if path.startswith("//"):
        raise StoreURLError(
            url, f"did you mean sqlite:////{path.lstrip('/')} (four slashes: an absolute path)?"
        )
    return path


def _did_you_mean(scheme: str, rest: str) -> str:
    scheme = scheme.lower()
    if scheme == "sqlite" and rest.startswith("/"):
        return f"did you mean sqlite:////{rest.lstrip('/')} (four slashes: an absolute path)?"
    if scheme == "sqlite":
        return (
            f"did you mean sqlite:///{rest} or the plain path {rest}?"
            if rest
            else f"sqlite: needs a path: {_SQLITE_FORMS}"
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
