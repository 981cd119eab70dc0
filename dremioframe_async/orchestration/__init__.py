"""The engine: tasks, pipelines, trigger rules, retries, limits and run events.

This package imports nothing from the rest of dremioframe_async (but the
exception root), so it can be used without the Dremio client.
"""

from __future__ import annotations

from ._errors import (
    ArgumentError,
    CycleError,
    ExpandError,
    PipelineDefinitionError,
    PipelineFailed,
    ResourceError,
    TaskDefinitionError,
    UndeclaredResourceError,
)
from ._events import Event, RunFinished, RunStarted, TaskRetrying, TaskStateChanged
from ._executor import Executor, ExecutorSession, LocalExecutor, TaskCall
from ._pipeline import Pipeline
from ._recorder import HistoryIncomplete, PriorRun, ResumeRefused, RunRecorder
from ._result import RunContext, RunResult, TaskRun
from ._rules import Decision, UpstreamCounts, Verdict, decide
from ._states import FINAL_STATES, TaskState, TriggerRule
from ._task import MappedTask, Task, TaskFunction, TaskOptions, task

__all__ = [
    "FINAL_STATES",
    "ArgumentError",
    "CycleError",
    "Decision",
    "Event",
    "Executor",
    "ExecutorSession",
    "ExpandError",
    "HistoryIncomplete",
    "LocalExecutor",
    "MappedTask",
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineFailed",
    "PriorRun",
    "ResourceError",
    "ResumeRefused",
    "RunContext",
    "RunFinished",
    "RunRecorder",
    "RunResult",
    "RunStarted",
    "Task",
    "TaskCall",
    "TaskDefinitionError",
    "TaskFunction",
    "TaskOptions",
    "TaskRetrying",
    "TaskRun",
    "TaskState",
    "TaskStateChanged",
    "TriggerRule",
    "UndeclaredResourceError",
    "UpstreamCounts",
    "Verdict",
    "decide",
    "task",
]
