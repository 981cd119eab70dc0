"""Task log lines from Dask workers: captured on the worker, shipped back with the outcome
(a result or an exception), stored under the attempt that emitted them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_task_logs import read_all

from dremioframe_async import Pipeline, task
from dremioframe_async.store import MemoryStore

distributed = pytest.importorskip("distributed")
from dremioframe_async.executors import DaskExecutor  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # distributed's client runs on asyncio only


@pytest.fixture(scope="module")
async def dask() -> AsyncIterator[DaskExecutor]:
    async with DaskExecutor(n_workers=1, threads_per_worker=2) as executor:
        yield executor


def flaky_on_worker(marker: str) -> str:
    log = logging.getLogger("tests.on_worker")
    first = not Path(marker).exists()
    log.warning("flaky starts, first=%s", first)
    log.error("flaky still going")
    if first:
        Path(marker).touch()
        raise RuntimeError("first attempt fails on the worker")
    return "ok"


def uses_context_log(context: Any = None) -> str:
    context.log.info("info from the worker")  # below the worker's root level (WARNING)
    return context.log.logger.name


def chatty_on_worker(n: int) -> int:
    log = logging.getLogger("tests.on_worker")
    for i in range(1, n + 1):
        log.warning("chatty %d", i)
    return n


async def test_worker_lines_come_back_with_the_result_and_the_exception(
    dask: DaskExecutor, tmp_path: Path
) -> None:
    store = MemoryStore()
    p = Pipeline("on_dask", executor=dask)
    p.add_task(task(name="flaky", retries=1)(flaky_on_worker)(str(tmp_path / "marker")))
    p.add_task(task(name="chatty")(chatty_on_worker)(1500))
    p.add_task(task(name="ctx")(uses_context_log)())
    result = await p.run(store=store)
    assert result.status == "SUCCESS"
    flaky = await read_all(store, result.run_id, key="flaky")
    assert [(x.attempt, x.seq, x.level, x.message) for x in flaky] == [
        (1, 1, "WARNING", "flaky starts, first=True"),
        (1, 2, "ERROR", "flaky still going"),
        (2, 1, "WARNING", "flaky starts, first=False"),
        (2, 2, "ERROR", "flaky still going"),
    ]
    assert {x.logger for x in flaky} == {"tests.on_worker"}
    chatty = await read_all(store, result.run_id, key="chatty")
    assert [x.message for x in chatty] == [f"chatty {i}" for i in range(501, 1501)]
    assert chatty[0].dropped_before == 500
    assert chatty[0].seq == 501
    (ctx,) = await read_all(store, result.run_id, key="ctx")
    assert (ctx.level, ctx.message) == ("INFO", "info from the worker")
    assert ctx.logger == result["ctx"] == "dremioframe_async.task.ctx"


def trace_seen_on_worker() -> str:
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}-{ctx.span_id:016x}"


async def test_a_dask_attempt_runs_in_its_spans_trace_context(dask: DaskExecutor) -> None:
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    try:
        p = Pipeline("traced_dask", executor=dask)
        p.add_task(task(name="where")(trace_seen_on_worker)())
        result = await p.run(tracer_provider=provider)
    finally:
        provider.shutdown()
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "task where"]
    assert result["where"] == f"{span.context.trace_id:032x}-{span.context.span_id:016x}"
