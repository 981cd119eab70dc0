"""A large run makes its per-task state without the cyclic collector running, and
leaves the collector as it found it: nothing of its own frozen, a host's freeze
and a host's disabled collector untouched."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import anyio
import pytest

from dremioframe_async.orchestration import Pipeline, Task, task
from dremioframe_async.orchestration._gc import FREEZE_MIN, made_frozen
from dremioframe_async.orchestration._node import ChildNode

pytestmark = pytest.mark.anyio

WIDTH = 3 * FREEZE_MIN  # a few slices' worth of young collections if made unfrozen


class Collections:
    """The cyclic collections started while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.seen: list[int] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if self.on and phase == "start":
            self.seen.append(info["generation"])


@pytest.fixture
def collections() -> Iterator[Collections]:
    watch = Collections()
    gc.callbacks.append(watch)
    try:
        yield watch
    finally:
        gc.callbacks.remove(watch)


def _fan_out(width: int, first: Task | None = None) -> Pipeline:
    async def noop() -> None:
        return None

    root = Task("root", noop)
    if first is not None:
        root >> first
    for j in range(width):
        root >> Task(f"t{j}", noop)
    return Pipeline("gc").add_task(root)


async def test_a_large_run_makes_its_nodes_without_a_collection(
    collections: Collections,
) -> None:
    seen_at_start: list[list[int]] = []

    async def root() -> None:
        collections.on = False  # every node is made before a task starts
        seen_at_start.append(list(collections.seen))

    async def noop() -> None:
        return None

    first = Task("root", root)
    for j in range(WIDTH):
        first >> Task(f"t{j}", noop)
    pipeline = Pipeline("gc").add_task(first)
    pipeline.plan(())  # planned beforehand: only the run's own work is watched
    gc.collect()  # the young generation empty: the run's own allocations count
    collections.on = True
    result = await pipeline.run()
    assert result.status == "SUCCESS"
    assert seen_at_start[0] == []  # made unfrozen: a young collection every 700 nodes
    assert gc.get_freeze_count() == 0


async def test_a_wide_fan_out_makes_its_instances_straight_into_the_oldest_generation() -> None:
    # Made frozen and thawed, every instance is old at once: none is left among
    # the young objects, which a young collection would promote (and count
    # towards a full one). Made plainly, the last few hundred are still young.
    young_instances: list[int] = []

    @task
    async def parts() -> list[int]:
        return list(range(WIDTH))

    @task
    async def extract(part: int) -> int:
        if not young_instances:
            young = [o for g in (0, 1) for o in gc.get_objects(generation=g)]
            young_instances.append(sum(1 for o in young if type(o) is ChildNode))
        return part

    result = await Pipeline("gc").add_task(extract.expand(part=parts())).run()
    assert result.status == "SUCCESS"
    assert result["extract"] == list(range(WIDTH))
    assert young_instances == [0]
    assert gc.get_freeze_count() == 0


async def test_nothing_stays_frozen_once_the_nodes_are_made() -> None:
    frozen_while_running: list[int] = []

    async def look() -> None:
        frozen_while_running.append(gc.get_freeze_count())

    result = await _fan_out(WIDTH, Task("look", look)).run()
    assert result.status == "SUCCESS"
    assert frozen_while_running == [0]  # thawed before any task starts
    assert gc.get_freeze_count() == 0


async def test_a_cancelled_run_leaves_nothing_frozen() -> None:
    pipeline = _fan_out(WIDTH)
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled before it starts: its nodes are still made, shielded
        await pipeline.run()
    assert gc.get_freeze_count() == 0


async def test_the_hosts_own_freeze_is_left_alone() -> None:
    marker = [object()]
    gc.freeze()  # as a pre-fork server does
    try:
        # Frozen with the rest: in none of the collector's generations.
        assert not any(o is marker for o in gc.get_objects())
        result = await _fan_out(WIDTH).run()
        assert result.status == "SUCCESS"
        assert not any(o is marker for o in gc.get_objects())  # not thawed by the run
    finally:
        gc.unfreeze()


async def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        result = await _fan_out(WIDTH).run()
        assert result.status == "SUCCESS"
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_made_frozen_resumes_only_a_collector_that_ran() -> None:
    gc.disable()
    try:
        with made_frozen():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
    with made_frozen():
        assert not gc.isenabled()
        made = [object()]
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0  # frozen, with what the block made
    gc.unfreeze()
    assert made
