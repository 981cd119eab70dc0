"""dremioframe_async: an asyncio-native orchestration engine for data pipelines on Dremio."""

from __future__ import annotations

from .errors import DremioFrameError
from .orchestration import (
    CycleError,
    Event,
    Pipeline,
    PipelineDefinitionError,
    PipelineFailed,
    RunContext,
    RunFinished,
    RunResult,
    RunStarted,
    Task,
    TaskDefinitionError,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
    TriggerRule,
    task,
)

__all__ = [
    "CycleError",
    "DremioFrameError",
    "Event",
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineFailed",
    "RunContext",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "Task",
    "TaskDefinitionError",
    "TaskRetrying",
    "TaskState",
    "TaskStateChanged",
    "TriggerRule",
    "task",
]

__version__ = "0.1.0"
