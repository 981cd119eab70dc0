"""Pipeline state (``context.state``, ``store.get_state/set_state``) on every store.

A task's writes land with its SUCCESS record only: failed, retried and cancelled
attempts leave the state as it was, and a resumed run sees the state as the
failed run left it.
"""

from __future__ import annotations

import functools
from typing import Any

import _store_fixtures
import anyio
import pytest

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import (
    RunStarted,
    StateUnavailable,
    StateValueError,
    TaskState,
    TaskStateChanged,
)
from dremioframe_async.store import MemoryStore, RunStore

store_factory = _store_fixtures.store_factory
store = _store_fixtures.store


@pytest.mark.asyncio
async def test_store_state_api_round_trips_json(store: RunStore) -> None:
    assert await store.get_state("etl", "missing", default=7) == 7
    value = {"watermark": "2026-11-01T00:00:00", "rows": [1, 2.5, None, True], "s": "it's"}
    await store.set_state("etl", "w", value)
    await store.set_state("etl", "n", 3)
    await store.set_state("other", "w", "elsewhere")
    assert await store.get_state("etl", "w") == value
    assert await store.list_state("etl") == {"n": 3, "w": value}
    entries = await store.state_entries("etl")
    assert [(e.key, e.run_id, e.task) for e in entries] == [("n", None, None), ("w", None, None)]
    await store.set_state("etl", "n", 4)
    assert await store.get_state("etl", "n") == 4
    assert await store.delete_state("etl", "n") is True
    assert await store.delete_state("etl", "n") is False
    assert await store.list_state("etl") == {"w": value}
    assert await store.list_state("other") == {"w": "elsewhere"}


@pytest.mark.asyncio
async def test_store_refuses_values_that_are_not_json(store: RunStore) -> None:
    with pytest.raises(StateValueError, match="not JSON"):
        await store.set_state("etl", "k", {1, 2})
    with pytest.raises(StateValueError, match="not JSON"):
        await store.set_state("etl", "k", float("nan"))
    with pytest.raises(StateValueError, match="non-empty"):
        await store.set_state("etl", "", 1)
    assert await store.list_state("etl") == {}


@pytest.mark.asyncio
async def test_state_written_by_a_successful_task_is_stored_and_seen_downstream(
    store: RunStore,
) -> None:
    seen: dict[str, Any] = {}

    @task
    async def first(context: Any = None) -> None:
        context.state["cursor"] = {"at": 10}
        context.state.set("count", (context.state.get("count") or 0) + 1)

    @task
    def second(context: Any = None) -> None:  # a plain function, in a worker thread
        seen.update(context.state)

    p = Pipeline("etl").add_task(first().set_downstream(second()))
    for expected in (1, 2):
        result = await p.run(store=store)
        assert result.status == "SUCCESS"
        assert seen == {"cursor": {"at": 10}, "count": expected}
        assert await store.list_state("etl") == {"cursor": {"at": 10}, "count": expected}
    (entry,) = [e for e in await store.state_entries("etl") if e.key == "count"]
    assert (entry.run_id, entry.task) == (result.run_id, "first")


@pytest.mark.asyncio
async def test_failed_and_retried_attempts_leave_no_state(store: RunStore) -> None:
    await store.set_state("etl", "kept", "before")
    attempts = 0

    @task(retries=1, retry_delay=0)
    async def flaky(context: Any = None) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            context.state["from_failed_attempt"] = True
            context.state["kept"] = "overwritten by a failed attempt"
            raise RuntimeError("first attempt fails")
        context.state["second"] = attempts

    @task
    async def fails(context: Any = None) -> None:
        context.state["kept"] = "overwritten by a failed task"
        del context.state["second"]
        raise RuntimeError("always")

    p = Pipeline("etl").add_task(flaky()).add_task(fails())
    result = await p.run(store=store)
    assert result.states["flaky"] is TaskState.SUCCESS
    assert result.states["fails"] is TaskState.FAILED
    assert await store.list_state("etl") == {"kept": "before", "second": 2}


@pytest.mark.asyncio
async def test_a_cancelled_task_leaves_no_state(store: RunStore) -> None:
    started = anyio.Event()

    @task
    async def blocks(context: Any = None) -> None:
        context.state["x"] = "from a cancelled task"
        started.set()
        await anyio.sleep_forever()

    p = Pipeline("etl").add_task(blocks())
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(p.run, store=store))
        await started.wait()
        tg.cancel_scope.cancel()
    (run,) = await store.list_runs(pipeline="etl")
    assert run.status == "CANCELLED"
    assert await store.list_state("etl") == {}


@pytest.mark.asyncio
async def test_resume_sees_the_state_the_failed_run_left(store: RunStore) -> None:
    seen: list[Any] = []
    fail = True

    @task
    async def advance(context: Any = None) -> int:
        context.state["w"] = (context.state.get("w") or 0) + 5
        return 1

    @task
    async def consume(n: int, context: Any = None) -> None:
        seen.append(context.state.get("w"))
        if fail:
            raise RuntimeError("consume fails")

    p = Pipeline("etl").add_task(consume(advance()))
    first = await p.run(store=store)
    assert first.status == "FAILED"
    assert await store.list_state("etl") == {"w": 5}
    fail = False
    second = await p.run(store=store, resume=first.run_id)
    assert second.status == "SUCCESS"
    # advance was reused, not re-run: the state did not advance twice.
    assert seen == [5, 5]
    assert await store.list_state("etl") == {"w": 5}


@pytest.mark.asyncio
async def test_state_writes_travel_on_the_success_event_only(store: RunStore) -> None:
    """Hand-built events: the fold commits state from SUCCESS events, nothing else."""
    events = [
        RunStarted("r1", "etl", 1.0, {}, ("a", "b")),
        TaskStateChanged("r1", "etl", "a", TaskState.SUCCESS, 2.0, 1, state_writes={"k": "1"}),
        TaskStateChanged("r1", "etl", "b", TaskState.FAILED, 3.0, 1, state_writes={"j": "2"}),
    ]
    await store.record(events)
    assert await store.list_state("etl") == {"k": 1}
    await store.record(
        [TaskStateChanged("r1", "etl", "b", TaskState.SUCCESS, 4.0, 2, state_writes={"k": None})]
    )
    assert await store.list_state("etl") == {}


@pytest.mark.anyio
async def test_writing_state_without_a_store_fails_the_task() -> None:
    @task
    async def writes(context: Any = None) -> str:
        assert dict(context.state) == {}
        context.state["x"] = 1
        return "unreachable"

    result = await Pipeline("etl").add_task(writes()).run()
    assert result.states["writes"] is TaskState.FAILED
    assert isinstance(result.tasks["writes"].error, StateUnavailable)


@pytest.mark.anyio
async def test_a_value_that_is_not_json_fails_the_attempt_that_set_it() -> None:
    @task
    async def writes(context: Any = None) -> None:
        context.state["x"] = object()

    result = await Pipeline("etl").add_task(writes()).run(store=MemoryStore())
    assert isinstance(result.tasks["writes"].error, StateValueError)


@pytest.mark.anyio
async def test_the_store_is_read_once_per_run_and_only_for_context_tasks() -> None:
    calls: list[str] = []

    class Counting(MemoryStore):
        async def list_state(self, pipeline: str) -> dict[str, Any]:
            calls.append(pipeline)
            return await super().list_state(pipeline)

    @task
    async def plain() -> int:
        return 1

    @task
    async def reads(n: int, context: Any = None) -> Any:
        return context.state.get("x")

    s = Counting()
    await s.set_state("etl", "x", 1)
    await Pipeline("etl").add_task(plain()).run(store=s)
    assert calls == []
    p = Pipeline("etl").add_task(reads.expand(n=[1, 2, 3, 4]))
    result = await p.run(store=s)
    assert result["reads"] == [1, 1, 1, 1]
    assert calls == ["etl"]
