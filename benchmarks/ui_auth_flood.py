"""Wrong passwords against the UI: its memory and a signed-in user's latency meanwhile.

Starts ``dremioframe-async ui`` with basic auth in a subprocess, signs a user in
(its browser sends the right password with every request), then sends
``--attempts`` wrong passwords, ``--concurrency`` at a time, from ``--clients``
loopback addresses (127.0.0.2, 127.0.0.3, ...): each address gets a few free
tries before it is answered 429. Meanwhile it samples the UI's RSS and times the
signed-in user's ``GET /``. Prints the figures; exits 1 when RSS grows by more
than ``--max-growth-mib`` or the user's p99 is over ``--max-p99-ms``, or no
429 with ``Retry-After`` was seen.

    python benchmarks/ui_auth_flood.py --attempts 1000 --concurrency 50 --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from dremioframe_async.ui import hash_password

PASSWORD = "correct horse battery"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _user_latencies(url: str, stop: asyncio.Event) -> list[float]:
    headers = {"Authorization": basic("ops", PASSWORD), "Accept": "text/html"}
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.perf_counter()
            async with session.get(url, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
    return times


async def _sample_rss(pid: int, stop: asyncio.Event, peaks: list[float]) -> None:
    while not stop.is_set():
        peaks.append(rss_mib(pid))
        await asyncio.sleep(0.02)


async def _flood(url: str, attempts: int, concurrency: int, clients: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{2 + i}", 0), force_close=True)
        )
        for i in range(clients)
    ]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            session = sessions[i % clients]
            headers = {"Authorization": basic("ops", f"guess-{i}")}
            async with session.get(url + "api/runs", headers=headers) as response:
                await response.read()
                outcomes[str(response.status)] += 1
                if response.status == 429 and response.headers.get("Retry-After", "").isdigit():
                    outcomes["429 with Retry-After"] += 1

    try:
        await asyncio.gather(*(one(i) for i in range(attempts)))
    finally:
        for session in sessions:
            await session.close()
    return outcomes


async def measure(url: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    idle_stop = asyncio.Event()
    idle = asyncio.create_task(_user_latencies(url, idle_stop))
    await asyncio.sleep(1.0)
    idle_stop.set()
    before_times = await idle
    before = rss_mib(pid)
    stop, peaks = asyncio.Event(), [before]
    user = asyncio.create_task(_user_latencies(url, stop))
    sampler = asyncio.create_task(_sample_rss(pid, stop, peaks))
    started = time.perf_counter()
    outcomes = await _flood(url, args.attempts, args.concurrency, args.clients)
    took = time.perf_counter() - started
    stop.set()
    times = await user
    await sampler
    after = rss_mib(pid)
    print(
        f"flood: {args.attempts} wrong passwords, {args.concurrency} at a time, "
        f"{args.clients} client addresses, in {took:.1f} s: {dict(outcomes)}"
    )
    print(
        f"UI RSS: {before:.1f} MiB before, {max(peaks):.1f} MiB peak, {after:.1f} MiB after "
        f"(growth {max(peaks) - before:.1f} MiB)"
    )
    print(
        f"signed-in GET / without flood: p50 {statistics.median(before_times) * 1e3:.1f} ms, "
        f"p99 {percentile(before_times, 0.99) * 1e3:.1f} ms ({len(before_times)} requests)"
    )
    print(
        f"signed-in GET / during flood: p50 {statistics.median(times) * 1e3:.1f} ms, "
        f"p99 {percentile(times, 0.99) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms "
        f"({len(times)} requests)"
    )
    return {
        "growth": max(peaks) - before,
        "p99_ms": percentile(times, 0.99) * 1e3,
        "retry_after": outcomes["429 with Retry-After"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--max-growth-mib", type=float, default=50.0)
    parser.add_argument("--max-p99-ms", type=float, default=100.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "DREMIOFRAME_ASYNC_UI_USER": "ops",
            "DREMIOFRAME_ASYNC_UI_PASSWORD_HASH": hash_password(PASSWORD),
            "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{tmp}/history.db",
        }
        env.pop("DREMIOFRAME_ASYNC_UI_TOKEN", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "dremioframe_async", "ui", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("serving the UI at "):
                raise RuntimeError(f"the UI did not start: {line}{proc.communicate()[1]}")
            figures = asyncio.run(measure(line.split()[4], proc.pid, args))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    failed = []
    if figures["growth"] > args.max_growth_mib:
        failed.append(f"RSS grew by {figures['growth']:.1f} MiB > {args.max_growth_mib}")
    if figures["p99_ms"] >= args.max_p99_ms:
        failed.append(f"p99 {figures['p99_ms']:.1f} ms >= {args.max_p99_ms}")
    if not figures["retry_after"]:
        failed.append("no 429 with Retry-After")
    for problem in failed:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
