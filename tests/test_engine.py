"""Running pipelines: ordering, overlap, limits, retries, timeouts, cancellation.

Every test here runs on asyncio and on trio (see ``anyio_backend`` in conftest).
Ordering is established with events and ``wait_all_tasks_blocked``, not sleeps.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from dremioframe_async import (
    Pipeline,
    PipelineFailed,
    RunFinished,
    RunStarted,
    Task,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
    task,
)
from dremioframe_async.orchestration import ArgumentError

pytestmark = pytest.mark.anyio


class Boom(RuntimeError):
    pass


@task
async def value(x: Any) -> Any:
    return x


@task
async def fail() -> None:
    raise Boom("boom")


async def test_seed_style_chain_and_context() -> None:
    seen: dict[str, Any] = {}

    @task(name="extract")
    async def extract() -> str:
        return "s3://bucket/raw.parquet"

    @task(name="transform")
    def transform(context=None) -> str:
        seen["path"] = context.get("extract")
        seen["param"] = context["day"]
        seen["run_id"] = context.run_id
        return "done"

    e, t = extract(), transform()
    e.set_downstream(t)
    result = await Pipeline("etl").add_task(e).run(context={"day": "2026-11-27"})
    assert result.status == "SUCCESS"
    assert result["transform"] == "done"
    assert seen == {
        "path": "s3://bucket/raw.parquet",
        "param": "2026-11-27",
        "run_id": result.run_id,
    }
    assert result.states[result.key_of(e)] is TaskState.SUCCESS
    assert result[e] == "s3://bucket/raw.parquet"
    assert not hasattr(e, "status")  # runs keep their state: a Task holds none


async def test_data_edges_pass_results() -> None:
    @task
    async def extract(table: str) -> list[str]:
        return [table, table]

    @task
    async def transform(rows: list[str]) -> int:
        return len(rows)

    @task
    async def load(n: int, extra: dict[str, Any]) -> str:
        return f"{n}:{extra['rows']}"

    rows = extract("users")
    out = load(transform(rows), extra={"rows": rows})
    result = await Pipeline("p").add_task(out).run()
    assert result["load"] == "2:['users', 'users']"
    assert result[out] == result["load"]


async def test_same_named_tasks_get_unique_keys_and_context_by_task() -> None:
    @task(name="extract")
    async def extract(table: str) -> str:
        return table

    got: list[str] = []

    @task
    async def combine(context=None) -> None:
        got.extend([context[users], context[orders]])

    users, orders, c = extract("users"), extract("orders"), combine()
    users >> c
    orders >> c
    result = await Pipeline("p").add_task(c).run()
    assert (result["extract"], result["extract_2"]) == ("users", "orders")
    assert got == ["users", "orders"]
    assert result.key_of(orders) == "extract_2"


async def test_context_sees_transitive_upstream_only() -> None:
    seen: dict[str, Any] = {}

    @task
    async def check(context=None) -> None:
        seen["keys"] = sorted(context)
        seen["has_sibling"] = "sibling" in context

    a, b = value("a"), value("b")
    a.name = "grand"  # names may be set before a run, like the seed's attributes
    b.name = "parent"
    sibling = Task("sibling", lambda: 1)
    c = check()
    a >> b >> c
    sibling.set_upstream(a)
    await Pipeline("p").add_task(c).run()
    assert seen == {"keys": ["grand", "parent"], "has_sibling": False}


async def test_fan_out_tasks_really_overlap() -> None:
    n = 50
    arrived = 0
    all_here = anyio.Event()

    @task
    async def meet(i: int) -> int:
        nonlocal arrived
        arrived += 1
        if arrived == n:
            all_here.set()
        await all_here.wait()  # deadlocks unless all n run at once
        return i

    root, sink = value(0), value(1)
    for i in range(n):
        root >> meet(i) >> sink
    with anyio.fail_after(10):
        result = await Pipeline("p").add_task(root).run()
    assert result.status == "SUCCESS"
    assert arrived == n


async def test_shared_pool_limiter_across_pipelines() -> None:
    shared = anyio.CapacityLimiter(1)
    inside = peak = 0
    gate = anyio.Event()

    @task(pool="db")
    async def q() -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await gate.wait()
        inside -= 1

    p1 = Pipeline("a", pools={"db": shared}).add_task(q())
    p2 = Pipeline("b", pools={"db": shared}).add_task(q())
    async with anyio.create_task_group() as tg:
        tg.start_soon(p1.run)
        tg.start_soon(p2.run)
        await wait_all_tasks_blocked()
        assert inside == 1
        gate.set()
    assert peak == 1


async def test_retries_count_attempts_and_back_off() -> None:
    calls = 0

    @task(retries=3, retry_delay=0.001, retry_backoff=2.0)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError(f"attempt {calls}")
        return "ok"

    events: list[Any] = []
    result = await Pipeline("p").add_task(flaky()).run(on_event=events.append)
    assert result["flaky"] == "ok"
    assert result.tasks["flaky"].attempts == 4
    retrying = [e for e in events if isinstance(e, TaskRetrying)]
    assert [e.attempt for e in retrying] == [1, 2, 3]
    assert [e.delay for e in retrying] == pytest.approx([0.001, 0.002, 0.004])
    assert [str(e.error) for e in retrying] == ["attempt 1", "attempt 2", "attempt 3"]
    running = [
        e.attempt
        for e in events
        if isinstance(e, TaskStateChanged) and e.state is TaskState.RUNNING
    ]
    assert running == [1, 2, 3, 4]


async def test_retry_delay_capped_and_jittered() -> None:
    @task(
        retries=4, retry_delay=0.001, retry_backoff=10.0, max_retry_delay=0.02, retry_jitter=0.003
    )
    async def always() -> None:
        raise ConnectionError("down")

    events: list[Any] = []
    result = await Pipeline("p").add_task(always()).run(on_event=events.append)
    delays = [e.delay for e in events if isinstance(e, TaskRetrying)]
    bases = [0.001, 0.01, 0.02, 0.02]
    assert len(delays) == 4
    for d, base in zip(delays, bases, strict=True):
        assert base <= d <= base + 0.003
    # Jitter adds a random 0-3 ms: four draws all below 1 us would take odds of 1e-13.
    assert any(d - base > 1e-6 for d, base in zip(delays, bases, strict=True)), delays
    assert result.states["always"] is TaskState.FAILED
    assert result.tasks["always"].attempts == 5


async def test_retry_on_overrides_the_default() -> None:
    calls = 0

    @task(retries=2, retry_on=TypeError)
    async def typed() -> None:
        nonlocal calls
        calls += 1
        raise TypeError("again")

    @task(retries=2, retry_on=(KeyError,))
    async def other() -> None:
        raise ConnectionError("not retried")

    result = await Pipeline("p").add_task(typed()).add_task(other()).run()
    assert calls == 3
    assert result.tasks["other"].attempts == 1


async def test_waiting_between_attempts_frees_the_concurrency_slot() -> None:
    order: list[str] = []
    b_ran = anyio.Event()

    @task(retries=1, retry_delay=0.2)
    async def a() -> None:
        order.append(f"a{len([o for o in order if o.startswith('a')]) + 1}")
        if not b_ran.is_set():
            raise ConnectionError("b has not run yet")

    @task
    async def b() -> None:
        order.append("b")
        b_ran.set()

    result = await Pipeline("p", max_concurrency=1).add_task(a()).add_task(b()).run()
    assert order == ["a1", "b", "a2"]
    assert result.status == "SUCCESS"


async def test_timeout_fails_the_attempt_and_is_retried() -> None:
    never = anyio.Event()
    calls = 0

    @task(timeout=0.05, retries=1)
    async def stuck() -> None:
        nonlocal calls
        calls += 1
        await never.wait()

    result = await Pipeline("p").add_task(stuck()).run()
    assert calls == 2
    assert isinstance(result.errors["stuck"], TimeoutError)
    assert result.states["stuck"] is TaskState.FAILED


async def test_expand_fans_out_at_run_time() -> None:
    @task
    async def list_tables(n: int) -> list[str]:
        return [f"t{i}" for i in range(n)]

    @task
    async def extract(table: str) -> str:
        return table.upper()

    @task
    async def total(paths: list[str]) -> str:
        return ",".join(paths)

    mapped = extract.expand(table=list_tables(4))
    result = await Pipeline("p").add_task(total(mapped)).run()
    assert result["extract"] == ["T0", "T1", "T2", "T3"]
    assert result["total"] == "T0,T1,T2,T3"
    assert [result.states[f"extract[{i}]"] for i in range(4)] == [TaskState.SUCCESS] * 4


async def test_expand_instances_overlap_respect_limits_and_retry() -> None:
    attempts: dict[int, int] = {}
    running = peak = 0

    @task(retries=1, pool="x")
    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await checkpoint()
        running -= 1
        attempts[i] = attempts.get(i, 0) + 1
        if i == 2 and attempts[i] == 1:
            raise ConnectionError("flaky")
        return i * 10

    result = await Pipeline("p", pools={"x": 2}).add_task(work.expand(i=range(5))).run()
    assert result["work"] == [0, 10, 20, 30, 40]
    assert result.tasks["work[2]"].attempts == 2
    assert peak == 2


@pytest.mark.parametrize(
    ("items", "expected"),
    [pytest.param([], [], id="empty"), pytest.param([7], [7], id="one")],
)
async def test_expand_edge_sizes(items: list[int], expected: list[int]) -> None:
    result = await Pipeline("p").add_task(value.expand(x=value(items))).run()
    assert result["value_2"] == expected


async def test_failure_propagates_as_upstream_failed_and_rules_react() -> None:
    slow_gate = anyio.Event()
    alert_ran_while_slow_waited: list[bool] = []

    @task
    async def slow() -> str:
        await slow_gate.wait()
        return "slow"

    @task(trigger_rule="one_failed")
    async def alert() -> str:
        alert_ran_while_slow_waited.append(not slow_gate.is_set())
        slow_gate.set()  # the slow branch only finishes because the alert fired early
        return "paged"

    @task(trigger_rule="all_done")
    async def cleanup() -> str:
        return "cleaned"

    @task(trigger_rule="none_failed")
    async def report() -> str:
        return "never"

    f, s = fail(), slow()
    child, grandchild = value("c"), value("g")
    f >> child >> grandchild
    a, c, r = alert(), cleanup(), report()
    for up in (f, s):
        up >> a
        up >> c
    s >> r
    child >> r
    with anyio.fail_after(10):
        result = await Pipeline("p").add_task(f).run()
    assert alert_ran_while_slow_waited == [True]
    assert result.states == {
        "fail": TaskState.FAILED,
        "slow": TaskState.SUCCESS,
        "value": TaskState.UPSTREAM_FAILED,
        "value_2": TaskState.UPSTREAM_FAILED,
        "alert": TaskState.SUCCESS,
        "cleanup": TaskState.SUCCESS,
        "report": TaskState.UPSTREAM_FAILED,
    }
    assert result.status == "FAILED"  # even though the alert ran
    assert "trigger rule all_success" in result.tasks["value"].reason
    with pytest.raises(PipelineFailed) as info:
        result.raise_for_status()
    assert list(info.value.errors) == ["fail"]
    assert isinstance(info.value.errors["fail"], Boom)
    with pytest.raises(KeyError, match="UPSTREAM_FAILED"):
        result["value"]


async def test_skips_are_not_failures() -> None:
    @task(trigger_rule="one_failed")
    async def on_failure() -> None: ...

    ok, alert, after = value(1), on_failure(), value(2)
    ok >> alert >> after
    result = await Pipeline("p").add_task(ok).run()
    assert result.states["on_failure"] is TaskState.SKIPPED
    assert result.states["value_2"] is TaskState.SKIPPED
    assert result.status == "SUCCESS"
    assert result.raise_for_status() is result


async def test_missing_data_input_marks_task_not_run() -> None:
    @task(trigger_rule="all_done")
    async def use(x: int) -> int:
        return x

    result = await Pipeline("p").add_task(use(fail())).run()
    assert result.states["use"] is TaskState.UPSTREAM_FAILED
    assert "input 'fail' has no result" in result.tasks["use"].reason


async def test_events_in_order_and_listeners_sync_or_async() -> None:
    sync_seen: list[Any] = []
    async_seen: list[Any] = []

    async def async_listener(event: Any) -> None:
        await checkpoint()
        async_seen.append(event)

    a = value(1)
    a >> fail()
    result = (
        await Pipeline("p")
        .add_task(a)
        .run(context={"k": 1}, on_event=[sync_seen.append, async_listener])
    )
    assert sync_seen == async_seen
    assert isinstance(sync_seen[0], RunStarted)
    assert sync_seen[0].params == {"k": 1}
    assert sync_seen[0].task_keys == ("value", "fail")
    states = [(e.key, e.state) for e in sync_seen if isinstance(e, TaskStateChanged)]
    assert states == [
        ("value", TaskState.RUNNING),
        ("value", TaskState.SUCCESS),
        ("fail", TaskState.RUNNING),
        ("fail", TaskState.FAILED),
    ]
    failed = sync_seen[-2]
    assert isinstance(failed.error, Boom)
    assert failed.upstream == ("value",)
    assert sync_seen[1].result is None
    assert sync_seen[2].result == 1
    assert isinstance(sync_seen[-1], RunFinished)
    assert sync_seen[-1].status == result.status == "FAILED"
    assert all(e.run_id == result.run_id for e in sync_seen)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({"on_event": [42]}, "on_event needs callables", id="list-of-int"),
        pytest.param({"on_event": 42}, "on_event needs a callable", id="int"),
        pytest.param({"context": 42}, "context=...) needs a mapping", id="context-int"),
        pytest.param({"context": ["a"]}, "context=...) needs a mapping", id="context-list"),
    ],
)
async def test_bad_run_arguments_raise_argument_error_before_running(
    kwargs: dict[str, Any], fragment: str
) -> None:
    ran: list[int] = []
    t = Task("t", lambda: ran.append(1))
    with pytest.raises(ArgumentError, match=re.escape(fragment)):
        await Pipeline("p").add_task(t).run(**kwargs)
    assert ran == []


def test_unknown_trigger_rule_is_a_value_error_too() -> None:
    with pytest.raises(ValueError, match="unknown trigger_rule 'sometimes'"):
        task(trigger_rule="sometimes")(value.fn)
    with pytest.raises(ValueError, match="unknown trigger_rule"):
        Task("t", print, trigger_rule="sometimes")


class _Ready:
    """An awaitable that is not a coroutine."""

    def __await__(self) -> Any:
        return iter(())


@pytest.mark.parametrize("kind", ["coroutine", "awaitable"])
async def test_async_task_returning_an_awaitable_fails_clearly(kind: str) -> None:
    async def inner() -> int:
        return 5

    @task
    async def forgot_await() -> Any:
        return inner() if kind == "coroutine" else _Ready()

    downstream = value(forgot_await())
    result = await Pipeline("p").add_task(downstream).run()
    err = result.errors["forgot_await"]
    assert isinstance(err, TypeError)
    assert "returned an awaitable" in str(err)
    assert "await it in the task" in str(err)
    assert result.states["value"] is TaskState.UPSTREAM_FAILED


async def test_resume_requires_a_store() -> None:
    with pytest.raises(ValueError, match="needs the store"):
        await Pipeline("p").add_task(value(1)).run(resume="abc")


async def test_plain_function_returning_a_coroutine_is_a_clear_error() -> None:
    async def inner() -> int:
        return 5

    result = await Pipeline("p").add_task(Task("t", lambda: inner())).run()
    assert isinstance(result.errors["t"], TypeError)


async def test_long_chain_runs_in_order() -> None:
    order: list[int] = []

    @task
    async def link(i: int) -> int:
        order.append(i)
        return i

    first = prev = link(0)
    for i in range(1, 1500):
        prev = prev.set_downstream(link(i))
    result = await Pipeline("p").add_task(first).run()
    assert order == list(range(1500))
    assert result.status == "SUCCESS"


async def test_long_chain_of_failures_settles_without_recursion() -> None:
    first = fail()
    prev = first
    for _ in range(3000):
        prev = prev.set_downstream(value(0))
    result = await Pipeline("p").add_task(first).run()
    assert sum(s is TaskState.UPSTREAM_FAILED for s in result.states.values()) == 3000


async def test_tasks_that_never_wait_do_not_starve_the_loop() -> None:
    n = 5000
    done = 0
    gaps: list[int] = []  # tasks run between two turns of another coroutine
    finished = False

    async def ticker() -> None:
        last = done
        while not finished:
            await checkpoint()
            gaps.append(done - last)
            last = done

    @task
    async def noop() -> None:
        nonlocal done
        done += 1

    p = Pipeline("p")
    for _ in range(n):
        p.add_task(noop())
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await checkpoint()
        await p.run()
        finished = True
    assert done == n
    # The runners yield every YIELD_INTERVAL of work, so the loop turns many
    # times during the run; without those yields one turn would run them all.
    assert max(gaps) < n // 4, max(gaps)
