"""A run's part in the process metrics (see ``dremioframe_async._metrics``): its start and
end, and each task attempt's duration, retries and running count."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

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

    @contextmanager
    def attempt(self, node: Node) -> Iterator[None]:
        """Time the attempt of ``node`` now starting; count it running meanwhile."""
        r, labels = self.registry, (self.pipeline, node.task.name)
        if node.attempts > 1:
            r.retries.inc(labels)
        r.tasks_running.add((self.pipeline,), 1)
        started = time.perf_counter()
        state = "FAILED"
        try:
            yield
            state = "SUCCESS"
        except anyio.get_cancelled_exc_class():
            state = "CANCELLED"
            raise
        finally:
            r.tasks_running.add((self.pipeline,), -1)
            r.attempt_seconds.observe((*labels, state), time.perf_counter() - started)

    def finished(self, result: RunResult) -> None:
        self.registry.runs_total.inc((self.pipeline, result.status.value))


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
