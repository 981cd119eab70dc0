"""Errors and warnings of the executors; the tree is drawn in ``dremioframe_async.errors``."""

from __future__ import annotations

from ..errors import DremioFrameError

__all__ = [
    "ExecutorError",
    "RemoteTaskError",
    "ResultSizeWarning",
    "TaskPickleError",
    "WorkerLostError",
]


class ExecutorError(DremioFrameError):
    """An executor could not start, reach its cluster, or keep a task running."""


class TaskPickleError(ExecutorError, TypeError):
    """Part of a task's call (its function, an argument, its result) cannot be pickled.

    Also a TypeError: like a wrong argument, it is a bug that retrying only
    repeats, so the default retry policy does not retry it.
    """

    def __init__(self, task_key: str, where: str, type_name: str, reason: str) -> None:
        self.task_key = task_key
        self.where = where
        self.type_name = type_name
        self.reason = reason
        super().__init__(
            f"task {task_key!r}: {where} ({type_name}) cannot be pickled to cross to another "
            f"process: {reason}. Pass something the task can rebuild it from (a path, a URL, "
            f"settings), or keep the task in this process with @task(executor='local')"
        )


class WorkerLostError(ExecutorError):
    """The worker process running a task's attempt died (the attempt failed; it may be retried)."""

    def __init__(self, task_key: str, detail: str) -> None:
        self.task_key = task_key
        self.detail = detail
        super().__init__(f"task {task_key!r}: the worker running it died ({detail})")


class RemoteTaskError(ExecutorError):
    """A task raised an exception on a worker that cannot be pickled back to the driver.

    Its type cannot be kept, so its qualified ``type_name``, its ``message`` and the
    worker's ``remote_traceback`` (text) are. An exception that pickles comes back as
    itself.
    """

    def __init__(
        self, task_key: str, type_name: str, message: str, reason: str, remote_traceback: str
    ) -> None:
        self._fields = (task_key, type_name, message, reason, remote_traceback)
        self.task_key = task_key
        self.type_name = type_name
        self.message = message
        self.reason = reason
        self.remote_traceback = remote_traceback
        short = type_name.rpartition(".")[2]
        super().__init__(
            f"task {task_key!r} raised {short}: {message} (on a Dask worker; the exception "
            f"could not be pickled back, so only its type name and message are kept: {reason})"
        )

    def __reduce__(self) -> tuple[type[RemoteTaskError], tuple[str, ...]]:
        return (type(self), self._fields)  # rebuilt from its fields, not from its message


class ResultSizeWarning(DremioFrameError, UserWarning):
    """A task's result that came back from another process is large (a warning).

    Under ``-W error`` it is raised, and ``except DremioFrameError`` catches it
    like everything else the package raises. Results travel through the driver;
    large data should stay where it was made (a file, a table) and the task
    return a reference to it.
    """

    def __init__(self, task_key: str, nbytes: int, threshold: int) -> None:
        self.task_key = task_key
        self.nbytes = nbytes
        self.threshold = threshold
        super().__init__(
            f"task {task_key!r}: its result is {nbytes / 2**20:.1f} MiB pickled, over the "
            f"{threshold / 2**20:.1f} MiB warning threshold; return a reference (a path, a "
            f"table name) and keep the data where the task wrote it"
        )
