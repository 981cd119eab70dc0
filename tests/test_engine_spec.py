"""The engine against its contract, written from the specification alone.

The contract is the engine's documented semantics, stated in docs/concepts.md ("Writing
pipelines") and docs/architecture.md. The suite was written from it, apart from
test_engine.py.

Every test runs on asyncio and trio. Ordering uses anyio Events and
``wait_all_tasks_blocked()``; nothing sleeps to order events and nothing asserts
on wall time. ``anyio.fail_after(GUARD)`` appears only as a liveness guard, so an
engine that hangs fails the test with a clear TimeoutError instead of the
per-test timeout.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dremioframe_async import (
    CycleError,
    DremioFrameError,
    Event,
    Pipeline,
    PipelineDefinitionError,
    PipelineFailed,
    RunFinished,
    RunResult,
    RunStarted,
    Task,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
    TriggerRule,
    orchestration,
    task,
)

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds; a liveness bound only, never an assertion on speed
FAILING_STATES = {TaskState.FAILED, TaskState.UPSTREAM_FAILED}


class Recorder:
    """An on_event listener that keeps every event in arrival order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def changes(self, key: str | None = None) -> list[TaskStateChanged]:
        return [
            e
            for e in self.events
            if isinstance(e, TaskStateChanged) and (key is None or e.key == key)
        ]

    def states(self, key: str) -> list[TaskState]:
        return [e.state for e in self.changes(key)]

    def retries(self, key: str | None = None) -> list[TaskRetrying]:
        return [
            e for e in self.events if isinstance(e, TaskRetrying) and (key is None or e.key == key)
        ]

    def final_states(self) -> dict[str, TaskState]:
        return {e.key: e.state for e in self.changes()}


def status_rule(result: RunResult) -> str:
    """The run status the contract derives from the task states (docs/concepts.md)."""
    return "FAILED" if FAILING_STATES & set(result.states.values()) else "SUCCESS"


async def _ok() -> str:
    return "ok"


async def _boom() -> str:
    raise RuntimeError("boom")


class Driver:
    """Runs a pipeline in the background so the test can observe it mid-run."""

    def __init__(self) -> None:
        self.results: list[RunResult] = []
        self.cancelled = False

    async def run(self, pipeline: Pipeline, **kwargs: Any) -> None:
        try:
            self.results.append(await pipeline.run(**kwargs))
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise


# --------------------------------------------------------------------------- API


async def test_decorator_bare_and_with_arguments_return_tasks() -> None:
    async def raw(x: int) -> int:
        return x + 1

    bare = task(raw)
    named = task(name="plus_one", retries=1)(raw)
    t1, t2 = bare(1), named(2)
    assert isinstance(t1, Task)
    assert isinstance(t2, Task)
    assert bare.fn is raw
    assert named.fn is raw
    result = await Pipeline("api").add_task(t1).add_task(t2).run()
    assert result["raw"] == 2
    assert result["plus_one"] == 3


async def test_set_downstream_set_upstream_and_operators_return_values() -> None:
    a, b, c, d = (task(name=n)(_ok)() for n in "abcd")
    assert a.set_downstream(b) is b
    assert c.set_upstream(b) is c
    assert (c >> d) is d
    assert (a << task(name="root")(_ok)()) is not None
    rec = Recorder()
    result = await Pipeline("ops").add_task(a).run(on_event=rec)
    assert set(result.states) == {"root", "a", "b", "c", "d"}
    order = [e.key for e in rec.changes() if e.state is TaskState.SUCCESS]
    assert order.index("root") < order.index("a") < order.index("b") < order.index("c")
    assert order.index("c") < order.index("d")


async def test_pipeline_includes_tasks_reachable_up_and_downstream() -> None:
    up = task(name="up")(_ok)()
    mid = task(name="mid")(_ok)()
    down = task(name="down")(_ok)()
    side = task(name="side")(_ok)()
    up >> mid >> down
    side >> down  # reachable from mid only through down
    pipeline = Pipeline("reach")
    assert pipeline.add_task(mid) is pipeline
    result = await pipeline.run()
    assert set(result.states) == {"up", "mid", "down", "side"}
    assert result.status == "SUCCESS"


async def test_same_edge_added_twice_runs_once_and_counts_once() -> None:
    calls: list[str] = []

    @task
    async def a() -> str:
        calls.append("a")
        return "A"

    @task(trigger_rule="all_done")
    async def b(context: Any = None) -> Any:
        calls.append("b")
        return context["a"]

    ta, tb = a(), b()
    ta >> tb
    ta >> tb
    tb.set_upstream(ta)
    ta.set_downstream(tb)
    pipeline = Pipeline("dup_edge").add_task(ta).add_task(tb).add_task(ta)
    with anyio.fail_after(GUARD):
        result = await pipeline.run()
    assert result["b"] == "A"
    assert calls == ["a", "b"]
    assert pipeline.visualize().count("-->") == 1


async def test_sync_task_runs_in_a_worker_thread_coroutine_on_the_loop() -> None:
    loop_thread = threading.get_ident()

    @task
    def in_thread() -> int:
        return threading.get_ident()

    @task
    async def on_loop() -> int:
        return threading.get_ident()

    result = await Pipeline("threads").add_task(in_thread()).add_task(on_loop()).run()
    assert result["in_thread"] != loop_thread
    assert result["on_loop"] == loop_thread


async def test_sync_task_does_not_stall_other_tasks() -> None:
    sync_started = threading.Event()
    release = threading.Event()

    @task
    def blocking() -> bool:
        sync_started.set()
        return release.wait(GUARD)

    @task
    async def releaser() -> None:
        await anyio.to_thread.run_sync(sync_started.wait, GUARD)
        release.set()

    result = await Pipeline("stall").add_task(blocking()).add_task(releaser()).run()
    assert result["blocking"] is True


# ----------------------------------------------------------------------- context


async def test_context_holds_upstream_results_run_id_and_params() -> None:
    seen: dict[str, Any] = {}

    @task
    async def extract() -> str:
        return "/data/users.parquet"

    @task
    async def load(context: Any = None) -> str:
        seen["path"] = context.get("extract")
        seen["day"] = context["day"]
        seen["run_id"] = context.run_id
        with pytest.raises(TypeError):
            context["extract"] = "overwritten"
        return "loaded"

    e = extract()
    e >> load()
    result = await Pipeline("ctx").add_task(e).run(context={"day": "2026-11-27"})
    assert seen == {"path": "/data/users.parquet", "day": "2026-11-27", "run_id": result.run_id}
    assert result["load"] == "loaded"


async def test_sync_task_receives_context() -> None:
    @task
    def reader(context: Any = None) -> Any:
        return (context.get("src"), context["flag"])

    src = task(name="src")(_ok)()
    src >> reader()
    result = await Pipeline("sync_ctx").add_task(src).run(context={"flag": 7})
    assert result["reader"] == ("ok", 7)


@pytest.mark.parametrize("with_context", [False, True], ids=["plain", "with_context"])
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_type_error_in_body_is_not_rerun(with_context: bool, is_async: bool) -> None:
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        raise TypeError("bug in user code")

    if is_async and with_context:

        async def fn(context: Any = None) -> None:
            body()
    elif is_async:

        async def fn() -> None:  # type: ignore[misc]
            body()
    elif with_context:

        def fn(context: Any = None) -> None:  # type: ignore[misc]
            body()
    else:

        def fn() -> None:  # type: ignore[misc]
            body()

    t = task(name="buggy", retries=3)(fn)()
    result = await Pipeline("typeerror").add_task(t).run()
    assert calls == [1]
    assert result.states["buggy"] is TaskState.FAILED
    assert isinstance(result.errors["buggy"], TypeError)
    assert result.tasks["buggy"].attempts == 1


# -------------------------------------------------------------------- data edges


async def test_nested_task_calls_are_data_edges() -> None:
    @task
    async def extract(table: str) -> str:
        return f"/data/{table}"

    @task
    def transform(path: str) -> str:
        return path.upper()

    @task
    async def load(path: str, *, target: str) -> str:
        return f"{path}->{target}"

    final = load(transform(extract("users")), target="dwh")
    result = await Pipeline("edges").add_task(final).run()
    assert result["load"] == "/DATA/USERS->dwh"
    assert set(result.states) == {"extract", "transform", "load"}


async def test_tasks_inside_lists_tuples_and_dicts_are_replaced() -> None:
    @task
    async def num(n: int) -> int:
        return n

    @task
    async def combine(items: list[int], pair: tuple[int, int], named: dict[str, int]) -> Any:
        return items, pair, named

    out = combine([num(1), num(2)], (num(3), 4), named={"x": num(5), "y": 6})
    result = await Pipeline("containers").add_task(out).run()
    assert result["combine"] == ([1, 2], (3, 4), {"x": 5, "y": 6})


async def test_tasks_nested_two_levels_deep_are_replaced() -> None:
    @task
    async def num(n: int) -> int:
        return n

    @task
    async def combine(data: dict[str, list[int]]) -> Any:
        return data

    result = await Pipeline("deep").add_task(combine({"xs": [num(1), num(2)]})).run()
    assert result["combine"] == {"xs": [1, 2]}


async def test_failed_data_edge_marks_consumer_upstream_failed() -> None:
    @task
    async def consume(value: str) -> str:
        return value

    c = consume(task(name="bad")(_boom)())
    result = await Pipeline("edge_fail").add_task(c).run()
    assert result.states["consume"] is TaskState.UPSTREAM_FAILED
    assert result.status == "FAILED"
    assert set(result.errors) == {"bad"}


# -------------------------------------------------------------------------- keys


def _duplicate_graph() -> tuple[Task, Task, Task]:
    @task
    async def extract(table: str) -> str:
        return table

    return extract("users"), extract("orders"), extract("items")


async def test_duplicate_names_get_unique_deterministic_keys() -> None:
    first = await Pipeline("dups").add_task(_duplicate_graph()[0]).run()
    users, orders, items = _duplicate_graph()
    pipeline = Pipeline("dups").add_task(users).add_task(orders).add_task(items)
    r1, r2 = await pipeline.run(), await pipeline.run()
    assert len(r1.states) == 3
    assert list(r1.states) == list(r2.states)
    assert "extract" in first.states
    assert [r1[users], r1[orders], r1[items]] == ["users", "orders", "items"]
    again = _duplicate_graph()
    r3 = await Pipeline("dups").add_task(again[0]).add_task(again[1]).add_task(again[2]).run()
    assert sorted(r3.states) == sorted(r1.states)


async def test_generated_key_does_not_collide_with_an_explicit_name() -> None:
    @task
    async def extract(table: str) -> str:
        return table

    a, b = extract("a"), extract("b")
    c = task(name="extract_2")(extract.fn)("c")
    result = await Pipeline("collide").add_task(a).add_task(b).add_task(c).run()
    assert len(result.states) == 3
    assert [result[a], result[b], result[c]] == ["a", "b", "c"]


async def test_context_lookup_by_task_object_with_duplicate_names() -> None:
    holder: dict[str, Task] = {}

    @task
    async def extract(table: str) -> str:
        return f"/data/{table}"

    @task
    async def merge(context: Any = None) -> tuple[str, str]:
        return context[holder["users"]], context[holder["orders"]]

    holder["users"], holder["orders"] = extract("users"), extract("orders")
    m = merge()
    holder["users"] >> m
    holder["orders"] >> m
    result = await Pipeline("ctx_obj").add_task(m).run()
    assert result["merge"] == ("/data/users", "/data/orders")


# ------------------------------------------------------------------ trigger rules


def _upstream(kind: str, i: int) -> Task:
    """An upstream task that ends S(uccess), F(ailed), K (skipped) or U(pstream failed)."""
    if kind == "S":
        return task(name=f"ok{i}")(_ok)()
    if kind == "F":
        return task(name=f"bad{i}")(_boom)()
    root = task(name=f"root{i}")(_ok if kind == "K" else _boom)()
    rule = "one_failed" if kind == "K" else "all_success"
    child = task(name=f"{kind}{i}", trigger_rule=rule)(_ok)()
    root >> child
    return child


EXPECTED_UPSTREAM = {
    "S": TaskState.SUCCESS,
    "F": TaskState.FAILED,
    "K": TaskState.SKIPPED,
    "U": TaskState.UPSTREAM_FAILED,
}
RAN, SKIP, UPF = TaskState.SUCCESS, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED
RULE_CASES = [
    ("all_success", "SS", RAN),
    ("all_success", "SF", UPF),
    ("all_success", "SK", SKIP),
    ("all_success", "FK", UPF),
    ("all_success", "SU", UPF),
    ("all_failed", "FF", RAN),
    ("all_failed", "FU", RAN),
    ("all_failed", "FS", SKIP),
    ("all_failed", "FK", SKIP),
    ("all_done", "SFKU", RAN),
    ("all_skipped", "KK", RAN),
    ("all_skipped", "KS", SKIP),
    ("one_success", "SF", RAN),
    ("one_success", "FF", UPF),
    ("one_success", "KK", SKIP),
    ("one_failed", "SF", RAN),
    ("one_failed", "SU", RAN),
    ("one_failed", "SS", SKIP),
    ("one_failed", "SK", SKIP),
    ("one_done", "FK", RAN),
    ("one_done", "SK", RAN),
    ("one_done", "KK", SKIP),
    ("none_failed", "SK", RAN),
    ("none_failed", "KK", RAN),
    ("none_failed", "SF", UPF),
    ("none_failed", "SU", UPF),
    ("none_failed_min_one_success", "SK", RAN),
    ("none_failed_min_one_success", "KK", SKIP),
    ("none_failed_min_one_success", "SF", UPF),
    ("none_skipped", "SF", RAN),
    ("none_skipped", "SK", SKIP),
    ("always", "FKU", RAN),
]


@pytest.mark.parametrize(
    ("rule", "kinds", "expected"),
    RULE_CASES,
    ids=[f"{rule}-{kinds}" for rule, kinds, _ in RULE_CASES],
)
async def test_trigger_rule_in_a_real_pipeline(rule: str, kinds: str, expected: TaskState) -> None:
    ran: list[str] = []

    async def target_fn() -> str:
        ran.append("target")
        return "ran"

    target = task(name="target", trigger_rule=rule)(target_fn)()
    for i, kind in enumerate(kinds):
        _upstream(kind, i) >> target
    with anyio.fail_after(GUARD):
        result = await Pipeline(f"rule_{rule}").add_task(target).run()
    for i, kind in enumerate(kinds):
        key = {"S": f"ok{i}", "F": f"bad{i}"}.get(kind, f"{kind}{i}")
        assert result.states[key] is EXPECTED_UPSTREAM[kind], key
    assert result.states["target"] is expected
    assert ran == (["target"] if expected is RAN else [])
    assert result.status == status_rule(result)


async def test_trigger_rule_accepts_the_enum() -> None:
    cleanup = task(name="cleanup", trigger_rule=TriggerRule.ALL_DONE)(_ok)()
    task(name="bad")(_boom)() >> cleanup
    result = await Pipeline("enum").add_task(cleanup).run()
    assert result.states["cleanup"] is TaskState.SUCCESS


async def test_upstream_failed_propagates_down_a_chain_and_alert_sees_it() -> None:
    a = task(name="a")(_boom)()
    b, c = task(name="b")(_ok)(), task(name="c")(_ok)()
    alert = task(name="alert", trigger_rule="one_failed")(_ok)()
    cleanup = task(name="cleanup", trigger_rule="all_done")(_ok)()
    a >> b >> c
    c >> alert
    c >> cleanup
    result = await Pipeline("chain").add_task(a).run()
    assert result.states["b"] is TaskState.UPSTREAM_FAILED
    assert result.states["c"] is TaskState.UPSTREAM_FAILED
    assert result.states["alert"] is TaskState.SUCCESS
    assert result.states["cleanup"] is TaskState.SUCCESS
    assert result.status == "FAILED"
    assert set(result.errors) == {"a"}


async def test_skip_propagates_without_failing_the_run() -> None:
    root = task(name="root")(_ok)()
    alert = task(name="alert", trigger_rule="one_failed")(_ok)()
    after, last = task(name="after")(_ok)(), task(name="last")(_ok)()
    root >> alert >> after >> last
    result = await Pipeline("skips").add_task(root).run()
    assert [result.states[k] for k in ("alert", "after", "last")] == [TaskState.SKIPPED] * 3
    assert result.status == "SUCCESS"
    assert result.raise_for_status() is result


async def test_alert_running_does_not_make_the_run_succeed() -> None:
    bad = task(name="bad")(_boom)()
    bad >> task(name="alert", trigger_rule="one_failed")(_ok)()
    result = await Pipeline("alerted").add_task(bad).run()
    assert result.states["alert"] is TaskState.SUCCESS
    assert result.status == "FAILED"
    with pytest.raises(PipelineFailed) as info:
        result.raise_for_status()
    assert isinstance(info.value, DremioFrameError)
    assert isinstance(info.value.errors["bad"], RuntimeError)
    assert "bad" in str(info.value)


ONE_RULES = [
    ("one_success", _ok),
    ("one_failed", _boom),
    ("one_done", _ok),
    ("one_done", _boom),
]


@pytest.mark.parametrize(
    ("rule", "fast_fn"), ONE_RULES, ids=["one_success", "one_failed", "one_done_ok", "one_done_bad"]
)
async def test_one_rules_fire_before_the_slow_branch(rule: str, fast_fn: Callable[[], Any]) -> None:
    gate, fired = anyio.Event(), anyio.Event()

    async def slow_fn() -> str:
        await gate.wait()
        return "slow"

    async def alert_fn() -> None:
        fired.set()

    alert = task(name="alert", trigger_rule=rule)(alert_fn)()
    task(name="fast")(fast_fn)() >> alert
    task(name="slow")(slow_fn)() >> alert
    driver = Driver()
    async with anyio.create_task_group() as tg:
        tg.start_soon(driver.run, Pipeline("early").add_task(alert))
        await anyio.wait_all_tasks_blocked()
        fired_early = fired.is_set()
        gate.set()
    assert fired_early
    assert driver.results[0].states["alert"] is TaskState.SUCCESS


async def test_all_done_waits_for_every_upstream() -> None:
    gate = anyio.Event()
    order: list[str] = []

    async def slow_fn() -> None:
        await gate.wait()
        order.append("slow")

    async def cleanup_fn() -> None:
        order.append("cleanup")

    cleanup = task(name="cleanup", trigger_rule="all_done")(cleanup_fn)()
    task(name="bad")(_boom)() >> cleanup
    task(name="slow")(slow_fn)() >> cleanup
    driver = Driver()
    async with anyio.create_task_group() as tg:
        tg.start_soon(driver.run, Pipeline("done").add_task(cleanup))
        await anyio.wait_all_tasks_blocked()
        early = list(order)
        gate.set()
    assert early == []
    assert order == ["slow", "cleanup"]


async def test_always_does_not_wait_for_upstream() -> None:
    gate, ran = anyio.Event(), anyio.Event()

    async def slow_fn() -> None:
        await gate.wait()

    async def always_fn() -> None:
        ran.set()

    always = task(name="always", trigger_rule="always")(always_fn)()
    task(name="slow")(slow_fn)() >> always
    driver = Driver()
    async with anyio.create_task_group() as tg:
        tg.start_soon(driver.run, Pipeline("always").add_task(always))
        await anyio.wait_all_tasks_blocked()
        ran_early = ran.is_set()
        gate.set()
    assert ran_early
    assert driver.results[0].states["always"] is TaskState.SUCCESS


# ---------------------------------------------------------------------- statuses


async def test_task_raising_an_exception_group_is_just_a_failure() -> None:
    @task
    async def grouped() -> None:
        raise ExceptionGroup("inner", [ValueError("one"), KeyError("two")])

    result = await Pipeline("group").add_task(grouped()).run()
    assert result.states["grouped"] is TaskState.FAILED
    assert isinstance(result.errors["grouped"], ExceptionGroup)


class Fatal(BaseException):
    """A non-Exception escape (like KeyboardInterrupt) raised by user code."""


async def test_base_exception_from_a_task_surfaces_as_itself() -> None:
    @task
    async def fatal() -> None:
        raise Fatal("stop")

    rec = Recorder()
    with pytest.raises(Fatal):
        await Pipeline("fatal").add_task(fatal()).add_task(task(name="ok")(_ok)()).run(on_event=rec)
    assert isinstance(rec.events[-1], RunFinished)
    assert rec.events[-1].status == "CANCELLED"


async def test_results_mapping_and_missing_results() -> None:
    ok = task(name="ok")(_ok)()
    bad = task(name="bad")(_boom)()
    result = await Pipeline("mapping").add_task(ok).add_task(bad).run()
    assert result["ok"] == "ok"
    assert result[ok] == "ok"
    assert "bad" not in result
    with pytest.raises(KeyError):
        result["bad"]
    assert result.status == "FAILED"
    assert result.run_id


# ------------------------------------------------------------------------ expand


@task
async def list_values(values: list[Any]) -> Any:
    return values


async def test_expand_keeps_input_order_for_result_and_downstream() -> None:
    done = [anyio.Event() for _ in range(3)]

    @task
    async def square(n: int) -> int:
        if n < 2:  # finish in reverse order: n waits for n + 1
            await done[n + 1].wait()
        done[n].set()
        return n * n

    @task
    async def total(values: list[int]) -> list[int]:
        return values

    mapped = square.expand(n=list_values([0, 1, 2]))
    out = total(mapped)
    with anyio.fail_after(GUARD):
        result = await Pipeline("expand").add_task(out).run()
    assert result["square"] == [0, 1, 4]
    assert result[mapped] == [0, 1, 4]
    assert result["total"] == [0, 1, 4]


async def test_expand_over_a_literal_list() -> None:
    @task
    async def upper(s: str) -> str:
        return s.upper()

    result = await Pipeline("literal").add_task(upper.expand(s=["x", "y", "z"])).run()
    assert result["upper"] == ["X", "Y", "Z"]


async def test_expand_over_a_generator_result() -> None:
    @task
    async def gen() -> Iterator[int]:
        return (i for i in range(3))

    @task
    def double(n: int) -> int:
        return 2 * n

    result = await Pipeline("gen").add_task(double.expand(n=gen())).run()
    assert result["double"] == [0, 2, 4]


async def test_expand_over_an_empty_list_gives_an_empty_list() -> None:
    calls: list[int] = []

    @task
    async def each(n: int) -> int:
        calls.append(n)
        return n

    @task
    async def total(values: list[int]) -> int:
        return len(values)

    result = await Pipeline("empty").add_task(total(each.expand(n=list_values([])))).run()
    assert calls == []
    assert result["each"] == []
    assert result["total"] == 0
    assert result.status == "SUCCESS"


async def test_expand_over_a_non_iterable_fails_naming_the_task() -> None:
    @task
    async def each(n: int) -> int:
        return n

    @task
    async def total(values: list[int]) -> int:
        return len(values)

    result = await Pipeline("noniter").add_task(total(each.expand(n=list_values(42)))).run()
    assert result.status == "FAILED"
    assert result.states["total"] is TaskState.UPSTREAM_FAILED
    errors = list(result.errors.values())
    assert len(errors) == 1
    assert isinstance(errors[0], DremioFrameError)
    assert isinstance(errors[0], TypeError)
    assert isinstance(errors[0], orchestration.ExpandError)
    assert "'each'" in str(errors[0])
    assert "int" in str(errors[0])  # says what it got


async def test_expand_instance_failure_fails_downstream_not_siblings() -> None:
    seen: list[int] = []

    @task
    async def each(n: int) -> int:
        if n == 1:
            raise ValueError("bad element")
        seen.append(n)
        return n

    cleanup = task(name="cleanup", trigger_rule="all_done")(_ok)()

    @task
    async def total(values: list[int]) -> int:
        return len(values)

    mapped = each.expand(n=list_values([0, 1, 2]))
    out = total(mapped)
    mapped >> cleanup
    result = await Pipeline("inst_fail").add_task(out).run()
    assert sorted(seen) == [0, 2]
    assert result.states["each"] is TaskState.FAILED
    assert isinstance(result.errors["each"], ValueError)  # the failed instance's error
    assert [result.states[f"each[{i}]"] for i in range(3)] == [
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.SUCCESS,
    ]
    assert result.states["total"] is TaskState.UPSTREAM_FAILED
    assert result.states["cleanup"] is TaskState.SUCCESS
    assert result.status == "FAILED"
    assert any(isinstance(e, ValueError) for e in result.errors.values())


async def test_expand_downstream_context_and_per_instance_retries() -> None:
    attempts: dict[int, int] = {}
    rec = Recorder()

    @task(retries=1, retry_delay=0)
    async def flaky(n: int) -> int:
        attempts[n] = attempts.get(n, 0) + 1
        if attempts[n] == 1 and n == 2:
            raise RuntimeError("first try")
        return n

    @task
    async def show(context: Any = None) -> Any:
        return context["flaky"]

    mapped = flaky.expand(n=list_values([1, 2, 3]))
    mapped >> show()
    result = await Pipeline("inst_retry").add_task(mapped).run(on_event=rec)
    assert result["show"] == [1, 2, 3]
    assert attempts == {1: 1, 2: 2, 3: 1}
    assert len(rec.retries()) == 1
    running_keys = {e.key for e in rec.changes() if e.state is TaskState.RUNNING}
    assert len(running_keys - {"list_values", "show", "flaky"}) == 3


async def test_expand_failed_source_marks_mapped_task_upstream_failed() -> None:
    @task
    async def each(n: int) -> int:
        return n

    result = await Pipeline("src_fail").add_task(each.expand(n=task(name="src")(_boom)())).run()
    assert result.states["each"] is TaskState.UPSTREAM_FAILED
    assert set(result.errors) == {"src"}


async def test_expand_over_an_expand_and_instances_get_context() -> None:
    @task
    async def double(n: int) -> int:
        return 2 * n

    @task
    async def label(n: int, context: Any = None) -> str:
        return f"{n}/{len(context['double'])}"

    mapped = label.expand(n=double.expand(n=list_values([1, 2, 3])))
    result = await Pipeline("nested_expand").add_task(mapped).run()
    assert result["double"] == [2, 4, 6]
    assert result["label"] == ["2/3", "4/3", "6/3"]


# ----------------------------------------------------------------------- retries


async def test_retries_count_attempts_after_the_first() -> None:
    calls: list[int] = []
    rec = Recorder()

    @task(retries=2, retry_delay=0)
    async def always_fails() -> None:
        calls.append(1)
        raise ConnectionError(f"attempt {len(calls)}")

    result = await Pipeline("r").add_task(always_fails()).run(on_event=rec)
    assert len(calls) == 3
    assert result.states["always_fails"] is TaskState.FAILED
    assert str(result.errors["always_fails"]) == "attempt 3"
    assert result.tasks["always_fails"].attempts == 3
    retrying = rec.retries("always_fails")
    assert [e.attempt for e in retrying] == [1, 2]
    assert [str(e.error) for e in retrying] == ["attempt 1", "attempt 2"]
    running = [e.attempt for e in rec.changes("always_fails") if e.state is TaskState.RUNNING]
    assert running == [1, 2, 3]


async def test_retry_until_success() -> None:
    calls: list[int] = []

    @task(retries=3, retry_delay=0)
    async def third_time() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("transient")
        return "done"

    result = await Pipeline("r2").add_task(third_time()).run()
    assert result["third_time"] == "done"
    assert len(calls) == 3
    assert result.status == "SUCCESS"


async def test_no_retries_by_default() -> None:
    calls: list[int] = []

    @task
    async def once() -> None:
        calls.append(1)
        raise OSError("no retry")

    await Pipeline("r0").add_task(once()).run()
    assert calls == [1]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"retry_delay": 0.001, "retry_backoff": 2.0}, [0.001, 0.002, 0.004]),
        (
            {"retry_delay": 0.001, "retry_backoff": 2.0, "max_retry_delay": 0.003},
            [0.001, 0.002, 0.003],
        ),
        ({"retry_delay": 0.002}, [0.002, 0.002, 0.002]),
    ],
    ids=["exponential", "capped", "constant"],
)
async def test_backoff_delays(kwargs: dict[str, Any], expected: list[float]) -> None:
    rec = Recorder()
    t = task(name="flaky", retries=3, **kwargs)(_boom)()
    await Pipeline("backoff").add_task(t).run(on_event=rec)
    assert [e.delay for e in rec.retries("flaky")] == pytest.approx(expected)


async def test_jitter_stays_within_bounds() -> None:
    rec = Recorder()
    t = task(name="flaky", retries=4, retry_delay=0.001, retry_jitter=0.002)(_boom)()
    await Pipeline("jitter").add_task(t).run(on_event=rec)
    delays = [e.delay for e in rec.retries("flaky")]
    assert len(delays) == 4
    assert all(0.001 <= d <= 0.003 + 1e-9 for d in delays)
    # The jitter is random: four equal delays (what no jitter gives) would take odds of ~0.
    assert len({round(d, 9) for d in delays}) > 1, delays


@pytest.mark.parametrize(
    ("retry_on", "raised", "expected_calls"),
    [
        ((TypeError,), TypeError, 3),
        ((KeyError,), ValueError, 1),
        ((KeyError,), KeyError, 3),
    ],
    ids=["typeerror_opted_in", "not_listed", "listed"],
)
async def test_retry_on(
    retry_on: tuple[type[BaseException], ...], raised: type, expected_calls: int
) -> None:
    calls: list[int] = []

    @task(retries=2, retry_delay=0, retry_on=retry_on)
    async def picky() -> None:
        calls.append(1)
        raise raised("x")

    result = await Pipeline("retry_on").add_task(picky()).run()
    assert len(calls) == expected_calls
    assert isinstance(result.errors["picky"], raised)


async def test_retry_wait_does_not_hold_the_pool_slot() -> None:
    failed_once, other_ran = anyio.Event(), anyio.Event()
    attempts: list[int] = []
    seen_by_other: list[int] = []

    @task(retries=1, retry_delay=GUARD / 2, pool="one")
    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            failed_once.set()
        raise OSError("down")

    @task
    async def gate() -> None:
        await failed_once.wait()

    @task(pool="one")
    async def other() -> None:
        seen_by_other.append(len(attempts))
        other_ran.set()

    g = gate()
    g >> other()
    pipeline = Pipeline("slot", pools={"one": 1}).add_task(g).add_task(flaky())
    driver = Driver()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver.run, pipeline)
            await other_ran.wait()
            tg.cancel_scope.cancel()  # flaky is still waiting for its second attempt
    assert seen_by_other == [1]
    assert driver.cancelled


# ---------------------------------------------------------------------- timeouts


async def test_timeout_fails_the_attempt() -> None:
    @task(timeout=0.05)
    async def hangs() -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(GUARD):
        result = await Pipeline("timeout").add_task(hangs()).run()
    assert result.states["hangs"] is TaskState.FAILED
    assert isinstance(result.errors["hangs"], TimeoutError)
    assert result.status == "FAILED"


async def test_timeout_is_per_attempt() -> None:
    calls: list[int] = []

    @task(timeout=0.05, retries=1, retry_delay=0)
    async def slow_then_fast() -> str:
        calls.append(1)
        if len(calls) == 1:
            await anyio.sleep_forever()
        return "fast"

    rec = Recorder()
    with anyio.fail_after(GUARD):
        result = await Pipeline("timeout2").add_task(slow_then_fast()).run(on_event=rec)
    assert result["slow_then_fast"] == "fast"
    assert isinstance(rec.retries()[0].error, TimeoutError)


async def test_sync_task_with_a_timeout_fails_without_waiting_for_the_thread() -> None:
    release = threading.Event()
    finished: list[bool] = []

    @task(timeout=0.05)
    def blocking() -> None:
        release.wait(GUARD)
        finished.append(True)

    try:
        with anyio.fail_after(GUARD):
            result = await Pipeline("sync_timeout").add_task(blocking()).run()
        assert finished == []
    finally:
        release.set()
    assert result.states["blocking"] is TaskState.FAILED
    assert isinstance(result.errors["blocking"], TimeoutError)


# ------------------------------------------------------------------ cancellation


async def test_cancelling_the_caller_scope_cancels_tasks_and_reraises() -> None:
    started = anyio.Event()
    cleanup: list[str] = []
    never: list[str] = []
    rec = Recorder()

    @task
    async def hang() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()
                cleanup.append("hang")

    @task
    async def after() -> None:
        never.append("after")

    h = hang()
    h >> after()
    driver = Driver()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(driver.run, Pipeline("cancel").add_task(h), on_event=rec)
            )
            await started.wait()
            tg.cancel_scope.cancel()
    assert driver.cancelled
    assert driver.results == []
    assert cleanup == ["hang"]
    assert never == []
    assert rec.states("hang")[-1] is TaskState.CANCELLED
    assert rec.states("after") == [TaskState.CANCELLED]  # downstream: settled, never run
    assert isinstance(rec.events[-1], RunFinished)
    assert rec.events[-1].status == "CANCELLED"


@pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(
            "trio",
            id="trio",
        ),
    ],
)
async def test_cancellation_is_not_swallowed_by_a_task_that_swallows_it() -> None:
    started = anyio.Event()

    @task
    async def stubborn() -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            return "swallowed"
        return "unreachable"

    driver = Driver()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver.run, Pipeline("stubborn").add_task(stubborn()))
            await started.wait()
            tg.cancel_scope.cancel()
    assert driver.results == []
    assert driver.cancelled


async def test_cancel_while_waiting_between_retries() -> None:
    retrying = anyio.Event()
    calls: list[int] = []
    rec = Recorder()

    def listener(event: Event) -> None:
        rec(event)
        if isinstance(event, TaskRetrying):
            retrying.set()

    @task(retries=1, retry_delay=3 * GUARD)
    async def flaky() -> None:
        calls.append(1)
        raise OSError("down")

    driver = Driver()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            pipeline = Pipeline("cancel_retry").add_task(flaky())
            tg.start_soon(functools.partial(driver.run, pipeline, on_event=listener))
            await retrying.wait()
            tg.cancel_scope.cancel()
    assert driver.cancelled
    assert calls == [1]
    assert rec.states("flaky")[-1] is TaskState.CANCELLED


async def test_cancel_while_tasks_wait_for_a_pool_slot() -> None:
    started = anyio.Event()
    ran: list[str] = []

    @task(pool="db")
    async def holder() -> None:
        started.set()
        await anyio.sleep_forever()

    @task(pool="db")
    async def waiter(n: int) -> None:
        ran.append(f"waiter{n}")

    pipeline = Pipeline("cancel_pool", pools={"db": 1})
    pipeline.add_task(holder()).add_task(waiter(1)).add_task(waiter(2))
    driver = Driver()
    rec = Recorder()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(driver.run, pipeline, on_event=rec))
            await started.wait()
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert driver.cancelled
    assert ran == []
    assert rec.states("holder")[-1] is TaskState.CANCELLED


async def test_cancelled_run_waits_for_a_running_sync_task_then_reraises() -> None:
    started = threading.Event()
    finished: list[bool] = []
    ran_after: list[str] = []

    @task
    def blocking() -> None:
        started.set()
        threading.Event().wait(0.1)  # blocking work that cannot be interrupted
        finished.append(True)

    @task
    async def after() -> None:
        ran_after.append("after")

    b = blocking()
    b >> after()
    driver = Driver()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver.run, Pipeline("sync_cancel").add_task(b))
            await anyio.to_thread.run_sync(started.wait, GUARD)
            tg.cancel_scope.cancel()
    assert driver.cancelled
    assert driver.results == []
    assert finished == [True]
    assert ran_after == []


# ----------------------------------------------------------- limits and overlap


def _gated_tasks(
    n: int, gate: anyio.Event, counter: dict[str, int], pool: str | None = None
) -> list[Task]:
    async def body(i: int) -> int:
        counter["now"] += 1
        counter["peak"] = max(counter["peak"], counter["now"])
        await gate.wait()
        counter["now"] -= 1
        return i

    decorated = task(name="gated", pool=pool)(body)
    return [decorated(i) for i in range(n)]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({}, 6), ({"max_concurrency": 1}, 1), ({"max_concurrency": 3}, 3), ({"max_workers": 2}, 2)],
    ids=["unbounded_overlap", "max_concurrency_1", "max_concurrency", "max_workers_alias"],
)
async def test_concurrency_bound_holds_exactly(kwargs: dict[str, Any], expected: int) -> None:
    gate = anyio.Event()
    counter = {"now": 0, "peak": 0}
    pipeline = Pipeline("limits", **kwargs)
    for t in _gated_tasks(6, gate, counter):
        pipeline.add_task(t)
    driver = Driver()
    async with anyio.create_task_group() as tg:
        tg.start_soon(driver.run, pipeline)
        await anyio.wait_all_tasks_blocked()
        running = counter["now"]
        gate.set()
    assert running == expected
    assert counter["peak"] == expected
    assert sorted(driver.results[0].values()) == list(range(6))


async def test_pool_bound_holds_exactly_and_others_are_not_limited() -> None:
    gate = anyio.Event()
    in_pool = {"now": 0, "peak": 0}
    free = {"now": 0, "peak": 0}
    pipeline = Pipeline("pools", pools={"dremio": 2})
    for t in [*_gated_tasks(5, gate, in_pool, "dremio"), *_gated_tasks(3, gate, free)]:
        pipeline.add_task(t)
    driver = Driver()
    async with anyio.create_task_group() as tg:
        tg.start_soon(driver.run, pipeline)
        await anyio.wait_all_tasks_blocked()
        running = (in_pool["now"], free["now"])
        gate.set()
    assert running == (2, 3)
    assert in_pool["peak"] == 2
    assert driver.results[0].status == "SUCCESS"


# --------------------------------------------------------- concurrent and nested


async def test_same_pipeline_runs_concurrently_with_independent_results() -> None:
    both = anyio.Event()
    arrived: list[int] = []

    @task
    async def source(context: Any = None) -> list[int]:
        arrived.append(context["n"])
        if len(arrived) == 2:
            both.set()
        await both.wait()
        if context["n"] == 0:
            raise ValueError("empty")
        return list(range(context["n"]))

    @task
    async def double(x: int) -> int:
        return 2 * x

    pipeline = Pipeline("shared", max_concurrency=1).add_task(double.expand(x=source()))
    driver = Driver()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            for n in (2, 3, 0):
                tg.start_soon(functools.partial(driver.run, pipeline, context={"n": n}))
    by_n = {len(r.get("double") or []) if r.ok else 0: r for r in driver.results}
    assert by_n[2]["double"] == [0, 2]
    assert by_n[3]["double"] == [0, 2, 4]
    assert by_n[0].states["source"] is TaskState.FAILED
    assert len({r.run_id for r in driver.results}) == 3


async def test_run_from_within_a_task_of_another_pipeline() -> None:
    @task
    async def inner_leaf() -> int:
        return 41

    @task
    async def inner_plus(x: int) -> int:
        return x + 1

    inner = Pipeline("inner").add_task(inner_plus(inner_leaf()))

    @task
    async def outer() -> int:
        result = await inner.run()
        return result.raise_for_status()["inner_plus"]

    rec = Recorder()
    result = await Pipeline("outer", max_concurrency=1).add_task(outer()).run(on_event=rec)
    assert result["outer"] == 42
    assert {e.run_id for e in rec.events} == {result.run_id}


async def test_nested_failure_surfaces_as_pipeline_failed_in_outer_task() -> None:
    inner = Pipeline("inner_bad").add_task(task(name="bad")(_boom)())

    @task
    async def outer() -> None:
        (await inner.run()).raise_for_status()

    result = await Pipeline("outer_bad").add_task(outer()).run()
    assert isinstance(result.errors["outer"], PipelineFailed)


async def test_cancelling_outer_run_cancels_nested_run() -> None:
    started = anyio.Event()
    cleanup: list[str] = []

    @task
    async def inner_hang() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleanup.append("inner")

    inner = Pipeline("inner_hang").add_task(inner_hang())

    @task
    async def outer() -> None:
        await inner.run()

    driver = Driver()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(driver.run, Pipeline("outer_hang").add_task(outer()))
            await started.wait()
            tg.cancel_scope.cancel()
    assert driver.cancelled
    assert cleanup == ["inner"]


async def test_run_from_within_a_sync_task() -> None:
    inner = Pipeline("inner_sync").add_task(task(name="leaf")(_ok)())

    @task
    def outer() -> str:
        return anyio.from_thread.run(inner.run)["leaf"]  # type: ignore[no-any-return]

    result = await Pipeline("outer_sync").add_task(outer()).run()
    assert result["outer"] == "ok"


async def test_graph_edits_between_runs_are_picked_up() -> None:
    a = task(name="a")(_ok)()
    pipeline = Pipeline("edits").add_task(a)
    first = await pipeline.run()
    a >> task(name="b")(_ok)()
    task(name="c")(_ok)() >> a
    second = await pipeline.run()
    assert set(first.states) == {"a"}
    assert set(second.states) == {"a", "b", "c"}


# ------------------------------------------------------------------------ events


async def test_events_arrive_in_order_and_match_the_result() -> None:
    rec = Recorder()
    a = task(name="a")(_ok)()
    b = task(name="b")(_boom)()
    c = task(name="c")(_ok)()
    a >> b >> c
    result = await Pipeline("events").add_task(a).run(on_event=rec)
    assert isinstance(rec.events[0], RunStarted)
    assert isinstance(rec.events[-1], RunFinished)
    assert rec.events[-1].status == "FAILED"
    assert {e.run_id for e in rec.events} == {result.run_id}
    assert rec.states("a") == [TaskState.RUNNING, TaskState.SUCCESS]
    assert rec.states("b") == [TaskState.RUNNING, TaskState.FAILED]
    assert rec.states("c") == [TaskState.UPSTREAM_FAILED]
    assert rec.final_states() == dict(result.states)
    keys = [(e.key, e.state) for e in rec.changes()]
    assert keys.index(("a", TaskState.SUCCESS)) < keys.index(("b", TaskState.RUNNING))
    failed = next(e for e in rec.changes("b") if e.state is TaskState.FAILED)
    assert isinstance(failed.error, RuntimeError)
    with pytest.raises(dataclasses.FrozenInstanceError):
        failed.key = "other"  # type: ignore[misc]


async def test_async_listener_and_list_of_listeners() -> None:
    got: list[str] = []
    rec = Recorder()

    async def async_listener(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        got.append(type(event).__name__)

    result = (
        await Pipeline("async_l")
        .add_task(task(name="a")(_ok)())
        .run(on_event=[async_listener, rec])
    )
    assert got == [type(e).__name__ for e in rec.events]
    assert got[0] == "RunStarted"
    assert got[-1] == "RunFinished"
    assert result.status == "SUCCESS"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_raising_listener_does_not_break_the_run(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rec = Recorder()

    def bad_sync(event: Event) -> None:
        raise RuntimeError("listener bug")

    async def bad_async(event: Event) -> None:
        raise RuntimeError("listener bug")

    bad = bad_async if is_async else bad_sync
    a = task(name="a")(_ok)()
    a >> task(name="b")(_ok)()
    result = await Pipeline("bad_l").add_task(a).run(on_event=[bad, rec])
    assert result.status == "SUCCESS"
    assert isinstance(rec.events[-1], RunFinished)
    assert len(rec.changes()) == 4
    assert any(r.exc_info and "listener bug" in str(r.exc_info[1]) for r in caplog.records)


# ----------------------------------------------------------- bad input, validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retries": -1},
        {"retries": 1.5},
        {"retries": "3"},
        {"timeout": 0},
        {"timeout": -1.0},
        {"retry_delay": -1.0},
        {"trigger_rule": "sometimes"},
    ],
    ids=[
        "negative_retries",
        "float_retries",
        "str_retries",
        "zero_timeout",
        "neg_timeout",
        "neg_delay",
        "unknown_rule",
    ],
)
async def test_bad_decorator_arguments_name_the_task(kwargs: dict[str, Any]) -> None:
    async def my_extract() -> None:
        return None

    with pytest.raises(DremioFrameError) as info:
        task(**kwargs)(my_extract)
    assert "my_extract" in str(info.value)


async def test_unknown_trigger_rule_lists_the_valid_ones() -> None:
    with pytest.raises(DremioFrameError) as info:

        @task(name="alerting", trigger_rule="sometimes")
        async def alert() -> None:
            return None

    message = str(info.value)
    assert "alerting" in message
    assert "sometimes" in message
    assert all(rule.value in message for rule in TriggerRule)


@pytest.mark.parametrize("bad", [42, "not callable", None], ids=["int", "str", "none"])
async def test_non_callable_is_rejected(bad: Any) -> None:
    with pytest.raises(DremioFrameError) as info:
        task(name="weird")(bad)
    assert isinstance(info.value, TypeError)
    assert "weird" in str(info.value)


async def test_expand_with_an_unknown_parameter_names_the_task() -> None:
    @task
    async def per_table(table: str) -> str:
        return table

    ran: list[str] = []

    async def src_fn() -> list[str]:
        ran.append("src")
        return ["a"]

    async def build_and_run() -> None:  # rejected at expand() or at run(), never later
        mapped = per_table.expand(tabel=task(name="src")(src_fn)())
        await Pipeline("bad_expand").add_task(mapped).run()

    with pytest.raises(DremioFrameError) as info:
        await build_and_run()
    assert "per_table" in str(info.value)
    assert "tabel" in str(info.value)
    assert ran == []


async def test_bad_call_arguments_are_reported_before_any_task_runs() -> None:
    ran: list[str] = []

    @task
    async def needs_two(a: int, b: int) -> int:
        return a + b

    async def other_fn() -> None:
        ran.append("other")

    async def build_and_run() -> None:  # rejected at the call or at run(), never later
        bad = needs_two(1)
        await Pipeline("bad_args").add_task(task(name="other")(other_fn)()).add_task(bad).run()

    with pytest.raises(TypeError) as info:
        await build_and_run()
    assert not isinstance(info.value, BaseExceptionGroup)
    assert "needs_two" in str(info.value)
    assert ran == []


def _cycle(names: str) -> list[Task]:
    tasks = [task(name=n)(_ok)() for n in names]
    for up, down in zip(tasks, [*tasks[1:], tasks[0]], strict=True):
        up >> down
    return tasks


def _names_cycle(message: str, names: str) -> bool:
    """True when the message holds ``names`` as a closed path, from any start."""
    rotations = [names[i:] + names[:i] for i in range(len(names))]
    return any(" -> ".join([*r, r[0]]) in message for r in rotations)


async def test_cycle_is_reported_before_any_task_starts_and_names_the_path() -> None:
    ran: list[str] = []

    async def innocent_fn() -> None:
        ran.append("innocent")

    a, _b, c = _cycle("abc")
    innocent = task(name="innocent")(innocent_fn)()
    innocent >> a
    pipeline = Pipeline("cyclic").add_task(c)
    with pytest.raises(CycleError) as info:
        await pipeline.run()
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DremioFrameError)
    assert _names_cycle(str(info.value), "abc")
    assert ran == []


async def test_every_graph_problem_is_reported_at_once() -> None:
    ab = _cycle("ab")
    xy = _cycle("xy")
    pooled = task(name="pooled", pool="nowhere")(_ok)()
    pipeline = Pipeline("many").add_task(ab[0]).add_task(xy[0]).add_task(pooled)
    with pytest.raises(PipelineDefinitionError) as info:
        await pipeline.run()
    message = str(info.value)
    assert _names_cycle(message, "ab")
    assert _names_cycle(message, "xy")
    assert "nowhere" in message
    assert "pooled" in message


async def test_unknown_pool_is_reported_before_any_task_starts() -> None:
    ran: list[str] = []

    async def first_fn() -> None:
        ran.append("first")

    first = task(name="first")(first_fn)()
    first >> task(name="pooled", pool="nowhere")(_ok)()
    with pytest.raises(PipelineDefinitionError) as info:
        await Pipeline("pool").add_task(first).run()
    assert "nowhere" in str(info.value)
    assert ran == []


async def test_self_loop_is_rejected_naming_the_task() -> None:
    a = task(name="a")(_ok)()

    async def link_and_run() -> None:  # rejected at the edge or at run()
        a >> a
        await Pipeline("self").add_task(a).run()

    with pytest.raises(DremioFrameError, match="'a'"):
        await link_and_run()


# --------------------------------------------------------------------- visualize


async def test_visualize_returns_mermaid_and_writes_the_file(tmp_path: Path) -> None:
    @task
    async def extract() -> str:
        return "x"

    @task
    async def transform(x: str) -> str:
        return x

    pipeline = Pipeline("viz").add_task(transform(extract()))
    text = pipeline.visualize()
    assert text.splitlines()[0].strip() == "graph TD"
    assert "extract --> transform" in text
    target = tmp_path / "graph.mmd"
    assert pipeline.visualize(target) == text
    assert target.read_text() == text
    assert pipeline.visualize() == text


MERMAID_KEYWORDS = ("classDef", "class ", "style ", "linkStyle", "%%", "subgraph", "end")


def _mermaid_problems(text: str) -> list[str]:
    """Lines whose node ids are not valid Mermaid identifiers (labels may quote anything)."""
    problems = []
    for line in text.splitlines()[1:]:
        body = line.strip()
        if not body or body.startswith(MERMAID_KEYWORDS):
            continue
        body = re.sub(r'"[^"]*"', '""', body)
        body = re.sub(r"\[[^\]]*\]|\([^)]*\)|\{[^}]*\}", "", body)
        for node in body.split("-->"):
            if not re.fullmatch(r"[A-Za-z0-9_]+", node.strip()):
                problems.append(line)
    return problems


async def test_visualize_with_duplicates_odd_names_and_expand_is_valid_mermaid() -> None:
    @task
    async def extract(table: str) -> str:
        return table

    @task(name="load users")
    async def load(paths: list[str]) -> int:
        return len(paths)

    @task(name="per-table")
    async def per_table(t: str) -> str:
        return t

    out = load([extract("users"), extract("orders")])
    out >> per_table.expand(t=list_values(["a"]))
    text = Pipeline("odd").add_task(out).visualize()
    assert _mermaid_problems(text) == []
    assert "load users" in text
    assert text.count("-->") == 4


# ------------------------------------------------------------------- public names


def test_public_names_are_the_same_objects() -> None:
    assert orchestration.task is task
    assert orchestration.Pipeline is Pipeline
    assert orchestration.Task is Task
    assert issubclass(CycleError, ValueError)
    assert issubclass(CycleError, DremioFrameError)
    assert issubclass(PipelineFailed, DremioFrameError)


# ------------------------------------------------- regressions found by this suite
# Each of these failed against an earlier engine; they pin the fixes.


def _two_path_graph(kind: str) -> Task:
    """``first`` reaches ``last`` directly and through ``middle``; ``first`` ends ``kind``."""
    root = task(name="root")(_ok)()
    first = (
        task(name="first")(_boom)()
        if kind == "failed"
        else task(name="first", trigger_rule="one_failed")(_ok)()
    )
    root >> first
    last, middle = task(name="last")(_ok)(), task(name="middle")(_ok)()
    first >> last  # this edge before the one to middle: last is decided first
    first >> middle
    middle >> last
    return root


@pytest.mark.parametrize("kind", ["failed", "skipped"], ids=["failure", "skip"])
async def test_task_reached_by_two_paths_is_settled_once(kind: str) -> None:
    rec = Recorder()
    result = await Pipeline("two_paths").add_task(_two_path_graph(kind)).run(on_event=rec)
    expected = TaskState.UPSTREAM_FAILED if kind == "failed" else TaskState.SKIPPED
    assert result.states["middle"] is expected
    assert result.states["last"] is expected
    assert rec.states("last") == [expected]


@pytest.mark.parametrize("rule", ["always", "one_success", "one_failed", "one_done"])
async def test_early_rule_with_a_data_edge_is_rejected_before_running(rule: str) -> None:
    ran: list[str] = []

    @task
    async def source() -> str:
        ran.append("source")
        return "data"

    @task(trigger_rule=rule)
    async def report(value: str) -> str:
        return value

    # The rule may start `report` before `source` has a result to pass in: the
    # engine refuses the graph up front rather than fail the task at run time.
    with pytest.raises(PipelineDefinitionError, match="'report' takes the result of 'source'"):
        await Pipeline("early_data").add_task(report(source())).run()
    assert ran == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"], ids=["asyncio"])
async def test_stray_cancelled_error_inside_a_task_is_that_task_failing() -> None:
    import asyncio

    @task
    async def awaits_cancelled_future() -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    @task
    async def sibling() -> str:
        await anyio.lowlevel.checkpoint()
        return "fine"

    pipeline = Pipeline("stray").add_task(awaits_cancelled_future()).add_task(sibling())
    result = await pipeline.run()
    assert result.states["sibling"] is TaskState.SUCCESS
    assert result.states["awaits_cancelled_future"] in FAILING_STATES | {TaskState.CANCELLED}
    assert result.status == "FAILED"


async def test_no_task_body_starts_after_the_caller_scope_is_cancelled() -> None:
    started: list[str] = []
    scopes: list[anyio.CancelScope] = []

    @task
    async def root() -> int:
        return 1

    @task
    async def canceller(x: int) -> None:
        started.append("canceller")
        scopes[0].cancel()  # e.g. an abort decided by user code or a signal handler
        await anyio.sleep_forever()

    @task
    async def sibling(x: int) -> None:
        started.append("sibling")
        await anyio.sleep_forever()

    r = root()
    pipeline = Pipeline("late_start").add_task(canceller(r)).add_task(sibling(r))
    with anyio.fail_after(GUARD), anyio.CancelScope() as scope:
        scopes.append(scope)
        await pipeline.run()
    assert started == ["canceller"]


async def test_task_waiting_for_a_pool_slot_is_not_reported_running() -> None:
    gate = anyio.Event()
    rec = Recorder()

    @task(pool="one")
    async def holder() -> None:
        await gate.wait()

    @task(pool="one")
    async def queued() -> None:
        return None

    pipeline = Pipeline("queued", pools={"one": 1}).add_task(holder()).add_task(queued())
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(pipeline.run, on_event=rec))
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(GUARD):  # let the dispatcher deliver what was emitted
            while not rec.changes("holder"):
                await anyio.wait_all_tasks_blocked()
                await anyio.lowlevel.checkpoint()
        reported = [e.key for e in rec.changes() if e.state is TaskState.RUNNING]
        gate.set()
    assert reported == ["holder"]


async def test_timed_out_sync_task_keeps_the_pool_bound() -> None:
    release = threading.Event()
    a_running = threading.Event()
    overlap: list[bool] = []
    slow_failed = anyio.Event()

    @task(pool="one", timeout=0.05)
    def slow() -> None:
        a_running.set()
        release.wait(GUARD)
        a_running.clear()

    @task(pool="one")
    def after_slow() -> None:
        overlap.append(a_running.is_set())

    def on_event(event: Event) -> None:
        if (
            isinstance(event, TaskStateChanged)
            and event.key == "slow"
            and event.state
            in (
                TaskState.FAILED,
                TaskState.CANCELLED,
            )
        ):
            slow_failed.set()

    async def release_once_the_next_task_waits() -> None:
        await slow_failed.wait()  # the attempt timed out; its thread still runs
        await anyio.wait_all_tasks_blocked()  # after_slow now waits for the pool slot
        release.set()

    s = slow()
    s >> task(name="after_slow", trigger_rule="all_done", pool="one")(after_slow.fn)()
    try:
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(release_once_the_next_task_waits)
                await Pipeline("sync_pool", pools={"one": 1}).add_task(s).run(on_event=on_event)
    finally:
        release.set()
    assert overlap == [False]


async def test_plain_arguments_beside_a_data_edge_keep_their_type() -> None:
    from collections import defaultdict

    @task
    async def use(value: str, counts: defaultdict[str, int]) -> int:
        return counts["missing"]

    result = await Pipeline("types").add_task(use(task(name="v")(_ok)(), defaultdict(int))).run()
    assert result["use"] == 0


async def test_redecorating_a_task_function_applies_the_new_options() -> None:
    @task
    async def extract(table: str) -> str:
        return table

    renamed = task(name="extract_with_retries", retries=2)(extract)("x")
    assert renamed.name == "extract_with_retries"
    assert renamed.options.retries == 2


@pytest.mark.parametrize(
    "build",
    [
        lambda: Pipeline("p", max_concurrency=0),
        lambda: Pipeline("p", pools={"db": 0}),
        lambda: Pipeline(""),
        lambda: Pipeline("p").add_task(42),  # type: ignore[arg-type]
    ],
    ids=["zero_concurrency", "zero_pool", "empty_name", "not_a_task"],
)
async def test_pipeline_argument_errors_derive_from_the_root(build: Callable[[], Any]) -> None:
    with pytest.raises(DremioFrameError):
        build()


async def test_unknown_decorator_option_names_the_function() -> None:
    with pytest.raises(DremioFrameError) as info:

        @task(retry=3)  # type: ignore[call-overload,untyped-decorator]  # the typo under test
        async def fetch_orders() -> None:
            return None

    assert "fetch_orders" in str(info.value)


async def test_expand_checks_the_other_parameters_before_anything_runs() -> None:
    ran: list[str] = []

    @task
    async def per_table(table: str, schema: str) -> str:
        return f"{schema}.{table}"

    async def src_fn() -> list[str]:
        ran.append("src")
        return ["a"]

    async def build_and_run() -> None:
        mapped = per_table.expand(table=task(name="src")(src_fn)())
        await Pipeline("expand_bind").add_task(mapped).run()

    with pytest.raises(DremioFrameError) as info:
        await build_and_run()
    assert "schema" in str(info.value)
    assert ran == []


async def test_visualize_node_ids_never_collide() -> None:
    spaced = task(name="load users")(_ok)()
    spaced >> task(name="n0")(_ok)()
    text = Pipeline("ids").add_task(spaced).visualize()
    edge = next(line for line in text.splitlines() if "-->" in line)
    source, target = (side.strip() for side in edge.split("-->"))
    assert source != target


def _run_in_trio_guest_mode(pipeline: Pipeline) -> RunResult:
    """Run the pipeline on trio in guest mode, hosted by an asyncio loop."""
    import asyncio

    import trio

    async def host() -> RunResult:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            pipeline.run,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        return (await done).unwrap()  # type: ignore[no-any-return]

    return asyncio.run(host())


def test_runs_on_trio_in_guest_mode() -> None:
    @task
    async def step(x: int) -> int:
        return x + 1

    last = step(0)
    for _ in range(2000):  # enough back-to-back tasks that the runners yield between them
        last = step(last)
    result = _run_in_trio_guest_mode(Pipeline("guest").add_task(last))
    assert result[last] == 2001


def _autojump_trio() -> Any:
    import trio.testing

    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.mark.parametrize("anyio_backend", [_autojump_trio()], ids=["trio_autojump"])
async def test_caller_cancellation_ends_run_even_when_a_listener_hangs() -> None:
    delivered, release, exited = anyio.Event(), anyio.Event(), anyio.Event()
    scopes: list[anyio.CancelScope] = []

    async def stuck_listener(event: Event) -> None:
        delivered.set()
        await release.wait()

    async def caller() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await Pipeline("stuck").add_task(task(name="a")(_ok)()).run(on_event=stuck_listener)
        exited.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        await delivered.wait()
        scopes[0].cancel()
        # Virtual time: an hour passes at once when everything is blocked.
        with anyio.move_on_after(3600):
            await exited.wait()
        exited_in_time = exited.is_set()
        release.set()
    assert exited_in_time
