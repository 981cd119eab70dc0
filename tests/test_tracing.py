"""OpenTelemetry spans of a run (extra ``otel``), checked with the SDK's in-memory exporter.

The tracer provider is passed to ``run()``: no test sets the global one. Dremio
queries run against FakeDremio over real HTTP and Flight; ``HttpTask`` calls a
real aiohttp server that records the ``traceparent`` it receives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import _store_fixtures
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from dremioframe_async import Pipeline, task
from dremioframe_async.dremio import DremioClient
from dremioframe_async.orchestration import _tracing
from dremioframe_async.orchestration._run_core import SLICE
from dremioframe_async.tasks import DremioQueryTask, HttpTask
from dremioframe_async.testing import FakeDremio, sample_table

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402


@pytest.fixture
def traced() -> Iterator[tuple[Any, Any]]:
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    try:
        yield provider, exporter
    finally:
        provider.shutdown()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        server.add_table("lake.sales", sample_table(30))
        yield server


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("traceparent"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/hook")), seen
    finally:
        await server.close()


def build(client: DremioClient, url: str, calls: dict[str, int]) -> Pipeline:
    @task(name="flaky", retries=1)
    async def flaky() -> list[int]:
        calls["flaky"] = calls.get("flaky", 0) + 1
        if calls["flaky"] == 1:
            raise RuntimeError("first attempt fails")
        return [1, 2, 3]

    @task(name="double")
    async def double(x: int) -> int:
        if x == 3:
            raise ValueError("three is bad")
        return 2 * x

    rest = DremioQueryTask("sales_rest", "SELECT * FROM lake.sales", client=client, via="rest")
    flight = DremioQueryTask("sales_flight", "SELECT id FROM lake.sales", client=client)
    hook = HttpTask("hook", url)
    p = Pipeline("traced")
    p.add_task(double.expand(x=flaky())).add_task(rest).add_task(flight).add_task(hook)
    return p


def by_name(spans: list[Any], name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


@pytest.mark.asyncio
async def test_span_tree_of_a_failing_retried_mapped_run(
    traced: tuple[Any, Any], fake: FakeDremio, echo: tuple[str, list[str | None]]
) -> None:
    provider, exporter = traced
    url, seen = echo
    async with DremioClient(
        fake.url, token=fake.token, flight_url=fake.flight_url, poll_interval=0.01
    ) as client:
        result = await build(client, url, {}).run(tracer_provider=provider)
    assert result.status == "FAILED"  # double[2] fails
    spans = list(exporter.get_finished_spans())
    ids = {s.context.span_id: s for s in spans}

    (run,) = by_name(spans, "traced")
    assert run.parent is None
    assert run.attributes["dremioframe.run_id"] == result.run_id
    assert run.attributes["cicd.pipeline.name"] == "traced"
    assert run.attributes["cicd.pipeline.run.id"] == result.run_id
    assert run.status.status_code is StatusCode.ERROR
    assert {s.context.trace_id for s in spans} == {run.context.trace_id}

    def parent(span: Any) -> Any:
        assert span.parent is not None, span.name
        return ids[span.parent.span_id]

    # flaky: two attempt spans under the run, the first ERROR with its exception.
    flaky = sorted(by_name(spans, "task flaky"), key=lambda s: s.attributes["dremioframe.attempt"])
    assert [s.attributes["dremioframe.attempt"] for s in flaky] == [1, 2]
    assert all(parent(s) is run for s in flaky)
    assert flaky[0].status.status_code is StatusCode.ERROR
    assert flaky[0].attributes["dremioframe.state"] == "FAILED"
    assert flaky[0].attributes["cicd.pipeline.task.run.result"] == "failure"
    assert flaky[0].events[0].name == "exception"
    assert flaky[0].events[0].attributes["exception.type"] == "RuntimeError"
    assert flaky[1].attributes["dremioframe.state"] == "SUCCESS"
    assert flaky[1].attributes["cicd.pipeline.task.run.result"] == "success"
    assert flaky[1].attributes["cicd.pipeline.task.run.id"] == f"{result.run_id}/flaky/2"
    assert flaky[1].attributes["dremioframe.pipeline"] == "traced"

    # double: one mapped-task span under the run, one span per instance under it.
    double = by_name(spans, "task double")
    (mapped,) = [s for s in double if "dremioframe.map_index" not in s.attributes]
    assert parent(mapped) is run
    assert mapped.attributes["dremioframe.instances"] == 3
    assert mapped.attributes["dremioframe.state"] == "FAILED"
    instances = sorted(
        (s for s in double if s is not mapped), key=lambda s: s.attributes["dremioframe.map_index"]
    )
    assert [s.attributes["dremioframe.map_index"] for s in instances] == [0, 1, 2]
    assert all(parent(s) is mapped for s in instances)
    assert [s.attributes["dremioframe.task"] for s in instances] == [
        "double[0]",
        "double[1]",
        "double[2]",
    ]
    assert instances[2].status.status_code is StatusCode.ERROR

    # Dremio queries: children of their task's attempt span.
    queries = by_name(spans, "dremio query")
    assert len(queries) == 2
    for q in queries:
        attempt = parent(q)
        assert parent(attempt) is run
        assert q.kind is SpanKind.CLIENT
        assert q.attributes["db.system.name"] == "dremio"
        assert q.attributes["dremio.rows"] == 30
        assert q.attributes["dremio.bytes"] > 0
    rest = next(q for q in queries if q.attributes["dremio.via"] == "rest")
    assert parent(rest).attributes["dremioframe.task"] == "sales_rest"
    assert rest.attributes["db.query.text"] == "SELECT * FROM lake.sales"
    assert rest.attributes["dremio.job_id"]
    names = [e.name for e in rest.events]
    assert names[0] == "submit"
    assert names[-1] == "done"
    assert "completed" in names
    flight = next(q for q in queries if q.attributes["dremio.via"] == "flight")
    assert parent(flight).attributes["dremioframe.task"] == "sales_flight"

    # HttpTask: the called service got the attempt's traceparent.
    (hook,) = by_name(spans, "task hook")
    ctx = hook.context
    assert seen == [f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"]

    expected = {"traced", "task flaky", "task double", "dremio query", "task sales_rest"}
    assert expected <= {s.name for s in spans}
    assert len(spans) == 1 + 2 + 1 + 3 + 2 + 2 + 1  # run, flaky, double, instances, ...


@pytest.mark.anyio
async def test_a_large_fan_out_makes_a_bounded_number_of_spans(
    traced: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider, exporter = traced
    monkeypatch.setattr(_tracing, "INSTANCE_SPANS", 10)

    @task(name="items")
    async def items() -> list[int]:
        return list(range(1000))

    @task(name="check")
    async def check(x: int) -> int:
        if x % 100 == 7:
            raise ValueError(f"bad {x}")
        return x

    await Pipeline("fan").add_task(check.expand(x=items())).run(tracer_provider=provider)
    spans = list(exporter.get_finished_spans())
    assert len(spans) == 1 + 1 + 1 + 10  # run, items, the mapped task, 10 instance spans
    (mapped,) = [
        s for s in spans if s.name == "task check" and "dremioframe.map_index" not in s.attributes
    ]
    assert mapped.attributes["dremioframe.instances.succeeded"] == 990
    assert mapped.attributes["dremioframe.instances.failed"] == 10
    failed_events = [e for e in mapped.events if e.name == "instance failed"]
    assert len(failed_events) == 10 - 1  # check[7] had a span of its own
    assert failed_events[0].attributes["exception.type"] == "ValueError"


@pytest.mark.anyio
async def test_a_fan_out_wider_than_a_slice_counts_all_its_instances(
    traced: tuple[Any, Any],
) -> None:
    # Instances are made a slice at a time and the first run meanwhile: the
    # mapped task's span, opened by the first, still counts every instance.
    provider, exporter = traced
    width = 2 * SLICE + 5

    @task(name="items", max_map_length=width)
    async def items() -> list[int]:
        return list(range(width))

    @task(name="check", max_map_length=width)
    async def check(x: int) -> int:
        return x

    await Pipeline("fan").add_task(check.expand(x=items())).run(tracer_provider=provider)
    (mapped,) = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "task check" and "dremioframe.map_index" not in s.attributes
    ]
    assert mapped.attributes["dremioframe.instances"] == width
    assert mapped.attributes["dremioframe.instances.succeeded"] == width


@pytest.mark.anyio
async def test_no_provider_means_no_tracing(traced: tuple[Any, Any]) -> None:
    _, exporter = traced

    @task(name="alone")
    async def alone() -> int:
        return 1

    # Nothing configured globally (the tests never set it): no spans, nothing recorded.
    assert _tracing.tracer_for(None) is None
    result = await Pipeline("quiet").add_task(alone()).run()
    assert result.status == "SUCCESS"
    assert exporter.get_finished_spans() == ()


@pytest.mark.anyio
async def test_a_run_started_inside_a_traced_request_is_its_child(
    traced: tuple[Any, Any],
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("an application")

    @task(name="work")
    async def work() -> int:
        return 1

    with tracer.start_as_current_span("GET /report") as request:
        await Pipeline("nested").add_task(work()).run(tracer_provider=provider)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["nested"].parent is not None
    assert spans["nested"].parent.span_id == request.get_span_context().span_id
    assert spans["task work"].parent.span_id == spans["nested"].context.span_id
    assert spans["nested"].context.trace_id == request.get_span_context().trace_id


store_factory = _store_fixtures.store_factory
store = _store_fixtures.store


@pytest.mark.asyncio
async def test_a_resumed_runs_span_links_to_the_original_run(
    traced: tuple[Any, Any], store: Any
) -> None:
    provider, exporter = traced
    calls: dict[str, int] = {}

    @task(name="once_broken")
    async def once_broken() -> int:
        calls["n"] = calls.get("n", 0) + 1
        if calls["n"] == 1:
            raise RuntimeError("broken the first time")
        return 1

    p = Pipeline("resumable").add_task(once_broken())
    first = await p.run(store=store, tracer_provider=provider)
    assert first.status == "FAILED"
    again = await p.run(store=store, resume=first.run_id, tracer_provider=provider)
    assert again.status == "SUCCESS"
    original, resumed = [s for s in exporter.get_finished_spans() if s.name == "resumable"]
    assert resumed.attributes["dremioframe.resumed_from"] == first.run_id
    (link,) = resumed.links
    assert link.context.span_id == original.context.span_id
    assert link.context.trace_id == original.context.trace_id
    assert await store.get_traceparent(first.run_id) == (
        f"00-{original.context.trace_id:032x}-{original.context.span_id:016x}-"
        f"{int(original.context.trace_flags):02x}"
    )
    assert await store.get_traceparent("never-traced") is None


CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.asyncio
async def test_a_queued_run_continues_the_trace_of_whoever_queued_it(
    traced: tuple[Any, Any], store: Any
) -> None:
    from dremioframe_async._telemetry import continuing

    provider, exporter = traced

    @task(name="later")
    async def later() -> int:
        return 1

    p = Pipeline("queued_traced").add_task(later())
    with continuing(CALLER):
        run_id = await store.enqueue("queued_traced", {})
    assert await store.get_traceparent(run_id) == CALLER
    claimed = await store.claim_next({"queued_traced": None})
    assert claimed is not None
    assert claimed.run_id == run_id
    result = await p.run(store=store, run_id=run_id, tracer_provider=provider)
    assert result.status == "SUCCESS"
    (run,) = [s for s in exporter.get_finished_spans() if s.name == "queued_traced"]
    assert f"{run.context.trace_id:032x}" == CALLER.split("-")[1]
    assert run.parent is not None
    assert f"{run.parent.span_id:016x}" == CALLER.split("-")[2]
    # Once it ran traced, the run's own span is what a resume would link to.
    assert await store.get_traceparent(run_id) == (
        f"00-{run.context.trace_id:032x}-{run.context.span_id:016x}-"
        f"{int(run.context.trace_flags):02x}"
    )


@pytest.mark.asyncio
async def test_the_api_and_the_cli_queue_runs_with_the_callers_traceparent(
    tmp_path: Any,
) -> None:
    import os
    import subprocess
    import sys

    from aiohttp.test_utils import TestClient

    from dremioframe_async.store import SQLiteStore
    from dremioframe_async.ui import ui_app

    path = tmp_path / "runs.sqlite"
    store = SQLiteStore(path)
    try:

        @task(name="t")
        async def t() -> int:
            return 1

        app = ui_app(store, [Pipeline("api_traced").add_task(t())])
        async with TestClient(TestServer(app, host="127.0.0.1")) as http:
            token = (await (await http.get("/api/csrf")).json())["csrf_token"]
            response = await http.post(
                "/api/pipelines/api_traced/runs",
                json={"params": {}},
                headers={"X-CSRF-Token": token, "traceparent": CALLER},
            )
            assert response.status == 202, await response.text()
            run_id = (await response.json())["run_id"]
        # The UI's run is not traced here (no provider): the caller's context stays recorded.
        assert await store.get_traceparent(run_id) == CALLER
    finally:
        await store.aclose()
    env = {**os.environ, "TRACEPARENT": CALLER, "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{path}"}
    done = subprocess.run(
        [sys.executable, "-m", "dremioframe_async", "trigger", "cli_traced"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reopened = SQLiteStore(path)
    try:
        assert await reopened.get_traceparent(done.stdout.strip()) == CALLER
    finally:
        await reopened.aclose()


@pytest.mark.asyncio
async def test_a_plain_task_that_returns_an_awaitable_has_a_failed_span(
    traced: tuple[Any, Any],
) -> None:
    # A plain task (no options to set up) checks its result inside its span.
    provider, exporter = traced

    async def inner() -> int:
        return 1

    @task(name="forgets_await")
    async def forgets_await() -> object:
        return inner()

    result = await Pipeline("plain").add_task(forgets_await()).run(tracer_provider=provider)
    assert result.tasks["forgets_await"].state.value == "FAILED"
    (span,) = by_name(list(exporter.get_finished_spans()), "task forgets_await")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["dremioframe.state"] == "FAILED"


@pytest.mark.asyncio
async def test_an_exception_whose_str_raises_fails_its_task_as_itself(
    traced: tuple[Any, Any],
) -> None:
    """The span printed the exception: the error its str() raised replaced the task's."""
    provider, exporter = traced

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    @task(name="odd")
    async def odd() -> None:
        raise Unprintable()

    result = await Pipeline("odd").add_task(odd()).run(tracer_provider=provider)
    assert result.tasks["odd"].state.value == "FAILED"
    assert type(result.tasks["odd"].error) is Unprintable
    (span,) = by_name(list(exporter.get_finished_spans()), "task odd")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Unprintable: <str() of Unprintable raised RuntimeError>"
