"""Does the web UI hold its event loop while it serves a large run?

A UI shares its loop with the runs it starts and with ``serve``'s scheduler. This
records a no-op fan-out (100,000 tasks by default) into a SQLite store, then serves
``ui_app`` on that store in a child process with a lag probe on the UI's loop (how late
a 5 ms sleep wakes: bounded by the CPU time the loop's thread used meanwhile, so that
the OS descheduling the process on a busy machine is not counted, and on the wall
clock, which also counts the loop waiting for the GIL that a worker thread holds). For
each route the parent fetches the whole answer and reads the worst lag seen while it
was served:

* run page (``/runs/{id}``) and its live fragment (``/runs/{id}/live``);
* the run's JSON (``/api/runs/{id}``);
* its event stream (``/api/runs/{id}/events``, read to its ``end`` event);
* one task's page (``/runs/{id}/task?key=t5``).

Per route: the median over ``--repeat`` fetches of the answer's time, its size and the
loop's worst lag, both ways. What a target would be: no stall over 20 ms; see
``docs/ui.md``.

    python benchmarks/ui_large_run.py                  # 100,000 tasks, 3 fetches each
    python benchmarks/ui_large_run.py --tasks 20000 --repeat 5
    python benchmarks/ui_large_run.py --quick          # 2,000 tasks, 1 fetch: CI smoke
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import anyio
from aiohttp import web

from dremioframe_async import Pipeline, Task
from dremioframe_async.store import SQLiteStore
from dremioframe_async.ui import ui_app

TICK = 0.005


async def noop() -> None:
    return None


async def record(path: Path, width: int) -> str:
    root, sink = Task("root", noop), Task("sink", noop)
    for i in range(width):
        middle = Task(f"t{i}", noop)
        root >> middle
        middle >> sink
    store = SQLiteStore(path)
    try:
        result = await Pipeline("wide").add_task(root).run(store=store)
    finally:
        await store.aclose()
    result.raise_for_status()
    return result.run_id


# -- the child: the UI and its loop's lag ------------------------------------------------


class Lag:
    """The loop's worst lag since the last reset: bounded by the CPU time its thread used
    meanwhile, and on the wall clock (which also counts waiting for the GIL while a
    worker thread holds it, and the OS descheduling the process)."""

    def __init__(self) -> None:
        self.worst = self.worst_wall = 0.0

    async def watch(self) -> None:
        while True:
            start, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(TICK)
            late = time.perf_counter() - start - TICK
            self.worst = max(self.worst, min(late, time.thread_time() - cpu))
            self.worst_wall = max(self.worst_wall, late)

    async def reset(self, request: web.Request) -> web.Response:
        self.worst = self.worst_wall = 0.0
        return web.json_response({})

    async def read(self, request: web.Request) -> web.Response:
        return web.json_response({"cpu_ms": self.worst * 1e3, "wall_ms": self.worst_wall * 1e3})


async def serve(path: str, port: int, probe_port: int) -> None:
    store = SQLiteStore(path)
    lag = Lag()
    probe = web.Application()
    probe.router.add_get("/reset", lag.reset)
    probe.router.add_get("/read", lag.read)
    runners = [web.AppRunner(ui_app(store)), web.AppRunner(probe)]
    for runner, at in zip(runners, (port, probe_port), strict=True):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", at).start()
    watcher = asyncio.ensure_future(lag.watch())
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()  # until the parent kills this process
    finally:
        watcher.cancel()
        for runner in runners:
            await runner.cleanup()
        await store.aclose()


# -- the parent: fetch each route, read the lag ------------------------------------------


async def fetch(session: aiohttp.ClientSession, url: str, stream: bool) -> int:
    async with session.get(url) as response:
        assert response.status == 200, (url, response.status)
        if not stream:
            return len(await response.read())
        size, tail = 0, b""
        async for chunk in response.content.iter_chunked(1 << 16):  # an event is 12 MB
            size += len(chunk)
            tail = (tail + chunk)[-64:]
            if b"event: end" in tail:
                break
        return size


async def measure(base: str, probe: str, run_id: str, repeat: int) -> None:
    routes = [
        ("run page", f"/runs/{run_id}", False),
        ("run fragment", f"/runs/{run_id}/live", False),
        ("run JSON", f"/api/runs/{run_id}", False),
        ("event stream", f"/api/runs/{run_id}/events", True),
        ("task page", f"/runs/{run_id}/task?key=t5", False),
    ]
    timeout = aiohttp.ClientTimeout(total=300)
    print(f"{'route':<14} {'answer ms':>10} {'bytes':>12} {'lag max: cpu ms':>16} {'wall ms':>8}")
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, path, stream in routes:
            times, lags, walls, size = [], [], [], 0
            for _ in range(repeat):
                await (await session.get(f"{probe}/reset")).read()
                start = time.perf_counter()
                size = await fetch(session, base + path, stream)
                times.append(time.perf_counter() - start)
                lag = await (await session.get(f"{probe}/read")).json()
                lags.append(lag["cpu_ms"])
                walls.append(lag["wall_ms"])
            print(
                f"{name:<14} {statistics.median(times) * 1e3:>10.0f} {size:>12,} "
                f"{statistics.median(lags):>16.1f} {statistics.median(walls):>8.1f}"
            )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, 1 fetch: a smoke test")
    parser.add_argument(
        "--serve", nargs=3, metavar=("PATH", "PORT", "PROBE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve[0], int(args.serve[1]), int(args.serve[2])))
        return
    if args.quick:
        args.tasks, args.repeat = 2_000, 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.sqlite"
        started = time.perf_counter()
        run_id = anyio.run(record, path, args.tasks)
        print(f"recorded a {args.tasks:,}-task run in {time.perf_counter() - started:.1f} s")
        port, probe_port = _free_port(), _free_port()
        argv_child = [sys.executable, __file__, "--serve", str(path), str(port), str(probe_port)]
        child = subprocess.Popen(argv_child, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("the UI process did not start")
            base, probe = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{probe_port}"
            anyio.run(measure, base, probe, run_id, args.repeat)
        finally:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
