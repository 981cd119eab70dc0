"""Many live-update streams on runs of another process: the UI's CPU and ``GET /``.

This process starts ``--runs`` pipeline runs that stay RUNNING (a task waits for
the end of the measurement), recorded in a SQLite store. A UI over the same store
runs in a subprocess with ``max_streams=--max-streams``; the UI does not run those
runs, so it follows them by reading the store. ``--streams`` event streams are
opened, spread over the runs; then, for ``--seconds``, the UI's CPU time is
read from ``/proc`` and ``GET /`` is timed every 50 ms. Prints the figures; exits 1
when the UI used more than ``--max-cpu`` of a core or ``GET /``'s p99 reached
``--max-p99-ms`` -- unless every stream past the cap was refused with 503 and
``Retry-After``, which is the other acceptable outcome.

    python benchmarks/ui_streams.py --streams 2000 --runs 20 --max-streams 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from dremioframe_async import Pipeline, task
from dremioframe_async.store import open_store

UI_SCRIPT = """
import sys, anyio
from dremioframe_async.store import open_store
from dremioframe_async.ui import serve, ui_app

async def main():
    store = open_store(sys.argv[1])
    async with store:
        app = ui_app(store, max_streams=int(sys.argv[2]), poll_interval=1.0)
        await serve(app, "127.0.0.1", 0, on_ready=lambda url: print(url, flush=True))

anyio.run(main)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _hold_runs(url: str, count: int, started: asyncio.Event, release: asyncio.Event) -> None:
    @task
    async def hold() -> None:
        await release.wait()

    store = open_store(url)
    async with store:
        pipeline = Pipeline("held").add_task(hold())
        runs = [
            asyncio.create_task(pipeline.run(store=store, run_id=f"held-{i}")) for i in range(count)
        ]
        while len(await store.list_runs(limit=None)) < count:
            await asyncio.sleep(0.05)
        started.set()
        await asyncio.gather(*runs)


async def _stream(session: aiohttp.ClientSession, url: str, outcomes: Counter[str]) -> None:
    try:
        async with session.get(url) as response:
            if response.status != 200:
                retry = response.headers.get("Retry-After", "")
                outcomes[f"{response.status}{' with Retry-After' if retry else ''}"] += 1
                return
            outcomes["open"] += 1
            async for _ in response.content:
                pass
    except (aiohttp.ClientError, asyncio.CancelledError):
        pass


async def _page_times(base: str, seconds: float) -> list[float]:
    times: list[float] = []
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as page:
        while time.monotonic() - t0 < seconds:
            started = time.perf_counter()
            async with page.get(base) as response:
                await response.read()
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
    return times


async def measure(base: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    outcomes: Counter[str] = Counter()
    quiet = await _page_times(base, 3.0)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout()) as s:
        streams = [
            asyncio.create_task(_stream(s, f"{base}api/runs/held-{i % args.runs}/events", outcomes))
            for i in range(args.streams)
        ]
        deadline = time.monotonic() + 60
        while sum(outcomes.values()) < args.streams and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # let every stream settle into its wait
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        times = await _page_times(base, args.seconds)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    print(
        f"{args.streams} streams over {args.runs} runs of another process, cap "
        f"{args.max_streams}: {dict(outcomes)}"
    )
    print(f"UI CPU over {args.seconds:.0f} s: {cpu * 100:.1f}% of a core")
    print(
        f"GET / before the streams: p50 {statistics.median(quiet) * 1e3:.1f} ms, "
        f"p99 {percentile(quiet, 0.99) * 1e3:.1f} ms ({len(quiet)} requests)"
    )
    print(
        f"GET / meanwhile: p50 {statistics.median(times) * 1e3:.1f} ms, "
        f"p99 {percentile(times, 0.99) * 1e3:.1f} ms ({len(times)} requests)"
    )
    refused = outcomes["503 with Retry-After"]
    return {
        "cpu": cpu,
        "p99_ms": percentile(times, 0.99) * 1e3,
        "all_past_cap_refused": float(refused > 0 and outcomes["open"] + refused == args.streams),
    }


async def run(args: argparse.Namespace, url: str) -> dict[str, float]:
    started, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold_runs(url, args.runs, started, release))
    await asyncio.wait_for(started.wait(), 60)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        UI_SCRIPT,
        url,
        str(args.max_streams),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        base = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        if not base.startswith("http://"):
            raise RuntimeError(f"the UI did not start: {base!r}")
        return await measure(base, proc.pid, args)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        release.set()
        await holder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max-streams", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-cpu", type=float, default=0.5)
    parser.add_argument("--max-p99-ms", type=float, default=50.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(args, f"sqlite:///{tmp}/history.db"))
    if figures["all_past_cap_refused"]:
        print("every stream past the cap was refused with 503 and Retry-After")
        return 0
    failed = []
    if figures["cpu"] > args.max_cpu:
        failed.append(f"UI CPU {figures['cpu'] * 100:.1f}% > {args.max_cpu * 100:.0f}%")
    if figures["p99_ms"] >= args.max_p99_ms:
        failed.append(f"GET / p99 {figures['p99_ms']:.1f} ms >= {args.max_p99_ms}")
    for problem in failed:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
