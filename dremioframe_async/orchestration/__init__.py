"""The engine: tasks, pipelines, trigger rules, retries, limits and run events.

This package imports nothing from the rest of dremioframe_async (but the
exception root), so it can be used without the Dremio client.
"""

from __future__ import annotations

from ._decorator import PartialTaskFunction, TaskFunction, task
from ._errors import (
    ArgumentError,
    AttemptTimeout,
    CycleError,
    ExpandError,
    MapLengthError,
    PipelineDefinitionError,
    PipelineFailed,
    ResourceError,
    TaskDefinitionError,
    UndeclaredResourceError,
)
from ._events import (
    Event,
    LogLine,
    RunFinished,
    RunStarted,
    TaskLogged,
    TaskRetrying,
    TaskStateChanged,
)
from ._executor import Executor, ExecutorSession, LocalExecutor, TaskCall
from ._logs import LogCapture, TaskLogger
from ._mapping import MappedTask
from ._options import DEFAULT_MAX_MAP_LENGTH, TaskOptionError, TaskOptions, TaskOptionValues
from ._pipeline import Pipeline
from ._placement import WorkerScoped, worker_scoped
from ._pstate import PipelineState, StateSource, StateUnavailable, StateValueError
from ._recorder import (
    DirectRecorder,
    HistoryIncomplete,
    PriorRun,
    Record,
    ResumeRefused,
    RunAttendant,
    RunRecorder,
    TaskRecord,
    hand_back,
    handed_back,
)
from ._result import RunContext, RunResult, TaskRun
from ._rules import Decision, UpstreamCounts, Verdict, decide
from ._states import FINAL_STATES, RunStatus, TaskState, TriggerRule
from ._task import Task

__all__ = [
    "DEFAULT_MAX_MAP_LENGTH",
    "FINAL_STATES",
    "ArgumentError",
    "AttemptTimeout",
    "CycleError",
    "Decision",
    "DirectRecorder",
    "Event",
    "Executor",
    "ExecutorSession",
    "ExpandError",
    "HistoryIncomplete",
    "LocalExecutor",
    "LogCapture",
    "LogLine",
    "MapLengthError",
    "MappedTask",
    "PartialTaskFunction",
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineFailed",
    "PipelineState",
    "PriorRun",
    "Record",
    "ResourceError",
    "ResumeRefused",
    "RunAttendant",
    "RunContext",
    "RunFinished",
    "RunRecorder",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "StateSource",
    "StateUnavailable",
    "StateValueError",
    "Task",
    "TaskCall",
    "TaskDefinitionError",
    "TaskFunction",
    "TaskLogged",
    "TaskLogger",
    "TaskOptionError",
    "TaskOptionValues",
    "TaskOptions",
    "TaskRecord",
    "TaskRetrying",
    "TaskRun",
    "TaskState",
    "TaskStateChanged",
    "TriggerRule",
    "UndeclaredResourceError",
    "UpstreamCounts",
    "Verdict",
    "WorkerScoped",
    "decide",
    "hand_back",
    "handed_back",
    "task",
    "worker_scoped",
]
