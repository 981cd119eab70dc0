"""The ``@task`` decorator and what it returns: a factory of Tasks for one function."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, Unpack, overload

from ._errors import TaskDefinitionError
from ._mapping import MappedTask, PartialTaskFunction
from ._options import TaskOptions, TaskOptionValues
from ._resources import check_task_resources
from ._task import Task, profile_of

__all__ = ["TaskFunction", "task"]

P = ParamSpec("P")
R = TypeVar("R")


class _CallShape:
    """What a function's signature accepts, precomputed so building a Task skips ``bind``.

    ``surely_binds`` answers True only when ``Signature.bind`` would succeed;
    anything unusual falls back to ``bind`` itself, which also words the error.
    ``supplied`` names the parameters the engine fills in (``context`` and the
    task's declared resources), which a call need not give.
    """

    __slots__ = ("keywords", "positional", "required", "simple", "var_args")

    def __init__(
        self, signature: inspect.Signature, supplied: frozenset[str] = frozenset({"context"})
    ) -> None:
        kinds = inspect.Parameter
        params = list(signature.parameters.values())
        self.simple = all(
            p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY, kinds.VAR_POSITIONAL)
            for p in params
        )
        self.positional = tuple(p.name for p in params if p.kind is kinds.POSITIONAL_OR_KEYWORD)
        self.var_args = any(p.kind is kinds.VAR_POSITIONAL for p in params)
        self.keywords = frozenset(p.name for p in params if p.kind is not kinds.VAR_POSITIONAL)
        self.required = tuple(
            p.name
            for p in params
            if p.default is p.empty
            and p.kind is not kinds.VAR_POSITIONAL
            and p.name not in supplied
        )

    def surely_binds(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        if not self.simple or (len(args) > len(self.positional) and not self.var_args):
            return False
        taken = self.positional[: len(args)]
        for k in kwargs:
            if k not in self.keywords or k in taken:
                return False
        return all(r in kwargs or r in taken for r in self.required)


class TaskFunction(Generic[P, R]):
    """What ``@task`` returns: calling it builds a :class:`Task`; ``.fn`` is the original."""

    def __init__(self, fn: Callable[P, R], name: str, options: TaskOptions) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = profile_of(fn).is_async
        self.accepts_context = profile_of(fn).accepts_context
        self._signature = inspect.signature(fn)
        # The engine supplies `context` and declared resources itself, so a call need not.
        self._supplied = frozenset(("context", *options.resources))
        self._shape = _CallShape(self._signature, self._supplied)
        functools.update_wrapper(self, fn)

    # Arguments are typed loosely on purpose: any of them may be a Task standing
    # for its future result (a data edge), which the function's own types reject.
    def __call__(self, *args: Any, **kwargs: Any) -> Task:
        if not self._shape.surely_binds(args, kwargs):
            self._check_binding(args, kwargs)
        return Task(self.name, self.fn, args=args, kwargs=kwargs, options=self.options)

    def _check_binding(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, partial: bool = False
    ) -> None:
        params = self._signature.parameters
        extra = {n: None for n in self._supplied if n in params and n not in kwargs}
        bind = self._signature.bind_partial if partial else self._signature.bind
        try:
            bind(*args, **kwargs, **extra)
        except TypeError as exc:
            raise TaskDefinitionError(self.name, f"bad arguments: {exc}") from None

    def partial(self, **constants: Any) -> PartialTaskFunction:
        """Fix arguments shared by every instance of a later ``expand``/``expand_kwargs``.

        A constant may be a Task (a data edge, the same for every instance).

        :raises TaskDefinitionError: for an argument the function does not take.
        """
        return PartialTaskFunction(self, constants)

    def expand(self, **mapped: Any) -> MappedTask:
        """Run the task once per element of each mapped argument (their cross product).

        ``extract.expand(table=list_tables())`` runs ``extract`` once per element
        of ``list_tables``'s result; ``load.expand(table=t, day=["mon", "tue"])``
        once per (table, day) pair. See :meth:`PartialTaskFunction.expand`.
        """
        return self.partial().expand(**mapped)

    def expand_kwargs(self, source: Any) -> MappedTask:
        """Run the task once per dict of keyword arguments in ``source``.

        See :meth:`PartialTaskFunction.expand_kwargs`.
        """
        return self.partial().expand_kwargs(source)

    def __repr__(self) -> str:
        return f"<task function {self.name!r}>"


@overload
def task(fn: Callable[P, R], /) -> TaskFunction[P, R]: ...


@overload
def task(
    *, name: str | None = None, **options: Unpack[TaskOptionValues]
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
) -> Any:
    """Turn a function into a task factory; bare (``@task``) or with options.

    Options: ``name`` and the fields of :class:`TaskOptions` (``retries``,
    ``retry_delay``, ``retry_backoff``, ``retry_jitter``, ``max_retry_delay``,
    ``max_retry_after``, ``deadline``, ``retry_on``, ``timeout``, ``trigger_rule``,
    ``pool``, ``resources``, ``executor``, ``max_map_length``). A resource the function takes as a
    parameter need not be given in the call: the engine passes it, and ``.fn``
    can be called with a stand-in in a unit test.

    :raises TaskDefinitionError: at decoration time, for a non-callable, a bad
        option (an unknown trigger rule lists the valid ones), or a resource the
        function can receive neither as a parameter nor through ``context``.
    """

    def decorate(f: Callable[..., Any]) -> TaskFunction[Any, Any]:
        if isinstance(f, TaskFunction):  # re-decorated: the new options replace the old
            f = f.fn
        if not callable(f):
            raise TaskDefinitionError(str(name), f"@task needs a function, got {type(f).__name__}")
        task_name = name if name is not None else getattr(f, "__name__", type(f).__name__)
        made = TaskOptions.of(task_name, options)
        check_task_resources(task_name, f, made.resources)
        return TaskFunction(f, task_name, made)

    if name is not None:
        TaskOptions.of(name, options)  # fail at @task(...) already when the name is known
    return decorate if fn is None else decorate(fn)
