"""CPU-bound tasks on local threads against Dask worker processes, and Dask's cost per task.

Two measurements, in one process, through ``Pipeline.run``:

- ``scaling``: N pure-Python CPU-bound tasks (a loop of integer arithmetic
  calibrated to about ``--seconds`` each on this machine) run by the default
  executor, the run's worker threads, where the GIL lets one run at a time;
  then by a ``DaskExecutor`` with ``--workers`` worker processes of one thread
  each. The ratio local/Dask is the speed-up; on W idle cores it tends to W.
- ``overhead``: M trivial tasks (return None), fanned out, on each executor;
  wall time per task is what the executor adds per task. Then a chain of K
  trivial tasks (each waits for the one before): latency per task.

The local cluster is started once, outside the timed region (its start-up is
reported on its own line), and kept for every Dask figure with
``async with DaskExecutor(...)``. Each figure is the median of ``--reps``
repetitions; local and Dask take turns, so load from elsewhere on a shared
machine weighs on both alike. The 1-minute load average is printed before and
after: figures taken while it is above the core count are not representative.

Run: ``.venv/bin/python benchmarks/dask_scaling.py [--quick] [--reps N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dremioframe_async import Pipeline, task
from dremioframe_async.executors import DaskExecutor


def burn(n: int) -> int:
    """Pure-Python CPU work, holding the GIL throughout."""
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total


def noop() -> None:
    return None


def calibrate(seconds: float) -> int:
    """Loop count for which ``burn`` takes about ``seconds`` here, now."""
    n = 100_000
    while True:
        start = time.perf_counter()
        burn(n)
        took = time.perf_counter() - start
        if took > 0.05:
            return max(1, int(n * seconds / took))
        n *= 4


def fan_out(name: str, fn: Callable[..., Any], count: int, *args: Any) -> Pipeline:
    pipeline = Pipeline(name)
    work = task(fn)
    for _ in range(count):
        pipeline.add_task(work(*args))
    return pipeline


def chain(name: str, count: int) -> Pipeline:
    work = task(noop)
    first = previous = work()
    for _ in range(count - 1):
        previous = previous.set_downstream(work())
    return Pipeline(name).add_task(first)


async def timed(run: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    result = await run()
    took = time.perf_counter() - start
    result.raise_for_status()
    return took


async def medians(
    pipeline: Pipeline, dask: DaskExecutor, reps: int
) -> tuple[float, float, list[float], list[float]]:
    local: list[float] = []
    remote: list[float] = []
    for _ in range(reps):
        local.append(await timed(pipeline.run))
        remote.append(await timed(lambda: pipeline.run(executor=dask)))
    return statistics.median(local), statistics.median(remote), local, remote


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


async def main(args: argparse.Namespace) -> None:
    print(load())
    n = calibrate(args.seconds)
    start = time.perf_counter()
    one = burn(n)
    single = time.perf_counter() - start
    print(f"burn({n}) takes {single:.3f} s alone here (checksum {one})")
    start = time.perf_counter()
    async with DaskExecutor(n_workers=args.workers, threads_per_worker=1) as dask:
        print(
            f"local cluster of {args.workers} worker processes up in "
            f"{time.perf_counter() - start:.2f} s"
        )
        cpu = fan_out("cpu", burn, args.tasks, n)
        local, remote, all_local, all_remote = await medians(cpu, dask, args.reps)
        print(
            f"\nscaling: {args.tasks} CPU-bound tasks of ~{args.seconds} s, median of {args.reps}"
        )
        print(f"{'executor':<28} {'wall s':>8} {'runs':>24}")
        print(f"{'local threads':<28} {local:8.2f} {fmt(all_local):>24}")
        print(f"{f'dask, {args.workers} workers':<28} {remote:8.2f} {fmt(all_remote):>24}")
        print(
            f"ratio local/dask: {local / remote:.2f}x "
            f"(ideal {min(args.workers, os.cpu_count() or 1)}x)"
        )
        await overhead(dask, args)
    print("\n" + load())


async def overhead(dask: DaskExecutor, args: argparse.Namespace) -> None:
    print(f"\noverhead: trivial tasks, median of {args.reps}")
    print(f"{'shape':<22} {'executor':<16} {'wall ms':>9} {'us/task':>9}")
    for shape, pipeline, count in (
        (f"fan-out of {args.trivial}", fan_out("trivial", noop, args.trivial), args.trivial),
        (f"chain of {args.chain}", chain("chain", args.chain), args.chain),
    ):
        local, remote, _, _ = await medians(pipeline, dask, args.reps)
        for name, wall in (("local threads", local), ("dask", remote)):
            print(f"{shape:<22} {name:<16} {wall * 1e3:9.1f} {wall / count * 1e6:9.0f}")
        print(f"ratio dask/local per task ({shape}): {remote / local:.1f}x")


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CI smoke run")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per figure")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    args = parser.parse_args()
    args.tasks, args.seconds = (4, 0.05) if args.quick else (16, 0.5)
    args.trivial, args.chain = (20, 5) if args.quick else (200, 20)
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
