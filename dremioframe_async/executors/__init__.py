"""Where tasks run: this process's threads and loop, or a Dask cluster.

``LocalExecutor`` (the default) runs plain functions in the run's worker threads.
``DaskExecutor`` runs them on Dask workers; it needs the ``dask`` extra
(``pip install 'dremioframe_async[dask]'``) and is imported on first use.
Coroutine tasks run on the caller's event loop, unless declared
``@task(executor="dask")`` or given to ``DaskExecutor(coroutines=True)``: then
they run on the workers' event loops.

Resources (``context.resources``) are opened on the driver, in the caller's
process; they do not cross to Dask workers, so a plain-function task that
declares one (``@task(resources=...)``) always runs in the run's own threads.
A factory marked :func:`worker_scoped` is opened on each worker instead, once
per run, and shared by the coroutine tasks that run there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MissingExtra
from ..orchestration import (
    Executor,
    ExecutorSession,
    LocalExecutor,
    TaskCall,
    WorkerScoped,
    worker_scoped,
)
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
    "WorkerScoped",
    "worker_scoped",
]


def __getattr__(name: str) -> Any:
    if name != "DaskExecutor":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from ._dask import DaskExecutor
    except ImportError as exc:
        raise MissingExtra("DaskExecutor", "distributed", "dask") from exc
    return DaskExecutor
