"""A wide fan-out makes its instances a slice at a time, yielding to the loop in
between: the first ones run meanwhile, and a cancellation meanwhile still
settles every instance."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from dremioframe_async.orchestration import Pipeline, TaskState, TaskStateChanged, _attempts, task
from dremioframe_async.orchestration._node import ChildNode
from dremioframe_async.orchestration._run_core import SLICE

pytestmark = pytest.mark.anyio

WIDTH = 3 * SLICE + 1


async def test_the_first_instances_run_before_the_last_are_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[int] = [0]  # this run's instances, counted as they are made

    class Counted(ChildNode):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            made[0] += 1
            super().__init__(*args)

    monkeypatch.setattr(_attempts, "ChildNode", Counted)
    made_when_first_ran: list[int] = []

    @task(max_map_length=WIDTH)
    async def parts() -> list[int]:
        return list(range(WIDTH))

    @task(max_map_length=WIDTH)
    async def extract(part: int) -> int:
        if part == 0:
            made_when_first_ran.append(made[0])
        return part

    result = await Pipeline("slices").add_task(extract.expand(part=parts())).run()
    assert result.status == "SUCCESS"
    assert result["extract"] == list(range(WIDTH))  # every instance, in order
    assert made[0] == WIDTH
    assert 0 < made_when_first_ran[0] < WIDTH  # made all at once, all would exist


async def test_two_wide_fan_outs_at_once_keep_their_instances_together() -> None:
    # Made a slice at a time, two fan-outs' instances interleave as they are made;
    # the result lists each fan-out's together, in order.
    @task(max_map_length=WIDTH)
    async def parts() -> list[int]:
        return list(range(WIDTH))

    @task(max_map_length=WIDTH)
    async def a(part: int) -> int:
        return part

    @task(max_map_length=WIDTH)
    async def b(part: int) -> int:
        return part

    source = parts()
    pipeline = Pipeline("slices").add_task(a.expand(part=source)).add_task(b.expand(part=source))
    result = await pipeline.run()
    assert result.status == "SUCCESS"
    keys = [k for k in result.states if "[" in k]
    assert keys == [f"a[{j}]" for j in range(WIDTH)] + [f"b[{j}]" for j in range(WIDTH)]


async def test_a_cancellation_while_instances_are_made_settles_every_instance() -> None:
    outer = anyio.CancelScope()
    final: dict[str, TaskState] = {}

    def note(event: object) -> None:
        if isinstance(event, TaskStateChanged) and event.state in (
            TaskState.SUCCESS,
            TaskState.CANCELLED,
            TaskState.FAILED,
        ):
            final[event.key] = event.state

    @task(max_map_length=WIDTH)
    async def parts() -> list[int]:
        return list(range(WIDTH))

    @task(max_map_length=WIDTH)
    async def extract(part: int) -> int:
        if part == 0:
            outer.cancel()  # while later slices are still to be made
            await anyio.sleep_forever()
        return part

    with outer:
        await Pipeline("slices").add_task(extract.expand(part=parts())).run(on_event=note)
    assert outer.cancelled_caught
    instances = {k: s for k, s in final.items() if k.startswith("extract[")}
    assert len(instances) == WIDTH  # every instance made, and settled
    assert instances["extract[0]"] is TaskState.CANCELLED
    assert final["extract"] is TaskState.CANCELLED


def test_combinations_read_by_position_match_the_cross_product() -> None:
    import itertools

    from dremioframe_async.orchestration._mapping import Combinations

    values = [(1, 2, 3), ("a", "b"), (None, 4.5, "x", 7)]
    combos = Combinations(["n", "s", "v"], values)
    expected = [dict(zip("nsv", c, strict=True)) for c in itertools.product(*values)]
    assert len(combos) == len(expected) == 24
    assert [combos[j] for j in range(len(combos))] == expected
    assert list(combos) == expected
    assert combos[-1] == expected[-1]
    assert combos[5:9] == expected[5:9]
    with pytest.raises(IndexError):
        combos[24]
    with pytest.raises(IndexError):
        combos[-25]
    assert len(Combinations(["n", "s"], [(1, 2), ()])) == 0
    assert Combinations(["n"], [("only",)])[0] == {"n": "only"}


async def test_a_failed_instance_fails_the_mapped_task_with_the_first_error() -> None:
    @task
    async def parts() -> list[int]:
        return list(range(6))

    @task
    async def extract(part: int) -> int:
        if part in (2, 4):
            raise ValueError(f"part {part}")
        return part

    mapped = extract.expand(part=parts())
    result = await Pipeline("slices").add_task(mapped).run()
    assert result.states["extract"] is TaskState.FAILED
    assert result.tasks["extract"].reason == "2 of 6 instances did not succeed"
    assert str(result.tasks["extract"].error) == "part 2"  # the first failed instance's
    assert result.states["extract[2]"] is TaskState.FAILED
    assert result.states["extract[3]"] is TaskState.SUCCESS
    assert result.status == "FAILED"
