"""A run's part in the process metrics (see ``dremioframe_async._metrics``): its start and
end, and each task attempt's duration, retries and running count."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio

from .._metrics import REGISTRY, Registry
from ._node import Node
from ._result import RunResult

__all__ = ["RunMetrics", "run_metrics"]


class RunMetrics:
    """Counts one run's attempts into the registry."""

    __slots__ = ("pipeline", "registry")

    def __init__(self, registry: Registry, pipeline: str) -> None:
        self.registry = registry
        self.pipeline = pipeline

    def attempt(self, node: Node) -> _AttemptMeter:
        """Time the attempt of ``node`` now starting; count it running meanwhile."""
        return _AttemptMeter(self, node)

    def finished(self, result: RunResult) -> None:
        self.registry.runs_total.inc((self.pipeline, result.status.value))


class _AttemptMeter:
    """One attempt's scope: running count, retries, and its duration by how it ended."""

    __slots__ = ("labels", "metrics", "started")

    def __init__(self, metrics: RunMetrics, node: Node) -> None:
        self.metrics = metrics
        pipeline = metrics.pipeline
        self.labels = (pipeline, metrics.registry.task_label(pipeline, node.task.name))
        if node.attempts > 1:
            metrics.registry.retries.inc(self.labels)
        self.started = 0.0

    def __enter__(self) -> _AttemptMeter:
        self.metrics.registry.tasks_running.add((self.metrics.pipeline,), 1)
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        registry = self.metrics.registry
        registry.tasks_running.add((self.metrics.pipeline,), -1)
        if exc_type is None:
            state = "SUCCESS"
        elif issubclass(exc_type, anyio.get_cancelled_exc_class()):
            state = "CANCELLED"
        else:
            state = "FAILED"
        registry.attempt_seconds.observe((*self.labels, state), time.perf_counter() - self.started)


@asynccontextmanager
async def run_metrics(
    pipeline: str,
    run_limiter: anyio.CapacityLimiter | None,
    pools: Mapping[str, anyio.CapacityLimiter],
) -> AsyncIterator[RunMetrics | None]:
    """The run's metrics while the block runs; None while the registry is off."""
    registry = REGISTRY
    if not registry.enabled:
        yield None
        return
    pipeline = registry.pipeline_label(pipeline)
    metrics = RunMetrics(registry, pipeline)
    key = id(metrics)
    registry.live_limiters[key] = (pipeline, run_limiter, dict(pools))
    registry.runs_running.add((pipeline,), 1)
    finished = False
    try:
        yield metrics
        finished = True
    finally:
        registry.runs_running.add((pipeline,), -1)
        del registry.live_limiters[key]
        if not finished:
            registry.runs_total.inc((pipeline, "CANCELLED"))
