"""Task: a declaration of one unit of work, its arguments, options and edges.

A Task holds no per-run state (each run keeps its own, and hands it back in
its :class:`RunResult`), so one Task can take part in many concurrent runs.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import types
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Unpack

from ._errors import TaskDefinitionError
from ._options import DEFAULT_OPTIONS, TaskOptions, TaskOptionValues
from ._resources import NO_RESOURCES, ResourceFactory, check_task_resources
from ._states import TriggerRule

__all__ = ["Task", "contains_task", "profile_of"]

_creation_order = itertools.count()

# A task's edges: a tuple while there are few (most tasks have one or two: a
# one-item tuple is 48 bytes, a one-item dict 184), a list past that (8 bytes an
# edge, where a dict takes about 40: a fan-out's root holds a million), and a
# dict (an ordered set with constant-time membership) once a new edge finds
# many at both its ends. Whether an edge exists is asked of the end with fewer
# (``_linked``): the two ends always hold the same edges.
_FEW_EDGES = 8
Edges = tuple["Task", ...] | list["Task"] | dict["Task", None]
_NO_KWARGS: dict[str, Any] = {}  # shared by tasks without keyword arguments; never mutated


def _with_edge(edges: Edges, task: Task) -> Edges:
    """``edges`` with ``task`` added (the caller checked that it is not there)."""
    if type(edges) is tuple:
        if not edges:
            # Most tasks have one edge each way, to the same few tasks: share the tuple.
            alone = task._alone
            if alone is None:
                alone = task._alone = (task,)
            return alone
        if len(edges) < _FEW_EDGES:
            return (*edges, task)
        return [*edges, task]
    if type(edges) is list:
        edges.append(task)
        return edges
    edges[task] = None  # type: ignore[index,call-overload]  # a dict
    return edges


def _linked(up: Task, down: Task) -> bool:
    """Whether ``down`` already waits for ``up``.

    Asked of an end that answers at once: a few edges (a tuple) or a dict. When
    both ends hold a list of many, the shorter one becomes a dict first.
    """
    ups = down._upstream
    if type(ups) is tuple:
        return up in ups
    downs = up._downstream
    if type(downs) is tuple:
        return down in downs
    if type(ups) is dict:
        return up in ups
    if type(downs) is dict:
        return down in downs
    if len(ups) <= len(downs):
        down._upstream = ups = dict.fromkeys(ups)
        return up in ups
    up._downstream = downs = dict.fromkeys(downs)
    return down in downs


# Values that cannot hold a Task: the common arguments skip the container checks.
_LEAVES = frozenset({str, int, float, bool, bytes, type(None)})
_SEQUENCES = frozenset({tuple, list, set, frozenset})


def contains_task(value: object) -> bool:
    """Whether ``value`` is a Task or holds one in a list, tuple, set or dict."""
    kind = type(value)
    if kind in _LEAVES:
        return False
    # Exact types first: this runs for every Task built, and isinstance against
    # a union of four types costs more than the rest of the check.
    items: Iterable[object]
    if kind in _SEQUENCES:
        items = value  # type: ignore[assignment]  # one of the sequence types
    elif kind is dict:
        items = value.values()  # type: ignore[attr-defined]  # a dict
    elif isinstance(value, Task):
        return True
    elif isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return False
    for v in items:  # noqa: SIM110 -- a loop, not any(<genexpr>): this runs per Task built
        if type(v) not in _LEAVES and contains_task(v):
            return True
    return False


def _tasks_in(value: object) -> Iterable[Task]:
    if isinstance(value, Task):
        yield value
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _tasks_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tasks_in(v)


def _unwrap(action: Callable[..., Any]) -> Callable[..., Any]:
    while isinstance(action, functools.partial):
        action = action.func
    return action


def _accepts_context(action: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(action).parameters
    except (TypeError, ValueError):  # some builtins have no signature: they take no context
        return False
    return "context" in params and params["context"].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _is_async(action: Callable[..., Any]) -> bool:
    target = _unwrap(action)
    call = getattr(target, "__call__", None)  # noqa: B004 -- async __call__ on an instance
    return inspect.iscoroutinefunction(target) or (
        not inspect.isfunction(target)
        and not inspect.ismethod(target)
        and inspect.iscoroutinefunction(call)
    )


@dataclass(frozen=True, slots=True)
class _Profile:
    is_async: bool
    accepts_context: bool


# Inspecting a function costs more than building its Task: do it once per function.
# Keyed by id, each entry holding a weak reference that checks the id still means
# that function and drops the entry when it is collected, so functions made in a
# loop (closures) do not pile up here (a WeakKeyDictionary makes a reference per lookup).
_profiles: dict[int, tuple[weakref.ref[Any], _Profile]] = {}


def _forget(ref: weakref.ref[Any], key: int) -> None:
    entry = _profiles.get(key)
    if entry is not None and entry[0] is ref:
        del _profiles[key]


def profile_of(action: Callable[..., Any]) -> _Profile:
    # A bound method's function says it all; anything else (a staticmethod object
    # has a __func__ too, and may answer otherwise) is its own key.
    key: Any = action.__func__ if type(action) is types.MethodType else action
    entry = _profiles.get(id(key))
    if entry is not None and entry[0]() is key:
        return entry[1]
    profile = _Profile(_is_async(action), _accepts_context(action))
    try:
        ref = weakref.ref(key, functools.partial(_forget, key=id(key)))
    except TypeError:  # not weakly referenceable: inspect it each time
        return profile
    _profiles[id(key)] = (ref, profile)
    return profile


def call_hint(value: object) -> str:
    """For a function given where a Task belongs (``set_downstream(alert)``): call it."""
    if not callable(value) or isinstance(value, type):
        return ""
    name = getattr(value, "__name__", None) or getattr(value, "name", "the function")
    return f" ({name} itself: call it, {name}(), to make a Task; the call runs nothing)"


class Task:
    """One unit of work in a pipeline.

    :param name: the task's name; its key in a run unless another task shares it.
    :param action: an ``async def`` function (runs on the event loop) or a plain
        function (runs in a worker thread). If it has a ``context`` parameter it
        receives the run's :class:`~dremioframe_async.orchestration.RunContext`.
    :param args: positional arguments; any Task among them (also inside a list,
        tuple, set or dict) becomes an upstream edge and is replaced by its result.
    :param kwargs: keyword arguments, treated like ``args``.
    :param options: a :class:`TaskOptions`, or give its fields as keywords
        (``retries=3, pool="dremio"``), not both. Its ``resources`` option names
        the run's resources the task needs (see ``Pipeline(resources=...)``):
        each is opened before the task starts and passed as the keyword argument
        of that name when the function has such a parameter; all of them are in
        ``context.resources``.
    :raises TaskDefinitionError: for a non-callable action or a bad option; the
        message names the task.
    """

    # Factories a task offers for resources it needs when the run declares none
    # of that name (a Dremio task's client from the environment). Subclasses set it.
    default_resources: Mapping[str, ResourceFactory] = NO_RESOURCES

    # Slots: a large fan-out holds one Task per instance (subclasses may add a __dict__).
    __slots__ = (
        "__weakref__",
        "_alone",
        "_data_deps",
        "_downstream",
        "_upstream",
        "action",
        "args",
        "edits",
        "has_task_args",
        "is_async",
        "kwargs",
        "name",
        "options",
        "order",
        "wants_context",
    )

    def __init__(
        self,
        name: str,
        action: Callable[..., Any],
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: TaskOptions | None = None,
        **option_values: Unpack[TaskOptionValues],
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise TaskDefinitionError(str(name), "name must be a non-empty string")
        if not callable(action):
            raise TaskDefinitionError(name, f"action must be callable, got {type(action).__name__}")
        if options is None:
            options = TaskOptions.of(name, option_values) if option_values else DEFAULT_OPTIONS
        elif option_values or not isinstance(options, TaskOptions):
            raise TaskDefinitionError(name, "give options=TaskOptions(...) or option keywords")
        if options.resources:
            check_task_resources(name, action, options.resources)
        profile = profile_of(action)
        self.name = name
        self.action = action
        self.options = options
        self.args = tuple(args)
        self.kwargs = dict(kwargs) if kwargs else _NO_KWARGS
        self.is_async = profile.is_async
        self.wants_context = profile.accepts_context and "context" not in self.kwargs
        self.order = next(_creation_order)
        self.edits = 0  # bumped on every edge change, so cached plans know to rebuild
        self._alone: tuple[Task] | None = None  # (self,): the edges of tasks linked to it alone
        self._upstream: Edges = ()
        self._downstream: Edges = ()
        self._data_deps: tuple[Task, ...] = ()
        self.has_task_args = False
        if self.args or self.kwargs or type(self) is not Task:  # else no input holds a Task
            inputs = self._inputs()
            for value in inputs:
                if contains_task(value):
                    self._data_deps = tuple(dict.fromkeys(_tasks_in(inputs)))
                    for up in self._data_deps:
                        self._link(up, self)
                    self.has_task_args = True
                    break

    def _inputs(self) -> tuple[Any, ...]:
        """Every value given to the task that may hold a Task (a data edge)."""
        return (self.args, self.kwargs)

    # -- read-only views -----------------------------------------------------------

    @property
    def retries(self) -> int:
        return self.options.retries

    @property
    def trigger_rule(self) -> TriggerRule:
        return self.options.trigger_rule

    @property
    def upstream(self) -> tuple[Task, ...]:
        """Tasks this one waits for, in the order the edges were added."""
        return tuple(self._upstream)

    @property
    def downstream(self) -> tuple[Task, ...]:
        """Tasks that wait for this one, in the order the edges were added."""
        return tuple(self._downstream)

    def edges_up(self) -> Iterable[Task]:
        """Upstream tasks without copying them into a tuple (for graph walks)."""
        return self._upstream

    def edges_down(self) -> Iterable[Task]:
        """Downstream tasks without copying them into a tuple (for graph walks)."""
        return self._downstream

    def data_dependencies(self) -> tuple[Task, ...]:
        """Tasks passed as arguments: their results replace them at run time."""
        return self._data_deps

    # -- edges ---------------------------------------------------------------------

    @staticmethod
    def _link(up: object, down: object) -> None:
        if not isinstance(up, Task) or not isinstance(down, Task):
            bad, near = (down, up) if isinstance(up, Task) else (up, down)
            raise TaskDefinitionError(
                getattr(near, "name", "?"),
                f"can only depend on a Task, got {type(bad).__name__}{call_hint(bad)}",
            )
        if up is down:
            raise TaskDefinitionError(up.name, "a task cannot depend on itself")
        if not _linked(up, down):
            up._downstream = _with_edge(up._downstream, down)
            down._upstream = _with_edge(down._upstream, up)
            up.edits += 1
            down.edits += 1

    def set_downstream(self, other: Task) -> Task:
        """Make ``other`` wait for this task; returns ``other`` so calls chain.

        :raises TaskDefinitionError: if ``other`` is not a Task or is this task.
        """
        self._link(self, other)
        return other

    def set_upstream(self, other: Task) -> Task:
        """Make this task wait for ``other``; returns this task.

        :raises TaskDefinitionError: if ``other`` is not a Task or is this task.
        """
        self._link(other, self)
        return self

    def __rshift__(self, other: Task) -> Task:
        if isinstance(other, Task) and other is not self and not _linked(self, other):
            # ``_link`` inlined for the common case: this is most of building a graph.
            self._downstream = _with_edge(self._downstream, other)
            other._upstream = _with_edge(other._upstream, self)
            self.edits += 1
            other.edits += 1
        else:
            Task._link(self, other)  # raises for a non-Task or a self-edge; else a repeat
        return other

    def __lshift__(self, other: Task) -> Task:
        Task._link(other, self)
        return self

    def __copy__(self) -> Task:
        """``copy.copy(task)``: a task with this one's definition and none of its edges
        but those its arguments make.

        Its action, arguments and options are this task's; the tasks among its
        arguments feed it too (data edges, as if it had been called with them).
        ``>>`` edges stay with the original. The default copy shared the edge
        containers and the single-edge tuple that names this task, so linking the
        copy rewired the original's graph.
        """
        cls = type(self)
        twin = cls.__new__(cls)
        for klass in cls.__mro__:
            for name in getattr(klass, "__slots__", ()):
                if name != "__weakref__" and hasattr(self, name):
                    setattr(twin, name, getattr(self, name))
        if hasattr(self, "__dict__"):
            twin.__dict__.update(self.__dict__)
        twin.kwargs = dict(self.kwargs) if self.kwargs else _NO_KWARGS
        twin.order = next(_creation_order)
        twin.edits = 0
        twin._alone = None
        twin._upstream = twin._downstream = ()
        for up in self._data_deps:
            Task._link(up, twin)
        return twin

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
