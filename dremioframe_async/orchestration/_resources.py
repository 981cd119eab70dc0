"""Run-scoped resources: opened once per run when a task first needs them, closed at its end.

A pipeline declares resources by name, each with a factory: a zero-argument
callable returning an async context manager (entered on open, exited on close),
an awaitable (awaited, then treated the same way) or any other object (used as
it is, never closed). A task declares the names it needs (``@task(resources=
("dremio",))``); the run opens each of them before the first task that needs it
starts, and all of them in one go at most once, however many tasks start at the
same moment.

Each opened context manager lives in a host task of its own, in a task group
that encloses the run: it is entered and exited by the same task (so a resource
that opens cancel scopes or task groups of its own keeps anyio's rules), and it
stays open, shielded, while a cancelled run still runs its cleanup tasks. The
runner closes everything when the run's tasks have ended, whatever the outcome,
under a shielded scope bounded by :data:`CLOSE_TIMEOUT`.

Why open before the task starts, rather than on ``context.resources[...]``: a
lookup in a mapping cannot wait, and opening a client does. So a task says what
it needs up front, as in Dagster, and a lookup of anything else is an error that
says how to declare it, the same on every run.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._errors import ArgumentError, ResourceError, TaskDefinitionError, UndeclaredResourceError

if TYPE_CHECKING:  # _task imports this module: a runtime import would be circular
    from ._task import Task

__all__ = [
    "CLOSE_TIMEOUT",
    "NO_RESOURCES",
    "ResourceFactory",
    "RunResources",
    "TaskResources",
    "check_factories",
    "check_task_resources",
    "resource_problems",
    "run_factories",
    "run_resources",
    "with_resources",
]

logger = logging.getLogger("dremioframe_async.orchestration")

ResourceFactory = Callable[[], Any]
"""A zero-argument callable returning an async context manager, an awaitable or an object."""

# Seconds the run waits for its resources to close once its tasks have ended,
# shielded from cancellation; a resource still closing then is abandoned and
# reported on the result.
CLOSE_TIMEOUT = 30.0

NO_RESOURCES: Mapping[str, ResourceFactory] = MappingProxyType({})

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


# -- declarations ----------------------------------------------------------------------


def check_factories(where: str, factories: object) -> dict[str, ResourceFactory]:
    """``factories`` as a dict of name -> factory, checked.

    :raises ArgumentError: not a mapping, an empty or non-string name, or a
        factory that is not callable.
    """
    if factories is None:
        return {}
    if not isinstance(factories, Mapping):
        raise ArgumentError(
            f"{where}: resources must be a mapping of name -> factory, "
            f"got {type(factories).__name__}"
        )
    checked: dict[str, ResourceFactory] = {}
    for name, factory in factories.items():
        if not isinstance(name, str) or not name:
            raise ArgumentError(
                f"{where}: a resource name must be a non-empty string, got {name!r}"
            )
        if not callable(factory):
            raise ArgumentError(
                f"{where}: resource {name!r} needs a zero-argument callable that makes it "
                f"(a class, a function, a lambda), got {type(factory).__name__}"
            )
        checked[name] = factory
    return checked


def _keyword_params(action: Callable[..., Any]) -> frozenset[str] | None:
    try:
        params = inspect.signature(action).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): nothing to inject
        return None
    return frozenset(p.name for p in params if p.kind in _KEYWORD_KINDS)


# The parameters a function can receive a resource through, per function: a
# fan-out of thousands of tasks inspects its function once.
_param_cache: weakref.WeakKeyDictionary[Any, frozenset[str] | None] = weakref.WeakKeyDictionary()


def _params_of(action: Callable[..., Any]) -> frozenset[str] | None:
    key = getattr(action, "__func__", action)  # a bound method: its function says it all
    try:
        return _param_cache[key]
    except (KeyError, TypeError):  # TypeError: not weakly referenceable
        pass
    found = _keyword_params(action)
    with contextlib.suppress(TypeError):
        _param_cache[key] = found
    return found


def injected_names(task: Task) -> tuple[str, ...]:
    """The resources ``task`` receives as keyword arguments (the others via its context)."""
    params = _params_of(task.action) or frozenset()
    return tuple(n for n in task.options.resources if n in params and n not in task.kwargs)


def check_task_resources(task_name: str, action: Callable[..., Any], names: Iterable[str]) -> None:
    """Each name a task declares must reach it: as a parameter, or through ``context``.

    :raises TaskDefinitionError: for a name the function can receive neither way.
    """
    params = _params_of(action)
    if params is None:
        return
    for name in names:
        if name not in params and "context" not in params:
            raise TaskDefinitionError(
                task_name,
                f"declares resource {name!r} but has no parameter {name!r} to receive it "
                f"(nor a 'context' parameter to read context.resources[{name!r}])",
            )


def resource_problems(
    tasks: Iterable[Task], keys: Iterable[str], declared: Collection[str]
) -> list[str]:
    """One line per resource that tasks need but nobody declared (graph problems)."""
    needed_by: dict[str, list[str]] = {}
    for task, key in zip(tasks, keys, strict=True):
        for name in task.options.resources:
            if name not in declared and name not in task.default_resources:
                needed_by.setdefault(name, []).append(key)
    problems = []
    for name, users in needed_by.items():
        shown = ", ".join(repr(k) for k in users[:3])
        more = f" and {len(users) - 3} more" if len(users) > 3 else ""
        problems.append(
            f"resource {name!r} is needed by task {shown}{more} but not declared (add it: "
            f"Pipeline(..., resources={{{name!r}: factory}}) or run(resources=...))"
        )
    return problems


def run_factories(
    tasks: Iterable[Task],
    pipeline: Mapping[str, ResourceFactory],
    given: Mapping[str, ResourceFactory],
) -> dict[str, ResourceFactory]:
    """The factories a run's tasks need: the run's, else the pipeline's, else a task's default.

    A default (a Dremio task's client from the environment, say) is used only
    when nothing declares that name; the first task (in the run's order) that
    offers one provides it, so every task sharing the name shares one resource.
    """
    factories: dict[str, ResourceFactory] = {}
    for task in tasks:
        for name in task.options.resources:
            factory = given.get(name) or pipeline.get(name) or task.default_resources.get(name)
            if factory is not None:
                factories.setdefault(name, factory)
    return factories  # only what some task needs: a run that needs nothing opens nothing


# -- one run's resources ---------------------------------------------------------------


@dataclass(slots=True)
class _Slot:
    lock: anyio.Lock
    open: bool = False
    value: Any = None
    failure: Exception | None = None


class RunResources:
    """The resources of one run: opened on demand, once each; closed by :meth:`aclose`."""

    def __init__(self, factories: Mapping[str, ResourceFactory], hosts: TaskGroup | None) -> None:
        self.factories = MappingProxyType(dict(factories))
        self.close_errors: dict[str, ResourceError] = {}
        self._hosts = hosts
        self._slots: dict[str, _Slot] = {}
        self._closing = anyio.Event()
        self._live = 0  # host tasks holding an open context manager
        self._all_closed = anyio.Event()
        self._deadline = float("inf")

    async def acquire(self, names: Iterable[str]) -> None:
        """Open each named resource that is not open yet.

        :raises ResourceError: a factory or ``__aenter__`` raised (now, or when an
            earlier task of this run asked); it is not tried again in this run.
        """
        for name in names:
            slot = self._slots.get(name)
            if slot is None:
                slot = self._slots[name] = _Slot(anyio.Lock())
            if not slot.open:
                await self._open(name, slot)

    async def _open(self, name: str, slot: _Slot) -> None:
        async with slot.lock:  # tasks asking at the same moment wait for one opening
            if slot.failure is None and not slot.open:
                if self._closing.is_set() or self._hosts is None:  # pragma: no cover - a bug
                    raise RuntimeError(f"resource {name!r} asked for outside its run")
                try:
                    slot.value = await self._hosts.start(self._host, name)
                    slot.open = True
                except Exception as exc:
                    slot.failure = exc
        if slot.failure is not None:
            raise ResourceError(name, "open", slot.failure) from slot.failure

    def value(self, name: str) -> Any:
        return self._slots[name].value

    def view(self, task_key: str, names: tuple[str, ...]) -> TaskResources:
        """What ``context.resources`` shows the task ``task_key``, which declared ``names``."""
        return TaskResources(self, task_key, names)

    async def _host(self, name: str, *, task_status: TaskStatus[Any]) -> None:
        made = self.factories[name]()
        if inspect.isawaitable(made) and not _is_async_cm(made):
            made = await made
        if not _is_async_cm(made):
            task_status.started(made)  # a plain object: nothing to close
            return
        # One scope around enter and exit, so that scopes the resource opens on
        # enter nest inside it and close in order on exit. Unshielded while
        # opening (a cancelled asker cancels the opening), shielded once open.
        with anyio.CancelScope() as scope:
            value = await type(made).__aenter__(made)  # failed or cancelled: nothing to exit
            self._live += 1
            try:
                scope.shield = True
                task_status.started(value)
                # Open until the run says so, even through a cancelled run's cleanup.
                await self._closing.wait()
            finally:
                await self._exit(name, made, scope)

    async def _exit(self, name: str, made: Any, scope: anyio.CancelScope) -> None:
        # Runs in the host's shielded scope, which only the close deadline cancels.
        scope.deadline = min(self._deadline, anyio.current_time() + CLOSE_TIMEOUT)
        try:
            await type(made).__aexit__(made, None, None, None)
        except Exception as exc:
            self._close_failed(name, exc)
        finally:
            if scope.cancel_called:
                self._close_failed(name, f"it did not close within {CLOSE_TIMEOUT:g} s")
            self._live -= 1
            if not self._live:
                self._all_closed.set()

    def _close_failed(self, name: str, problem: Exception | str) -> None:
        error = ResourceError(name, "close", problem)
        if isinstance(problem, Exception):
            error.__cause__ = problem
        self.close_errors[name] = error
        logger.error("%s", error, exc_info=error if isinstance(problem, Exception) else None)

    async def aclose(self) -> None:
        """Close every opened resource, concurrently, shielded, within :data:`CLOSE_TIMEOUT`.

        Never raises: a resource that fails to close (or is still closing at the
        deadline) is recorded in :attr:`close_errors`. Safe to call again.
        """
        if self._closing.is_set():
            return
        self._deadline = anyio.current_time() + CLOSE_TIMEOUT
        self._closing.set()
        if self._live:
            with anyio.CancelScope(shield=True):
                await self._all_closed.wait()


def _is_async_cm(value: object) -> bool:
    return hasattr(type(value), "__aenter__") and hasattr(type(value), "__aexit__")


@contextlib.asynccontextmanager
async def run_resources(factories: Mapping[str, ResourceFactory]) -> AsyncIterator[RunResources]:
    """The resources of one run, in a task group enclosing it; all closed on the way out."""
    if not factories:
        yield RunResources(NO_RESOURCES, None)
        return
    async with anyio.create_task_group() as hosts:
        resources = RunResources(factories, hosts)
        try:
            yield resources
        finally:
            await resources.aclose()


async def with_resources(
    resources: RunResources, task: Task, call: Callable[[], Any]
) -> Callable[[], Any]:
    """``call`` once the resources ``task`` declared are open, with those it takes as
    parameters bound.

    :raises ResourceError: one of them could not be opened.
    """
    await resources.acquire(task.options.resources)
    inject = {name: resources.value(name) for name in injected_names(task)}
    return functools.partial(call, **inject) if inject else call


# -- what a task sees ------------------------------------------------------------------


class TaskResources(Mapping[str, Any]):
    """``context.resources``: the resources a task declared, by name or as attributes.

    ``context.resources["dremio"]`` and ``context.resources.dremio`` are the same
    object. A name the task did not declare raises :class:`UndeclaredResourceError`
    (a ``KeyError``) saying how to declare it.
    """

    __slots__ = ("_key", "_names", "_run")

    def __init__(self, run: RunResources, task_key: str, names: tuple[str, ...]) -> None:
        self._run = run
        self._key = task_key
        self._names = names

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise UndeclaredResourceError(self._key, name, tuple(self._run.factories))
        return self._run.value(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except UndeclaredResourceError as exc:
            raise AttributeError(str(exc)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<resources of task {self._key!r}: {', '.join(self._names) or 'none'}>"
