"""Where plain-function tasks run: this process's threads, or a Dask cluster.

``LocalExecutor`` (the default) runs them in the run's worker threads.
``DaskExecutor`` runs them on Dask workers; it needs the ``dask`` extra
(``pip install 'dremioframe_async[dask]'``) and is imported on first use.
Coroutine tasks always run on the caller's event loop.

Resources (``context.resources``) are opened on the driver, in the caller's
process; they do not cross to Dask workers, so a plain-function task that
declares one (``@task(resources=...)``) always runs in the run's own threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MissingExtra
from ..orchestration import Executor, ExecutorSession, LocalExecutor, TaskCall
from ._errors import (
    ExecutorError,
    RemoteTaskError,
    ResultSizeWarning,
    TaskPickleError,
    WorkerLostError,
)

if TYPE_CHECKING:
    from ._dask import DaskExecutor

__all__ = [
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "ExecutorSession",
    "LocalExecutor",
    "RemoteTaskError",
    "ResultSizeWarning",
    "TaskCall",
    "TaskPickleError",
    "WorkerLostError",
]


def __getattr__(name: str) -> Any:
    if name != "DaskExecutor":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from ._dask import DaskExecutor
    except ImportError as exc:
        raise MissingExtra("DaskExecutor", "distributed", "dask") from exc
    return DaskExecutor
