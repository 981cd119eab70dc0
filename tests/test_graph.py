"""Building the graph: inclusion, keys, validation and Mermaid output."""

from __future__ import annotations

from pathlib import Path

import pytest

from dremioframe_async import CycleError, Pipeline, PipelineDefinitionError, task


@task
async def step(n: int) -> int:
    return n


def test_pipeline_includes_everything_connected() -> None:
    a, b, c, d = step(1), step(2), step(3), step(4)
    a >> b >> c
    d >> c
    p = Pipeline("p").add_task(b)
    assert set(p.tasks) == {a, b, c, d}


def test_keys_are_unique_deterministic_and_avoid_real_names() -> None:
    a, b, c = step(1), step(2), step(3)

    @task(name="step_2")
    async def other() -> None: ...

    o = other()
    a >> b >> c >> o
    keys = Pipeline("p").add_task(a).plan().keys
    assert keys == ("step", "step_3", "step_4", "step_2")
    assert keys == Pipeline("p").add_task(o).plan().keys


def test_add_task_chains_and_rejects_non_tasks() -> None:
    p = Pipeline("p")
    assert p.add_task(step(1)) is p
    with pytest.raises(TypeError, match="add_task needs a Task"):
        p.add_task("x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({"max_concurrency": 0}, "max_concurrency must be", id="zero"),
        pytest.param({"max_workers": -2}, "max_concurrency must be", id="alias"),
        pytest.param({"pools": {"p": 0}}, "pool 'p' must be", id="pool"),
        pytest.param({"max_concurrency": 2, "max_workers": 2}, "not both", id="both"),
    ],
)
def test_bad_limits(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Pipeline("p", **kwargs)  # type: ignore[arg-type]


def test_max_workers_alias() -> None:
    assert Pipeline("p", max_workers=4).max_concurrency == 4


def test_cycle_named_and_all_problems_reported_at_once() -> None:
    @task(pool="dremio")
    async def a() -> None: ...

    @task
    async def b() -> None: ...

    @task
    async def c() -> None: ...

    @task
    async def d() -> None: ...

    ta, tb, tc, td = a(), b(), c(), d()
    ta >> tb >> ta
    tc >> td >> tc
    p = Pipeline("cyclic").add_task(ta).add_task(tc)
    with pytest.raises(CycleError) as info:
        p.plan()
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, PipelineDefinitionError)
    cycles = {" -> ".join(c) for c in err.cycles}
    assert cycles in (
        {"a -> b -> a", "c -> d -> c"},
        {"b -> a -> b", "d -> c -> d"},
        {"a -> b -> a", "d -> c -> d"},
        {"b -> a -> b", "c -> d -> c"},
    )
    assert "pool 'dremio'" in str(err)
    assert len(err.problems) == 3


def test_unknown_pool_is_a_definition_error() -> None:
    @task(pool="nowhere")
    async def a() -> None: ...

    with pytest.raises(PipelineDefinitionError, match="pools=") as info:
        Pipeline("p").add_task(a()).plan()
    assert not isinstance(info.value, CycleError)


def test_visualize_mermaid(tmp_path: Path) -> None:
    @task
    async def extract() -> None: ...

    @task
    async def transform() -> None: ...

    @task(name="load data")
    async def load() -> None: ...

    e, t, lo = extract(), transform(), load()
    e >> t >> lo
    p = Pipeline("etl").add_task(e)
    text = p.visualize()
    lines = text.splitlines()
    assert lines[0] == "graph TD"
    assert "    extract --> transform" in lines
    assert '    n2["load data"]' in lines
    assert "    transform --> n2" in lines
    out = tmp_path / "g.mmd"
    assert p.visualize(out) == out.read_text()


def test_plan_is_rebuilt_after_edges_change() -> None:
    a, b = step(1), step(2)
    p = Pipeline("p").add_task(a)
    assert p.tasks == (a,)
    a >> b
    assert p.tasks == (a, b)


def test_plan_is_kept_when_unrelated_tasks_change() -> None:
    a, b = step(1), step(2)
    a >> b
    p = Pipeline("p").add_task(a)
    plan = p.plan()
    x, y = step(3), step(4)
    x >> y  # another graph entirely
    assert p.plan() is plan
    b >> x  # now connected: the plan must grow
    assert p.plan().tasks == (a, b, x, y)


@pytest.mark.asyncio
async def test_a_readers_plan_is_a_runs_plan_and_does_not_replace_it() -> None:
    """A run plans with its resource names checked; a reader of the graph (the UI,
    ``tasks``) asks for the plan unchecked and gets the run's, not a rebuilt one that
    the next run would rebuild again (100,000 tasks: a second or so each)."""
    a, b = step(1), step(2)
    a >> b
    p = Pipeline("p").add_task(a)
    await p.run()
    ran = p.plan(())
    assert p.plan() is ran
    assert p.tasks == (a, b)
    await p.run()
    assert p.plan(()) is ran
    assert p.plan({"db"}) is not ran  # other names are checked again


def test_only_the_part_downstream_of_back_edges_is_sorted_and_nothing_is_missed() -> None:
    import random

    from dremioframe_async.orchestration._graph import _unsorted

    rng = random.Random(7)
    cyclic = 0
    for _ in range(300):
        n = rng.randint(2, 14)
        edges = {(rng.randrange(n), rng.randrange(n)) for _ in range(rng.randint(1, 2 * n))}
        edges = {(u, d) for u, d in edges if u != d}
        ups = tuple(tuple(sorted(u for u, d in edges if d == i)) for i in range(n))
        downs = tuple(tuple(sorted(d for u, d in edges if u == i)) for i in range(n))
        back = [i for i in range(n) if any(u > i for u in ups[i])]
        everything = _unsorted(ups, downs, list(range(n)))  # a sort of the whole graph
        assert _unsorted(ups, downs, back) == everything, edges
        cyclic += bool(everything)
    assert 30 < cyclic < 270  # both kinds of graph were tried


def test_a_cycle_among_tasks_made_in_any_order_is_found() -> None:
    @task
    async def t() -> None: ...

    later_first = [t() for _ in range(5)]  # t, t_2 ... t_5
    a, b, c, d, e = later_first
    e >> a  # the upstream task made after: a back edge, no cycle yet
    a >> c >> b >> d  # b's upstream c was made after it
    assert Pipeline("ok").add_task(a).plan().keys == ("t", "t_2", "t_3", "t_4", "t_5")
    d >> c  # c -> b -> d -> c, entered through a back edge into b
    with pytest.raises(CycleError) as info:
        Pipeline("cyclic").add_task(a).plan()
    assert [set(cycle) for cycle in info.value.cycles] == [{"t_2", "t_3", "t_4"}]


def test_the_planning_pass_finds_what_runs_read_for_every_kind_of_task() -> None:
    from typing import Any

    from dremioframe_async.orchestration import Task

    async def fn() -> int:
        return 1

    async def with_context(context: Any) -> int:
        return 1

    def sync() -> int:
        return 1

    async def with_db(db: object) -> int:
        return 1

    class Custom(Task):
        pass

    kinds: dict[str, tuple[Task, bool]] = {}  # key -> (task, plain by its definition)

    def add(key: str, made: Task, plain: bool) -> Task:
        kinds[key] = (made, plain)
        return made

    root = add("root", Task("root", fn), True)
    # Interleaved kinds, so that a task never just repeats the one before it.
    for i in range(3):
        root >> add(f"p{i}", Task(f"p{i}", fn), True)
        root >> add(f"s{i}", Task(f"s{i}", sync), False)
        root >> add(f"r{i}", Task(f"r{i}", fn, retries=1), False)
        root >> add(f"c{i}", Task(f"c{i}", with_context), False)
        root >> add(f"a{i}", Task(f"a{i}", fn, args=(root,)), False)
        root >> add(f"t{i}", Task(f"t{i}", fn, timeout=5), False)
        root >> add(f"x{i}", Custom(f"x{i}", fn), False)
        root >> add(f"u{i}", Task(f"u{i}", with_db, resources=("db",)), False)
        root >> add(f"e{i}", Task(f"e{i}", fn, executor="local"), True)
        root >> add(f"w{i}", Task(f"w{i}", fn, trigger_rule="always"), True)
        add(f"alone{i}", Task(f"alone{i}", fn, pool="slow"), True) >> root
    plan = Pipeline("kinds", pools={"slow": 2}, resources={"db": object}).add_task(root).plan()
    assert set(plan.keys) == set(kinds)
    plain = {k for k, (_, p) in kinds.items() if p}
    assert {plan.keys[i] for i, flag in enumerate(plan.plain) if flag} == plain
    starts = [k for k in plan.keys if k.startswith(("w", "alone"))]
    assert [plan.keys[i] for i in plan.starts] == starts  # in plan order
    assert [plan.keys[i] for i in plan.needing] == [k for k in plan.keys if k[0] == "u"]
    assert [plan.keys[i] for i in plan.naming] == [k for k in plan.keys if k[0] == "e"]
