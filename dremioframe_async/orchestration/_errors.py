"""Errors raised by the engine; the tree is drawn in ``dremioframe_async.errors``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..errors import DremioFrameError
from ._states import TaskState

__all__ = [
    "ArgumentError",
    "AttemptTimeout",
    "CycleError",
    "ExpandError",
    "MapLengthError",
    "PipelineDefinitionError",
    "PipelineFailed",
    "ResourceError",
    "TaskDefinitionError",
    "UndeclaredResourceError",
]


class ArgumentError(DremioFrameError, TypeError, ValueError):
    """A pipeline call got an argument it cannot use (caught as TypeError or ValueError)."""


class AttemptTimeout(DremioFrameError, TimeoutError):
    """A task's attempt passed its time limit (``timeout``, or what was left of ``deadline``).

    Still a ``TimeoutError``, for ``retry_on`` and ``except`` clauses that name that.
    """

    def __init__(self, limit: str) -> None:
        self.limit = limit
        super().__init__(f"attempt exceeded {limit}")

    def __reduce__(self) -> tuple[type[AttemptTimeout], tuple[str]]:
        return (type(self), (self.limit,))  # rebuilt from its field, not from its message


class TaskDefinitionError(DremioFrameError, TypeError, ValueError):
    """A task was declared with an argument it cannot work with.

    Both a TypeError (a non-callable, a wrong call signature) and a ValueError
    (an unknown trigger rule, a negative retry count): either ``except`` catches it.
    """

    def __init__(self, task_name: str, problem: str) -> None:
        self.task_name = task_name
        self.problem = problem
        super().__init__(f"task {task_name!r}: {problem}")


class PipelineDefinitionError(DremioFrameError, ValueError):
    """The pipeline's graph cannot run; ``problems`` lists every problem found."""

    def __init__(self, pipeline: str, problems: Sequence[str]) -> None:
        self.pipeline = pipeline
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"pipeline {pipeline!r} cannot run ({len(self.problems)} {noun}):\n{lines}"
        )


class CycleError(PipelineDefinitionError):
    """The graph has a cycle; ``cycles`` holds each as a list of task keys."""

    def __init__(
        self, pipeline: str, cycles: Sequence[Sequence[str]], other: Iterable[str] = ()
    ) -> None:
        self.cycles = tuple(tuple(c) for c in cycles)
        problems = [f"cycle: {' -> '.join(c)}" for c in self.cycles]
        super().__init__(pipeline, [*problems, *other])


class ExpandError(DremioFrameError, TypeError):
    """A mapped value cannot be mapped over (not iterable, or not keyword dicts)."""

    def __init__(self, task_key: str, problem: str) -> None:
        self.task_key = task_key
        self.problem = problem
        super().__init__(f"task {task_key!r}: {problem}")


class MapLengthError(DremioFrameError, ValueError):
    """Mapping would create more instances than the task's ``max_map_length``."""

    def __init__(self, task_key: str, limit: int, detail: str) -> None:
        self.task_key = task_key
        self.limit = limit
        super().__init__(
            f"task {task_key!r}: mapping over more than max_map_length={limit} instances "
            f"({detail}); map over fewer, or raise the cap with @task(max_map_length=...)"
        )


class PipelineFailed(DremioFrameError):
    """A run ended FAILED; ``errors`` maps each failed task key to its exception,
    ``resource_errors`` each resource that could not be closed to its error."""

    def __init__(
        self,
        pipeline: str,
        run_id: str,
        errors: Mapping[str, BaseException],
        states: Mapping[str, TaskState],
        resource_errors: Mapping[str, BaseException] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.errors = dict(errors)
        self.states = dict(states)
        self.resource_errors = dict(resource_errors or {})
        details = "; ".join(f"{k}: {type(e).__name__}: {e}" for k, e in self.errors.items())
        blocked = sum(1 for s in self.states.values() if s is TaskState.UPSTREAM_FAILED)
        closing = "".join(f"; {e}" for e in self.resource_errors.values())
        super().__init__(
            f"pipeline {pipeline!r} run {run_id} failed: {len(self.errors)} task(s) failed"
            f" ({details}), {blocked} not run because of them{closing}"
        )


class ResourceError(DremioFrameError):
    """A run's resource could not be opened (the tasks that need it fail with this)
    or closed (reported on the run's result); ``__cause__`` is the original error."""

    def __init__(self, name: str, action: str, problem: BaseException | str) -> None:
        self.name = name
        self.action = action
        detail = (
            f"{type(problem).__name__}: {problem}"
            if isinstance(problem, BaseException)
            else problem
        )
        verb = "opened" if action == "open" else "closed"
        super().__init__(f"resource {name!r} could not be {verb}: {detail}")


class UndeclaredResourceError(DremioFrameError, KeyError):
    """A task looked up a resource it did not declare (``context.resources[name]``)."""

    def __init__(self, task_key: str, name: str, declared: Sequence[str]) -> None:
        self.task_key = task_key
        self.name = name
        if name in declared:
            how = f"add resources=({name!r},) to its @task(...)"
        else:
            known = ", ".join(repr(d) for d in declared) or "none"
            how = f"the run has no resource {name!r} (declared: {known})"
        self.message = f"task {task_key!r} did not declare resource {name!r}: {how}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would show the message quoted
        return self.message
