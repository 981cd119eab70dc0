"""Dremio layer throughput against FakeDremio (one process, loopback HTTP).

1. ``fetch_arrow`` of 100,000 rows: pages of 500 fetched concurrently
   (``page_concurrency=8``) vs one at a time (``page_concurrency=1``), with no
   added latency and with a per-request latency standing in for a network.
2. A 200-table fan-out extraction (submit, wait, fetch, write Parquet per table)
   through a Pipeline with ``max_concurrency`` 1, 8 and 64.

Figures are medians of ``--repeat`` runs; speed-ups are ratios against the
baseline measured in the same run. Usage::

    .venv/bin/python benchmarks/dremio_fetch.py [--rows 100000] [--tables 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from dremioframe_async import Pipeline, task
from dremioframe_async.dremio import DremioClient
from dremioframe_async.tasks import quote_path
from dremioframe_async.testing import FakeDremio, sample_table


async def median_seconds(work: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def bench_fetch(rows: int, repeat: int, latency_ms: float) -> list[tuple[str, float, float]]:
    results = []
    async with FakeDremio(request_latency=latency_ms / 1000) as fake:
        fake.add_table("bench.big", sample_table(rows))
        for concurrency in (1, 8):
            async with DremioClient(fake.url, token=fake.token, page_concurrency=concurrency) as c:
                job_id = await c.submit("SELECT * FROM bench.big")
                await c.wait(job_id)
                await c.fetch_arrow(job_id)  # warm-up: the server formats pages once per job

                async def fetch(client: DremioClient = c, job: str = job_id) -> None:
                    table = await client.fetch_arrow(job)
                    assert table.num_rows == rows

                seconds = await median_seconds(fetch, repeat)
            label = (
                "sequential (1 page at a time)"
                if concurrency == 1
                else f"concurrent ({concurrency})"
            )
            results.append((label, seconds, rows / seconds))
    return results


def extraction_pipeline(client: DremioClient, names: list[str], out: Path, limit: int) -> Pipeline:
    @task(name="extract")
    async def extract(table: str) -> int:
        job_id = await client.submit(f"SELECT * FROM {quote_path(['bench', table])}")
        await client.wait(job_id)
        return await client.to_parquet(job_id, out / f"{table}.parquet")

    @task(name="tables")
    def tables() -> list[str]:
        return names

    return Pipeline("fanout", max_concurrency=limit).add_task(extract.expand(table=tables()))


async def bench_fanout(
    tables: int, repeat: int, latency_ms: float, job_latency: float
) -> list[tuple[int, float]]:
    results = []
    names = [f"t{i:03d}" for i in range(tables)]
    async with FakeDremio(job_latency=job_latency, request_latency=latency_ms / 1000) as fake:
        for name in names:
            fake.add_table(f"bench.{name}", sample_table(500))
        async with DremioClient(fake.url, token=fake.token, poll_interval=0.01) as client:
            for limit in (1, 8, 64):
                with tempfile.TemporaryDirectory() as tmp:
                    pipeline = extraction_pipeline(client, names, Path(tmp), limit)

                    async def run(p: Pipeline = pipeline) -> None:
                        (await p.run()).raise_for_status()

                    results.append((limit, await median_seconds(run, repeat)))
    return results


async def main(args: argparse.Namespace) -> None:
    print(f"fetch_arrow, {args.rows:,} rows in pages of 500 (median of {args.repeat})")
    for latency in (0.0, args.latency_ms):
        rows = await bench_fetch(args.rows, args.repeat, latency)
        base = rows[0][1]
        print(f"  request latency {latency:g} ms")
        for label, seconds, rate in rows:
            speedup = base / seconds
            print(f"    {label:32s} {seconds * 1e3:8.1f} ms {rate:12,.0f} rows/s  x{speedup:.2f}")
    print(
        f"\n{args.tables}-table fan-out extraction to Parquet (500 rows each, job latency "
        f"{args.job_latency * 1000:g} ms, request latency {args.latency_ms:g} ms, "
        f"median of {args.repeat})"
    )
    fan = await bench_fanout(args.tables, args.repeat, args.latency_ms, args.job_latency)
    base = fan[0][1]
    for limit, seconds in fan:
        rate = args.tables / seconds
        speedup = base / seconds
        print(
            f"    max_concurrency={limit:<3d} {seconds:8.2f} s {rate:8.1f} tables/s  x{speedup:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--job-latency", type=float, default=0.02)
    anyio.run(main, parser.parse_args())
