"""Dynamic mapping (Airflow's semantics): ``partial``, ``expand``, ``expand_kwargs``."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ExpandError, MapLengthError, TaskDefinitionError
from ._options import TaskOptions
from ._task import Task

if TYPE_CHECKING:
    from ._decorator import TaskFunction

__all__ = ["MappedTask", "PartialTaskFunction", "materialise"]


def materialise(source: object, limit: int, task_key: str, label: str) -> tuple[Any, ...]:
    """``source``'s elements, at most ``limit`` of them; an endless iterator cannot hang.

    :raises ExpandError: for a str, bytes or non-iterable ``source``.
    :raises MapLengthError: when ``source`` has more than ``limit`` elements.
    """
    if isinstance(source, str | bytes) or not isinstance(source, Iterable):
        raise ExpandError(
            task_key,
            f"{label} needs a list or other iterable (not str/bytes), got {type(source).__name__}",
        )
    items = tuple(itertools.islice(source, limit + 1))
    if len(items) > limit:
        raise MapLengthError(task_key, limit, f"{label} has more than {limit} elements")
    return items


class MappedTask(Task):
    """A task that runs its function once per element (or combination) of mapped values.

    Made by :meth:`TaskFunction.expand` or :meth:`TaskFunction.expand_kwargs`
    (also after :meth:`TaskFunction.partial`). Each mapped value is an upstream
    Task, whose result is mapped at run time, or a literal iterable, materialised
    once when the task is defined. ``expand`` over several arguments maps over
    their cross product, the first argument varying slowest. The task's result
    (in a run and for downstream tasks) is the list of per-instance results, in
    that order.
    """

    def __init__(
        self,
        name: str,
        action: Callable[..., Any],
        *,
        options: TaskOptions,
        constants: Mapping[str, Any],
        mapped: Mapping[str, Any] | None = None,
        kwargs_source: Any = None,
        check: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.mapped = dict(mapped or {})
        self.kwargs_source = kwargs_source
        self._check = check
        super().__init__(name, action, kwargs=constants, options=options)

    def _inputs(self) -> tuple[Any, ...]:
        return (self.args, self.kwargs, self.mapped, self.kwargs_source)

    @property
    def parameter(self) -> str | None:
        """The one mapped argument of a single-argument ``expand``; None otherwise."""
        return next(iter(self.mapped)) if len(self.mapped) == 1 else None

    def instances(self, resolve: Callable[[Any], Any], key: str) -> list[dict[str, Any]]:
        """The keyword arguments of each instance, given ``resolve`` for upstream results.

        :raises ExpandError: for a value that cannot be mapped over.
        :raises MapLengthError: when there would be more than ``max_map_length`` instances.
        """
        limit = self.options.max_map_length
        if self.kwargs_source is not None:
            items = materialise(resolve(self.kwargs_source), limit, key, "expand_kwargs(...)")
            return [self._checked_kwargs(key, j, item) for j, item in enumerate(items)]
        names = list(self.mapped)
        values = [
            materialise(resolve(self.mapped[n]), limit, key, f"expand({n}=...)") for n in names
        ]
        total = math.prod(len(v) for v in values)
        if total > limit:
            sizes = " x ".join(str(len(v)) for v in values)
            raise MapLengthError(key, limit, f"the cross product has {sizes} = {total} elements")
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]

    def _checked_kwargs(self, key: str, j: int, item: object) -> dict[str, Any]:
        if not isinstance(item, Mapping) or not all(isinstance(k, str) for k in item):
            raise ExpandError(
                key, f"expand_kwargs: element {j} is not a dict of keyword arguments: {item!r}"
            )
        clash = item.keys() & self.kwargs.keys()
        if clash:
            raise ExpandError(
                key, f"expand_kwargs: element {j} repeats partial() argument(s) {sorted(clash)}"
            )
        if self._check is not None:
            try:
                self._check(item)
            except TaskDefinitionError as exc:
                raise ExpandError(key, f"expand_kwargs: element {j}: {exc.problem}") from None
        return dict(item)


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
