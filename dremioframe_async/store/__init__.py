"""Run history: every run, task instance and attempt, read back as frozen views.

Stores are shared by many processes (see ``_coordination``): they hold the
run queue, schedule fire claims, heartbeats and cancel requests.

``open_store(url)`` picks the implementation: :class:`MemoryStore`,
:class:`SQLiteStore` (the embedded default) or :class:`PostgresStore`. A store
is passed to ``pipeline.run(store=...)``, which feeds it the run's events in
batches; ``pipeline.run(resume=run_id, store=...)`` re-runs only what did not
succeed (tasks whose results could not be stored as JSON run again).
"""

from __future__ import annotations

from ._coordination import CancelOutcome, QueuedRun
from ._errors import (
    HistoryIncomplete,
    RunNotFound,
    StoreConfigError,
    StoreError,
    StoreSchemaError,
    StoreUnavailable,
    StoreURLError,
)
from ._logs import LogEntry, LogPage, LogQuery, LogReader, drop_marker
from ._memory import MemoryStore
from ._model import AttemptInfo, RunInfo, RunStatus, StateEntry, StateStore, TaskInfo
from ._paging import RunPage, RunQuery
from ._pauses import SchedulePauses
from ._postgres import PostgresStore
from ._protocol import RunStore
from ._sqlite import SQLiteStore
from ._url import default_store_url, open_store

__all__ = [
    "AttemptInfo",
    "CancelOutcome",
    "HistoryIncomplete",
    "LogEntry",
    "LogPage",
    "LogQuery",
    "LogReader",
    "MemoryStore",
    "PostgresStore",
    "QueuedRun",
    "RunInfo",
    "RunNotFound",
    "RunPage",
    "RunQuery",
    "RunStatus",
    "RunStore",
    "SQLiteStore",
    "SchedulePauses",
    "StateEntry",
    "StateStore",
    "StoreConfigError",
    "StoreError",
    "StoreSchemaError",
    "StoreURLError",
    "StoreUnavailable",
    "TaskInfo",
    "default_store_url",
    "drop_marker",
    "open_store",
]
