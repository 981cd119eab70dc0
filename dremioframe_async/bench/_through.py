"""Running the benchmarked work through the engine, as a pipeline's task would."""

from __future__ import annotations

from typing import Any

from ..orchestration import Pipeline, Task
from ._sweep import Work

__all__ = ["through_engine"]


def through_engine(work: Work, name: str = "query") -> Work:
    """Each call runs ``work`` as the one task of a reused :class:`Pipeline` and returns
    its result, so a sweep measures what a pipeline's Dremio task pays (a run, its
    events, its task states) on top of the query.

    A failed task re-raises its own exception, so the sweep counts it by its type.
    """

    async def body() -> Any:
        return await work()

    pipeline = Pipeline(f"bench-{name}").add_task(Task(name, body))

    async def call() -> Any:
        result = await pipeline.run()
        if result.status != "SUCCESS":
            for error in result.errors.values():
                raise error
            result.raise_for_status()
        return result[name]

    return call
