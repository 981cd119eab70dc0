"""Store errors, all under the project's one root (the tree is in ``dremioframe_async.errors``).

::

    StoreError
    ├── RunNotFound (also LookupError)      no run with that id in the store
    ├── StoreSchemaError                    the database was written by a newer version
    ├── StoreUnavailable                    the store cannot be opened or used
    ├── HistoryIncomplete                   a run's events could not all be recorded
    └── StoreConfigError (also ValueError)  bad store arguments
        └── StoreURLError                   open_store() got a URL it cannot open
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._masking import is_secret_key
from ..errors import StoreError
from ..orchestration import HistoryIncomplete

__all__ = [
    "HistoryIncomplete",
    "RunNotFound",
    "StoreConfigError",
    "StoreError",
    "StoreSchemaError",
    "StoreURLError",
    "StoreUnavailable",
    "redact",
]

_SECRET_PARAMS = frozenset({"password", "passfile", "sslpassword"})


def redact(url: str) -> str:
    """``url`` with any password (in the authority or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(_secret_param(k) for k, _ in query):
        query = [(k, "***" if _secret_param(k) else v) for k, v in query]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))
    return urlunsplit(parts._replace(netloc=netloc))


def _secret_param(name: str) -> bool:
    return name in _SECRET_PARAMS or is_secret_key(name)


class RunNotFound(StoreError, LookupError):
    """No run with ``run_id`` is recorded in the store."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run {run_id!r} in the store")


class StoreSchemaError(StoreError):
    """The database schema is newer than this version of dremioframe_async understands."""

    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"the run store has schema version {found}, this dremioframe_async supports up to "
            f"{supported}: upgrade dremioframe_async or use another store"
        )


class StoreUnavailable(StoreError):
    """The store ``store`` (a name with any password redacted) could not be opened or used.

    ``hint`` says how to fix it when that is known (a driver to install).
    """

    def __init__(self, store: str, problem: str, hint: str = "") -> None:
        self.store = store
        self.problem = problem
        self.hint = hint
        tail = f" ({hint})" if hint else ""
        super().__init__(f"run store {store}: {problem}{tail}")


class StoreConfigError(StoreError, ValueError):
    """A store was given an argument it cannot use."""


class StoreURLError(StoreConfigError):
    """``open_store`` was given a URL it cannot open; ``hint`` suggests the intended one."""

    def __init__(self, url: str, hint: str = "") -> None:
        self.url = url
        self.hint = hint
        usage = (
            "use memory://, sqlite:///relative/path.sqlite, sqlite:////absolute/path.sqlite, "
            "a plain file path, or postgresql://user@host/db"
        )
        super().__init__(f"cannot open a run store from {redact(url)!r}: {hint or usage}")
