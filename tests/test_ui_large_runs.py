"""A UI serving large runs and pipelines keeps its event loop free: a run's JSON of
1,000 tasks or more is built in a worker thread, a pipeline too large to draw makes
no graph nodes first, and a run page lists a bounded number of tasks."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import pytest_asyncio
from _threads_taken import default_threads_taken
from aiohttp.test_utils import TestClient, TestServer
from test_ui_api import sse_events

from dremioframe_async import Pipeline, Task, task
from dremioframe_async.orchestration import (
    LogCapture,
    RunFinished,
    RunStarted,
    RunStatus,
    TaskState,
    TaskStateChanged,
)
from dremioframe_async.store import MemoryStore
from dremioframe_async.ui import (
    _api,
    _forms,
    _graph,
    _live,
    _logs,
    _model,
    _pages,
    _respond,
    _threads,
    ui_app,
)
from dremioframe_async.ui._live import LiveRuns
from dremioframe_async.ui._threads import ui_threads

pytestmark = pytest.mark.asyncio


def wide(name: str, width: int) -> Pipeline:
    @task(name="leaf")
    async def leaf() -> int:
        return 1

    pipeline = Pipeline(name)
    for _ in range(width):
        pipeline.add_task(leaf())
    return pipeline


def noting_threads(fn: Callable[..., Any], into: list[int]) -> Callable[..., Any]:
    """``fn``, noting the thread of each call in ``into``."""

    def noted(*args: Any) -> Any:
        into.append(threading.get_ident())
        return fn(*args)

    return noted


def _longest(value: Any) -> int:
    """The longest list anywhere in ``value``."""
    if isinstance(value, dict):
        return max(map(_longest, value.values()), default=0)
    if isinstance(value, list):
        return max([len(value), *map(_longest, value)])
    return 0


def encoded_lists(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The longest list in each value the UI's JSON encoder is called with, from now on:
    one call holds the GIL throughout."""
    lengths: list[int] = []
    encode = _respond._encode

    def noted(value: Any) -> Any:
        lengths.append(_longest(value))
        return encode(value)

    monkeypatch.setattr(_respond, "_encode", noted)
    return lengths


async def run_page(store: MemoryStore, run_id: str) -> str:
    """The run page of ``run_id``, as a UI on ``store`` serves it."""
    async with TestClient(TestServer(ui_app(store), host="127.0.0.1")) as client:
        response = await client.get(f"/runs/{run_id}")
        assert response.status == 200
        return await response.text()


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
    limiter, as_json = ui_threads(), _api.task_json
    taken: list[float] = []  # the UI's own threads, not the ones a run's tasks use

    def taking(task_info: Any) -> Any:
        taken.append(limiter.borrowed_tokens)
        return as_json(task_info)

    monkeypatch.setattr(_api, "task_json", noting_threads(taking, built_in))
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
    assert min(taken) == 1


async def test_a_large_runs_pages_do_not_wait_for_the_threads_of_a_runs_tasks(
    store: MemoryStore,
) -> None:
    """The UI's work in worker threads takes its own threads: with every default one
    taken (plain-function tasks blocked in them), a large run's page, fragment and
    JSON still come."""
    result = await wide("wide", _api.JSON_IN_THREAD).run(store=store)
    result.raise_for_status()
    run_id = result.run_id
    async with TestClient(TestServer(ui_app(store), host="127.0.0.1")) as client:
        with default_threads_taken(), anyio.fail_after(10):
            for path in (f"/runs/{run_id}", f"/runs/{run_id}/live", f"/api/runs/{run_id}"):
                response = await client.get(path)
                assert response.status == 200, path
                assert run_id in await response.text(), path


async def test_a_large_served_pipelines_json_is_built_in_a_worker_thread(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /api/pipelines`` lists a served pipeline's tasks: 100,000 of them took 0.3 s
    of the loop. From ``JSON_IN_THREAD`` tasks, it is built on the UI's own threads."""
    small, large = wide("small", 3), wide("large", _api.JSON_IN_THREAD)
    built_in: list[int] = []
    limiter, as_json = ui_threads(), _api.pipeline_json
    taken: list[float] = []

    def taking(view: Any) -> Any:
        taken.append(limiter.borrowed_tokens)
        return as_json(view)

    monkeypatch.setattr(_api, "pipeline_json", noting_threads(taking, built_in))
    planned_in: list[int] = []  # the loop plans; the thread reads the plans it made
    monkeypatch.setattr(Pipeline, "plan", noting_threads(Pipeline.plan, planned_in))
    async with TestClient(TestServer(ui_app(store, [small, large]), host="127.0.0.1")) as client:
        with default_threads_taken():
            response = await client.get("/api/pipelines")
        assert response.status == 200
        data = await response.json()
    listed = {p["name"]: p for p in data["pipelines"]}
    assert len(listed["large"]["tasks"]) == _api.JSON_IN_THREAD
    assert listed["small"]["tasks"] == [
        {"key": k, "upstream": []} for k in ("leaf", "leaf_2", "leaf_3")
    ]
    assert len(built_in) == 2
    assert threading.get_ident() not in built_in
    assert min(taken) == 1
    assert set(planned_in) == {threading.get_ident()}


async def test_a_large_page_of_log_lines_is_built_in_a_worker_thread(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /api/runs/{id}/logs?limit=10000``: 10,000 lines took 55-90 ms of the loop to
    build and encode. From ``IN_THREAD_FROM`` lines, they are built on the UI's threads."""
    count = _threads.IN_THREAD_FROM
    logger = logging.getLogger("dremioframe_async.tests.chatty")

    @task(name="chatty")
    async def chatty() -> None:
        for i in range(count):
            logger.warning("line %d", i)

    capture = LogCapture(max_lines=count)
    result = await Pipeline("logs").add_task(chatty()).run(store=store, capture_logs=capture)
    result.raise_for_status()
    built_in: list[int] = []
    monkeypatch.setattr(_logs, "entry_json", noting_threads(_logs.entry_json, built_in))
    async with TestClient(TestServer(ui_app(store), host="127.0.0.1")) as client:
        with default_threads_taken():
            response = await client.get(f"/api/runs/{result.run_id}/logs?limit={count}")
        assert response.status == 200
        data = await response.json()
    assert [line["message"] for line in data["lines"]] == [f"line {i}" for i in range(count)]
    assert len(built_in) == count
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
    monkeypatch.setattr(_api, "task_state_json", noting_threads(_api.task_state_json, compared_in))
    async with TestClient(TestServer(ui_app(store), host="127.0.0.1")) as client:
        lengths = encoded_lists(monkeypatch)
        response = await client.get(f"/api/runs/{result.run_id}/events")
        assert response.status == 200
        events = await sse_events(response, until="end")
    assert [name for name, _ in events] == ["run", "end"]
    assert len(events[0][1]["tasks"]) == _api.JSON_IN_THREAD
    assert events[1][1] == {"status": "SUCCESS"}
    assert len(compared_in) == _api.JSON_IN_THREAD
    assert threading.get_ident() not in compared_in
    assert 0 < max(lengths) <= _respond.SLICE  # its first event, a slice at a time


async def test_a_large_run_of_this_process_is_read_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``serve``'s UI reads the runs it runs from their events: a 100,000-task run's views
    took 1.1 s of the very loop that ran it. Two reads at once take turns, and the second
    shares the first's views; a read after the run changed builds them again, and an
    ended run keeps none (up to 100 ended runs stay readable)."""
    live = LiveRuns()

    def going(event: Any) -> None:  # the run as seen before its end
        if not isinstance(event, RunFinished):
            live(event)

    result = await wide("wide", _live.VIEWS_IN_THREAD).run(on_event=going)
    result.raise_for_status()
    built_in: list[int] = []
    monkeypatch.setattr(MemoryStore, "task_views", noting_threads(MemoryStore.task_views, built_in))
    run = live.get(result.run_id)
    assert run is not None
    async with anyio.create_task_group() as tg:
        reads: list[Any] = []

        async def read() -> None:
            reads.append(await run.read())

        tg.start_soon(read)
        tg.start_soon(read)
    assert [len(tasks) for _, tasks in reads] == [_live.VIEWS_IN_THREAD] * 2
    assert all(info.status == "RUNNING" for info, _ in reads)
    assert reads[0][1] is reads[1][1]
    assert len(built_in) == 1
    run.add(RunFinished(run.run_id, "wide", RunStatus.SUCCESS, time.time(), time.time()))
    ended, again = await run.read()
    assert ended.status == "SUCCESS"
    assert again is not reads[0][1]
    assert len(again) == _live.VIEWS_IN_THREAD
    assert len(built_in) == 2
    await run.read()
    assert len(built_in) == 3
    assert threading.get_ident() not in built_in


async def test_events_are_not_folded_into_a_live_run_while_its_views_are_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read that would fold new events waits for the views being built in a thread:
    folding then would change the dicts the thread is reading."""
    live = LiveRuns()
    result = await wide("wide", _live.VIEWS_IN_THREAD).run(on_event=live)
    result.raise_for_status()
    run = live.get(result.run_id)
    assert run is not None
    entered, go = threading.Event(), threading.Event()
    building = [False]
    folded_while_building: list[bool] = []
    views, record = MemoryStore.task_views, MemoryStore.record

    def held(self: MemoryStore, run_id: str) -> Any:
        building[0] = True
        entered.set()
        go.wait(10)
        try:
            return views(self, run_id)
        finally:
            building[0] = False

    async def noted(self: MemoryStore, events: Any) -> None:
        folded_while_building.append(building[0])
        await record(self, events)

    await run.read()  # the run's own events folded, before the watch begins
    monkeypatch.setattr(MemoryStore, "task_views", held)
    monkeypatch.setattr(MemoryStore, "record", noted)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.read)
        await anyio.to_thread.run_sync(entered.wait, 10)
        run.add(RunFinished(run.run_id, "wide", RunStatus.SUCCESS, time.time(), time.time()))
        tg.start_soon(run.read)
        await anyio.wait_all_tasks_blocked()
        go.set()
    assert folded_while_building == [False]


async def test_sliced_json_is_json_dumps_text_made_a_slice_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One call of the encoder holds the GIL throughout: a large answer is encoded
    ``SLICE`` list items a call, into the very text ``json.dumps`` makes."""
    lengths = encoded_lists(monkeypatch)
    tasks = [{"key": f"t{i}", "state": "SUCCESS", "at": i / 7} for i in range(1_234)]
    odd = {"when": _respond, "none": None, "nested": {"a": [1, 2]}}
    for data in (
        {"run": {"id": "r", "params": {"x": [1, 2]}}, "tasks": tasks, "odd": odd},
        tasks,
        {"pipelines": [{"name": "p", "tasks": tasks}, {"name": "q", "tasks": []}]},
        [odd, {"deep": [{"tasks": tasks}]}],
        {"tasks": tasks[:3], "empty": []},
        {},
        [],
        "text",
    ):
        assert _respond.dumps_sliced(data) == json.dumps(data, default=str)
    assert lengths
    assert max(lengths) <= _respond.SLICE


async def test_a_capped_run_page_lists_running_and_failed_tasks_before_pending_ones(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap, a task that runs or failed is listed whatever its place: the graph
    is not drawn for such a run, so the table is the way to its page and live log."""
    monkeypatch.setattr(_pages, "MAX_TASK_ROWS", 20)
    at = time.time()
    keys = ["gate", *(f"p{i}" for i in range(25)), "x", "y"]
    events: list[Any] = [RunStarted("r", "wide", at, {}, tuple(keys))]
    states = {"gate": TaskState.RUNNING, "x": TaskState.RUNNING, "y": TaskState.FAILED}
    events += [
        TaskStateChanged("r", "wide", key, states.get(key, TaskState.PENDING), at + 1, 1)
        for key in keys
    ]
    await store.record(events)
    page = await run_page(store, "r")
    rows = re.findall(r'<tr[^>]*data-key="([a-z]+\d*)"', page)
    assert rows == ["gate", *(f"p{i}" for i in range(17)), "x", "y"]
    assert "8 more tasks not listed here" in page


async def test_a_run_pages_mapped_instances_are_listed_within_one_budget(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each mapped task listed up to ``MAX_LISTED`` of its instances, so 1,000 mapped
    tasks could put 200,000 rows on a capped page: they share ``MAX_TASK_ROWS`` rows."""
    monkeypatch.setattr(_pages, "MAX_TASK_ROWS", 50)
    monkeypatch.setattr(_pages, "MAX_LISTED", 20)
    at = time.time()
    mapped = [f"m{i}" for i in range(5)]
    events: list[Any] = [RunStarted("r", "mapped", at, {}, tuple(mapped))]
    for key in mapped:
        events.append(TaskStateChanged("r", "mapped", key, TaskState.SUCCESS, at + 2, 0))
        events += [
            TaskStateChanged("r", "mapped", f"{key}[{j}]", TaskState.SUCCESS, at + 1, 1)
            for j in range(30)
        ]
    await store.record(events)
    page = await run_page(store, "r")
    shown = re.findall(r'<tr class="instance" data-key="(m\d)\[\d+\]"', page)
    assert [shown.count(key) for key in mapped] == [20, 20, 10, 0, 0]
    groups = re.findall(r"<summary>30 mapped instances of m\d</summary>(.*?)</details>", page)
    notes = [re.findall(r"(\d+) more not listed here", group) for group in groups]
    assert notes == [["10"], ["10"], ["20"], ["30"], ["30"]]
    assert '<table class="instances"></table>' not in page  # none past the budget
    # Each mapped task's stored results list MAX_LISTED too, and say what they leave out.
    results = page.split("<h2>Stored results</h2>")[1]
    assert re.findall(r"(\d+) more not listed here", results) == ["10"] * 5


async def test_a_task_page_finds_its_instances_without_grouping_the_run(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task page grouped every task of the run to find one task's instances (0.3-0.45 s
    of the loop for 100,000 tasks); it picks them out by key, the same ones."""

    @task(name="parts")
    async def parts() -> list[int]:
        return list(range(12))

    @task(name="work")
    async def work(p: int) -> int:
        return p

    result = await Pipeline("mapped").add_task(work.expand(p=parts())).run(store=store)
    result.raise_for_status()
    tasks = await store.get_tasks(result.run_id)
    grouped = {g.task.key: g.instances for g in _model.group_tasks(tasks)}
    for key in ("work", "parts", "work[3]", "absent"):
        assert _model.instances_of(tasks, key) == grouped.get(key, ())
    assert [t.key for t in _model.instances_of(tasks, "work")] == [f"work[{i}]" for i in range(12)]

    def refused(tasks: object) -> None:
        raise AssertionError("the task page grouped the whole run")

    monkeypatch.setattr(_model, "group_tasks", refused)
    monkeypatch.setattr(_logs, "group_tasks", refused, raising=False)
    async with TestClient(TestServer(ui_app(store), host="127.0.0.1")) as client:
        response = await client.get(f"/runs/{result.run_id}/task", params={"key": "work"})
        assert response.status == 200
        page = await response.text()
    assert "work[11]" in page
