"""The demo's extraction as a fan-out over Arrow Flight: one process against a Dask LocalCluster.

The pipeline is the demo's (``dremioframe_async.demo.build_pipeline``): list the
tables of a folder, extract each to Parquet over Flight (``query_to_parquet``),
validate the files, summarise, clean up. The tables are served by an embedded
FakeDremio (REST and Flight, DuckDB behind), in this process.

Two modes, taking turns for ``--reps`` repetitions (the median is reported):

- ``one process``: the default executor; every coroutine on this loop, the
  run's Dremio client a run resource, Flight reads and Parquet writes in its threads;
- ``dask``: ``DaskExecutor(coroutines=True)`` with ``--workers`` worker processes:
  every task runs on a worker's event loop, and the client is
  ``worker_scoped`` (one per worker per run). The cluster is started once,
  outside the timed runs (its start-up has a line of its own).

Where the time goes, per mode: wall time; rows/s; the median extraction
attempt (submit, Flight read, Parquet write) as the engine saw it and, on Dask,
the part of it computing on a worker (the rest is pickling, scheduling and
transfers, from Dask's task stream); CPU seconds of this process's
event-loop thread (the engine, FakeDremio's REST side, and in ``one process``
the client), of its other threads (FakeDremio's Flight server and DuckDB, and in
``one process`` the Flight reads and Parquet writes) and of the worker
processes; and CPU busy as a share of the machine's cores over the wall time.
The server shares the cores with the workers, as it would not in production:
on a machine with few cores, the ratio says more about the cores than about Dask.

Run: ``.venv/bin/python benchmarks/dask_io.py [--quick] [--tables N] [--rows N] [--reps N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from dremioframe_async import Pipeline, RunResult
from dremioframe_async.demo import DEMO_FOLDER, build_pipeline
from dremioframe_async.dremio import DremioClient
from dremioframe_async.executors import DaskExecutor, worker_scoped
from dremioframe_async.testing import FakeDremio, sample_table


@dataclass(frozen=True, slots=True)
class Figures:
    wall: float
    rows: int
    extract_median: float
    on_worker: float  # of an extraction attempt, the median time computing on a worker
    loop_cpu: float
    threads_cpu: float
    workers_cpu: float


def client_factory(url: str, token: str, flight_url: str) -> Callable[[], DremioClient]:
    """A picklable factory (it holds strings only): it crosses to the workers."""
    return lambda: DremioClient(url, token=token, poll_interval=0.02, flight_url=flight_url)


def add_tables(fake: FakeDremio, tables: int, rows: int) -> int:
    weights = [i % 4 + 1 for i in range(tables)]  # uneven sizes, as the demo's
    offset = 0
    for i, weight in enumerate(weights):
        count = rows * weight // sum(weights)
        fake.add_table(f"{DEMO_FOLDER}.table_{i}", sample_table(count, offset=offset))
        offset += count
    return offset


def cpu_split() -> tuple[float, float]:
    """CPU seconds of this process: (the event loop's thread, every other thread)."""
    main = threading.main_thread().native_id
    loop = sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id == main)
    # The others by difference: threads that have ended are no longer listed.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return loop, usage.ru_utime + usage.ru_stime - loop


def _worker_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def workers_cpu(dask: DaskExecutor | None) -> float:
    if dask is None or dask.client is None:
        return 0.0
    return sum((await dask.client.run(_worker_cpu)).values())


async def worker_compute(dask: DaskExecutor | None, since: float) -> float:
    """The median time extraction attempts spent computing on a worker, from Dask's task
    stream (the rest of an attempt is pickling, scheduling and transfers)."""
    if dask is None or dask.client is None:
        return 0.0
    stream = await dask.client.get_task_stream(start=since)
    spans = [
        sum(s["stop"] - s["start"] for s in entry["startstops"] if s["action"] == "compute")
        for entry in stream
        if str(entry["key"]).startswith("extract")
    ]
    return statistics.median(spans) if spans else 0.0


async def measure(
    run: Callable[[], Awaitable[RunResult]], dask: DaskExecutor | None, tables: int
) -> Figures:
    loop0, rest0 = cpu_split()
    workers0 = await workers_cpu(dask)
    since = time.time()
    start = time.perf_counter()
    result = await run()
    wall = time.perf_counter() - start
    loop1, rest1 = cpu_split()
    workers1 = await workers_cpu(dask)
    result.raise_for_status()
    summary = result["summary"]
    if summary["tables"] != tables:
        raise RuntimeError(f"extracted {summary['tables']} tables of {tables}")
    extracts = [t.duration for k, t in result.tasks.items() if k.startswith("extract")]
    durations = [d for d in extracts if d is not None]
    return Figures(
        wall,
        int(summary["rows"]),
        statistics.median(durations),
        await worker_compute(dask, since),
        loop1 - loop0,
        rest1 - rest0,
        workers1 - workers0,
    )


def median_figures(runs: list[Figures]) -> Figures:
    def mid(field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs)

    return Figures(
        mid("wall"),
        runs[0].rows,
        mid("extract_median"),
        mid("on_worker"),
        mid("loop_cpu"),
        mid("threads_cpu"),
        mid("workers_cpu"),
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def report(name: str, f: Figures) -> None:
    cores = os.cpu_count() or 1
    busy = (f.loop_cpu + f.threads_cpu + f.workers_cpu) / (f.wall * cores)
    on_worker = f"{f.on_worker * 1e3:10.1f}" if f.on_worker else f"{'-':>10}"
    print(
        f"{name:<14} {f.wall:8.2f} {f.rows / f.wall:12,.0f} {f.extract_median * 1e3:12.1f} "
        f"{on_worker} {f.loop_cpu:9.2f} {f.threads_cpu:9.2f} {f.workers_cpu:9.2f} {busy:7.0%}"
    )


async def main(args: argparse.Namespace) -> None:
    print(load())
    async with FakeDremio(job_latency=args.latency, flight=True) as fake:
        rows = add_tables(fake, args.tables, args.rows)
        assert fake.flight_url is not None
        make_client = client_factory(fake.url, fake.token, fake.flight_url)
        print(
            f"{args.tables} tables, {rows:,} rows over Arrow Flight from an embedded FakeDremio "
            f"(job latency {args.latency * 1e3:.0f} ms); {args.concurrency} extractions at once"
        )
        with tempfile.TemporaryDirectory(prefix="dask_io_") as tmp:
            out = Path(tmp) / "out"
            pipeline = build_pipeline(
                make_client,
                DEMO_FOLDER,
                out,
                concurrency=args.concurrency,
                limit=None,
                stream=io.StringIO(),  # picklable: the alert task may cross to a worker
                remove_out_dir=True,
                via="flight",
            )
            await compare(pipeline, make_client, out, args)
    print("\n" + load())


async def compare(
    pipeline: Pipeline, make_client: Callable[[], Any], out: Path, args: argparse.Namespace
) -> None:
    start = time.perf_counter()
    per_worker = max(1, -(-args.concurrency // args.workers))  # a coroutine counts as a thread
    async with DaskExecutor(
        n_workers=args.workers, threads_per_worker=per_worker, coroutines=True
    ) as dask:
        print(
            f"local cluster of {args.workers} worker processes ({per_worker} threads each) up in "
            f"{time.perf_counter() - start:.2f} s (not in the figures below)"
        )
        scoped = {"dremio": worker_scoped(make_client)}
        assert dask.client is not None
        await dask.client.get_task_stream(start=0, stop=0)  # starts recording it
        local: list[Figures] = []
        remote: list[Figures] = []
        for _ in range(args.reps):
            out.mkdir()  # the pipeline's cleanup task removes it
            local.append(await measure(pipeline.run, None, args.tables))
            out.mkdir()
            run_on_dask = lambda: pipeline.run(executor=dask, resources=scoped)  # noqa: E731
            remote.append(await measure(run_on_dask, dask, args.tables))
    one, many = median_figures(local), median_figures(remote)
    print(f"\nmedian of {args.reps}; CPU seconds by where they were spent")
    print(
        f"{'mode':<14} {'wall s':>8} {'rows/s':>12} {'extract ms':>12} {'on worker':>10} "
        f"{'loop cpu':>9} {'threads':>9} {'workers':>9} {'busy':>7}"
    )
    report("one process", one)
    report(f"dask x{args.workers}", many)
    print(
        f"ratio one process/dask (wall): {one.wall / many.wall:.2f}x "
        f"(ideal {min(args.workers, os.cpu_count() or 1)}x if the server had cores of its own)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (smoke test)")
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=4_000_000, help="rows over all tables")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="extractions at once")
    parser.add_argument("--latency", type=float, default=0.05, help="job latency, seconds")
    parser.add_argument("--reps", type=int, default=3)
    return parser


if __name__ == "__main__":  # the workers start by spawn: they import this module
    arguments = _parser().parse_args()
    if arguments.quick:
        arguments.tables, arguments.rows, arguments.reps = 12, 60_000, 1
    asyncio.run(main(arguments))
