"""Task, the ``@task`` decorator and dynamic fan-out handles.

A Task is a declaration: a name, a callable, bound arguments, options and edges.
It holds no per-run state of its own (runs keep theirs), so one Task can take
part in many concurrent runs. ``status`` and ``result`` only mirror the latest
finished run, for code written against the thread-based original.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ._errors import TaskDefinitionError
from ._resources import NO_RESOURCES, ResourceFactory, check_task_resources
from ._states import TaskState, TriggerRule

__all__ = ["MappedTask", "Task", "TaskFunction", "TaskOptions", "task"]

P = ParamSpec("P")
R = TypeVar("R")

# Errors that signal a bug in the task's code rather than a flaky system: retrying
# them only repeats the bug, so the default retry policy leaves them alone.
NON_RETRYABLE: tuple[type[Exception], ...] = (
    TypeError,
    NameError,
    AttributeError,
    NotImplementedError,
    SyntaxError,
    ImportError,
)

_creation_order = itertools.count()


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Validated execution options of a task (read-only)."""

    retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    retry_jitter: float = 0.0
    max_retry_delay: float | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    timeout: float | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    pool: str | None = None
    resources: tuple[str, ...] = ()
    executor: str | None = None


def _check_number(name: str, field: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TaskDefinitionError(name, f"{field} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0) or math.isinf(value):
        need = "a positive" if positive else "a non-negative"
        raise TaskDefinitionError(name, f"{field} must be {need} finite number, got {value!r}")
    return float(value)


def _check_trigger_rule(name: str, rule: object) -> TriggerRule:
    try:
        return TriggerRule(rule)  # type: ignore[arg-type]  # validated right here
    except ValueError:
        valid = ", ".join(r.value for r in TriggerRule)
        raise TaskDefinitionError(
            name, f"unknown trigger_rule {rule!r}; valid rules: {valid}"
        ) from None


def _check_retry_on(name: str, retry_on: object) -> tuple[type[BaseException], ...] | None:
    if retry_on is None:
        return None
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, Exception)):
            raise TaskDefinitionError(
                name, f"retry_on must be an Exception subclass or a tuple of them, got {t!r}"
            )
    return types


def _check_resources(name: str, resources: object) -> tuple[str, ...]:
    names = (resources,) if isinstance(resources, str) else resources
    if isinstance(names, Iterable):
        names = tuple(names)
        if all(isinstance(n, str) and n for n in names):
            return tuple(dict.fromkeys(names))
    raise TaskDefinitionError(
        name, f"resources must be resource names, e.g. ('dremio',), got {resources!r}"
    )


def make_options(name: str, **given: Any) -> TaskOptions:
    """Validate ``@task``/``Task`` keyword options into a :class:`TaskOptions`."""
    retries = given.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise TaskDefinitionError(name, f"retries must be a whole number >= 0, got {retries!r}")
    max_delay = given.get("max_retry_delay")
    timeout = given.get("timeout")
    pool = given.get("pool")
    if pool is not None and (not isinstance(pool, str) or not pool):
        raise TaskDefinitionError(name, f"pool must be a non-empty string, got {pool!r}")
    executor = given.get("executor")
    if executor not in (None, "local"):
        raise TaskDefinitionError(
            name,
            f"executor must be 'local' (always run in this process) or left unset "
            f"(the run's executor), got {executor!r}",
        )
    return TaskOptions(
        retries=retries,
        retry_delay=_check_number(name, "retry_delay", given.get("retry_delay", 0.0)),
        retry_backoff=_check_number(name, "retry_backoff", given.get("retry_backoff", 1.0)),
        retry_jitter=_check_number(name, "retry_jitter", given.get("retry_jitter", 0.0)),
        max_retry_delay=None
        if max_delay is None
        else _check_number(name, "max_retry_delay", max_delay),
        retry_on=_check_retry_on(name, given.get("retry_on")),
        timeout=None if timeout is None else _check_number(name, "timeout", timeout, positive=True),
        trigger_rule=_check_trigger_rule(name, given.get("trigger_rule", TriggerRule.ALL_SUCCESS)),
        pool=pool,
        resources=_check_resources(name, given.get("resources", ())),
        executor=executor,
    )


def contains_task(value: object) -> bool:
    if isinstance(value, Task):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return any(contains_task(v) for v in value)
    if isinstance(value, dict):
        return any(contains_task(v) for v in value.values())
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


class Task:
    """One unit of work in a pipeline.

    :param name: the task's name; its key in a run unless another task shares it.
    :param action: an ``async def`` function (runs on the event loop) or a plain
        function (runs in a worker thread). If it has a ``context`` parameter it
        receives the run's :class:`~dremioframe_async.orchestration.RunContext`.
    :param args: positional arguments; any Task among them (also inside a list,
        tuple, set or dict) becomes an upstream edge and is replaced by its result.
    :param kwargs: keyword arguments, treated like ``args``.
    :param resources: names of the run's resources the task needs (see
        ``Pipeline(resources=...)``): each is opened before the task starts and
        passed as the keyword argument of that name when the function has such
        a parameter; all of them are in ``context.resources``.
    :raises TaskDefinitionError: for a non-callable action or a bad option; the
        message names the task.
    """

    # Factories a task offers for resources it needs when the run declares none
    # of that name (a Dremio task's client from the environment). Subclasses set it.
    default_resources: Mapping[str, ResourceFactory] = NO_RESOURCES

    def __init__(
        self,
        name: str,
        action: Callable[..., Any],
        *,
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 1.0,
        retry_jitter: float = 0.0,
        max_retry_delay: float | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        timeout: float | None = None,
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        pool: str | None = None,
        resources: Iterable[str] = (),
        executor: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise TaskDefinitionError(str(name), "name must be a non-empty string")
        if not callable(action):
            raise TaskDefinitionError(name, f"action must be callable, got {type(action).__name__}")
        options = make_options(
            name,
            retries=retries,
            retry_delay=retry_delay,
            retry_backoff=retry_backoff,
            retry_jitter=retry_jitter,
            max_retry_delay=max_retry_delay,
            retry_on=retry_on,
            timeout=timeout,
            trigger_rule=trigger_rule,
            pool=pool,
            resources=resources,
            executor=executor,
        )
        if options.resources:
            check_task_resources(name, action, options.resources)
        self._setup(
            name, action, options, args, kwargs, _is_async(action), _accepts_context(action)
        )

    def _setup(
        self,
        name: str,
        action: Callable[..., Any],
        options: TaskOptions,
        args: Iterable[Any],
        kwargs: Mapping[str, Any] | None,
        is_async: bool,
        accepts_context: bool,
    ) -> None:
        self.name = name
        self.action = action
        self.options = options
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.is_async = is_async
        self.wants_context = accepts_context and "context" not in self.kwargs
        self.has_task_args = contains_task(self.args) or contains_task(self.kwargs)
        self.order = next(_creation_order)
        self.edits = 0  # bumped on every edge change, so cached plans know to rebuild
        self._upstream: dict[Task, None] = {}
        self._downstream: dict[Task, None] = {}
        self.status: TaskState = TaskState.PENDING
        self.result: Any = None
        self._data_deps: tuple[Task, ...] = ()
        if self.has_task_args:
            found = [*_tasks_in(self.args), *_tasks_in(self.kwargs)]
            self._data_deps = tuple(dict.fromkeys(found))
        for up in self._data_deps:
            self._link(up, self)

    @classmethod
    def _from_function(
        cls, fn: TaskFunction[Any, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Task:
        # @task already validated the options and inspected the function once.
        task = cls.__new__(cls)
        task._setup(fn.name, fn.fn, fn.options, args, kwargs, fn.is_async, fn.accepts_context)
        return task

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

    def data_dependencies(self) -> tuple[Task, ...]:
        """Tasks passed as arguments: their results replace them at run time."""
        return self._data_deps

    # -- edges ---------------------------------------------------------------------

    @staticmethod
    def _link(up: object, down: object) -> None:
        if not isinstance(up, Task) or not isinstance(down, Task):
            bad, near = (down, up) if isinstance(up, Task) else (up, down)
            raise TaskDefinitionError(
                getattr(near, "name", "?"), f"can only depend on a Task, got {type(bad).__name__}"
            )
        if up is down:
            raise TaskDefinitionError(up.name, "a task cannot depend on itself")
        if down not in up._downstream:
            up._downstream[down] = None
            down._upstream[up] = None
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
        return self.set_downstream(other)

    def __lshift__(self, other: Task) -> Task:
        return self.set_upstream(other)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class MappedTask(Task):
    """A task that runs its function once per element of an iterable known at run time.

    Created by :meth:`TaskFunction.expand`. Its result (in a run and for
    downstream tasks) is the list of per-element results, in input order.
    """

    def __init__(
        self,
        name: str,
        action: Callable[..., Any],
        parameter: str,
        source: Any,
        options: TaskOptions,
        kwargs: Mapping[str, Any],
    ) -> None:
        fields = {f: getattr(options, f) for f in TaskOptions.__dataclass_fields__}
        super().__init__(name, action, kwargs={**kwargs, parameter: source}, **fields)
        self.parameter = parameter


class TaskFunction(Generic[P, R]):
    """What ``@task`` returns: calling it builds a :class:`Task`; ``.fn`` is the original."""

    def __init__(self, fn: Callable[P, R], name: str, options: TaskOptions) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = _is_async(fn)
        self.accepts_context = _accepts_context(fn)
        self._signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    # Arguments are typed loosely on purpose: any of them may be a Task standing
    # for its future result (a data edge), which the function's own types reject.
    def __call__(self, *args: Any, **kwargs: Any) -> Task:
        self._check_binding(args, kwargs)
        return Task._from_function(self, args, kwargs)

    def _check_binding(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        params = self._signature.parameters
        # The engine supplies `context` and declared resources itself, so the call need not.
        supplied = ("context", *self.options.resources)
        extra = {n: None for n in supplied if n in params and n not in kwargs}
        try:
            self._signature.bind(*args, **kwargs, **extra)
        except TypeError as exc:
            raise TaskDefinitionError(self.name, f"bad arguments: {exc}") from None

    def expand(self, **kwargs: Any) -> MappedTask:
        """Fan out over one keyword argument at run time.

        ``extract.expand(table=list_tables())`` runs ``extract`` once per element
        of ``list_tables``'s result. Exactly one argument is expanded, and the
        function's other parameters need defaults (bind others with
        ``functools.partial`` and decorate the result).

        :raises TaskDefinitionError: if not exactly one argument is given or it
            is not a parameter of the function.
        """
        if len(kwargs) != 1:
            raise TaskDefinitionError(
                self.name, f"expand() takes exactly one keyword argument, got {sorted(kwargs)}"
            )
        ((param, source),) = kwargs.items()
        if param not in self._signature.parameters or param == "context":
            raise TaskDefinitionError(
                self.name, f"expand({param}=...): {param!r} is not a parameter of the function"
            )
        if not isinstance(source, Task):
            self._check_expand_literal(param, source)
        self._check_binding((), {param: source})
        return MappedTask(self.name, self.fn, param, source, self.options, {})

    def _check_expand_literal(self, param: str, source: object) -> None:
        if isinstance(source, str | bytes) or not isinstance(source, Iterable):
            raise TaskDefinitionError(
                self.name,
                f"expand({param}=...) needs a Task or an iterable, got {type(source).__name__}",
            )

    def __repr__(self) -> str:
        return f"<task function {self.name!r}>"


@overload
def task(fn: Callable[P, R], /) -> TaskFunction[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_backoff: float = 1.0,
    retry_jitter: float = 0.0,
    max_retry_delay: float | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    timeout: float | None = None,
    trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
    pool: str | None = None,
    resources: Iterable[str] = (),
    executor: str | None = None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
) -> Any:
    """Turn a function into a task factory; bare (``@task``) or with options.

    Options: ``name``, ``retries``, ``retry_delay``, ``retry_backoff``,
    ``retry_jitter``, ``max_retry_delay``, ``retry_on``, ``timeout``,
    ``trigger_rule``, ``pool``, ``resources`` (see :class:`Task`), ``executor``
    (``"local"``: a plain function runs in this process's threads whatever the
    run's executor). A resource the function takes as a parameter need not be
    given in the call: the engine passes it, and ``.fn`` can be called with a
    stand-in in a unit test.

    :raises TaskDefinitionError: at decoration time, for a non-callable, a bad
        option (an unknown trigger rule lists the valid ones), or a resource the
        function can receive neither as a parameter nor through ``context``.
    """

    def check_options(task_name: str) -> None:
        unknown = set(options) - set(TaskOptions.__dataclass_fields__)
        if unknown:
            names = ", ".join(sorted(unknown))
            raise TaskDefinitionError(task_name, f"unknown @task option(s): {names}")

    def decorate(f: Callable[..., Any]) -> TaskFunction[Any, Any]:
        if isinstance(f, TaskFunction):  # re-decorated: the new options replace the old
            f = f.fn
        if not callable(f):
            raise TaskDefinitionError(str(name), f"@task needs a function, got {type(f).__name__}")
        task_name = name if name is not None else getattr(f, "__name__", type(f).__name__)
        check_options(task_name)
        made = make_options(task_name, **options)
        check_task_resources(task_name, f, made.resources)
        return TaskFunction(f, task_name, made)

    if name is not None:
        check_options(name)  # fail at @task(...) already when the name is known
    return decorate if fn is None else decorate(fn)
