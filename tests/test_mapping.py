"""Dynamic mapping with Airflow's semantics: partial, expand (cross product), expand_kwargs.

Every test runs on asyncio and trio (the ``anyio_backend`` fixture in conftest).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from dremioframe_async import Pipeline, TaskDefinitionError, TaskState, task
from dremioframe_async.orchestration import (
    DEFAULT_MAX_MAP_LENGTH,
    ExpandError,
    MapLengthError,
    MappedTask,
)

pytestmark = pytest.mark.anyio


@task
async def add(x: int, y: int, scale: int = 1) -> int:
    return (x + y) * scale


@task
async def numbers(n: int) -> list[int]:
    return list(range(n))


@task
async def total(values: list[int]) -> int:
    return sum(values)


async def test_expand_over_two_arguments_maps_the_cross_product_in_order() -> None:
    mapped = add.expand(x=[2, 4, 8], y=[5, 10])
    result = await Pipeline("p").add_task(total(mapped)).run()
    # Airflow's order: the first argument varies slowest.
    assert result["add"] == [7, 12, 9, 14, 13, 18]
    assert result["total"] == 73
    assert len([k for k in result.states if k.startswith("add[")]) == 6


async def test_partial_constants_and_upstream_sources_combine() -> None:
    @task
    async def factor() -> int:
        return 10

    mapped = add.partial(scale=factor()).expand(x=numbers(2), y=[1, 2])
    result = await Pipeline("p").add_task(mapped).run()
    assert result["add"] == [10, 20, 20, 30]
    assert {t.name for t in mapped.upstream} == {"factor", "numbers"}


async def test_expand_kwargs_over_literal_dicts() -> None:
    mapped = add.partial(scale=2).expand_kwargs([{"x": 1, "y": 2}, {"x": 10, "y": 20}])
    result = await Pipeline("p").add_task(mapped).run()
    assert result["add"] == [6, 60]
    assert result.states["add[1]"] is TaskState.SUCCESS


async def test_expand_kwargs_over_an_upstream_result() -> None:
    @task
    async def pairs() -> list[dict[str, int]]:
        return [{"x": i, "y": i} for i in range(3)]

    result = await Pipeline("p").add_task(add.expand_kwargs(pairs())).run()
    assert result["add"] == [0, 2, 4]


@pytest.mark.parametrize(
    ("produced", "fragment"),
    [
        pytest.param([1, 2], "element 0 is not a dict", id="not-dicts"),
        pytest.param([{"x": 1, "zz": 2}], "element 0", id="unknown-keyword"),
        pytest.param([{"x": 1, "y": 1, "scale": 3}], "repeats partial", id="clash"),
    ],
)
async def test_expand_kwargs_bad_upstream_dicts_fail_the_task_clearly(
    produced: list[Any], fragment: str
) -> None:
    @task
    async def source() -> list[Any]:
        return produced

    mapped = add.partial(scale=1).expand_kwargs(source())
    result = await Pipeline("p").add_task(mapped).run()
    assert result.states["add"] is TaskState.FAILED
    err = result.errors["add"]
    assert isinstance(err, ExpandError)
    assert fragment in str(err)
    assert "'add'" in str(err)


async def test_literal_generator_is_materialised_once_and_reused_by_every_run() -> None:
    pulled: list[int] = []

    def gen() -> Iterator[int]:
        for i in range(3):
            pulled.append(i)
            yield i

    mapped = add.partial(y=100).expand(x=gen())
    pipeline = Pipeline("p").add_task(mapped)
    first = await pipeline.run()
    second = await pipeline.run()
    assert first["add"] == second["add"] == [100, 101, 102]
    assert pulled == [0, 1, 2]  # read at definition time, once


async def test_literal_endless_iterator_is_capped_at_definition_time() -> None:
    capped = task(max_map_length=50)(add.fn)
    with pytest.raises(MapLengthError, match="max_map_length=50") as info:
        capped.partial(y=1).expand(x=itertools.count())
    assert isinstance(info.value, ValueError)
    assert info.value.limit == 50


async def test_upstream_result_over_the_cap_fails_the_task_without_hanging() -> None:
    @task
    async def endless() -> Iterator[int]:
        return itertools.count()

    capped = task(max_map_length=20)(add.fn)
    downstream = total(capped.partial(y=0).expand(x=endless()))
    result = await Pipeline("p").add_task(downstream).run()
    assert result.states["add"] is TaskState.FAILED
    assert isinstance(result.errors["add"], MapLengthError)
    assert result.states["total"] is TaskState.UPSTREAM_FAILED
    assert not any(k.startswith("add[") for k in result.states)  # no instance was made


async def test_cross_product_over_the_cap_fails_naming_the_sizes() -> None:
    capped = task(max_map_length=10)(add.fn)
    mapped = capped.expand(x=numbers(4), y=[1, 2, 3])  # 4 x 3 = 12 > 10
    result = await Pipeline("p").add_task(mapped).run()
    err = result.errors["add"]
    assert isinstance(err, MapLengthError)
    assert "4 x 3 = 12" in str(err)


async def test_exactly_the_cap_is_allowed() -> None:
    capped = task(max_map_length=6)(add.fn)
    result = await Pipeline("p").add_task(capped.expand(x=[1, 2, 3], y=[0, 1])).run()
    assert len(result["add"]) == 6


def test_default_cap_applies_without_an_option() -> None:
    with pytest.raises(MapLengthError):
        add.partial(y=0).expand(x=range(DEFAULT_MAX_MAP_LENGTH + 1))
    assert len(add.partial(y=0).expand(x=range(DEFAULT_MAX_MAP_LENGTH)).mapped["x"]) == (
        DEFAULT_MAX_MAP_LENGTH
    )


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        pytest.param(lambda: add.partial(nope=1), "bad arguments", id="partial-unknown"),
        pytest.param(lambda: add.partial(context=1), "engine sets it", id="partial-context"),
        pytest.param(lambda: add.partial(x=1).expand(x=[1], y=[2]), "both partial", id="twice"),
        pytest.param(lambda: add.expand(x=[1]), "bad arguments", id="y-missing"),
        pytest.param(lambda: add.expand(x=[1], y=3), "needs a Task or an iterable", id="int"),
        pytest.param(lambda: add.expand_kwargs([{"x": 1}]), "element 0", id="kwargs-missing-y"),
        pytest.param(lambda: add.expand_kwargs(["ab"]), "not a dict", id="kwargs-not-dicts"),
        pytest.param(lambda: add.expand_kwargs(5), "needs a Task or an iterable", id="kwargs-int"),
    ],
)
def test_bad_mapping_is_rejected_at_definition_time(build: Any, fragment: str) -> None:
    with pytest.raises(TaskDefinitionError, match=fragment):
        build()


async def test_single_keyword_expand_keeps_working() -> None:
    @task
    async def double(item: int) -> int:
        return item * 2

    mapped = double.expand(item=numbers(3))
    assert isinstance(mapped, MappedTask)
    assert mapped.parameter == "item"
    result = await Pipeline("p").add_task(total(mapped)).run()
    assert result["double"] == [0, 2, 4]
    assert result["total"] == 6
