"""The ``@task`` decorator and what it returns: a factory of Tasks for one function."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, Unpack, overload

from ._errors import ExpandError, TaskDefinitionError
from ._mapping import MappedTask, materialise
from ._options import TaskOptions, TaskOptionValues
from ._resources import check_task_resources
from ._task import Task, profile_of

__all__ = ["PartialTaskFunction", "TaskFunction", "task"]

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


class PartialTaskFunction:
    """A task function with some arguments fixed, waiting for ``expand``/``expand_kwargs``."""

    def __init__(self, function: TaskFunction[Any, Any], constants: Mapping[str, Any]) -> None:
        self.function = function
        self.constants = dict(constants)
        if "context" in self.constants:
            raise TaskDefinitionError(function.name, "partial(context=...): the engine sets it")
        function._check_binding((), self.constants, partial=True)

    def _literal(self, label: str, source: object) -> Any:
        """A Task as it is; a literal iterable materialised now, once for every run."""
        if isinstance(source, Task):
            return source
        if isinstance(source, str | bytes) or not isinstance(source, Iterable):
            raise TaskDefinitionError(
                self.function.name,
                f"{label} needs a Task or an iterable, got {type(source).__name__}",
            )
        return materialise(source, self.function.options.max_map_length, self.function.name, label)

    def expand(self, **mapped: Any) -> MappedTask:
        """Map over the cross product of the keyword arguments' elements.

        Each value is an upstream Task (its result is mapped at run time) or a
        literal iterable, materialised here, once: a generator serves every run.

        :raises TaskDefinitionError: for no argument, an argument the function
            does not take or ``partial()`` already fixed, or a value that is
            neither a Task nor an iterable (str and bytes are refused).
        :raises MapLengthError: when a literal has more than ``max_map_length`` elements.
        """
        fn = self.function
        if not mapped:
            raise TaskDefinitionError(fn.name, "expand() needs at least one keyword argument")
        for param in mapped:
            if param not in fn._signature.parameters or param == "context":
                raise TaskDefinitionError(
                    fn.name, f"expand({param}=...): {param!r} is not a parameter of the function"
                )
            if param in self.constants:
                raise TaskDefinitionError(
                    fn.name, f"{param!r} is given to both partial() and expand()"
                )
        fn._check_binding((), {**self.constants, **mapped})
        sources = {p: self._literal(f"expand({p}=...)", v) for p, v in mapped.items()}
        return MappedTask(
            fn.name, fn.fn, options=fn.options, constants=self.constants, mapped=sources
        )

    def expand_kwargs(self, source: Any) -> MappedTask:
        """Map over a list of keyword-argument dicts (or a Task returning one).

        Each dict, merged with the ``partial()`` arguments, is one instance's
        arguments. Literal dicts are checked against the signature now; dicts
        from a Task when the task runs (a bad one fails the task with ExpandError).

        :raises TaskDefinitionError: for a literal that is not a list of such dicts.
        :raises MapLengthError: when a literal has more than ``max_map_length`` elements.
        """
        fn = self.function
        items = self._literal("expand_kwargs(...)", source)

        def check(kwargs: Mapping[str, Any]) -> None:
            fn._check_binding((), {**self.constants, **kwargs})

        mapped = MappedTask(
            fn.name,
            fn.fn,
            options=fn.options,
            constants=self.constants,
            kwargs_source=items,
            check=check,
        )
        if not isinstance(items, Task):
            try:
                mapped.instances(lambda value: value, fn.name)
            except ExpandError as exc:
                raise TaskDefinitionError(fn.name, exc.problem) from None
        return mapped

    def __repr__(self) -> str:
        return f"<partial task function {self.function.name!r} {sorted(self.constants)}>"
