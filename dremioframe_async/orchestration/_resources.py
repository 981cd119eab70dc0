"""Run-scoped resources: opened once per run when a task first needs them, closed at its end.

A pipeline declares resources by name, each with a factory: a zero-argument
callable returning an async context manager (entered on open, exited on close),
an awaitable (awaited, then treated the same way) or any other object (used as
it is, never closed). A task declares the names it needs (``@task(resources=
("dremio",))``); the run opens each of them before the first task that needs it
starts, and all of them in one go at most once, however many tasks start at the
same moment.

Each opened context manager lives in a host task of its own: it is entered and
exited by the same task (so a resource that opens cancel scopes or task groups
of its own keeps anyio's rules), and it stays open, shielded, while a cancelled
run still runs its cleanup tasks. The runner closes everything when the run's
tasks have ended, whatever the outcome, and waits at most :data:`CLOSE_TIMEOUT`
for it. Host tasks are detached (no task group waits for them), so that bound
holds even against an ``__aexit__`` stuck in a worker thread, which no
cancellation reaches: the run ends on time and reports that resource as not
closed, and its host finishes whenever the thread returns.

Opening is bounded twice: the task that asked waits at most its own
``timeout`` (the time is counted in its first attempt: the attempt gets what is
left), and a resource that has not opened within :data:`OPEN_TIMEOUT` fails for
the whole run. A failed opening is not retried by the task's retries.

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
from typing import Any, Protocol

import anyio

from ._backend import cancel_is_stray, spawn_detached
from ._errors import ArgumentError, ResourceError, TaskDefinitionError, UndeclaredResourceError
from ._options import TaskOptions

__all__ = [
    "CLOSE_TIMEOUT",
    "NO_RESOURCES",
    "OPEN_TIMEOUT",
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


class ResourceUser(Protocol):
    """What this module reads of a task (``_task`` imports this module, not the reverse)."""

    @property
    def action(self) -> Callable[..., Any]: ...

    @property
    def options(self) -> TaskOptions: ...

    @property
    def kwargs(self) -> Mapping[str, Any]: ...

    @property
    def default_resources(self) -> Mapping[str, ResourceFactory]: ...


logger = logging.getLogger("dremioframe_async.orchestration")

ResourceFactory = Callable[[], Any]
"""A zero-argument callable returning an async context manager, an awaitable or an object."""

# Seconds the run waits for its resources to close once its tasks have ended,
# shielded from cancellation; a resource still closing then is abandoned and
# reported on the result.
CLOSE_TIMEOUT = 30.0

# Seconds a resource may take to open; past them it fails for the rest of the
# run (ResourceError). The task that asked waits at most its own timeout.
OPEN_TIMEOUT = 60.0

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


def injected_names(task: ResourceUser) -> tuple[str, ...]:
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
    tasks: Iterable[ResourceUser], keys: Iterable[str], declared: Collection[str]
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
    tasks: Iterable[ResourceUser],
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
    settled: anyio.Event  # opened, or failed to open: askers may look
    ended: anyio.Event  # its host has finished: closed, or never opened
    open_by: float  # the anyio clock time by which it must have opened
    scope: anyio.CancelScope | None = None  # the host's, around enter and exit
    open: bool = False
    value: Any = None
    failure: Exception | None = None


class RunResources:
    """The resources of one run: opened on demand, once each; closed by :meth:`aclose`."""

    def __init__(self, factories: Mapping[str, ResourceFactory]) -> None:
        self.factories = MappingProxyType(dict(factories))
        self.close_errors: dict[str, ResourceError] = {}
        self._slots: dict[str, _Slot] = {}
        self._closing = anyio.Event()
        self._deadline = float("inf")
        self._reported = False  # aclose has returned: later close failures are only logged

    async def acquire(
        self, names: Iterable[str], asker: str = "", time_limit: float | None = None
    ) -> None:
        """Open each named resource that is not open yet, waiting at most ``time_limit``.

        :raises ResourceError: a factory or ``__aenter__`` raised, or did not
            open within :data:`OPEN_TIMEOUT` (now, or when an earlier task of this
            run asked; it is not tried again in this run), or it did not open
            within ``time_limit`` (the asking task's; another task may still get it).
        """
        deadline = float("inf") if time_limit is None else anyio.current_time() + time_limit
        for name in names:
            slot = self._slot(name)
            if not slot.settled.is_set():
                wait_until = min(deadline, slot.open_by)
                with anyio.CancelScope(deadline=wait_until):
                    await slot.settled.wait()
            if not slot.settled.is_set() and anyio.current_time() >= slot.open_by:
                # Its opening may be stuck where cancellation cannot reach (a thread).
                slot.failure = TimeoutError(f"it did not open within {OPEN_TIMEOUT:g} s")
                slot.settled.set()
            if not slot.settled.is_set():
                assert time_limit is not None
                why = f"it did not open within the timeout={time_limit:g} s of {asker!r}"
                raise ResourceError(name, "open", why)
            if slot.failure is not None:
                raise ResourceError(name, "open", slot.failure) from slot.failure

    def _slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            if self._closing.is_set():  # pragma: no cover - a bug
                raise RuntimeError(f"resource {name!r} asked for outside its run")
            open_by = anyio.current_time() + OPEN_TIMEOUT
            slot = self._slots[name] = _Slot(anyio.Event(), anyio.Event(), open_by)
            spawn_detached(self._host, name, slot, name=f"resource {name}")
        return slot

    def value(self, name: str) -> Any:
        return self._slots[name].value

    def view(self, task_key: str, names: tuple[str, ...]) -> TaskResources:
        """What ``context.resources`` shows the task ``task_key``, which declared ``names``."""
        return TaskResources(self, task_key, names)

    async def _host(self, name: str, slot: _Slot) -> None:
        # A task of its own that nothing waits for (see _backend.spawn_detached):
        # the run waits for its close within CLOSE_TIMEOUT, then goes on without it.
        try:
            await self._open_and_hold(name, slot)
        except Exception as exc:  # the factory or __aenter__: the askers get it
            if not slot.settled.is_set():
                slot.failure = exc
        finally:
            slot.settled.set()
            slot.ended.set()

    async def _open_and_hold(self, name: str, slot: _Slot) -> None:
        # One scope around enter and exit, so that scopes the resource opens on
        # enter nest inside it and close in order on exit. Bounded by OPEN_TIMEOUT
        # while opening; shielded once open.
        with anyio.CancelScope(deadline=slot.open_by) as scope:
            slot.scope = scope
            made = self.factories[name]()
            if inspect.isawaitable(made) and not _is_async_cm(made):
                made = await made
            if not _is_async_cm(made):
                slot.value, slot.open = made, True  # a plain object: nothing to close
                return
            value = await type(made).__aenter__(made)  # failed or cancelled: nothing to exit
            scope.deadline, scope.shield = float("inf"), True
            try:
                if not slot.settled.is_set():  # else given up on while opening: close now
                    slot.value, slot.open = value, True
                    slot.settled.set()
                    # Open until the run says so, even through a cancelled run's cleanup.
                    await self._closing.wait()
            finally:
                await self._exit(name, made, scope)
        if not slot.open and not slot.settled.is_set():
            why = "the run ended" if self._closing.is_set() else f"{OPEN_TIMEOUT:g} s passed"
            slot.failure = TimeoutError(f"it did not open ({why} while it was opening)")

    async def _exit(self, name: str, made: Any, scope: anyio.CancelScope) -> None:
        # Runs in the host's shielded scope, which only the close deadline cancels.
        scope.deadline = min(self._deadline, anyio.current_time() + CLOSE_TIMEOUT)
        try:
            await type(made).__aexit__(made, None, None, None)
        except Exception as exc:
            self._close_failed(name, exc)
        except anyio.get_cancelled_exc_class() as exc:
            if not cancel_is_stray():
                raise  # the close deadline (reported below), or the loop shutting down
            # __aexit__ raised CancelledError of its own: a failed close, not a cancel.
            self._close_failed(name, RuntimeError(f"__aexit__ raised {type(exc).__name__}"))
        finally:
            if scope.cancel_called:
                self._close_failed(name, f"it did not close within {CLOSE_TIMEOUT:g} s")

    def _close_failed(self, name: str, problem: Exception | str) -> None:
        error = ResourceError(name, "close", problem)
        if isinstance(problem, Exception):
            error.__cause__ = problem
        if not self._reported:
            self.close_errors.setdefault(name, error)
        logger.error("%s", error, exc_info=error if isinstance(problem, Exception) else None)

    async def aclose(self) -> None:
        """Close every opened resource, concurrently, shielded, within :data:`CLOSE_TIMEOUT`.

        Never raises, and returns by the deadline even when a close is stuck
        where cancellation cannot reach it (a worker thread): that resource is
        abandoned, still closing, and recorded in :attr:`close_errors` like one
        that fails to close. Safe to call again.
        """
        if self._closing.is_set():
            return
        self._deadline = anyio.current_time() + CLOSE_TIMEOUT
        self._closing.set()
        for slot in self._slots.values():
            if not slot.settled.is_set() and slot.scope is not None:
                slot.scope.cancel()  # still opening: nobody is left to use it
        with anyio.CancelScope(shield=True, deadline=self._deadline):
            for slot in self._slots.values():
                await slot.ended.wait()
        for name, slot in self._slots.items():
            if not slot.ended.is_set():
                self._close_failed(
                    name, f"it did not close within {CLOSE_TIMEOUT:g} s (abandoned, still closing)"
                )
        self._reported = True


def _is_async_cm(value: object) -> bool:
    return hasattr(type(value), "__aenter__") and hasattr(type(value), "__aexit__")


@contextlib.asynccontextmanager
async def run_resources(factories: Mapping[str, ResourceFactory]) -> AsyncIterator[RunResources]:
    """The resources of one run, all closed (or abandoned at the deadline) on the way out."""
    resources = RunResources(factories if factories else NO_RESOURCES)
    try:
        yield resources
    finally:
        if factories:
            await resources.aclose()


async def with_resources(
    resources: RunResources,
    task: ResourceUser,
    call: Callable[[], Any],
    asker: str = "",
    time_limit: float | None = None,
) -> Callable[[], Any]:
    """``call`` once the resources ``task`` declared are open, with those it takes as
    parameters bound; waiting at most ``time_limit`` seconds for them.

    :raises ResourceError: one of them could not be opened (in time).
    """
    await resources.acquire(task.options.resources, asker, time_limit)
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
