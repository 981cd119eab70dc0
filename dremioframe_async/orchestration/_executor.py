"""The executor seam: where a run's plain-function tasks run.

The runner keeps the graph, the limits, retries, timeouts and events on the
caller's event loop. For each attempt of a plain-function task it hands one
:class:`TaskCall` to a session of the run's executor and awaits the outcome:
the function's return value, or its exception with the traceback it had where
it ran. Cancelling that await (the run is cancelled, the attempt timed out)
stops or abandons the work: the session re-raises the cancellation promptly.

Coroutine functions run on the loop, unless the executor takes them (an
executor whose ``coroutines`` attribute is true takes every one it can; a task
declared ``@task(executor=NAME)`` goes to the executor of that ``name``). Where
an attempt runs is decided in ``_placement``.

:class:`LocalExecutor` is the default: worker threads of this process, one set
per run, sized to the run's concurrency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import anyio.to_thread

from ._logs import ShippedLogs

if TYPE_CHECKING:
    from ._options import TaskOptions

__all__ = [
    "DEFAULT_THREADS",
    "Executor",
    "ExecutorSession",
    "LocalExecutor",
    "LocalSession",
    "TaskCall",
    "stays_local",
]

DEFAULT_THREADS = 40  # worker threads per run for plain functions, as anyio's default


def stays_local(options: TaskOptions) -> bool:
    """Whether a plain-function task runs in this process whatever the run's executor.

    So it does when declared ``executor="local"``, and when it needs one of the
    run's resources: those are opened here (a client, a pool) and cannot cross
    to another process.
    """
    return options.executor == "local" or bool(options.resources)


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One attempt of a plain-function task, as handed to an executor.

    :param key: the task instance's key in its run; errors and warnings name it.
    :param fn: the task's function.
    :param args: positional arguments, upstream results already in place.
    :param kwargs: keyword arguments (``context`` included when the task asks for it).
    :param release: set when the caller may give up on the attempt before the
        work ends (a timeout). The executor then does not wait for the work when
        cancelled, and calls ``release()`` exactly once, from any thread, when
        the work has ended (or, where it cannot tell, when it has been cancelled).
        The runner keeps the attempt's concurrency slots until then. Without
        it, a cancelled call returns once the work has stopped or been cancelled.
    :param logs: set when the attempt captures its log lines: an executor that runs
        the work in another process captures them there within ``logs.limits`` and
        hands them back with ``logs.add(lines, dropped)``, also when the work fails.
    :param is_async: ``fn`` is a coroutine function (only executors that take
        coroutines are given one; see ``_placement``).
    :param resources: worker-scoped resources the task declared, name -> factory,
        for the executor to open where the call runs.
    :param inject: those of ``resources`` the function takes as keyword arguments;
        the others it reads through ``context.resources``.
    """

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    release: Callable[[], None] | None = None
    logs: ShippedLogs | None = None
    is_async: bool = False
    resources: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    inject: tuple[str, ...] = ()

    def __call__(self) -> Any:
        """Run the function here, in the calling thread."""
        return self.fn(*self.args, **self.kwargs)


class ExecutorSession(Protocol):
    """An executor opened for one run."""

    async def run(self, call: TaskCall) -> Any:
        """Run ``call`` to its end; return its result or raise its exception.

        The exception keeps the traceback of where the function ran.
        Cancelling the caller's scope cancels or abandons the work and
        re-raises the cancellation.
        """
        ...


@runtime_checkable
class Executor(Protocol):
    """Where plain-function tasks run: ``Pipeline(executor=...)``, ``run(executor=...)``.

    ``name`` identifies the executor in errors and logs, and is what
    ``@task(executor=NAME)`` names. An optional ``coroutines`` attribute, true,
    says it takes coroutine tasks too (its sessions must say so as well, with
    the same ``name``). ``session`` opens it for one run; the runner enters the
    session before the first task starts and leaves it (shielded) after the last
    one ended, also when the run is cancelled.
    """

    name: str

    def session(self, *, concurrency: int | None) -> AbstractAsyncContextManager[ExecutorSession]:
        """Open the executor for one run whose concurrency limit is ``concurrency``."""
        ...

    def check(self, call: TaskCall) -> None:
        """Raise if ``call`` cannot be run by this executor (called before a run starts).

        Called from a worker thread, before the executor is opened, once per
        task that will use it, with the arguments known before the run (those
        that hold upstream results are left out).
        """
        ...


class LocalSession:
    """Worker threads of this process for one run."""

    def __init__(self, threads: int) -> None:
        self.limiter = anyio.CapacityLimiter(threads)

    async def run(self, call: TaskCall) -> Any:
        if call.release is None:
            # A cancellation waits for the thread: nothing outlives the attempt.
            return await anyio.to_thread.run_sync(call, limiter=self.limiter)
        release = call.release

        def guarded() -> Any:
            try:
                return call()
            finally:
                release()

        return await anyio.to_thread.run_sync(guarded, limiter=self.limiter, abandon_on_cancel=True)


class LocalExecutor:
    """Plain functions in worker threads of this process (the default).

    Each run gets its own threads, as many as its ``max_concurrency`` (40 when it
    has none), so runs nested in plain-function tasks cannot starve each other.
    A thread cannot be interrupted: a timed-out attempt fails at once while its
    thread runs on, keeping its concurrency and pool slots until it returns.
    """

    name = "local"

    @asynccontextmanager
    async def _open(self, threads: int) -> AsyncIterator[LocalSession]:
        yield LocalSession(threads)

    def session(self, *, concurrency: int | None) -> AbstractAsyncContextManager[LocalSession]:
        """Open worker threads for one run (nothing to start or stop)."""
        return self._open(concurrency if concurrency is not None else DEFAULT_THREADS)

    def check(self, call: TaskCall) -> None:
        """Anything callable runs in this process."""

    def __repr__(self) -> str:
        return "LocalExecutor()"
