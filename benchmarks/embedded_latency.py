"""Does a pipeline stall the application it is embedded in?

An aiohttp endpoint runs in this process, on the same event loop as the
pipelines; another process pings it every 10 ms (one keep-alive connection)
and records each round trip. Three loads, one after the other (a fourth on request):

* idle: nothing else runs;
* fan-out: 20,000-task no-op fan-outs run back to back;
* flight: four 2,000,000-row Flight extractions (``client.query(..., via="flight")``,
  the whole result as one Arrow table) run back to back, as a pipeline of four
  tasks, against FakeDremio in its own process;
* mapped (not run unless named in ``--loads``): a task's result mapped over by
  ``expand``, 100,000 no-op instances per run (``--instances``), back to back.
* waiting (not run unless named): 100,000 tasks (``--waiting``) that all wait
  together, 2 s each (``await anyio.sleep(2)``, as I/O-bound extractions wait on
  the network), run back to back. Its engine column gives the runs' median time
  and the collector's full collections per run.

Per load: the round trip's p50, p99 and max (ms), pings sent, the loop's own lag
(how late a 5 ms sleep in the host wakes, bounded by the CPU time the loop's
thread used meanwhile, p99 and max: the loop's own stalls, apart from the OS
descheduling either process on a busy machine), and the engine's
own throughput meanwhile (fan-out: tasks/s; flight: rows/s), with the load
average. Targets: p99 <= 10 ms and max <= 20 ms under each load.

    python benchmarks/embedded_latency.py                 # 10 s per load
    python benchmarks/embedded_latency.py --seconds 5 --loads idle fan-out
    python benchmarks/embedded_latency.py --quick         # 2 s per load, 200,000 rows
    python benchmarks/embedded_latency.py --loads idle mapped
    python benchmarks/embedded_latency.py --loads idle waiting

The flight load needs the ``testing`` extra (DuckDB); without it that row says so.
Its row also gives the CPU time the loop's thread took to free each table (the
task drops it). A Flight table's memory is gRPC's, allocated with ``malloc``; with
glibc's defaults, freeing 84 MB of it can give pages back to the system there and
then, milliseconds on the loop. Compare with
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456``
(``docs/performance.md``, "Large results and the allocator").
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
from aiohttp import web

from dremioframe_async.orchestration import Pipeline, Task, task

PING_EVERY = 0.010
FREEZE = False  # --freeze
P99_TARGET_MS, MAX_TARGET_MS = 10.0, 20.0


async def noop() -> None:
    return


def fan_out(width: int) -> Pipeline:
    root, sink = Task("root", noop), Task("sink", noop)
    for i in range(width):
        mid = Task(f"t{i}", noop)
        root >> mid
        mid >> sink
    return Pipeline("latency_fan_out").add_task(root)


# -- the pinger (another process) ---------------------------------------------------


def pinger(port: int, seconds: float) -> None:
    """Ping ``/ping`` every PING_EVERY seconds for ``seconds``; print the round trips (ms)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times: list[float] = []
    deadline = time.monotonic() + seconds
    next_at = time.monotonic()
    while (now := time.monotonic()) < deadline:
        if now < next_at:
            time.sleep(next_at - now)
        start = time.perf_counter()
        conn.request("GET", "/ping")
        conn.getresponse().read()
        times.append((time.perf_counter() - start) * 1e3)
        next_at += PING_EVERY
        next_at = max(next_at, time.monotonic())  # no catch-up burst after a stall
    conn.close()
    print(json.dumps(times))


# -- the host -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    load: str
    p50: float
    p99: float
    worst: float
    pings: int
    throughput: str
    lag99: float  # the loop's own lag (ms): a 5 ms sleep's lateness, p99 and max
    lag_max: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ping(request: web.Request) -> web.Response:
    return web.Response(text="ok")


Load = Callable[[anyio.Event], Awaitable[str]]


async def idle(stop: anyio.Event) -> str:
    await stop.wait()
    return "-"


def fan_out_load(width: int) -> Load:
    pipeline = fan_out(width)

    async def load(stop: anyio.Event) -> str:
        pipeline.plan(())  # built once, as an application would keep its pipeline
        if FREEZE:
            gc.freeze()  # the built graph leaves the cyclic GC's full collections
        tasks, start = 0, time.perf_counter()
        while not stop.is_set():
            result = await pipeline.run()
            assert result.status == "SUCCESS", result.status
            tasks += width + 2
        return f"{tasks / (time.perf_counter() - start):,.0f} tasks/s"

    return load


def mapped_load(instances: int) -> Load:
    """One task's result mapped over by ``expand``: ``instances`` no-op instances per run."""

    @task(max_map_length=instances)
    async def parts() -> list[int]:
        return list(range(instances))

    @task(max_map_length=instances)
    async def extract(part: int) -> int:
        return part

    pipeline = Pipeline("latency_mapped").add_task(extract.expand(part=parts()))

    async def load(stop: anyio.Event) -> str:
        made, start = 0, time.perf_counter()
        while not stop.is_set():
            result = await pipeline.run()
            assert result.status == "SUCCESS", result.status
            made += instances
        return f"{made / (time.perf_counter() - start):,.0f} instances/s"

    return load


WAIT_SECONDS = 2.0  # how long each task of the waiting load waits


def waiting_load(width: int) -> Load:
    """``width`` tasks that wait together, each ``WAIT_SECONDS``, between a root and a sink."""

    async def wait() -> None:
        await anyio.sleep(WAIT_SECONDS)

    root, sink = Task("root", noop), Task("sink", noop)
    for i in range(width):
        mid = Task(f"w{i}", wait)
        root >> mid
        mid >> sink
    pipeline = Pipeline("latency_waiting", max_concurrency=width + 2).add_task(root)

    async def load(stop: anyio.Event) -> str:
        times: list[float] = []
        full = gc.get_stats()[2]["collections"]
        while not stop.is_set():
            start = time.perf_counter()
            result = await pipeline.run()
            assert result.status == "SUCCESS", result.status
            times.append(time.perf_counter() - start)
            del result
        full = gc.get_stats()[2]["collections"] - full
        median = statistics.median(times)
        return (
            f"{len(times)} runs of {WAIT_SECONDS:g} s waits: median {median:.2f} s, "
            f"{full / len(times):.1f} full collections a run"
        )

    return load


def flight_load(rows: int) -> Load:
    async def load(stop: anyio.Event) -> str:
        from dremioframe_async.bench._fake_process import fake_dremio_process
        from dremioframe_async.dremio import DremioClient

        got = 0
        async with (
            fake_dremio_process(latency=0.0, max_running_jobs=None, rows=rows) as fake,
            DremioClient(fake.url, token=fake.token, flight_url=fake.flight_url) as client,
        ):

            async def extract() -> int:
                table = await client.query("SELECT * FROM bench.sample", via="flight")
                rows = int(table.num_rows)
                # The loop thread's CPU time freeing the table (its memory is gRPC's,
                # from malloc: see this module's docstring).
                start = time.thread_time()
                del table
                drops.append(time.thread_time() - start)
                return rows

            pipeline = Pipeline("latency_flight")
            for i in range(4):
                pipeline.add_task(Task(f"extract_{i}", extract))
            stop_ready.set()  # the child is up: start pinging now
            start = time.perf_counter()
            while not stop.is_set():
                result = await pipeline.run()
                result.raise_for_status()
                got += sum(int(v) for v in result.values())
            elapsed = time.perf_counter() - start
        drops.sort()
        return (
            f"{got / elapsed:,.0f} rows/s; freeing a table: median "
            f"{statistics.median(drops) * 1e3:.2f} ms, max {drops[-1] * 1e3:.2f} ms"
        )

    stop_ready = anyio.Event()
    drops: list[float] = []
    load.ready = stop_ready  # type: ignore[attr-defined]
    return load


LAG_PROBE = 0.005


async def watch_lag(lags: list[float], stop: anyio.Event) -> None:
    """How late a 5 ms sleep wakes, counting only the time the loop's thread ran.

    On a busy machine the OS deschedules the process for tens of ms at a time;
    that is no stall of the loop. The loop's own stall is the lateness, bounded
    by the CPU time the loop's thread used meanwhile.
    """
    while not stop.is_set():
        start, cpu = time.perf_counter(), time.thread_time()
        await anyio.sleep(LAG_PROBE)
        late = time.perf_counter() - start - LAG_PROBE
        lags.append(max(0.0, min(late, time.thread_time() - cpu)) * 1e3)


async def measure(name: str, load: Load, seconds: float) -> Figures:
    """Serve /ping, run ``load`` until a pinger process has pinged for ``seconds``."""
    app = web.Application()
    app.router.add_get("/ping", _ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = anyio.Event()
    outcome: list[str] = []
    try:
        async with anyio.create_task_group() as tg:

            async def run_load() -> None:
                outcome.append(await load(stop))

            tg.start_soon(run_load)
            lags: list[float] = []
            tg.start_soon(watch_lag, lags, stop)
            ready: anyio.Event | None = getattr(load, "ready", None)
            if ready is not None:
                await ready.wait()
            argv = [sys.executable, __file__, "--pinger", str(port), str(seconds)]
            done = await anyio.run_process(argv, check=True)
            stop.set()
    finally:
        await runner.cleanup()
    times = sorted(json.loads(done.stdout))
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    lags.sort()
    lag99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return Figures(
        name, statistics.median(times), p99, times[-1], len(times), outcome[0], lag99, lags[-1]
    )


def report(rows: list[Figures]) -> None:
    frozen = ", gc.freeze() after building" if FREEZE else ""
    tunables = os.environ.get("GLIBC_TUNABLES")
    malloc = f", GLIBC_TUNABLES={tunables}" if tunables else ""
    print(f"\nload average: {os.getloadavg()[0]:.2f} (2 cores shared){frozen}{malloc}")
    print(
        f"{'load':<10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'pings':>6} "
        f"{'lag p99':>8} {'lag max':>8}  engine"
    )
    for r in rows:
        print(
            f"{r.load:<10} {r.p50:>7.2f} {r.p99:>7.2f} {r.worst:>7.2f} {r.pings:>6} "
            f"{r.lag99:>8.2f} {r.lag_max:>8.2f}  {r.throughput}"
        )
    for r in rows:
        if r.load == "idle":
            continue
        ok = r.p99 <= P99_TARGET_MS and r.worst <= MAX_TARGET_MS
        verdict = "met" if ok else "MISSED"
        print(
            f"{r.load}: p99 {r.p99:.1f} ms (<= {P99_TARGET_MS:g}), max {r.worst:.1f} ms "
            f"(<= {MAX_TARGET_MS:g}): {verdict}"
        )


async def main_async(
    loads: Sequence[str],
    seconds: float,
    width: int,
    rows: int,
    freeze: bool = False,
    instances: int = 100_000,
    waiting: int = 100_000,
) -> None:
    global FREEZE
    FREEZE = freeze
    makers: dict[str, Callable[[], Load]] = {
        "idle": lambda: idle,
        "fan-out": lambda: fan_out_load(width),
        "flight": lambda: flight_load(rows),
        "mapped": lambda: mapped_load(instances),
        "waiting": lambda: waiting_load(waiting),
    }
    figures = []
    for name in loads:
        try:
            figures.append(await measure(name, makers[name](), seconds))
        except ImportError as exc:
            print(f"{name}: skipped ({exc}; install the testing extra)")
            continue
        f = figures[-1]
        print(f"  ... {name}: p50 {f.p50:.2f} ms, p99 {f.p99:.2f} ms, max {f.worst:.2f} ms")
    report(figures)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="pinging per load")
    parser.add_argument("--loads", nargs="+", default=["idle", "fan-out", "flight"])
    parser.add_argument("--width", type=int, default=20_000, help="fan-out tasks")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows per extraction")
    parser.add_argument(
        "--instances", type=int, default=100_000, help="instances of the mapped load's fan-out"
    )
    parser.add_argument(
        "--waiting", type=int, default=100_000, help="tasks of the waiting load, waiting together"
    )
    parser.add_argument(
        "--freeze", action="store_true", help="gc.freeze() once the pipelines are built"
    )
    parser.add_argument("--quick", action="store_true", help="2 s per load, 200,000 rows")
    parser.add_argument("--pinger", nargs=2, metavar=("PORT", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pinger:
        pinger(int(args.pinger[0]), float(args.pinger[1]))
        return
    if args.quick:
        args.seconds, args.rows = 2.0, 200_000
    anyio.run(
        main_async,
        args.loads,
        args.seconds,
        args.width,
        args.rows,
        args.freeze,
        args.instances,
        args.waiting,
    )


if __name__ == "__main__":
    main()
