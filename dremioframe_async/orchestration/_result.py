"""Read-only views a run hands out: the task context and the run result."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import PipelineFailed
from ._states import TaskState
from ._task import Task

__all__ = ["RunContext", "RunResult", "TaskRun"]


class RunContext(Mapping[str, Any]):
    """What a task with a ``context`` parameter receives.

    A read-only mapping of the results of the task's upstream tasks (direct and
    transitive) that succeeded, keyed by task key; ``context[task_object]``
    works too. Keys given to ``run(context={...})`` are readable as well (a task
    result wins over a parameter of the same name) and through ``params``.
    """

    __slots__ = ("_keys", "_lookup", "_results", "params", "run_id")

    def __init__(
        self,
        run_id: str,
        params: Mapping[str, Any],
        results: Mapping[str, Any],
        visible: Callable[[], frozenset[str]],
        lookup: Callable[[Task], str | None],
    ) -> None:
        self.run_id = run_id
        self.params = params
        self._results = results
        self._keys = visible
        self._lookup = lookup

    def _key(self, key: object) -> object:
        return self._lookup(key) if isinstance(key, Task) else key

    def __getitem__(self, key: object) -> Any:
        k = self._key(key)
        if isinstance(k, str) and k in self._keys() and k in self._results:
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
        return [k for k in self._keys() if k in self._results]

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


class RunResult(Mapping[str, Any]):
    """The outcome of one run: a mapping of successful results by task key.

    ``status`` is ``"SUCCESS"``, ``"FAILED"`` (some task ended FAILED or
    UPSTREAM_FAILED) or ``"CANCELLED"``; ``states``, ``errors`` and ``tasks``
    give the per-task detail. ``result[task_object]`` works as well as
    ``result["key"]``.
    """

    def __init__(
        self,
        pipeline: str,
        run_id: str,
        status: str,
        tasks: Mapping[str, TaskRun],
        results: Mapping[str, Any],
        keys_by_task: Mapping[Task, str],
        started: float,
        finished: float,
    ) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.status = status
        self.tasks = tasks
        self._results = results
        self._keys_by_task = keys_by_task
        self.started = started
        self.finished = finished
        self.states: Mapping[str, TaskState] = {k: t.state for k, t in tasks.items()}
        self.errors: Mapping[str, BaseException] = {
            k: t.error
            for k, t in tasks.items()
            if t.error is not None and t.state is TaskState.FAILED
        }

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    def key_of(self, task: Task) -> str:
        """The key ``task`` had in this run.

        :raises KeyError: if the task was not part of the run.
        """
        return self._keys_by_task[task]

    def __getitem__(self, key: str | Task) -> Any:
        k = self._keys_by_task.get(key, "") if isinstance(key, Task) else key
        if k in self._results:
            return self._results[k]
        state = self.states.get(k)
        if state is None:
            raise KeyError(key)
        raise KeyError(f"{k!r} has no result: it ended {state.value}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def raise_for_status(self) -> RunResult:
        """Return self if the run succeeded.

        :raises PipelineFailed: carrying each failed task's exception.
        """
        if self.status != "SUCCESS":
            raise PipelineFailed(self.pipeline, self.run_id, self.errors, self.states)
        return self

    def __repr__(self) -> str:
        return f"<RunResult {self.pipeline!r} run_id={self.run_id} status={self.status}>"
