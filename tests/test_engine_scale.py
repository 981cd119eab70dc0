"""Lean per-run state for large graphs: which results a run keeps, and the views over its nodes."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import ArgumentError, Task, TaskState
from dremioframe_async.orchestration._runner import SLICE
from dremioframe_async.store import MemoryStore

pytestmark = pytest.mark.anyio


def _fan_out(keep: str = "all", width: int = 5) -> Pipeline:
    @task(name="root")
    async def root() -> int:
        return 10

    @task(name="mid")
    async def mid(x: int, j: int) -> int:
        return x + j

    @task(name="sink")
    async def sink() -> str:
        return "done"

    top, bottom = root(), sink()
    for j in range(width):
        node = mid(top, j)  # takes root's result as an argument
        node >> bottom
    return Pipeline("scale", keep_results=keep).add_task(top)  # type: ignore[arg-type]


async def test_keep_all_is_the_default() -> None:
    result = await _fan_out().run()
    assert dict(result) == {
        "root": 10,
        "mid": 10,
        "mid_2": 11,
        "mid_3": 12,
        "mid_4": 13,
        "mid_5": 14,
        "sink": "done",
    }


async def test_keep_leaves_keeps_the_leaves_and_the_inputs_other_tasks_take() -> None:
    result = await _fan_out("leaves").run()
    assert result.status == "SUCCESS"
    # root's result is an argument of the mid tasks: kept; mid's results are dropped.
    assert dict(result) == {"root": 10, "sink": "done"}
    assert all(t.state is TaskState.SUCCESS for t in result.tasks.values())
    with pytest.raises(KeyError, match="did not keep its result"):
        result["mid_2"]


async def test_keep_none_still_records_every_result_in_the_store() -> None:
    store = MemoryStore()
    result = await _fan_out("none").run(store=store)
    assert dict(result) == {"root": 10}  # only the input the mid tasks took
    assert len(result.tasks) == 7
    stored = {t.key: t.result for t in await store.get_tasks(result.run_id) if t.result_stored}
    assert stored == {
        "root": 10,
        "mid": 10,
        "mid_2": 11,
        "mid_3": 12,
        "mid_4": 13,
        "mid_5": 14,
        "sink": "done",
    }


async def test_a_context_task_keeps_every_result() -> None:
    @task(name="a")
    async def a() -> int:
        return 1

    @task(name="b")
    async def b(context: Any) -> int:
        return int(context["a"]) + 1

    @task(name="c")
    async def c() -> int:
        return 3

    first = a()
    first >> b() >> c()
    result = await Pipeline("ctx", keep_results="none").add_task(first).run()
    assert dict(result) == {"a": 1, "b": 2, "c": 3}


async def test_keep_results_reaches_fan_out_instances() -> None:
    @task(name="items")
    async def items() -> list[int]:
        return [1, 2, 3]

    @task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    @task(name="total")
    async def total(xs: list[int]) -> int:
        return sum(xs)

    for keep, expected in (
        ("all", {"items": [1, 2, 3], "double": [2, 4, 6], "total": 12}),
        ("leaves", {"items": [1, 2, 3], "double": [2, 4, 6], "total": 12}),
        ("none", {"items": [1, 2, 3], "double": [2, 4, 6]}),
    ):
        doubled = double.expand(x=items())
        pipeline = Pipeline(f"map_{keep}", keep_results=keep).add_task(total(doubled))  # type: ignore[arg-type]
        result = await pipeline.run()
        assert result.status == "SUCCESS"
        kept = {k: v for k, v in result.items() if "[" not in k}
        assert kept == expected, keep
        instances = {k: v for k, v in result.items() if "[" in k}
        # Instances' results are kept with their fan-out's (here an input of ``total``).
        assert instances == {"double[0]": 2, "double[1]": 4, "double[2]": 6}, keep
        # Every node is in the task views, instances included, by key.
        assert list(result.tasks) == [
            "items",
            "double",
            "total",
            "double[0]",
            "double[1]",
            "double[2]",
        ]
        assert len(result.tasks) == 6
        assert result.tasks["double[1]"].state is TaskState.SUCCESS
        with pytest.raises(KeyError):
            result.tasks["double[3]"]


async def test_an_unknown_keep_results_is_refused() -> None:
    with pytest.raises(ArgumentError, match="keep_results must be one of all, leaves, none"):
        Pipeline("p", keep_results="some")  # type: ignore[arg-type]


async def test_a_failed_run_is_failed_without_scanning_its_nodes() -> None:
    @task(name="ok")
    async def ok() -> int:
        return 1

    @task(name="bad")
    async def bad() -> int:
        raise ValueError("boom")

    first = ok()
    first >> bad()
    result = await Pipeline("fails", keep_results="none").add_task(first).run()
    assert result.status == "FAILED"
    assert set(result.errors) == {"bad"}


def test_tasks_hold_no_instance_dict() -> None:
    async def noop() -> None:
        return None

    one = Task("one", noop)
    assert not hasattr(one, "__dict__")
    fan = [Task(f"t{i}", noop) for i in range(3)]
    for t in fan:
        one >> t
    assert one.downstream == tuple(fan)
    assert fan[0].upstream == (one,)
    # Past a few edges a task keeps them in a dict, with the order they were added.
    many = [Task(f"m{i}", noop) for i in range(20)]
    for t in many:
        one >> t
        one >> t  # a repeat adds nothing
    assert one.downstream == (*fan, *many)
    assert all(t.upstream == (one,) for t in many)


WIDE = 3 * SLICE + 5  # more downstream tasks than one slice tells at once


async def test_a_wide_fan_out_starts_its_tasks_in_edge_order() -> None:
    started: list[int] = []

    async def root() -> None:
        return None

    async def mid(j: int) -> None:
        started.append(j)

    async def sink() -> str:
        return "done"

    top, bottom = Task("root", root), Task("sink", sink)
    for j in range(WIDE):
        t = Task(f"m{j}", mid, args=(j,))
        top >> t
        t >> bottom
    result = await Pipeline("wide", keep_results="leaves").add_task(top).run()
    assert result.status == "SUCCESS"
    assert started == list(range(WIDE))
    assert dict(result) == {"sink": "done"}
    assert len(result.tasks) == WIDE + 2


# asyncio: its loop runs ready tasks in order (trio shuffles each batch of them, so a
# ticker cannot tell one trip from the next there).
@pytest.mark.parametrize("anyio_backend", ["asyncio"], ids=["asyncio"])
async def test_a_wide_run_makes_each_slice_of_nodes_in_a_step_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The caller's step (its previous run ending, this run's set-up) ran on into the
    # first slice of nodes: one stall of the application's loop of 5-9 ms.
    from dremioframe_async.orchestration._run_core import RunCore

    ticks = [0]  # trips around the loop another task made
    seen: list[int] = []  # the trip each slice was made in
    making = RunCore._node_slice

    def slice_seen(self: RunCore, planned: Any) -> int:
        seen.append(ticks[0])
        return making(self, planned)

    monkeypatch.setattr(RunCore, "_node_slice", slice_seen)

    async def tick() -> None:
        while True:
            ticks[0] += 1
            await anyio.lowlevel.checkpoint()

    async def noop() -> None:
        return None

    top = Task("root", noop)
    for j in range(WIDE):
        top >> Task(f"m{j}", noop)
    pipeline = Pipeline("sliced").add_task(top)
    pipeline.plan()
    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        await anyio.lowlevel.checkpoint()  # the ticker has started
        called_at = ticks[0]
        result = await pipeline.run()
        tg.cancel_scope.cancel()
    assert result.status == "SUCCESS"
    assert len(seen) == 4  # WIDE is three slices and a bit
    assert seen[0] > called_at  # the first slice waited for a trip of its own
    assert all(a < b for a, b in itertools.pairwise(seen))


async def test_cancelling_a_wide_fan_out_still_runs_its_cleanup() -> None:
    first_started = anyio.Event()
    ran: list[str] = []

    async def root() -> None:
        return None

    async def mid() -> None:
        first_started.set()
        await anyio.sleep_forever()

    async def cleanup() -> None:
        ran.append("cleanup")

    top = Task("root", root)
    bottom = Task("cleanup", cleanup, trigger_rule="all_done")
    for j in range(WIDE):
        t = Task(f"m{j}", mid)
        top >> t
        t >> bottom
    pipeline = Pipeline("wide_cancel", max_concurrency=4).add_task(top)
    outcome: list[Any] = []
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                outcome.append(await pipeline.run())

            tg.start_soon(go)
            await first_started.wait()
            scope.cancel()
    assert ran == ["cleanup"]  # every mid ended (cancelled), so the all_done task ran
    assert outcome == []  # the caller's cancellation is re-raised, not a result


async def test_a_run_of_tasks_with_arguments_needs_no_index_of_every_task() -> None:
    # A plan of a million tasks would hold a dict of them all: a run looks up
    # only the tasks whose results others take; the full index waits for key_of.
    pipeline = _fan_out(width=50)
    result = await pipeline.run()
    assert result.status == "SUCCESS"
    plan = pipeline.plan()
    assert plan._index is None
    assert set(plan.inputs) == {plan.tasks[0]}  # root, each mid's argument
    assert plan.key_of(plan.tasks[-1]) == plan.keys[-1]
    assert plan._index is not None
    assert len(plan.index) == 52


async def test_results_are_read_from_the_nodes_in_the_order_of_the_tasks() -> None:
    slow_may_end = anyio.Event()

    @task(name="slow")
    async def slow() -> str:
        await slow_may_end.wait()
        return "slow"

    @task(name="fast")
    async def fast() -> str:
        slow_may_end.set()  # ``fast`` settles first
        return "fast"

    @task(name="mapped")
    async def mapped(x: int) -> int:
        return x

    @task(name="gone")
    async def gone() -> int:
        raise ValueError("no result")

    pipeline = Pipeline("order").add_task(slow()).add_task(fast()).add_task(gone())
    pipeline.add_task(mapped.expand(x=[7, 8]))
    result = await pipeline.run()
    assert result.status == "FAILED"
    # Keys in the order of ``result.tasks`` (plan tasks, then fan-out instances),
    # whatever order the tasks ended in; a task without a result is not a key.
    assert list(result) == ["slow", "fast", "mapped", "mapped[0]", "mapped[1]"]
    assert list(result.tasks) == ["slow", "fast", "gone", "mapped", "mapped[0]", "mapped[1]"]
    assert len(result) == 5
    assert result["mapped[1]"] == 8
    assert result["mapped"] == [7, 8]
    assert "gone" not in result
    assert "nothing" not in result
    with pytest.raises(KeyError, match="ended FAILED"):
        result["gone"]


def _held_per_task(keep: str, width: int) -> float:
    """Bytes per task the engine's modules still hold once a no-op fan-out has run."""
    import gc
    import tracemalloc

    async def noop() -> None:
        return None

    root, sink = Task("root", noop), Task("sink", noop)
    for i in range(width):
        root >> Task(f"t{i}", noop) >> sink
    pipeline = Pipeline("held", keep_results=keep).add_task(root)  # type: ignore[arg-type]
    pipeline.plan(())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        result = anyio.run(pipeline.run)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert result.status == "SUCCESS"
    engine = [tracemalloc.Filter(True, "*dremioframe_async*")]
    grown = after.filter_traces(engine).compare_to(before.filter_traces(engine), "filename")
    return sum(stat.size_diff for stat in grown) / width


def test_keeping_every_result_costs_no_memory_per_task() -> None:
    # A kept result is read from its task's node: keeping them all adds no
    # per-task entry (a dict of a million results would be ~40 MB).
    width = 20_000
    every, none = _held_per_task("all", width), _held_per_task("none", width)
    assert every - none < 8, (every, none)


def test_a_wide_task_keeps_its_edges_in_a_list_of_references() -> None:
    import sys

    async def noop() -> None:
        return None

    root, sink = Task("root", noop), Task("sink", noop)
    mids = [Task(f"t{i}", noop) for i in range(10_000)]
    for t in mids:
        root >> t >> sink
        root >> t  # a repeat, asked of the task with one edge
    # About 8 bytes an edge at each wide end (a dict takes about 40).
    assert sys.getsizeof(root._downstream) < 10 * len(mids)
    assert sys.getsizeof(sink._upstream) < 10 * len(mids)
    assert root.downstream == tuple(mids)
    assert sink.upstream == tuple(mids)


def test_edges_between_tasks_with_many_edges_each_are_added_once_in_order() -> None:
    async def noop() -> None:
        return None

    tops = [Task(f"a{i}", noop) for i in range(12)]
    bottoms = [Task(f"b{i}", noop) for i in range(20)]
    for _ in range(2):  # the second pass repeats every edge: nothing is added
        for a in tops:
            for b in bottoms:
                a >> b
                b.set_upstream(a)
    assert all(a.downstream == tuple(bottoms) for a in tops)
    assert all(b.upstream == tuple(tops) for b in bottoms)
    assert all(a.edits == len(bottoms) for a in tops)
    pipeline = Pipeline("bipartite").add_task(tops[0])
    assert len(pipeline.plan().tasks) == len(tops) + len(bottoms)
    assert pipeline.plan().downstream[0] == tuple(range(12, 32))


def test_plan_is_rebuilt_when_an_edge_joins_two_of_its_tasks() -> None:
    async def noop() -> None:
        return None

    a, b, c = Task("a", noop), Task("b", noop), Task("c", noop)
    a >> b
    a >> c
    pipeline = Pipeline("joined").add_task(a)
    plan = pipeline.plan()
    assert pipeline.plan() is plan  # nothing changed: the cached plan
    b >> c  # no new task, one more edge between two of the plan's
    assert pipeline.plan() is not plan
    assert pipeline.plan().upstream[2] == (0, 1)


async def test_a_runs_nodes_share_the_plans_positions() -> None:
    # A node's position is the int object its plan already holds (the edge
    # tuples hold the same), not one more per task: 28 bytes each past 256.
    pipeline = _fan_out(width=600)
    result = await pipeline.run()
    plan = pipeline.plan(())  # as the run asked for it: no resources declared
    nodes = result.tasks._sources  # type: ignore[attr-defined]  # the run's NodesByKey
    mids = [nodes[key] for key in plan.keys[300:400]]
    assert all(node.i is plan.positions[node.i] for node in mids)
    held_by_edges = {id(i) for i in plan.downstream[0]}  # root -> every mid
    assert all(id(node.i) in held_by_edges for node in mids)


async def test_each_task_has_its_first_start_and_its_end() -> None:
    import time

    attempts: list[float] = []

    @task(name="flaky", retries=1, retry_delay=0)
    async def flaky() -> int:
        attempts.append(time.time())
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        return 1

    @task(name="bad")
    async def bad() -> None:
        raise ValueError("no")

    @task(name="never")
    async def never() -> None:
        return None

    @task(name="each")
    async def each(x: int) -> int:
        return x

    first = flaky()
    first >> each.expand(x=[1, 2, 3])
    pipeline = Pipeline("times").add_task(first).add_task(bad().set_downstream(never()))
    result = await pipeline.run()
    tasks = result.tasks
    flaky_run = tasks["flaky"]
    assert flaky_run.attempts == 2
    assert flaky_run.started is not None
    assert flaky_run.finished is not None
    # Its first start, before either attempt's body ran; not the retry's.
    assert result.started <= flaky_run.started <= attempts[0] < attempts[1] <= flaky_run.finished
    assert tasks["never"].state is TaskState.UPSTREAM_FAILED
    assert tasks["never"].started is None  # it never ran
    assert tasks["never"].finished is not None
    fan_out = tasks["each"]
    assert fan_out.started is not None
    for j in range(3):
        instance = tasks[f"each[{j}]"]
        assert instance.started is not None
        assert instance.finished is not None
        assert fan_out.started <= instance.started <= instance.finished <= result.finished
    assert fan_out.finished is not None
    assert fan_out.finished >= max(tasks[f"each[{j}]"].finished or 0.0 for j in range(3))


async def test_a_settling_task_is_never_seen_succeeded_without_its_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A task in a worker thread may read its context while another task settles,
    # whenever the loop's thread lets go of the GIL: here, at the clock call
    # made as the node settles. What the results say then must be whole.
    import sys
    import time as real_time

    from dremioframe_async.orchestration import _settle

    seen: list[tuple[str, Any]] = []

    class Clock:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_time, name)

        def time(self) -> float:
            frame = sys._getframe(1)
            if frame.f_code.co_name == "_drain":
                run, node = frame.f_locals["self"], frame.f_locals["n"]
                if node.key in run.results:
                    seen.append((node.key, run.results[node.key]))
            return real_time.time()

    monkeypatch.setattr(_settle, "time", Clock())

    @task(name="a")
    async def a() -> str:
        return "a's result"

    @task(name="b")
    def b(context: Any) -> str:
        return f"b read {context['a']}"

    first = a()
    first >> b()
    result = await Pipeline("whole").add_task(first).run()
    assert dict(result) == {"a": "a's result", "b": "b read a's result"}
    assert seen == [("a", "a's result"), ("b", "b read a's result")]


async def test_a_plan_task_keyed_like_a_fan_out_instance_keeps_its_result() -> None:
    @task(name="src")
    async def src() -> list[int]:
        return [1, 2]

    @task(name="m")
    async def m(x: int) -> int:
        if x == 1:
            raise ValueError("m[0] fails")
        return x

    @task(name="m[0]")
    async def namesake() -> str:
        return "the plan task's"

    @task(name="m[1]")
    async def other() -> str:
        return "the other plan task's"

    mine, theirs = namesake(), other()
    pipeline = Pipeline("keys").add_task(m.expand(x=src())).add_task(mine).add_task(theirs)
    result = await pipeline.run()
    # m[0] failed: its key reads the plan task's result; m[1] succeeded: the
    # instance's, as result.tasks["m[1]"] is the instance.
    assert result["m[0]"] == "the plan task's"
    assert result[mine] == "the plan task's"
    assert result["m[1]"] == 2
    assert result.tasks["m[1]"].state is TaskState.SUCCESS
    assert sorted(result) == ["m[0]", "m[1]", "src"]
    assert len(result) == 3
