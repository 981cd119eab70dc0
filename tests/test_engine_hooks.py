"""Engine hooks the task library relies on: an error's retry_after, and context.failures."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dremioframe_async import Pipeline, TaskState, task

pytestmark = pytest.mark.anyio


class Busy(Exception):
    def __init__(self, retry_after: Any) -> None:
        self.retry_after = retry_after
        super().__init__("busy")


def flaky(retry_after: Any, stamps: list[float]):
    @task(retries=1, retry_delay=0.0, max_retry_delay=0.5)
    async def call() -> str:
        stamps.append(time.monotonic())
        if len(stamps) == 1:
            raise Busy(retry_after)
        return "ok"

    return call()


async def test_the_next_attempt_waits_for_retry_after() -> None:
    stamps: list[float] = []
    (await Pipeline("p").add_task(flaky(0.3, stamps)).run()).raise_for_status()
    assert stamps[1] - stamps[0] >= 0.29


@pytest.mark.parametrize("asked", [3600, "soon", float("nan"), True], ids=str)
async def test_retry_after_is_capped_or_ignored(asked: Any) -> None:
    stamps: list[float] = []
    (await Pipeline("p").add_task(flaky(asked, stamps)).run()).raise_for_status()
    assert stamps[1] - stamps[0] < 5  # capped at max_retry_delay=0.5, or not a number at all


async def test_context_failures_lists_failed_ancestors_only() -> None:
    @task
    async def broken() -> None:
        raise ValueError("bad input")

    @task
    async def fine() -> int:
        return 1

    @task(trigger_rule="all_done")
    async def after(context: Any = None) -> None:
        return None

    @task(trigger_rule="all_done")
    async def report(context: Any = None) -> dict[str, str]:
        return {k: f"{type(e).__name__}: {e}" for k, e in context.failures.items()}

    b, f, a, r = broken(), fine(), after(), report()
    b >> a
    f >> a
    a >> r
    result = await Pipeline("p").add_task(b).run()
    assert result.states["broken"] is TaskState.FAILED
    assert result["report"] == {"broken": "ValueError: bad input"}
