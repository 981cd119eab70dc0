"""A task's arguments for one run: upstream results bound into its call, its context."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._node import Node
from ._result import RunContext
from ._settle import Settling
from ._states import TaskState
from ._task import Task, contains_task

__all__ = ["Arguments"]

_S = TaskState


class Arguments(Settling):
    """Binding a task's arguments: upstream results, mapped values and ``context``."""

    def _prepare_call(self, node: Node) -> Callable[[], Any] | None:
        """Bind the task's arguments for this run; None if an input is missing."""
        task = node.task
        args: Iterable[Any] = task.args
        kwargs: dict[str, Any] = task.kwargs
        if task.has_task_args:
            missing = self._missing_inputs(node)
            if missing is not None:
                state, why = missing
                self._settle(node, state, reason=why)
                return None
            args = [self._resolve(a) for a in task.args]
            kwargs = {k: self._resolve(v) for k, v in task.kwargs.items()}
        if node.parent is not None:
            kwargs = {**kwargs, **node.value}
        if task.wants_context:
            kwargs = {**kwargs, "context": self._context(node)}
        return functools.partial(task.action, *args, **kwargs)

    def _missing_inputs(self, node: Node) -> tuple[TaskState, str] | None:
        for up in node.task.data_dependencies():
            i = self.plan.inputs[up]
            state = self.nodes[i].state  # an input's result is always kept
            if state is not _S.SUCCESS:
                verdict = _S.SKIPPED if state is _S.SKIPPED else _S.UPSTREAM_FAILED
                key = self.plan.keys[i]
                return verdict, f"input {key!r} has no result: it ended {state.value}"
        return None

    def _resolve(self, value: Any) -> Any:
        """``value`` with each Task in it replaced by its result; others kept as given."""
        if isinstance(value, Task):
            return self.nodes[self.plan.inputs[value]].result
        if not contains_task(value):
            return value
        if isinstance(value, dict):
            return {k: self._resolve(v) for k, v in value.items()}
        items = [self._resolve(v) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_make"):  # a namedtuple
            return value._make(items)
        return type(value)(items)

    def _context(self, node: Node) -> RunContext:
        i = node.i
        node.pstate = self.state.view()
        return RunContext(
            self.run_id,
            self.params,
            self.results,
            lambda key: self._is_ancestor(i, key),
            lambda: (self.plan.keys[u] for u in self._walk_up(i)),
            self.plan.key_of,
            lambda: self._upstream_failures(i),
            self.resources.view(node.key, node.task.options.resources),
            node.pstate,
            node.key,
            node.task.name,
        )

    def _upstream_failures(self, i: int) -> dict[str, BaseException]:
        found: dict[str, BaseException] = {}
        for u in self._walk_up(i):
            node = self.nodes[u]
            if node.state is _S.FAILED and node.error is not None:
                found[node.key] = node.error
        return found

    def _walk_up(self, i: int) -> Iterator[int]:
        """Every task upstream of plan task ``i``, nearest first; nothing is kept."""
        seen: set[int] = set()
        frontier = deque(self.plan.upstream[i])
        while frontier:
            u = frontier.popleft()
            if u not in seen:
                seen.add(u)
                yield u
                frontier.extend(self.plan.upstream[u])

    def _is_ancestor(self, i: int, key: str) -> bool:
        # Searched per lookup rather than cached per task: caching every task's
        # ancestor set costs quadratic memory on long chains.
        j = self.plan.key_index.get(key)
        if j is None:
            return False
        return j in self.plan.upstream[i] or any(u == j for u in self._walk_up(i))
