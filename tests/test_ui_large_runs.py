"""A UI serving large runs and pipelines keeps its event loop free: a run's JSON of
1,000 tasks or more is built in a worker thread, a pipeline too large to draw makes
no graph nodes first, and a run page lists a bounded number of tasks."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from test_ui_api import sse_events

from dremioframe_async import Pipeline, Task, task
from dremioframe_async.store import MemoryStore
from dremioframe_async.ui import _api, _forms, _graph, _pages, ui_app

pytestmark = pytest.mark.asyncio


def wide(name: str, width: int) -> Pipeline:
    @task(name="leaf")
    async def leaf() -> int:
        return 1

    pipeline = Pipeline(name)
    for _ in range(width):
        pipeline.add_task(leaf())
    return pipeline


@pytest_asyncio.fixture
async def store() -> AsyncIterator[MemoryStore]:
    opened = MemoryStore()
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_a_large_runs_json_is_built_in_a_worker_thread(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = await wide("wide", _api.JSON_IN_THREAD).run(store=store)
    result.raise_for_status()
    built_in: list[int] = []
    as_json = _api.task_json

    def watched(task_info: Any) -> Any:
        built_in.append(threading.get_ident())
        return as_json(task_info)

    monkeypatch.setattr(_api, "task_json", watched)
    async with TestClient(TestServer(ui_app(store), host="127.0.0.1")) as client:
        response = await client.get(f"/api/runs/{result.run_id}")
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        data = await response.json()
    assert data["run"]["status"] == "SUCCESS"
    assert len(data["tasks"]) == _api.JSON_IN_THREAD
    assert data["cancellable"] is False
    assert len(built_in) == _api.JSON_IN_THREAD
    assert threading.get_ident() not in built_in


async def test_a_pipeline_too_large_to_draw_makes_no_graph_nodes(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []
    node = _forms.GraphNode

    def counted(*args: Any) -> Any:
        made.append(args)
        return node(*args)

    monkeypatch.setattr(_forms, "GraphNode", counted)
    small, large = wide("small", 3), wide("large", _graph.MAX_NODES + 1)
    async with TestClient(TestServer(ui_app(store, [small, large]), host="127.0.0.1")) as client:
        response = await client.get("/pipelines")
        assert response.status == 200
        page = await response.text()
    assert f"{_graph.MAX_NODES + 1} tasks: too many to draw" in page
    assert len(made) == 3  # the small pipeline's graph only


async def test_a_run_page_lists_so_many_tasks_those_that_did_not_succeed_first(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100,000-task run's page was 36 MB: its table lists ``MAX_TASK_ROWS`` tasks, the
    ones that did not succeed among them whatever their place, and says how many more."""
    monkeypatch.setattr(_pages, "MAX_TASK_ROWS", 20)

    async def fine() -> int:
        return 1

    async def broken() -> int:
        raise ValueError("no")

    pipeline = Pipeline("wide")
    for i in range(30):
        pipeline.add_task(Task(f"t{i}", broken if i >= 27 else fine))
    result = await pipeline.run(store=store)
    assert result.status == "FAILED"
    async with TestClient(TestServer(ui_app(store), host="127.0.0.1")) as client:
        response = await client.get(f"/runs/{result.run_id}")
        assert response.status == 200
        page = await response.text()
    rows = re.findall(r'<tr[^>]*data-key="(t\d+)"', page)
    assert rows == [f"t{i}" for i in (*range(17), 27, 28, 29)]
    assert "10 more tasks not listed here" in page


async def test_a_large_runs_event_stream_compares_and_encodes_in_a_worker_thread(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each look at a 100,000-task run compared every task's state on the loop, and its
    first event (every task) was 12 MB of JSON encoded there."""
    result = await wide("wide", _api.JSON_IN_THREAD).run(store=store)
    result.raise_for_status()
    compared_in: list[int] = []
    state_json = _api.task_state_json

    def watched(task_info: Any) -> Any:
        compared_in.append(threading.get_ident())
        return state_json(task_info)

    monkeypatch.setattr(_api, "task_state_json", watched)
    async with TestClient(TestServer(ui_app(store), host="127.0.0.1")) as client:
        response = await client.get(f"/api/runs/{result.run_id}/events")
        assert response.status == 200
        events = await sse_events(response, until="end")
    assert [name for name, _ in events] == ["run", "end"]
    assert len(events[0][1]["tasks"]) == _api.JSON_IN_THREAD
    assert events[1][1] == {"status": "SUCCESS"}
    assert len(compared_in) == _api.JSON_IN_THREAD
    assert threading.get_ident() not in compared_in
