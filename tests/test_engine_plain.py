"""The plain-task path: a task with nothing to set up runs as a bare call, and
still starts no body once the run is being cancelled."""

from __future__ import annotations

import anyio
import pytest

from dremioframe_async.orchestration import Pipeline, Task, TaskState
from dremioframe_async.orchestration._graph import build_plan

pytestmark = pytest.mark.anyio


def _fan_out(first: Task, width: int, started: list[str]) -> Pipeline:
    """root -> first, t1..t{width} (no-op tasks that note that they started)."""

    async def note(name: str) -> None:
        started.append(name)

    async def root() -> None:
        return None

    top = Task("root", root)
    top >> first
    for j in range(1, width + 1):
        top >> Task(f"t{j}", note, args=(f"t{j}",))
    return Pipeline("plain").add_task(top)


async def test_no_body_starts_after_a_task_cancels_the_run_without_awaiting() -> None:
    # The tasks run back to back on one runner, which does not yield between
    # them: only its check of the scopes around it can see the cancellation.
    started: list[str] = []
    outer = anyio.CancelScope()

    async def cancel_run() -> None:
        outer.cancel()  # no await after it: the runner goes straight on

    pipeline = _fan_out(Task("cancel", cancel_run), 50, started)
    plan = build_plan("plain", pipeline._added, {})
    assert all(plan.plain), "every task here must take the plain path"
    with outer:
        await pipeline.run()
    assert outer.cancelled_caught
    assert started == []


async def test_a_shield_inside_the_cancelled_scope_lets_the_run_go_on() -> None:
    # The quick check sees the outer scope cancelled; the full check knows the
    # shield between it and the run, so every task still runs.
    started: list[str] = []
    outer = anyio.CancelScope()

    async def cancel_outer() -> None:
        outer.cancel()

    pipeline = _fan_out(Task("cancel", cancel_outer), 20, started)
    with outer:
        with anyio.CancelScope(shield=True):
            result = await pipeline.run()
    assert result.status == "SUCCESS"
    assert sorted(started) == sorted(f"t{j}" for j in range(1, 21))


async def test_a_plain_task_that_returns_a_coroutine_fails_and_the_coroutine_is_closed() -> None:
    async def inner() -> int:
        return 1

    made = []

    async def forgets_await() -> object:
        made.append(inner())
        return made[0]

    result = await Pipeline("plain").add_task(Task("bad", forgets_await)).run()
    run = result.tasks["bad"]
    assert run.state is TaskState.FAILED
    assert "returned an awaitable" in str(run.error)
    assert made[0].cr_frame is None  # closed, not left to warn that it was never awaited


def test_only_tasks_with_nothing_to_set_up_are_plain() -> None:
    async def a() -> None:
        return None

    async def with_context(context: object) -> None:
        return None

    def sync() -> None:
        return None

    up = Task("up", a)
    tasks = [
        Task("plain", a),
        Task("retries", a, retries=2),
        Task("timeout", a, timeout=5.0),
        Task("pool", a, pool="p"),
        Task("context", with_context),
        Task("sync", sync),
        Task("takes", a, args=(up,)),
    ]
    plan = build_plan("plain", [up, *tasks], {"p": object()})
    flags = {plan.keys[i]: bool(f) for i, f in enumerate(plan.plain)}
    assert flags == {
        "up": True,
        "plain": True,
        "retries": False,
        "timeout": False,
        "pool": True,  # its pool slot is taken on the plain path too
        "context": False,
        "sync": False,
        "takes": False,
    }
