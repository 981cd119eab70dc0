"""What observability costs a run: log capture, tracing and metrics, as ratios in one process.

Two shapes from ``dremioframe_async.bench.shapes``: ``fan-out`` (a root, N no-op
coroutine tasks, a sink) and ``sleep`` (the same with each middle task sleeping
20 ms, under ``max_concurrency=N``). Each configuration runs the same Pipeline:

- ``baseline``: an ``on_event`` listener (capture needs one), ``capture_logs=False``,
  OpenTelemetry hidden from the library (as if the ``otel`` extra were absent);
- ``capture``: log capture on (the tasks log nothing): the handler, the
  per-attempt context and the run's flusher;
- ``capture+1 line``: capture on, each middle task logs one line (``context.log``);
- ``otel, unconfigured``: the ``otel`` extra importable, no tracer provider;
- ``otel, in-memory``: an SDK ``TracerProvider`` with ``InMemorySpanExporter``
  passed to ``run()`` (spans are made, processed and kept);
- ``metrics``: the process metrics registry on (as in a UI process).

Runs take turns, repetition by repetition and in a new order each time, in one
event loop (asyncio), each after ``gc.collect()``; every figure is the median
over ``--reps``. The ratio is against ``baseline`` of the same shape, and
``+µs/task`` is the median difference divided by the shape's task count; the
same for the process's CPU time, which a loaded machine disturbs less than the
wall clock.

A last row runs one task mapped over ``--mapped`` instances (100,000) with and
without an in-memory exporter, and counts the spans: the first 100 instances
get spans, the others are counted on their mapped task's span.

Run: ``.venv/bin/python benchmarks/observability_overhead.py [--n 1000] [--reps 15]``
(needs ``opentelemetry-sdk`` for the in-memory row, from the ``test`` extra).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from dremioframe_async import _telemetry
from dremioframe_async._metrics import REGISTRY
from dremioframe_async.bench.shapes import SLEEP, Shape, build_pipeline
from dremioframe_async.orchestration import Pipeline, task


def _ignore(event: object) -> None:
    return None


def logging_pipeline(shape: Shape) -> Pipeline:
    """``shape`` with each middle task logging one INFO line through ``context.log``."""

    @task(name="root")
    async def root() -> None:
        return None

    @task(name="leaf")
    async def leaf(context: Any = None) -> None:
        context.log.info("leaf done")
        if shape.name == "sleep":
            await anyio.sleep(SLEEP)

    @task(name="sink")
    async def sink() -> None:
        return None

    limit = shape.n if shape.name == "sleep" else None
    p = Pipeline(f"{shape.name}-logging", max_concurrency=limit)
    first, last = root(), sink()
    for _ in range(shape.n):
        first.set_downstream(leaf()).set_downstream(last)
    return p.add_task(first)


@dataclass
class Config:
    name: str
    pipeline: Pipeline
    kwargs: dict[str, Any]
    before: Callable[[], None] = lambda: None
    after: Callable[[], None] = lambda: None


def configs(shape: Shape) -> list[Config]:
    plain = build_pipeline(shape)
    quiet = {"on_event": _ignore, "capture_logs": False}
    real_trace = _telemetry.trace

    def hide_otel() -> None:
        _telemetry.trace = None

    def show_otel() -> None:
        _telemetry.trace = real_trace

    def metrics_on() -> None:
        REGISTRY.enabled = True

    def metrics_off() -> None:
        REGISTRY.enabled = False

    found = [
        Config("baseline", plain, quiet, hide_otel, show_otel),
        Config("capture", plain, {"on_event": _ignore}, hide_otel, show_otel),
        Config(
            "capture+1 line", logging_pipeline(shape), {"on_event": _ignore}, hide_otel, show_otel
        ),
        Config("otel, unconfigured", plain, quiet),
        Config("metrics", plain, quiet, metrics_on, metrics_off),
    ]
    provider = _in_memory_provider()
    if provider is not None:
        found.append(
            Config(
                "otel, in-memory",
                plain,
                {**quiet, "tracer_provider": provider[0]},
                after=provider[1],
            )
        )
    return found


def _in_memory_provider() -> tuple[Any, Callable[[], None]] | None:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter.clear


async def measure(shape: Shape, reps: int) -> dict[str, list[tuple[float, float]]]:
    table = configs(shape)
    times: dict[str, list[tuple[float, float]]] = {c.name: [] for c in table}
    for c in table:  # one untimed run each: plans cached, imports done
        c.before()
        await c.pipeline.run(**c.kwargs)
        c.after()
    order = random.Random(20)  # a fixed seed: the same turns every time
    for _ in range(reps):
        # A new order each repetition, so no configuration always follows another.
        for c in order.sample(table, len(table)):
            c.before()
            gc.collect()
            started, cpu = time.perf_counter(), time.process_time()
            result = await c.pipeline.run(**c.kwargs)
            times[c.name].append((time.perf_counter() - started, time.process_time() - cpu))
            c.after()
            assert result.status == "SUCCESS", (c.name, result.status)
    return times


def report(shape: Shape, times: dict[str, list[tuple[float, float]]]) -> None:
    base = statistics.median(w for w, _ in times["baseline"])
    base_cpu = statistics.median(c for _, c in times["baseline"])
    print(
        f"\n{shape.name} fan-out, {shape.n} middle tasks ({shape.tasks} tasks), "
        f"{len(times['baseline'])} reps"
    )
    print(
        f"{'configuration':<22} {'wall ms':>8} {'ratio':>7} {'+µs/task':>9} "
        f"{'CPU ms':>8} {'ratio':>7} {'+CPU µs/task':>13}"
    )
    for name, values in times.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(
            f"{name:<22} {wall * 1e3:>8.2f} {wall / base:>7.3f} "
            f"{(wall - base) / shape.tasks * 1e6:>9.2f} {cpu * 1e3:>8.2f} "
            f"{cpu / base_cpu:>7.3f} {(cpu - base_cpu) / shape.tasks * 1e6:>13.2f}"
        )


def mapped_pipeline(n: int) -> Pipeline:
    """One task returning ``n`` items and a no-op task mapped over them."""

    @task(name="items")
    async def items() -> list[int]:
        return list(range(n))

    @task(name="each", max_map_length=n)
    async def each(x: int) -> int:
        return x

    return Pipeline("mapped").add_task(each.expand(x=items()))


async def measure_mapped(n: int, reps: int) -> None:
    """A fan-out of ``n`` mapped instances: spans made, and the time, traced and not."""
    pipeline = mapped_pipeline(n)
    provider = _in_memory_provider()
    if provider is None:
        print("\n(mapped: opentelemetry-sdk is not installed)")
        return
    tracer_provider, clear = provider
    exporter = next(iter(tracer_provider._active_span_processor._span_processors)).span_exporter
    walls: dict[str, list[float]] = {"untraced": [], "in-memory": []}
    spans = 0
    for _ in range(reps):
        for name in walls:
            gc.collect()
            kwargs = {"tracer_provider": tracer_provider} if name == "in-memory" else {}
            started = time.perf_counter()
            await pipeline.run(capture_logs=False, **kwargs)
            walls[name].append(time.perf_counter() - started)
            if name == "in-memory":
                spans = len(exporter.get_finished_spans())
                clear()
    base = statistics.median(walls["untraced"])
    traced = statistics.median(walls["in-memory"])
    print(f"\nmapped task, {n} instances, {reps} reps: {spans} spans with tracing on")
    print(
        f"untraced {base * 1e3:.1f} ms; in-memory exporter {traced * 1e3:.1f} ms "
        f"({traced / base:.3f}x, +{(traced - base) / n * 1e6:.2f} µs/instance)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="middle tasks per fan-out")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument(
        "--mapped", type=int, default=100_000, help="instances of the mapped-task row (0: skip)"
    )
    args = parser.parse_args()
    for name in ("fan-out", "sleep"):
        shape = Shape(name, args.n)
        report(shape, anyio.run(measure, shape, args.reps))
    if args.mapped:
        anyio.run(measure_mapped, args.mapped, max(3, args.reps // 5))


if __name__ == "__main__":
    main()
