"""A large run makes its nodes frozen, so that they enter the cyclic collector's
oldest generation without counting towards a full collection, and leaves the
collector as it found it:
- nothing of its own stays frozen;
- the application's young garbage is still collected young;
- a finished run's nodes are freed without the collector;
- a run that may leave cycles stops the freezing until a full collection;
- the application's own freeze and a disabled collector are left alone."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

from dremioframe_async.orchestration import Pipeline, Task, _gc, task
from dremioframe_async.orchestration._gc import FREEZE_MIN, Freezing
from dremioframe_async.orchestration._node import ChildNode, Node
from dremioframe_async.orchestration._runner import SPAWN_BURST

pytestmark = pytest.mark.anyio

WIDTH = 3 * FREEZE_MIN  # made plainly, the last few hundred nodes are still young


@pytest.fixture(autouse=True)
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with a collector that freezes, and leaves it so."""
    monkeypatch.setattr(_gc, "_hosts_own", False)
    gc.collect()  # a full collection: no earlier run's cycles are waiting
    yield
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def young_instances() -> int:
    """Fan-out instances still in the young generations."""
    return sum(1 for g in (0, 1) for o in gc.get_objects(generation=g) if type(o) is ChildNode)


def _extract_noting_young(young: list[int]) -> Any:
    """A task to map over parts that notes, as its first instance runs, how many
    instances are young."""

    @task
    async def extract(part: int) -> int:
        if not young:
            young.append(young_instances())
        return part

    return extract


def young_nodes() -> int:
    """Nodes still in the young generations (made frozen, every node is old at once)."""
    return sum(1 for g in (0, 1) for o in gc.get_objects(generation=g) if isinstance(o, Node))


async def noop() -> None:
    return None


def _fan_out(width: int, first: Task) -> Pipeline:
    """first -> t0..t{width-1}: ``first`` runs before any other task."""
    for j in range(width):
        first >> Task(f"t{j}", noop)
    return Pipeline("gc").add_task(first)


async def _young_at_start() -> int:
    """How many of a WIDTH-task run's nodes are young when its first task starts."""
    seen: list[int] = []

    async def look() -> None:
        seen.append(young_nodes())

    result = await _fan_out(WIDTH, Task("look", look)).run()
    assert result.status == "SUCCESS"
    return seen[0]


async def test_a_large_run_makes_its_nodes_old_at_once() -> None:
    assert await _young_at_start() == 0


async def test_a_wide_fan_out_makes_its_instances_old_at_once() -> None:
    young: list[int] = []

    @task
    async def parts() -> list[int]:
        return list(range(WIDTH))

    extract = _extract_noting_young(young)

    result = await Pipeline("gc").add_task(extract.expand(part=parts())).run()
    assert result.status == "SUCCESS"
    assert result["extract"] == list(range(WIDTH))
    assert young == [0]


async def test_the_applications_young_garbage_is_not_frozen_with_the_nodes() -> None:
    # Cycles made just before each run: a young collection frees them, as it would
    # without the run. Frozen along with the nodes, they would be thawed into the
    # oldest generation, where only a full collection looks.
    class Cycle:
        pass

    refs = []
    pipeline = _fan_out(WIDTH, Task("root", noop))
    for _ in range(3):
        for _ in range(50):
            c = Cycle()
            c.me = c  # type: ignore[attr-defined]
            refs.append(weakref.ref(c))
            del c
        assert (await pipeline.run()).status == "SUCCESS"
    gc.collect(1)  # the young generations only
    assert [r for r in refs if r() is not None] == []


async def test_a_finished_fan_out_is_freed_without_the_collector() -> None:
    @task
    async def parts() -> list[int]:
        return list(range(WIDTH))

    @task
    async def extract(part: int) -> int:
        return part

    result = await Pipeline("gc").add_task(extract.expand(part=parts())).run()
    assert result.status == "SUCCESS"
    gc.disable()
    try:
        del result
        left = sum(1 for o in gc.get_objects() if type(o) is ChildNode)
    finally:
        gc.enable()
    assert left == 0  # a parent holding its instances (and they it) would keep them all


@pytest.mark.parametrize("how", ["failure", "retry"])
async def test_a_run_that_may_leave_cycles_stops_freezing_until_a_full_collection(
    how: str,
) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if how == "failure" or calls == 1:
            raise ValueError("no")

    options = {"retries": 1, "retry_delay": 0} if how == "retry" else {}
    result = await _fan_out(WIDTH, Task("flaky", flaky, **options)).run()  # type: ignore[arg-type]
    assert result.status == ("FAILED" if how == "failure" else "SUCCESS")
    del result  # its nodes may be garbage now, in cycles through the error's frames
    assert await _young_at_start() > 0  # made plainly: they count towards a full collection
    gc.collect()
    assert await _young_at_start() == 0  # frozen again


async def test_nothing_stays_frozen_once_the_nodes_are_made() -> None:
    frozen: list[int] = []

    async def look() -> None:
        frozen.append(gc.get_freeze_count())

    assert (await _fan_out(WIDTH, Task("look", look)).run()).status == "SUCCESS"
    assert frozen == [0]  # thawed before any task starts


async def test_a_cancelled_run_leaves_nothing_frozen_and_the_next_one_freezes() -> None:
    pipeline = _fan_out(WIDTH, Task("root", noop))
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled before it starts: its nodes are still made, shielded
        await pipeline.run()
    assert gc.get_freeze_count() == 0
    gc.collect()  # a cancelled run may leave cycles: the next full collection clears that
    assert await _young_at_start() == 0


async def test_the_applications_own_freeze_is_left_alone() -> None:
    marker = [object()]
    gc.freeze()  # as a pre-fork server does
    try:
        # Frozen with the rest: in none of the collector's generations.
        assert not any(o is marker for o in gc.get_objects())
        assert await _young_at_start() > 0  # made plainly
        assert not any(o is marker for o in gc.get_objects())  # not thawed by the run
    finally:
        gc.unfreeze()
    assert await _young_at_start() > 0  # and never again in this process


async def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        assert (await _fan_out(WIDTH, Task("root", noop)).run()).status == "SUCCESS"
        assert not gc.isenabled()
    finally:
        gc.enable()


def _claim() -> Freezing:
    claim = _gc.freezing(FREEZE_MIN)
    assert claim is not None
    return claim


def test_a_slice_resumes_only_a_collector_that_ran() -> None:
    claim = _claim()
    gc.disable()
    try:
        with claim.slice():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        claim.thaw()
        gc.enable()
    claim = _claim()
    try:
        with claim.slice():
            assert not gc.isenabled()
            made = [object()]
        assert gc.isenabled()
        assert not any(o is made for o in gc.get_objects())  # frozen
    finally:
        claim.thaw()
    assert any(o is made for o in gc.get_objects(generation=2))  # thawed into the oldest


def test_the_engine_hooks_no_code_into_collections() -> None:
    # A Ctrl-C that lands in a ``gc.callbacks`` hook is swallowed ("Exception ignored
    # in ...") and the process goes on: the engine reads the collector's statistics.
    ours = [cb for cb in gc.callbacks if getattr(cb, "__module__", "").startswith("dremioframe")]
    assert ours == []


class _Marker:
    """An object a running task keeps in its frame while it waits."""


def _markers_in_the_collector() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is _Marker)


async def _waiting_fan_out(width: int, look: Callable[[], Awaitable[None]]) -> list[int]:
    """Run ``width`` tasks that wait together, each holding a marker; while all of them
    wait, ``look()``, then let them end. Returns the frozen count seen at the end."""
    started = 0
    all_waiting, release = anyio.Event(), anyio.Event()

    async def hold() -> None:
        nonlocal started
        marker = _Marker()
        started += 1
        if started == width:
            all_waiting.set()
        await release.wait()
        del marker

    first = Task("root", noop)
    for j in range(width):
        first >> Task(f"t{j}", hold)
    pipeline = Pipeline("gc", max_concurrency=width + 1).add_task(first)
    after: list[int] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            assert (await pipeline.run()).status == "SUCCESS"
            after.append(gc.get_freeze_count())

        tg.start_soon(run)
        await all_waiting.wait()
        await look()
        release.set()
    return after


async def test_a_runs_waiting_tasks_are_frozen_until_it_ends() -> None:
    # 100,000 waiting tasks held 3.8 million objects that every full collection
    # scanned (up to 1.1 s each): frozen as the runners grow, they are not scanned.
    seen: list[int] = []

    async def look() -> None:
        seen.append(_markers_in_the_collector())

    after = await _waiting_fan_out(WIDTH, look)
    # Not frozen yet: those of the last step, and runners spawned as the step froze.
    assert len(seen) == 1
    assert seen[0] <= FREEZE_MIN + SPAWN_BURST < WIDTH
    assert after == [0]  # thawed as the run ends


async def test_a_run_with_few_tasks_waiting_freezes_nothing() -> None:
    seen: list[tuple[int, int]] = []

    async def look() -> None:
        seen.append((_markers_in_the_collector(), gc.get_freeze_count()))

    await _waiting_fan_out(FREEZE_MIN - 10, look)
    assert seen == [(FREEZE_MIN - 10, 0)]


async def test_the_applications_freeze_is_left_alone_while_tasks_wait() -> None:
    seen: list[int] = []

    async def look() -> None:
        seen.append(_markers_in_the_collector())

    mine = [object()]
    gc.freeze()
    try:
        await _waiting_fan_out(WIDTH, look)
        assert seen == [WIDTH]  # none frozen by the run
        assert not any(o is mine for o in gc.get_objects())  # the application's not thawed
    finally:
        gc.unfreeze()


async def test_a_wide_fan_out_started_while_tasks_wait_is_made_old_and_thawed_at_the_end() -> None:
    # The run holds its claim for its waiting tasks: the fan-out's instances are made
    # under it, and it thaws them with the rest only as the run ends.
    young: list[int] = []
    waiting = anyio.Event()
    started = 0

    async def hold() -> None:
        nonlocal started
        started += 1
        if started == WIDTH:
            waiting.set()
        await waiting.wait()

    @task
    async def parts() -> list[int]:
        await waiting.wait()
        return list(range(WIDTH))

    extract = _extract_noting_young(young)

    pipeline = Pipeline("gc", max_concurrency=2 * WIDTH + 10)
    pipeline.add_task(extract.expand(part=parts()))
    for j in range(WIDTH):
        pipeline.add_task(Task(f"h{j}", hold))
    result = await pipeline.run()
    assert result.status == "SUCCESS"
    assert young == [0]
    assert gc.get_freeze_count() == 0


async def test_a_run_freezes_its_running_tasks_only_at_new_highs() -> None:
    # Two waves of WIDTH waiting tasks, one after the other: the second is no higher
    # than the first, so it is not frozen. Garbage frozen with the first wave (cycles
    # its tasks dropped) waits for the thaw; freezing again in each wave piled it up.
    seen: list[int] = []
    first_done = anyio.Event()
    counts = [0, 0]
    waves = [anyio.Event(), anyio.Event()]

    def hold(wave: int) -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            marker = _Marker()
            counts[wave] += 1
            if counts[wave] == WIDTH:
                if wave == 1:
                    seen.append(_markers_in_the_collector())
                waves[wave].set()
            await waves[wave].wait()
            del marker

        return body

    async def between() -> None:
        first_done.set()

    gate = Task("between", between)
    pipeline = Pipeline("gc", max_concurrency=WIDTH + 2)
    for j in range(WIDTH):
        Task(f"a{j}", hold(0)) >> gate
        gate >> Task(f"b{j}", hold(1))
    pipeline.add_task(gate)
    assert (await pipeline.run()).status == "SUCCESS"
    assert first_done.is_set()
    assert seen == [WIDTH]  # the second wave's markers: none frozen


async def test_a_run_with_waiting_tasks_collects_what_it_froze_as_it_ends() -> None:
    # Its tasks dropped cycles while the run froze what was alive: thawed, they would
    # sit uncounted in the oldest generation, and the next run would freeze them again.
    class Cycle:
        pass

    refs: list[weakref.ref[Cycle]] = []

    async def drop_cycles() -> None:
        for _ in range(50):
            c = Cycle()
            c.me = c  # type: ignore[attr-defined]
            refs.append(weakref.ref(c))
        gc.freeze()  # as the run's next step of runners would: frozen with the rest
        del c

    gc.collect()
    full = gc.get_stats()[2]["collections"]
    await _waiting_fan_out(WIDTH, drop_cycles)
    assert [r for r in refs if r() is not None] == []
    assert gc.get_stats()[2]["collections"] > full
    assert await _young_at_start() == 0  # and the next run freezes


async def test_a_run_turned_away_freezes_once_the_claim_is_free() -> None:
    # Run A holds the claim while run B's first wave grows; once A has ended (and a
    # full collection looked at what it thawed), B's next runners freeze its waiting
    # tasks, the first wave's included.
    release_a, release_b, gate_b = anyio.Event(), anyio.Event(), anyio.Event()
    seen: list[int] = []
    second = 10  # a few more runners: no new high of its own

    async def wait_a() -> None:
        await release_a.wait()

    async def wait_b() -> None:
        marker = _Marker()
        await release_b.wait()
        del marker

    async def go() -> None:
        await gate_b.wait()

    a = Pipeline("a", max_concurrency=WIDTH)
    for j in range(WIDTH):
        a.add_task(Task(f"a{j}", wait_a))
    b = Pipeline("b", max_concurrency=WIDTH + second + 2)
    gate = Task("go", go)
    b.add_task(gate)
    for j in range(WIDTH):
        b.add_task(Task(f"b{j}", wait_b))
    for j in range(second):
        gate >> Task(f"c{j}", wait_b)

    async with anyio.create_task_group() as tg:
        a_done = anyio.Event()

        async def run_a() -> None:
            assert (await a.run()).status == "SUCCESS"
            a_done.set()

        async def run_b() -> None:
            assert (await b.run()).status == "SUCCESS"

        tg.start_soon(run_a)
        await anyio.wait_all_tasks_blocked()  # A holds the claim
        tg.start_soon(run_b)
        await anyio.wait_all_tasks_blocked()  # B's first wave waits, turned away
        assert _markers_in_the_collector() == WIDTH
        release_a.set()
        await a_done.wait()
        gc.collect()
        gate_b.set()
        await anyio.wait_all_tasks_blocked()  # B's second wave waits too
        seen.append(_markers_in_the_collector())
        release_b.set()
    assert seen[0] <= second + SPAWN_BURST


def test_a_claim_whose_loop_was_closed_with_its_run_inside_is_taken_back() -> None:
    # A worker thread's loop stopped and closed while a large run waits: the run's
    # thaw never runs. The next claim takes it back rather than leave the process
    # frozen, and never freezing again.
    holding = threading.Event()

    def worker() -> None:
        loop = asyncio.new_event_loop()

        async def run() -> None:
            async def look() -> None:
                holding.set()
                await asyncio.Event().wait()  # never set: the loop is closed under it

            await _waiting_fan_out(WIDTH, look)

        task = loop.create_task(run())
        loop.run_until_complete(asyncio.wait_for(asyncio.to_thread(holding.wait), 30))
        loop.close()  # with the run still in it
        del task

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(60)
    assert gc.get_freeze_count() > 0  # the abandoned run's
    assert _gc.freezing(FREEZE_MIN) is None  # taken back; it may have left cycles
    assert gc.get_freeze_count() == 0
    gc.collect()
    claim = _claim()
    claim.thaw()
