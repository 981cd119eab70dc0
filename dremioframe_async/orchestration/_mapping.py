"""Dynamic mapping (Airflow's semantics): the mapped task, made by ``expand``/``expand_kwargs``.

``partial`` and the ``expand`` calls live with the task function (``_decorator``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, overload

from ._errors import ExpandError, MapLengthError, TaskDefinitionError
from ._options import TaskOptions
from ._task import Task

__all__ = ["MappedTask", "materialise"]


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


class Combinations(Sequence[dict[str, Any]]):
    """The keyword arguments of each instance of an ``expand``, made when read.

    The cross product of the mapped values, the first argument varying slowest
    (as ``itertools.product``). Read by position, so that a wide fan-out makes
    them a slice at a time rather than all in one step of the loop.
    """

    __slots__ = ("_len", "_names", "_values")

    def __init__(self, names: Sequence[str], values: Sequence[tuple[Any, ...]]) -> None:
        self._names = tuple(names)
        self._values = tuple(values)
        self._len = math.prod(len(v) for v in self._values)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, j: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, j: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, j: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(self._len))]
        if j < 0:
            j += self._len
        if not 0 <= j < self._len:
            raise IndexError("instance index out of range")
        names, values = self._names, self._values
        if len(values) == 1:
            return {names[0]: values[0][j]}
        picked: list[Any] = [None] * len(values)
        for k in range(len(values) - 1, -1, -1):
            j, r = divmod(j, len(values[k]))
            picked[k] = values[k][r]
        return dict(zip(names, picked, strict=True))


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

    def instances(self, resolve: Callable[[Any], Any], key: str) -> Sequence[dict[str, Any]]:
        """The keyword arguments of each instance, given ``resolve`` for upstream results.

        For ``expand``, each instance's arguments are made when read (see
        :class:`Combinations`): a run reads them a slice at a time.

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
        return Combinations(names, values)

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
