"""Store errors, all under the project's one root.

::

    DremioFrameError
    └── StoreError
        ├── RunNotFound (also LookupError)      no run with that id in the store
        ├── StoreSchemaError                    the database was written by a newer version
        └── StoreURLError (also ValueError)     open_store() got a URL it cannot open
"""

from __future__ import annotations

from ..errors import DremioFrameError

__all__ = ["RunNotFound", "StoreError", "StoreSchemaError", "StoreURLError"]


class StoreError(DremioFrameError):
    """Root of the run-history store errors."""


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


class StoreURLError(StoreError, ValueError):
    """``open_store`` was given a URL whose scheme it does not know."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(
            f"cannot open a run store from {url!r}: use memory://, sqlite:///path/to/file.sqlite, "
            "a plain file path, or postgresql://user@host/db"
        )
