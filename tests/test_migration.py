"""What someone coming from ``dremioframe.orchestration`` writes first (see
docs/migration.md): each mistake gets an error that says what to write instead."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import anyio
import pytest

from dremioframe_async import Pipeline, TaskDefinitionError, task
from dremioframe_async.orchestration import ArgumentError


@task
def extract() -> int:
    return 1


@task
def alert() -> str:
    return "alerted"


def _pipeline() -> Pipeline:
    return Pipeline("etl").add_task(extract())


def test_using_run_without_await_says_to_await_it() -> None:
    pipeline = _pipeline()
    call = pipeline.run()  # the old, synchronous habit
    with pytest.raises(AttributeError, match=r"await pipeline\.run\(\)"):
        _ = call.status
    with pytest.raises(TypeError, match=r"await pipeline\.run\(\)"):
        _ = call["extract"]
    call.close()  # this test's own cleanup: no warning for this one


def test_a_run_never_awaited_warns_that_nothing_ran() -> None:
    pipeline = _pipeline()
    with pytest.warns(RuntimeWarning, match=r"never awaited, so nothing ran.*await pipeline"):
        pipeline.run()  # dropped at once: CPython frees it here


@pytest.mark.parametrize("how", ["asyncio.run", "anyio.run", "trio"])
def test_run_is_still_what_event_loops_take(how: str) -> None:
    pipeline = _pipeline()
    if how == "asyncio.run":
        result = asyncio.run(pipeline.run())
    elif how == "anyio.run":
        result = anyio.run(pipeline.run)
    else:
        result = anyio.run(pipeline.run, backend="trio")
    assert result["extract"] == 1


def test_a_run_call_handed_to_a_task_group_runs() -> None:
    async def main() -> list[object]:
        results: list[object] = []

        async def one() -> None:
            results.append((await _pipeline().run())["extract"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(_pipeline().run)
        return results

    assert anyio.run(main) == [1]


@pytest.mark.parametrize(
    "link",
    [
        lambda t: t.set_downstream(alert),
        lambda t: t.set_upstream(alert),
        lambda t: t >> alert,
    ],
    ids=["set_downstream", "set_upstream", "rshift"],
)
def test_linking_the_task_function_itself_says_to_call_it(link: object) -> None:
    with pytest.raises(TaskDefinitionError, match=r"call it, alert\(\), to make a Task"):
        link(extract())  # type: ignore[operator]


def test_adding_the_task_function_itself_says_to_call_it() -> None:
    with pytest.raises(ArgumentError, match=r"call it, alert\(\), to make a Task"):
        Pipeline("p").add_task(alert)  # type: ignore[arg-type]


# ---------------------------------------------------------------- docs/migration.md

DOC = Path(__file__).resolve().parent.parent / "docs" / "migration.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _blocks() -> list[str]:
    return _BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_migration_page_has_code() -> None:
    assert len(_blocks()) >= 5


@pytest.mark.parametrize("index", range(len(_BLOCK.findall(DOC.read_text(encoding="utf-8")))))
def test_each_migration_block_runs_and_prints_what_it_says(
    index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Blocks run in order in one namespace, as a reader would paste them."""
    namespace: dict[str, object] = {"__name__": "migration"}
    for block in _blocks()[: index + 1]:
        capsys.readouterr()
        exec(compile(block, str(DOC), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    claims = [
        line.split("  # ", 1)[1].strip()
        for line in _blocks()[index].splitlines()
        if line.lstrip().startswith("print(") and "  # " in line
    ]
    assert len(printed) == len(claims), printed
    for line, claim in zip(printed, claims, strict=True):
        assert claim in line
