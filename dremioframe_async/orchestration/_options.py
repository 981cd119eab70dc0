"""Task options: one validated, frozen record shared by every Task built from it."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ._errors import ArgumentError, TaskDefinitionError
from ._states import TriggerRule

__all__ = [
    "DEFAULT_MAX_MAP_LENGTH",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_OPTIONS",
    "NON_RETRYABLE",
    "TaskOptionError",
    "TaskOptionValues",
    "TaskOptions",
]

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

# Mapping instances a fan-out may create unless its task says otherwise: enough
# for thousands of tables, small enough that a runaway source fails fast.
DEFAULT_MAX_MAP_LENGTH = 10_000

# Seconds a server's Retry-After may make a task wait before its next attempt,
# unless the task says otherwise: a server asking for 31 years is not obeyed.
DEFAULT_MAX_RETRY_AFTER = 300.0


class TaskOptionValues(TypedDict, total=False):
    """The keyword options ``@task`` and ``Task`` accept (the fields of :class:`TaskOptions`)."""

    retries: int
    retry_delay: float
    retry_backoff: float
    retry_jitter: float
    max_retry_delay: float | None
    max_retry_after: float
    deadline: float | None
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None
    timeout: float | None
    trigger_rule: TriggerRule | str
    pool: str | None
    resources: Iterable[str]
    executor: str | None
    max_map_length: int
    capture_logs: bool


class TaskOptionError(ArgumentError):
    """A :class:`TaskOptions` field got a value the engine cannot use."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"TaskOptions: {problem}")


def _number(field: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TaskOptionError(f"{field} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0) or math.isinf(value):
        need = "a positive" if positive else "a non-negative"
        raise TaskOptionError(f"{field} must be {need} finite number, got {value!r}")
    return float(value)


def _whole(field: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TaskOptionError(f"{field} must be a whole number >= {minimum}, got {value!r}")
    return value


def _trigger_rule(rule: object) -> TriggerRule:
    try:
        return TriggerRule(rule)  # type: ignore[arg-type]  # validated right here
    except ValueError:
        valid = ", ".join(r.value for r in TriggerRule)
        raise TaskOptionError(f"unknown trigger_rule {rule!r}; valid rules: {valid}") from None


def _retry_on(retry_on: object) -> tuple[type[BaseException], ...] | None:
    if retry_on is None:
        return None
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, Exception)):
            raise TaskOptionError(
                f"retry_on must be an Exception subclass or a tuple of them, got {t!r}"
            )
    return types


def _resources(resources: object) -> tuple[str, ...]:
    names = (resources,) if isinstance(resources, str) else resources
    if isinstance(names, Iterable):
        names = tuple(names)
        if all(isinstance(n, str) and n for n in names):
            return tuple(dict.fromkeys(names))
    raise TaskOptionError(f"resources must be resource names, e.g. ('dremio',), got {resources!r}")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Execution options of a task, valid by construction (read-only).

    ``max_retry_after`` caps the wait a server asks for (an exception's
    ``retry_after``: HTTP's Retry-After, ``DremioRateLimited``), 5 minutes by
    default. ``deadline`` bounds a task's attempts together, in seconds from the
    start of its first: no attempt runs past it (each one's time limit is cut to
    what is left), and no retry is started that would wait beyond it.

    Built once per ``@task`` decoration (or per ``Task(...)`` given options) and
    shared by every Task made from it. A trigger rule may be given as its string
    value, ``retry_on`` as one exception type, ``resources`` (the names of the
    run's resources the task needs) as one name or any iterable of names; all
    are normalised.

    :raises ArgumentError: for a value the engine cannot use (``Task`` and
        ``@task`` re-raise it as :class:`TaskDefinitionError` naming the task).
    """

    retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    retry_jitter: float = 0.0
    max_retry_delay: float | None = None
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    deadline: float | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    timeout: float | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    pool: str | None = None
    resources: tuple[str, ...] = ()
    executor: str | None = None
    max_map_length: int = DEFAULT_MAX_MAP_LENGTH
    capture_logs: bool = True  # False: this task's log lines are never captured

    def __post_init__(self) -> None:
        fix = functools.partial(object.__setattr__, self)  # frozen: normalise in place once
        _whole("retries", self.retries, 0)
        _whole("max_map_length", self.max_map_length, 1)
        fix("retry_delay", _number("retry_delay", self.retry_delay))
        fix("retry_backoff", _number("retry_backoff", self.retry_backoff))
        fix("retry_jitter", _number("retry_jitter", self.retry_jitter))
        if self.max_retry_delay is not None:
            fix("max_retry_delay", _number("max_retry_delay", self.max_retry_delay))
        fix("max_retry_after", _number("max_retry_after", self.max_retry_after))
        if self.timeout is not None:
            fix("timeout", _number("timeout", self.timeout, positive=True))
        if self.deadline is not None:
            fix("deadline", _number("deadline", self.deadline, positive=True))
        fix("retry_on", _retry_on(self.retry_on))
        fix("trigger_rule", _trigger_rule(self.trigger_rule))
        fix("resources", _resources(self.resources))
        if self.executor is not None and (not isinstance(self.executor, str) or not self.executor):
            raise TaskOptionError(
                f"executor must be 'local' (always run in this process), an executor's name "
                f"('dask': the run's executor must be that one) or left unset (the run's "
                f"executor), got {self.executor!r}"
            )
        if not isinstance(self.capture_logs, bool):
            raise TaskOptionError(f"capture_logs must be True or False, got {self.capture_logs!r}")
        if self.pool is not None and (not isinstance(self.pool, str) or not self.pool):
            raise TaskOptionError(f"pool must be a non-empty string, got {self.pool!r}")

    @classmethod
    def of(cls, task_name: str, values: Mapping[str, Any]) -> TaskOptions:
        """Options from ``@task``/``Task`` keywords, for the task named ``task_name``.

        :raises TaskDefinitionError: for an unknown option or a bad value, naming the task.
        """
        if not values:
            return DEFAULT_OPTIONS
        unknown = values.keys() - _OPTION_NAMES
        if unknown:
            valid = ", ".join(sorted(_OPTION_NAMES))
            raise TaskDefinitionError(
                task_name,
                f"unknown option(s): {', '.join(sorted(unknown))}; valid options: {valid}",
            )
        try:
            return cls(**values)
        except TaskOptionError as exc:
            raise TaskDefinitionError(task_name, exc.problem) from None


DEFAULT_OPTIONS = TaskOptions()
_OPTION_NAMES = frozenset(TaskOptions.__dataclass_fields__)
