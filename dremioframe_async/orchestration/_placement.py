"""Where one attempt runs: in this process, or on the run's executor; worker-scoped resources.

Plain functions go to the run's executor unless declared ``executor="local"``
or given resources (those are opened here and cannot cross to another
process). Coroutine functions run on this loop unless the executor takes
them: ``@task(executor="dask")`` names it, or the executor says it takes
every coroutine (``DaskExecutor(coroutines=True)``). A coroutine can go only
when every resource it declares is *worker-scoped* (:func:`worker_scoped`):
opened once per worker process that runs such tasks, shared by them, closed
when the run ends. Declared with an explicit executor, a coroutine that needs a
run-scoped resource is a graph problem; taken by ``coroutines=True``, it stays here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ArgumentError
from ._executor import TaskCall
from ._resources import ResourceFactory, injected_names

if TYPE_CHECKING:
    from ._logs import ShippedLogs
    from ._options import TaskOptions
    from ._task import Task

__all__ = ["WorkerScoped", "on_executor", "placement_problems", "remote_call", "worker_scoped"]


@dataclass(frozen=True, slots=True)
class WorkerScoped:
    """A resource factory marked to be opened once per worker (see :func:`worker_scoped`).

    Called in this process (a task that runs here), it is an ordinary run resource.
    """

    factory: ResourceFactory

    def __call__(self) -> Any:
        return self.factory()


def worker_scoped(factory: ResourceFactory) -> WorkerScoped:
    """Mark a resource factory to be opened once per worker, not once per run.

    ``Pipeline(resources={"dremio": worker_scoped(lambda: DremioClient(...))})``:
    the coroutine tasks a Dask executor runs share one client per worker process
    (1,000 queries on 4 workers make 4 logins), opened when the first of them
    starts there and closed when the run ends. Tasks that run in this process
    share one, opened here, as with any run resource. The factory travels to the
    workers pickled, so it must be picklable (a lambda or function is).

    :raises ArgumentError: ``factory`` is not callable.
    """
    if isinstance(factory, WorkerScoped):
        return factory
    if not callable(factory):
        raise ArgumentError(
            f"worker_scoped needs a zero-argument callable that makes the resource, "
            f"got {type(factory).__name__}"
        )
    return WorkerScoped(factory)


def _takes_coroutine(options: TaskOptions, executor: object) -> bool:
    if options.executor is not None:
        return options.executor == getattr(executor, "name", None)
    return bool(getattr(executor, "coroutines", False))


def on_executor(
    is_async: bool,
    options: TaskOptions,
    executor: object | None,
    factories: Mapping[str, ResourceFactory],
) -> bool:
    """Whether an attempt of a task runs on ``executor`` (a run's executor or its session)."""
    if executor is None or options.executor == "local":
        return False
    if not is_async:
        return not options.resources
    if not _takes_coroutine(options, executor):
        return False
    return all(isinstance(factories.get(n), WorkerScoped) for n in options.resources)


def placement_problems(
    tasks: Iterable[tuple[str, Task]],
    executor: object | None,
    factories: Mapping[str, ResourceFactory],
) -> list[str]:
    """One line per task that names an executor the run does not have, or that a named
    executor cannot run (a coroutine needing a run-scoped resource)."""
    have = getattr(executor, "name", None) if executor is not None else None
    problems = []
    for key, t in tasks:
        wanted = t.options.executor
        if wanted is None or wanted == "local":
            continue
        if wanted != have:
            problems.append(
                f"task {key!r} runs on executor {wanted!r} but the run's is "
                f"{have or 'the local threads'} (pass executor=... to Pipeline or run())"
            )
        elif t.is_async:
            names = t.options.resources
            here = [n for n in names if not isinstance(factories.get(n), WorkerScoped)]
            if here:
                problems.append(
                    f"task {key!r} runs on executor {wanted!r} but needs run-scoped resource(s) "
                    f"{', '.join(map(repr, here))}, which live in this process; mark the "
                    f"factory worker_scoped(...) or keep the task here with executor='local'"
                )
    return problems


def remote_call(
    task: Task,
    key: str,
    call: Callable[[], Any],
    release: Callable[[], None] | None,
    logs: ShippedLogs | None,
    factories: Mapping[str, ResourceFactory],
) -> TaskCall:
    """The :class:`TaskCall` of an attempt that runs on the executor, with the factories
    of its worker-scoped resources and the names it takes as parameters."""
    assert isinstance(call, functools.partial)
    scoped: dict[str, ResourceFactory] = {}
    for name in task.options.resources:
        factory = factories[name]
        assert isinstance(factory, WorkerScoped)
        scoped[name] = factory.factory
    inject = injected_names(task) if scoped else ()
    return TaskCall(
        key, call.func, call.args, call.keywords, release, logs, task.is_async, scoped, inject
    )
