"""``GET /metrics``: Prometheus text, parsed with prometheus_client's own parser, whose
counts equal the runs' own (the store's runs, this process's attempts, retries,
Dremio queries on FakeDremio, pool occupancy while tasks hold their slots)."""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import _store_fixtures
import anyio
import anyio.lowlevel
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async import Pipeline, Task, _metrics, task
from dremioframe_async.dremio import DremioClient
from dremioframe_async.orchestration import RunFinished, RunStarted, RunStatus
from dremioframe_async.store import SQLiteStore
from dremioframe_async.tasks import DremioQueryTask
from dremioframe_async.testing import FakeDremio, sample_table
from dremioframe_async.ui import BearerAuth, ui_app
from dremioframe_async.ui import _metrics as ui_metrics

parser = pytest.importorskip("prometheus_client.parser")
pytestmark = pytest.mark.asyncio
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "runs.sqlite")
    try:
        yield opened
    finally:
        await opened.aclose()


async def scrape(client: TestClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(await response.text())


def pipelines(name: str, client: DremioClient, calls: dict[str, int]) -> tuple[Pipeline, Pipeline]:
    @task(name="flaky", retries=2)
    async def flaky() -> list[int]:
        calls["flaky"] = calls.get("flaky", 0) + 1
        if calls["flaky"] < 3:
            raise RuntimeError("not yet")
        return [1, 2, 3]

    @task(name="double")
    async def double(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x * 2

    good = Pipeline(name).add_task(DremioQueryTask("q", "SELECT * FROM lake.t", client=client))
    bad = Pipeline(name).add_task(double.expand(x=flaky()))
    return good, bad


async def test_metrics_equal_the_runs_own_counts(store: SQLiteStore) -> None:
    name = f"metered_{secrets.token_hex(4)}"
    app = ui_app(store)
    async with (
        TestClient(TestServer(app, host="127.0.0.1")) as http,
        FakeDremio() as fake,
        DremioClient(fake.url, token=fake.token, poll_interval=0.01) as dremio,
    ):
        fake.add_table("lake.t", sample_table(40))
        before = await scrape(http)
        good, bad = pipelines(name, dremio, {})
        results = [await good.run(store=store), await good.run(store=store)]
        results.append(await bad.run(store=store))
        # A run another process recorded: in the store, not in this process's counters.
        await store.record(
            [
                RunStarted("elsewhere", name, time.time(), {}, ("a",)),
                RunFinished("elsewhere", name, RunStatus.SUCCESS, time.time(), time.time()),
            ]
        )
        after = await scrape(http)

    assert [r.status.value for r in results] == ["SUCCESS", "SUCCESS", "FAILED"]
    assert value(after, "dremioframe_runs", pipeline=name, status="SUCCESS") == 3
    assert value(after, "dremioframe_runs", pipeline=name, status="FAILED") == 1
    finished = "dremioframe_runs_finished_total"
    assert value(after, finished, pipeline=name, status="SUCCESS") == 2
    assert value(after, finished, pipeline=name, status="FAILED") == 1
    attempts = "dremioframe_task_attempt_duration_seconds_count"
    assert value(after, attempts, pipeline=name, task="q", state="SUCCESS") == 2
    assert value(after, attempts, pipeline=name, task="flaky", state="FAILED") == 2
    assert value(after, attempts, pipeline=name, task="flaky", state="SUCCESS") == 1
    assert value(after, attempts, pipeline=name, task="double", state="SUCCESS") == 2
    assert value(after, attempts, pipeline=name, task="double", state="FAILED") == 1
    assert value(after, "dremioframe_task_retries_total", pipeline=name, task="flaky") == 2
    assert value(after, "dremioframe_tasks_running", pipeline=name) == 0
    assert value(after, "dremioframe_runs_running", pipeline=name) == 0

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert delta("dremioframe_dremio_queries_total", via="rest", outcome="ok") == 2
    assert delta("dremioframe_dremio_rows_total", via="rest") == 80
    assert delta("dremioframe_dremio_bytes_total", via="rest") > 0
    assert delta("dremioframe_dremio_query_duration_seconds_count", via="rest", outcome="ok") == 2
    writes = delta(
        "dremioframe_store_write_duration_seconds_count", store="SQLiteStore", outcome="ok"
    )
    assert writes >= 3  # at least each run's start


async def test_pool_and_concurrency_occupancy_while_tasks_hold_slots(store: SQLiteStore) -> None:
    name = f"pooled_{secrets.token_hex(4)}"
    entered, release = anyio.Event(), anyio.Event()
    holding = 0

    @task(name="hold", pool="db")
    async def hold(i: int) -> None:
        nonlocal holding
        holding += 1
        if holding == 2:
            entered.set()
        await release.wait()

    p = Pipeline(name, max_concurrency=5, pools={"db": 2})
    for i in range(3):
        p.add_task(hold(i))
    app = ui_app(store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        async with anyio.create_task_group() as tg:
            tg.start_soon(p.run)
            with anyio.fail_after(10):
                await entered.wait()
            during = await scrape(http)
            release.set()
        after = await scrape(http)
    assert value(during, "dremioframe_pool_slots_in_use", pipeline=name, pool="db") == 2
    assert value(during, "dremioframe_concurrency_slots_in_use", pipeline=name) == 2
    assert value(during, "dremioframe_tasks_running", pipeline=name) == 2
    assert value(during, "dremioframe_runs_running", pipeline=name) == 1
    assert value(after, "dremioframe_pool_slots_in_use", pipeline=name, pool="db") == 0
    assert value(after, "dremioframe_tasks_running", pipeline=name) == 0


async def test_metrics_need_the_uis_auth(store: SQLiteStore) -> None:
    token = secrets.token_urlsafe(24)
    app = ui_app(store, auth=BearerAuth(token))
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        refused = await http.get("/metrics")
        assert refused.status == 401
        allowed = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert allowed.status == 200
        text = await allowed.text()
    families = list(parser.text_string_to_metric_families(text))
    assert "dremioframe_task_attempt_duration_seconds" in {f.name for f in families}
    assert all(f.name.startswith("dremioframe_") for f in families)


store_factory = _store_fixtures.store_factory
any_store = _store_fixtures.store


async def test_every_store_counts_its_runs_by_pipeline_and_status(any_store: Any) -> None:
    now = time.time()
    events: list[Any] = []
    for i, (pipeline, status) in enumerate(
        [("a", RunStatus.SUCCESS), ("a", RunStatus.SUCCESS), ("a", RunStatus.FAILED), ("b", None)]
    ):
        events.append(RunStarted(f"r{i}", pipeline, now + i, {}, ("t",)))
        if status is not None:
            events.append(RunFinished(f"r{i}", pipeline, status, now + i, now + i))
    await any_store.record(events)
    assert await any_store.run_counts() == {
        ("a", "SUCCESS"): 2,
        ("a", "FAILED"): 1,
        ("b", "RUNNING"): 1,
    }


async def test_the_same_values_go_out_through_opentelemetry_metrics(store: SQLiteStore) -> None:
    sdk_metrics = pytest.importorskip("opentelemetry.sdk.metrics")
    export = pytest.importorskip("opentelemetry.sdk.metrics.export")
    reader = export.InMemoryMetricReader()
    provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    registry = _metrics.REGISTRY
    bound = [m for m in registry.metrics() if m.otel is not None]
    name = f"otel_{secrets.token_hex(4)}"

    during: list[Any] = []

    @task(name="one", pool="db")
    async def one() -> int:
        during.append(reader.get_metrics_data())  # collected while the task holds its slot
        return 1

    try:
        _metrics.enable_metrics(provider)
        await Pipeline(name, pools={"db": 2}).add_task(one()).run(store=store)
        data = reader.get_metrics_data()
    finally:
        for metric in registry.metrics():
            if metric not in bound:
                metric.otel = None  # unbind: later tests must not feed this provider
        provider.shutdown()
    points = {
        m.name: [p for p in m.data.data_points if p.attributes.get("pipeline") == name]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    (finished,) = points["dremioframe_runs_finished_total"]
    assert finished.value == 1
    assert finished.attributes["status"] == "SUCCESS"
    (attempt,) = points["dremioframe_task_attempt_duration_seconds"]
    assert attempt.count == 1
    assert dict(attempt.attributes) == {"pipeline": name, "task": "one", "state": "SUCCESS"}
    pool = [
        p
        for rm in during[0].resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "dremioframe_pool_slots_in_use"
        for p in m.data.data_points
        if p.attributes.get("pipeline") == name
    ]
    assert [(p.attributes["pool"], p.value) for p in pool] == [("db", 1)]


async def test_serve_answers_metrics_with_the_runs_it_ran(store: SQLiteStore) -> None:
    import aiohttp

    from dremioframe_async.service import serve

    name = f"served_{secrets.token_hex(4)}"

    @task(name="one")
    async def one() -> int:
        return 1

    urls: list[str] = []
    ready = anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    pipeline = Pipeline(name).add_task(one())
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(serve, [pipeline], store, port=0, on_ready=on_ready))
        with anyio.fail_after(20):
            await ready.wait()
            run_id = await store.enqueue(name)
            while (await store.get_run(run_id)).status is not RunStatus.SUCCESS:
                await anyio.sleep(0.05)  # bounded by fail_after: the served process runs it
        async with aiohttp.ClientSession() as http, http.get(urls[0] + "metrics") as response:
            assert response.status == 200
            samples = parse(await response.text())
        tg.cancel_scope.cancel()
    assert value(samples, "dremioframe_runs", pipeline=name, status="SUCCESS") == 1
    assert value(samples, "dremioframe_runs_finished_total", pipeline=name, status="SUCCESS") == 1
    attempts = "dremioframe_task_attempt_duration_seconds_count"
    assert value(samples, attempts, pipeline=name, task="one", state="SUCCESS") == 1


async def test_a_pipeline_with_more_task_names_than_labels_counts_the_rest_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each task name is a series of every task metric for the life of the process: a
    pipeline's names past ``TASK_LABELS`` share one label, and every attempt still counts.
    """
    monkeypatch.setattr(_metrics, "TASK_LABELS", 50)
    name, other = f"wide_{secrets.token_hex(4)}", f"narrow_{secrets.token_hex(4)}"

    async def noop() -> None:
        return None

    def wide(pipeline: str, width: int) -> Pipeline:
        built = Pipeline(pipeline)
        for i in range(width):
            built.add_task(Task(f"t{i}", noop))
        return built

    _metrics.enable_metrics()
    for _ in range(2):  # the same 80 names again: still 50 labels and the rest
        (await wide(name, 80).run()).raise_for_status()
    (await wide(other, 3).run()).raise_for_status()  # another pipeline's own labels
    samples = parse(_metrics.REGISTRY.render())
    count = "dremioframe_task_attempt_duration_seconds_count"
    labels = {
        dict(keys)["task"]: v
        for (metric, keys), v in samples.items()
        if metric == count and dict(keys)["pipeline"] == name
    }
    assert len(labels) == 51
    assert labels[_metrics.OTHER_TASKS] == 60  # 30 tasks past the first 50, twice
    assert sum(labels.values()) == 160
    assert all(labels[f"t{i}"] == 2 for i in range(80) if f"t{i}" in labels)
    narrow = {
        dict(keys)["task"]
        for (metric, keys), _ in samples.items()
        if metric == count and dict(keys)["pipeline"] == other
    }
    assert narrow == {"t0", "t1", "t2"}


async def test_pipelines_past_the_label_bound_are_counted_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service that puts the day in its pipelines' names would grow every pipeline
    metric by a series a day, for the life of the process: past ``PIPELINE_LABELS``
    names, runs are counted as ``pipeline="(other pipelines)"``, all of them."""
    monkeypatch.setattr(_metrics, "PIPELINE_LABELS", 3)  # none seen yet (conftest)
    names = [f"daily_{secrets.token_hex(4)}_{day}" for day in range(5)]

    async def noop() -> None:
        return None

    _metrics.enable_metrics()
    runs = "dremioframe_runs_finished_total"
    attempts = "dremioframe_task_attempt_duration_seconds_count"
    other = {"pipeline": _metrics.OTHER_PIPELINES, "task": "load", "state": "SUCCESS"}
    # The registry is the process's: "(other pipelines)" may count earlier tests' runs.
    before = parse(_metrics.REGISTRY.render())
    for name in [*names, names[0], names[4]]:
        (await Pipeline(name).add_task(Task("load", noop)).run()).raise_for_status()
    samples = parse(_metrics.REGISTRY.render())
    assert value(samples, runs, pipeline=names[0], status="SUCCESS") == 2
    assert value(samples, runs, pipeline=names[2], status="SUCCESS") == 1
    others = (runs, {"pipeline": _metrics.OTHER_PIPELINES, "status": "SUCCESS"})
    assert value(samples, others[0], **others[1]) == value(before, others[0], **others[1]) + 3
    seen = {dict(keys).get("pipeline") for (_, keys) in samples}
    assert not seen & set(names[3:])
    assert value(samples, attempts, **other) == value(before, attempts, **other) + 3


async def test_served_pipelines_keep_their_labels_and_the_stores_runs_are_bounded_too(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A UI labels the pipelines it serves first, whatever ran before; and the store's
    runs (``dremioframe_runs``, a series per pipeline ever recorded) are labelled as the
    process labels its own, past the bound counted together."""
    monkeypatch.setattr(_metrics, "PIPELINE_LABELS", 2)  # none seen yet (conftest)

    async def noop() -> None:
        return None

    served = Pipeline(f"served_{secrets.token_hex(4)}").add_task(Task("load", noop))
    others = [f"daily_{secrets.token_hex(4)}_{day}" for day in range(3)]
    other = _metrics.OTHER_PIPELINES
    app = ui_app(store, [served])
    # The registry is the process's: "(other pipelines)" may count earlier tests' runs.
    finished = "dremioframe_runs_finished_total"
    before = value(parse(_metrics.REGISTRY.render()), finished, pipeline=other, status="SUCCESS")
    for name in others:
        (await Pipeline(name).add_task(Task("load", noop)).run(store=store)).raise_for_status()
    (await served.run(store=store)).raise_for_status()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        samples = await scrape(client)
    for metric in (finished, "dremioframe_runs"):
        assert value(samples, metric, pipeline=served.name, status="SUCCESS") == 1, metric
        assert value(samples, metric, pipeline=others[0], status="SUCCESS") == 1, metric
    assert value(samples, finished, pipeline=other, status="SUCCESS") == before + 2
    assert value(samples, "dremioframe_runs", pipeline=other, status="SUCCESS") == 2


async def test_a_large_scrape_lets_the_event_loop_run_while_it_renders(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process with many labelled series renders them a step at a time: other tasks on
    the loop run in between, rather than waiting for the whole text."""
    name = f"many_{secrets.token_hex(4)}"
    registry = _metrics.REGISTRY
    for i in range(3_000):  # 3,000 series of 17 lines each
        registry.attempt_seconds.observe((name, f"t{i}", "SUCCESS"), 0.01)
    try:
        samples, during = await _scrape_counting_steps(store, monkeypatch)
    finally:
        for labels in [k for k in registry.attempt_seconds.values if k[0] == name]:
            del registry.attempt_seconds.values[labels]  # later scrapes need not render them
    assert (
        value(
            samples,
            "dremioframe_task_attempt_duration_seconds_count",
            pipeline=name,
            task="t2999",
            state="SUCCESS",
        )
        == 1
    )
    assert during >= 3_000 * 17 // ui_metrics.LINES_A_STEP


async def _scrape_counting_steps(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> tuple[Samples, int]:
    """A scrape of a UI's /metrics, and how often another task ran between its first
    rendered line and its last."""
    app = ui_app(store)
    steps = 0
    scraped = anyio.Event()
    at: list[int] = []
    lines = _metrics.REGISTRY.lines

    def counted() -> Iterator[str]:
        at.append(steps)
        yield from lines()
        at.append(steps)

    monkeypatch.setattr(_metrics.REGISTRY, "lines", counted)

    async def elsewhere() -> None:
        nonlocal steps
        while not scraped.is_set():
            steps += 1
            await anyio.lowlevel.checkpoint()

    async with (
        TestClient(TestServer(app, host="127.0.0.1")) as http,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(elsewhere)
        samples = await scrape(http)
        scraped.set()
    first, last = at
    return samples, last - first
