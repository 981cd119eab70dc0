"""Run-scoped resources, on asyncio and trio: opened once per run, shared, always closed.

Ordering uses anyio Events and ``wait_all_tasks_blocked()``; ``fail_after(GUARD)``
is only a liveness bound.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from dremioframe_async import Pipeline, PipelineFailed, TaskState, task
from dremioframe_async.orchestration import (
    FINAL_STATES,
    ArgumentError,
    PipelineDefinitionError,
    ResourceError,
    Task,
    TaskDefinitionError,
    _resources,
)
from dremioframe_async.store import MemoryStore

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds; a liveness bound only
_S = TaskState


class Tracked:
    """A resource factory that records every open and close, and what was open when."""

    def __init__(self, name: str = "res") -> None:
        self.name = name
        self.opens = 0
        self.closes = 0
        self.log: list[str] = []
        self.gate: anyio.Event | None = None  # when set, opening waits for it

    @contextlib.asynccontextmanager
    async def _cm(self) -> AsyncIterator[dict[str, Any]]:
        self.opens += 1
        serial = self.opens
        self.log.append("open")
        await anyio.sleep(0)  # opening waits, as a real connection does
        if self.gate is not None:
            await self.gate.wait()
        value = {"name": self.name, "serial": serial, "closed": False}
        try:
            yield value
        finally:
            value["closed"] = True
            self.closes += 1
            self.log.append("close")

    def __call__(self) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
        return self._cm()


# -- sharing and lifecycle ---------------------------------------------------------------


async def test_many_tasks_share_one_opening_and_one_close() -> None:
    res = Tracked()

    @task(resources=("res",))
    async def use(i: int, res: dict[str, Any]) -> int:
        assert not res["closed"]
        res_log.append(id(res))
        return i

    res_log: list[int] = []
    p = Pipeline("share", resources={"res": res})
    for i in range(50):
        p.add_task(use(i))
    result = await p.run()
    assert result.status == "SUCCESS"
    assert (res.opens, res.closes) == (1, 1)
    assert len(set(res_log)) == 1
    assert len(res_log) == 50


async def test_concurrent_first_use_opens_once() -> None:
    res = Tracked()
    res.gate = anyio.Event()
    got: list[dict[str, Any]] = []

    @task(resources=("res",))
    async def use(i: int, res: dict[str, Any]) -> None:
        got.append(res)

    p = Pipeline("first_use", resources={"res": res})
    for i in range(20):
        p.add_task(use(i))
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(p.run)
            # Every task has asked and waits for the one opening in progress.
            await anyio.wait_all_tasks_blocked()
            assert res.opens == 1
            res.gate.set()
    assert res.opens == 1
    assert res.closes == 1
    assert len(got) == 20
    assert all(g is got[0] for g in got)


async def test_each_run_opens_its_own_and_concurrent_runs_do_not_share() -> None:
    res = Tracked()
    both_in = anyio.Event()
    inside: list[dict[str, Any]] = []

    @task(resources=("res",))
    async def use(res: dict[str, Any]) -> int:
        inside.append(res)
        if len(inside) == 2:
            both_in.set()
        await both_in.wait()  # both runs hold their resource at once
        return int(res["serial"])

    p = Pipeline("twice", resources={"res": res}).add_task(use())
    results: list[int] = []

    async def one() -> None:
        results.append((await p.run())["use"])

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
    assert sorted(results) == [1, 2]
    assert inside[0] is not inside[1]
    assert (res.opens, res.closes) == (2, 2)


async def test_a_run_whose_tasks_need_nothing_opens_nothing() -> None:
    res = Tracked()

    @task
    async def plain() -> int:
        return 1

    result = await Pipeline("idle", resources={"res": res}).add_task(plain()).run()
    assert result.status == "SUCCESS"
    assert res.opens == 0


async def test_opened_lazily_when_the_first_task_needing_it_starts() -> None:
    res = Tracked()
    seen: list[int] = []

    @task
    async def first() -> None:
        seen.append(res.opens)

    @task(resources=("res",))
    async def second(res: dict[str, Any]) -> None:
        seen.append(res["serial"])

    a = first()
    a >> second()
    await Pipeline("lazy", resources={"res": res}).add_task(a).run()
    assert seen == [0, 1]


async def test_closed_after_failure_and_the_failure_is_kept() -> None:
    res = Tracked()

    @task(resources=("res",))
    async def boom(res: dict[str, Any]) -> None:
        raise ValueError("boom")

    result = await Pipeline("fails", resources={"res": res}).add_task(boom()).run()
    assert result.status == "FAILED"
    assert isinstance(result.errors["boom"], ValueError)
    assert (res.opens, res.closes) == (1, 1)


async def test_closed_on_cancellation_after_the_cleanup_that_still_uses_it() -> None:
    res = Tracked()
    started = anyio.Event()
    seen_in_cleanup: list[bool] = []

    @task(resources=("res",))
    async def work(res: dict[str, Any]) -> None:
        started.set()
        await anyio.sleep_forever()

    @task(trigger_rule="all_done", resources=("res",))
    async def cleanup(res: dict[str, Any]) -> None:
        await anyio.sleep(0)  # a checkpoint: the cleanup runs shielded from the cancel
        seen_in_cleanup.append(res["closed"])
        res["log"] = "cleanup"

    w = work()
    w >> cleanup()
    scope = anyio.CancelScope()
    reraised = False
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                nonlocal reraised
                with scope:
                    try:
                        await Pipeline("cancelled", resources={"res": res}).add_task(w).run()
                    except anyio.get_cancelled_exc_class():
                        reraised = True
                        assert res.closes == 1  # closed before the cancellation reached us
                        raise

            tg.start_soon(go)
            await started.wait()
            scope.cancel()
    assert reraised
    assert seen_in_cleanup == [False]
    assert (res.opens, res.closes) == (1, 1)


async def test_a_cleanup_task_of_a_cancelled_run_may_open_it_first() -> None:
    res = Tracked()
    started = anyio.Event()

    @task
    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    @task(trigger_rule="all_done", resources=("res",))
    async def cleanup(res: dict[str, Any]) -> int:
        return int(res["serial"])

    w = work()
    w >> cleanup()
    events: list[Any] = []
    scope = anyio.CancelScope()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                with scope:
                    p = Pipeline("late", resources={"res": res}).add_task(w)
                    await p.run(on_event=events.append)

            tg.start_soon(go)
            await started.wait()
            scope.cancel()
    final = {e.key: e.state for e in events if getattr(e, "state", None) in FINAL_STATES}
    assert final == {"work": _S.CANCELLED, "cleanup": _S.SUCCESS}
    assert (res.opens, res.closes) == (1, 1)


async def test_the_resource_is_entered_and_exited_by_the_same_task() -> None:
    # A resource that runs a task group of its own: exiting it from another task
    # than the one that entered it breaks anyio's cancel scope rules.
    class Service:
        def __init__(self) -> None:
            self.ticks = 0
            self.exited = False

        async def __aenter__(self) -> Service:
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(anyio.sleep_forever)
            return self

        async def __aexit__(self, *exc: object) -> None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            self.exited = True

    made: list[Service] = []

    def factory() -> Service:
        made.append(Service())
        return made[-1]

    @task(resources=("svc",))
    async def use(svc: Service) -> int:
        return 1

    p = Pipeline("svc", resources={"svc": factory})
    for _ in range(3):
        p.add_task(use())
    result = await p.run()
    assert result.status == "SUCCESS", result.errors
    assert len(made) == 1
    assert made[0].exited
    assert result.resource_errors == {}


# -- failures ----------------------------------------------------------------------------


async def test_a_failing_factory_fails_only_the_tasks_that_need_it() -> None:
    calls = 0

    def broken() -> Any:
        nonlocal calls
        calls += 1
        raise ConnectionError("no route to the warehouse")

    other = Tracked("other")

    @task(resources=("broken",))
    async def needs(i: int, broken: Any) -> None:
        raise AssertionError("never called")

    @task(resources=("other",))
    async def fine(other: dict[str, Any]) -> str:
        return str(other["name"])

    @task
    async def after() -> str:
        return "after"

    p = Pipeline("partial", resources={"broken": broken, "other": other})
    failing = [needs(i) for i in range(4)]
    for t in failing:
        t >> after()
    p.add_task(fine())
    for t in failing:
        p.add_task(t)
    result = await p.run()
    assert calls == 1  # a failure is not tried again in the same run
    assert result.states["fine"] is _S.SUCCESS
    assert result["fine"] == "other"
    for key in ("needs", "needs_2", "needs_3", "needs_4"):
        assert result.states[key] is _S.FAILED
        error = result.errors[key]
        assert isinstance(error, ResourceError)
        assert error.name == "broken"
        assert isinstance(error.__cause__, ConnectionError)
        assert "resource 'broken' could not be opened" in str(error)
    assert all(result.states[k] is _S.UPSTREAM_FAILED for k in result.states if "after" in k)
    assert result.status == "FAILED"
    assert (other.opens, other.closes) == (1, 1)


async def test_an_aenter_that_raises_fails_the_tasks_and_nothing_is_exited() -> None:
    exits = 0

    class Refuses:
        async def __aenter__(self) -> Refuses:
            raise PermissionError("login refused")

        async def __aexit__(self, *exc: object) -> None:
            nonlocal exits
            exits += 1

    @task(resources=("svc",))
    async def use(svc: Any) -> None:
        raise AssertionError("never called")

    result = await Pipeline("refused", resources={"svc": Refuses}).add_task(use()).run()
    assert isinstance(result.errors["use"].__cause__, PermissionError)
    assert exits == 0


async def test_a_failed_open_is_not_retried_by_the_task_retries() -> None:
    calls = 0

    def broken() -> Any:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    @task(retries=3, resources=("broken",))
    async def use(broken: Any) -> None:
        raise AssertionError("never called")

    result = await Pipeline("noretry", resources={"broken": broken}).add_task(use()).run()
    assert calls == 1
    assert result.tasks["use"].attempts == 0
    assert isinstance(result.errors["use"], ResourceError)


async def test_a_resource_that_fails_to_close_fails_the_run() -> None:
    class LeakyWriter:
        async def __aenter__(self) -> LeakyWriter:
            return self

        async def __aexit__(self, *exc: object) -> None:
            raise OSError("flush failed: disk full")

    @task(resources=("out",))
    async def write(out: LeakyWriter) -> int:
        return 1

    result = await Pipeline("leaky", resources={"out": LeakyWriter}).add_task(write()).run()
    assert result.states["write"] is _S.SUCCESS
    assert result.status == "FAILED"
    error = result.resource_errors["out"]
    assert isinstance(error, ResourceError)
    assert isinstance(error.__cause__, OSError)
    with pytest.raises(PipelineFailed, match=r"resource 'out' could not be closed.*disk full"):
        result.raise_for_status()


async def test_closing_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_resources, "CLOSE_TIMEOUT", 0.2)

    class Stuck:
        async def __aenter__(self) -> Stuck:
            return self

        async def __aexit__(self, *exc: object) -> None:
            await anyio.sleep_forever()

    @task(resources=("stuck",))
    async def use(stuck: Stuck) -> int:
        return 1

    with anyio.fail_after(GUARD):
        result = await Pipeline("stuck", resources={"stuck": Stuck}).add_task(use()).run()
    assert result.status == "FAILED"
    assert "did not close within 0.2 s" in str(result.resource_errors["stuck"])


# -- declaring and reaching resources ----------------------------------------------------


async def test_undeclared_names_are_reported_before_any_task_starts() -> None:
    ran: list[str] = []

    @task(resources=("dremio",))
    async def query(i: int, dremio: Any) -> None:
        ran.append("query")

    @task(pool="nowhere", resources=("cache",))
    async def other(context: Any) -> None:
        ran.append("other")

    p = Pipeline("undeclared")
    for i in range(5):
        p.add_task(query(i))
    p.add_task(other())
    events: list[Any] = []
    with pytest.raises(PipelineDefinitionError) as caught:
        await p.run(on_event=events.append)
    problems = caught.value.problems
    assert len(problems) == 3  # the pool, and one line per missing resource
    assert any("pool 'nowhere'" in line for line in problems)
    dremio = next(line for line in problems if "'dremio'" in line)
    assert "'query', 'query_2', 'query_3' and 2 more" in dremio
    assert "resources={'dremio': factory}" in dremio
    assert ran == []
    assert events == []
    # Declared for the run only: the same graph runs (the pool is still missing).
    p2 = Pipeline("declared_per_run").add_task(query(0))
    result = await p2.run(resources={"dremio": lambda: "stand-in"})
    assert result.status == "SUCCESS"
    assert ran == ["query"]
    assert p2.visualize().startswith("graph TD")  # the graph alone needs no resources


async def test_run_resources_override_the_pipeline_s() -> None:
    declared, given = Tracked("declared"), Tracked("given")

    @task(resources=("res",))
    async def use(res: dict[str, Any]) -> str:
        return str(res["name"])

    p = Pipeline("override", resources={"res": declared}).add_task(use())
    assert (await p.run(resources={"res": given}))["use"] == "given"
    assert declared.opens == 0
    assert (given.opens, given.closes) == (1, 1)
    assert (await p.run())["use"] == "declared"


async def test_context_resources_by_name_and_attribute() -> None:
    res = Tracked()

    @task(resources=("res",))
    async def via_context(context: Any) -> list[Any]:
        r = context.resources
        return [r["res"] is r.res, "res" in r, list(r), "other" in r]

    @task
    async def undeclared(context: Any) -> str:
        try:
            context.resources["res"]
        except KeyError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "no error"

    @task(resources=("res",))
    async def private(context: Any) -> str:
        with pytest.raises(AttributeError):
            context.resources._res  # noqa: B018 -- the lookup is the test
        return repr(context.resources)

    @task
    async def by_attribute(context: Any) -> str:
        try:
            return str(context.resources.nothing)
        except AttributeError as exc:
            return str(exc)
        return "no error"

    p = Pipeline("ctx", resources={"res": res})
    for t in (via_context(), undeclared(), by_attribute(), private()):
        p.add_task(t)
    result = await p.run()
    assert result["via_context"] == [True, True, ["res"], False]
    assert result["undeclared"] == (
        "UndeclaredResourceError: task 'undeclared' did not declare resource 'res': "
        "add resources=('res',) to its @task(...)"
    )
    assert "the run has no resource 'nothing' (declared: 'res')" in result["by_attribute"]
    assert result["private"] == "<resources of task 'private': res>"


async def test_plain_objects_and_awaitables_are_resources_too() -> None:
    async def make_async() -> dict[str, int]:
        return {"made": 1}

    config = {"region": "eu"}

    @task(resources=("config", "made"))
    def sync_task(config: dict[str, str], made: dict[str, int]) -> str:  # in a worker thread
        return f"{config['region']}-{made['made']}"

    result = await (
        Pipeline("plain", resources={"config": lambda: config, "made": make_async})
        .add_task(sync_task())
        .run()
    )
    assert result["sync_task"] == "eu-1"


async def test_mapped_instances_share_the_resource() -> None:
    res = Tracked()

    @task
    async def tables() -> list[str]:
        return ["a", "b", "c"]

    @task(resources=("res",))
    async def extract(table: str, res: dict[str, Any]) -> str:
        return f"{table}@{res['serial']}"

    handle = extract.expand(table=tables())
    result = await Pipeline("mapped", resources={"res": res}).add_task(handle).run()
    assert result["extract"] == ["a@1", "b@1", "c@1"]
    assert (res.opens, res.closes) == (1, 1)


def test_the_call_shape_treats_a_declared_resource_like_context() -> None:
    """A call need not give a declared resource; every other required argument it must."""
    from dremioframe_async.orchestration._decorator import _CallShape

    @task(resources=("res",))
    def load(table: str, res: Any) -> str:
        return table

    assert load._shape.surely_binds(("t",), {})  # the fast path, no bind
    assert load("t").kwargs == {}  # nothing stands in for the resource in the Task
    assert load.partial().expand(table=["x", "y"]).mapped == {"table": ("x", "y")}
    with pytest.raises(TaskDefinitionError, match="missing a required argument: 'table'"):
        load()
    undeclared = _CallShape(inspect.signature(load.fn))  # only context is supplied
    assert not undeclared.surely_binds(("t",), {})


async def test_a_value_given_in_the_call_wins_over_the_resource() -> None:
    res = Tracked()

    @task(resources=("res",))
    async def use(res: Any) -> Any:
        return res

    result = await Pipeline("given", resources={"res": res}).add_task(use(res="mine")).run()
    assert result["use"] == "mine"


async def test_a_resumed_run_opens_fresh_resources() -> None:
    res = Tracked()
    fail = True

    @task(resources=("res",))
    async def first(res: dict[str, Any]) -> int:
        return int(res["serial"])

    @task(resources=("res",))
    async def second(res: dict[str, Any]) -> int:
        if fail:
            raise RuntimeError("first time")
        return int(res["serial"])

    a = first()
    a >> second()
    store = MemoryStore()
    p = Pipeline("resumed", resources={"res": res}).add_task(a)
    failed = await p.run(store=store)
    assert failed.status == "FAILED"
    assert (res.opens, res.closes) == (1, 1)
    fail = False
    resumed = await p.run(store=store, resume=failed.run_id)
    assert resumed.status == "SUCCESS"
    assert resumed["first"] == 1  # reused from the first run
    assert resumed["second"] == 2  # ran with the resumed run's own resource
    assert (res.opens, res.closes) == (2, 2)


# -- the function stays a function -------------------------------------------------------


def test_fn_takes_a_stand_in_in_a_unit_test() -> None:
    @task(resources=("dremio",))
    def count_rows(table: str, dremio: Any) -> int:
        return int(dremio.query(f"SELECT COUNT(*) FROM {table}"))

    class StandIn:
        def query(self, sql: str) -> int:
            assert sql == "SELECT COUNT(*) FROM sales"
            return 42

    assert count_rows.fn("sales", StandIn()) == 42
    assert isinstance(count_rows("sales"), Task)  # the engine passes `dremio`


def test_declaring_what_the_function_cannot_receive_is_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="no parameter 'dremio'"):

        @task(resources=("dremio",))
        async def nothing_to_receive(table: str) -> None: ...

    async def fn(table: str) -> None: ...

    with pytest.raises(TaskDefinitionError, match="no parameter 'cache'"):
        Task("direct", fn, resources=("cache",))
    for bad in (42, ("",), [None]):
        with pytest.raises(TaskDefinitionError, match="resources must be resource names"):
            task(resources=bad)(fn)  # type: ignore[call-overload]
    assert task(resources="dremio")(lambda dremio: None).options.resources == ("dremio",)


def test_factories_are_checked_when_declared() -> None:
    with pytest.raises(ArgumentError, match="resource 'dremio' needs a zero-argument callable"):
        Pipeline("p", resources={"dremio": "http://localhost:9047"})
    with pytest.raises(ArgumentError, match="a mapping of name -> factory"):
        Pipeline("p", resources=[("dremio", object)])  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="non-empty string"):
        Pipeline("p", resources={"": object})
