"""Read-only views a run hands out: the task context and the run result."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import StoreError
from ._errors import PipelineFailed
from ._logs import TaskLogger, task_logger
from ._pstate import PipelineState
from ._states import RunStatus, TaskState
from ._task import Task

__all__ = ["LazyTaskRuns", "RunContext", "RunResult", "TaskRun"]

_NONE: Mapping[str, Any] = MappingProxyType({})


class RunContext(Mapping[str, Any]):
    """What a task with a ``context`` parameter receives.

    A read-only mapping of the results of the task's upstream tasks (direct and
    transitive) that succeeded, keyed by task key; ``context[task_object]``
    works too. Keys given to ``run(context={...})`` are readable as well (a task
    result wins over a parameter of the same name) and through ``params``.
    ``failures`` maps the upstream tasks that ended FAILED to their errors (what
    an alert task reports).

    ``resources`` holds the run's resources the task declared
    (``@task(resources=("dremio",))``), by name or as attributes:
    ``context.resources["dremio"]``, ``context.resources.dremio``.

    ``state`` is the pipeline's state (:class:`PipelineState`): JSON values by
    key, kept in the run store; what the task writes there is committed with
    its SUCCESS record only.

    ``log`` is a logger bound to the task (see :class:`TaskLogger`): its lines
    are in the task's captured log even when the logger's level would drop them.
    """

    __slots__ = (
        "__weakref__",  # tasks may keep per-instance memory that ends with the instance
        "_ancestors",
        "_failures",
        "_is_ancestor",
        "_log",
        "_lookup",
        "_results",
        "_task_key",
        "_task_name",
        "params",
        "resources",
        "run_id",
        "state",
    )

    def __init__(
        self,
        run_id: str,
        params: Mapping[str, Any],
        results: Mapping[str, Any],
        is_ancestor: Callable[[str], bool],
        ancestors: Callable[[], Iterable[str]],
        lookup: Callable[[Task], str | None],
        failures: Callable[[], Mapping[str, BaseException]] | None = None,
        resources: Mapping[str, Any] = _NONE,
        state: PipelineState | None = None,
        task_key: str = "",
        task_name: str = "",
    ) -> None:
        self.run_id = run_id
        self.state = state
        self._task_key = task_key
        self._task_name = task_name
        self._log: TaskLogger | None = None
        self.resources = resources
        self.params = params
        self._results = results
        self._is_ancestor = is_ancestor
        self._ancestors = ancestors
        self._lookup = lookup
        self._failures = failures

    @property
    def log(self) -> TaskLogger:
        """A logger bound to this task (``dremioframe_async.task.<name>``)."""
        if self._log is None:
            self._log = task_logger(self._task_name or "task", self.run_id, self._task_key)
        return self._log

    @property
    def failures(self) -> Mapping[str, BaseException]:
        """Upstream tasks (direct and transitive) that ended FAILED, with their errors."""
        return MappingProxyType(dict(self._failures() if self._failures is not None else {}))

    def _key(self, key: object) -> object:
        return self._lookup(key) if isinstance(key, Task) else key

    def __getitem__(self, key: object) -> Any:
        k = self._key(key)
        if isinstance(k, str) and k in self._results and self._is_ancestor(k):
            return self._results[k]
        if isinstance(k, str) and k in self.params:
            return self.params[k]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def _visible_results(self) -> list[str]:
        return [k for k in self._ancestors() if k in self._results]

    def __iter__(self) -> Iterator[str]:
        keys = self._visible_results()
        return iter([*keys, *(p for p in self.params if p not in keys)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"<RunContext run_id={self.run_id} keys={list(self)}>"


@dataclass(frozen=True, slots=True)
class TaskRun:
    """How one task instance fared in one run (read-only)."""

    key: str
    name: str
    state: TaskState
    attempts: int
    started: float | None
    finished: float | None
    error: BaseException | None
    reason: str

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


class LazyTaskRuns(Mapping[str, TaskRun]):
    """A read-only mapping whose :class:`TaskRun` values are built on first access.

    Most callers read a handful of tasks from a run of thousands; building every
    view up front would cost more than the tasks themselves.
    """

    __slots__ = ("_build", "_built", "_sources")

    def __init__(self, sources: Mapping[str, Any], build: Callable[[Any], TaskRun]) -> None:
        self._sources = sources
        self._build = build
        self._built: dict[str, TaskRun] = {}

    def __getitem__(self, key: str) -> TaskRun:
        found = self._built.get(key)
        if found is None:
            found = self._built[key] = self._build(self._sources[key])
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


class RunResult(Mapping[str, Any]):
    """The outcome of one run: a mapping of successful results by task key.

    Its keys come in the order of ``tasks`` (the plan's tasks, then fan-out
    instances), whatever order the tasks ended in; a task whose result the run
    did not keep (``keep_results``) or that did not succeed is not among them.

    ``status`` is a :class:`RunStatus` (a str): ``SUCCESS``, ``FAILED`` (some task ended FAILED or
    UPSTREAM_FAILED) or ``"CANCELLED"``; ``states``, ``errors`` and ``tasks``
    give the per-task detail. ``result[task_object]`` works as well as
    ``result["key"]``. ``resource_errors`` holds, by name, each of the run's
    resources that could not be closed (the run is then FAILED).

    ``history_error`` is None when every event of the run was recorded in the
    run's store (or there was no store), else a ``StoreError`` saying what was
    lost; ``ok`` is then False and ``raise_for_status()`` raises it.
    """

    history_error: StoreError | None

    def __init__(
        self,
        pipeline: str,
        run_id: str,
        status: RunStatus,
        tasks: Mapping[str, TaskRun],
        results: Mapping[str, Any],
        key_of: Callable[[Task], str | None],
        started: float,
        finished: float,
        resource_errors: Mapping[str, BaseException] = _NONE,
    ) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.status = status
        self.tasks = tasks
        self._results = results
        self._key_of = key_of
        self.started = started
        self.finished = finished
        self.resource_errors = MappingProxyType(dict(resource_errors))
        self.history_error = None

    @functools.cached_property
    def states(self) -> Mapping[str, TaskState]:
        """Each task instance's final state, by key."""
        return MappingProxyType({k: t.state for k, t in self.tasks.items()})

    @functools.cached_property
    def errors(self) -> Mapping[str, BaseException]:
        """The exception of each task instance that ended FAILED, by key."""
        return MappingProxyType(
            {
                k: t.error
                for k, t in self.tasks.items()
                if t.error is not None and t.state is TaskState.FAILED
            }
        )

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def ok(self) -> bool:
        """True when the run succeeded and its history (if recorded) is complete."""
        return self.status is RunStatus.SUCCESS and self.history_error is None

    def key_of(self, task: Task) -> str:
        """The key ``task`` had in this run.

        :raises KeyError: if the task was not part of the run.
        """
        key = self._key_of(task)
        if key is None:
            raise KeyError(task)
        return key

    def __getitem__(self, key: str | Task) -> Any:
        k = (self._key_of(key) or "") if isinstance(key, Task) else key
        try:
            return self._results[k]
        except KeyError:
            pass
        task = self.tasks.get(k)
        if task is None:
            raise KeyError(key)
        if task.state is TaskState.SUCCESS:
            raise KeyError(f"{k!r} succeeded, but the run did not keep its result (keep_results)")
        raise KeyError(f"{k!r} has no result: it ended {task.state.value}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def raise_for_status(self) -> RunResult:
        """Return self if the run succeeded and its history is complete.

        :raises PipelineFailed: carrying each failed task's exception (and each
            resource that could not be closed).
        :raises StoreError: ``history_error``, when the run succeeded but some of its
            events could not be recorded.
        """
        if self.status is not RunStatus.SUCCESS:
            raise PipelineFailed(
                self.pipeline, self.run_id, self.errors, self.states, self.resource_errors
            )
        if self.history_error is not None:
            raise self.history_error
        return self

    def __repr__(self) -> str:
        lost = " history_incomplete" if self.history_error is not None else ""
        return f"<RunResult {self.pipeline!r} run_id={self.run_id} status={self.status}{lost}>"
