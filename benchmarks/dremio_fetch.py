"""Dremio result throughput: REST (sequential, concurrent pages) against Arrow Flight.

FakeDremio runs in a separate process (``--serve``), so client and server do not
share one GIL, and serves a table of mixed types (ints, decimals, timestamps,
strings, booleans, nulls). The client measures ``DremioClient.query()`` end to
end (submit, wait and every page over REST; GetFlightInfo and DoGet over Flight):

1. 1,000,000 rows with no added latency: REST one page at a time
   (``page_concurrency=1``), REST with 8 pages in flight, and Flight.
2. ``--latency-rows`` rows (default 100,000) with 20 ms added to every REST
   request, as a network would: REST sequential against concurrent. (At 20 ms a
   page, 1,000,000 rows one page at a time would take over 40 s.)
3. REST page decoding: Arrow's struct converter against the per-column path
   (per 500-row page, in this process), and concurrent paging with JSON
   parsing and decoding moved to a worker thread instead of the loop.
4. The demo pipeline (12 tables, 300,000 rows to Parquet) with ``via="rest"``
   and ``via="flight"``, alternated: the pipeline run, without starting the
   embedded server and generating its tables.
5. A 200-table fan-out extraction (submit, wait, write Parquet per table; 20 ms
   job latency, 2 ms request latency) through a Pipeline with ``max_concurrency``
   1, 8 and 64, against FakeDremio in this process.

Figures are medians of ``--repeat`` runs; MB/s counts the Arrow bytes delivered;
ratios are against baselines measured in the same run. Usage::

    .venv/bin/python benchmarks/dremio_fetch.py [--rows 1000000] [--repeat 3]
    .venv/bin/python benchmarks/dremio_fetch.py --quick     # seconds; CI runs this
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.compute as pc

from dremioframe_async import Pipeline, task
from dremioframe_async.demo import run_demo
from dremioframe_async.dremio import DremioClient, RetryPolicy
from dremioframe_async.dremio import _results as results
from dremioframe_async.dremio._types import _column, arrow_schema, rows_to_batch
from dremioframe_async.tasks import quote_path
from dremioframe_async.testing import FakeDremio, sample_table
from dremioframe_async.testing._json import dremio_schema, json_ready, page_json

SQL = "SELECT * FROM bench.mixed"


def mixed_table(rows: int) -> pa.Table:
    """The sample table (ids, names with nulls, DECIMAL(12,2) with nulls, timestamps) plus
    an INT with nulls, a low-cardinality string and a boolean."""
    base = sample_table(rows)
    ids = base.column("id")
    qty = pc.if_else(
        pc.equal(pc.remainder(ids, 11), 0), None, pc.cast(pc.remainder(ids, 97), "int32")
    )
    cities = pa.array(["Lisbon", "Oslo", "Lima", "Perth", "Quito"])
    city = pc.take(cities, pc.remainder(ids, 5))
    flag = pc.equal(pc.remainder(ids, 3), 0)
    return base.append_column("qty", qty).append_column("city", city).append_column("flag", flag)


# -- the server process ---------------------------------------------------------------------------


async def serve(rows: int, latency_ms: float) -> None:
    async with FakeDremio(request_latency=latency_ms / 1000, flight=True) as fake:
        fake.add_table("bench.mixed", mixed_table(rows))
        print(json.dumps({"url": fake.url, "flight_url": fake.flight_url, "token": fake.token}))
        sys.stdout.flush()
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the parent closes our stdin


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    flight_url: str
    token: str


@asynccontextmanager
async def server_process(rows: int, latency_ms: float) -> AsyncIterator[Server]:
    argv = [
        sys.executable,
        __file__,
        "--serve",
        "--rows",
        str(rows),
        "--latency-ms",
        str(latency_ms),
    ]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        if not line:
            raise RuntimeError("the FakeDremio process did not start")
        yield Server(**json.loads(line))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        await anyio.to_thread.run_sync(proc.wait, 30)


# -- measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    mode: str
    latency_ms: float
    rows: int
    seconds: float
    nbytes: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def mbps(self) -> float:
        return self.nbytes / self.seconds / 1e6


async def median_seconds(work: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def measure(
    server: Server, mode: str, latency_ms: float, rows: int, repeat: int, **options: Any
) -> Row:
    via = options.pop("via", "rest")
    retry = RetryPolicy(attempts=3, max_time=600.0)
    async with DremioClient(
        server.url, token=server.token, flight_url=server.flight_url, retry=retry, **options
    ) as client:
        if via == "flight":  # a warm-up is cheap here; REST runs are long enough without
            await client.query(SQL, via=via)
        nbytes: list[int] = []

        async def once() -> None:
            table = await client.query(SQL, via=via)
            assert table.num_rows == rows, (mode, table.num_rows)
            nbytes.append(table.nbytes)

        seconds = await median_seconds(once, repeat)
    return Row(mode, latency_ms, rows, seconds, nbytes[0])


class ThreadDecodedPager(results.ResultPager):
    """Pages fetched as text on the loop; JSON parsing and decoding in a worker thread."""

    async def _page(self, offset: int, schema: pa.Schema | None) -> Any:
        params = {"offset": str(offset), "limit": str(results.PAGE_SIZE)}
        text = await self.transport.request("GET", self._path, params=params, loads=str)
        return await anyio.to_thread.run_sync(decode_page, text, offset, schema)


def decode_page(text: str, offset: int, schema: pa.Schema | None) -> Any:
    body = json.loads(text, parse_float=Decimal)
    schema = schema or arrow_schema(body.get("schema") or [])
    reported = body.get("rowCount")
    batch = rows_to_batch(body.get("rows") or [], schema)
    return results._Page(offset, None if reported is None else int(reported), batch)


async def measure_thread_decoding(server: Server, rows: int, repeat: int) -> Row:
    original = results.ResultPager
    try:
        results.ResultPager = ThreadDecodedPager  # type: ignore[misc]
        import dremioframe_async.dremio._client as client_module

        client_module.ResultPager = ThreadDecodedPager  # type: ignore[misc]
        return await measure(
            server, "REST concurrent (8), decode in thread", 0, rows, repeat, page_concurrency=8
        )
    finally:
        results.ResultPager = original  # type: ignore[misc]
        client_module.ResultPager = original  # type: ignore[misc]


def decode_micro(repeat: int) -> tuple[float, float, float]:
    """Microseconds per 500-row page: JSON parse, struct-converter decode, per-column decode."""
    table = mixed_table(500)
    text = page_json(json_ready(table), dremio_schema(table.schema), 0, 500, False)
    body = json.loads(text, parse_float=Decimal)
    schema, rows = arrow_schema(body["schema"]), body["rows"]

    def per_column() -> pa.RecordBatch:
        arrays = [_column([row.get(f.name) for row in rows], f.type) for f in schema]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    assert rows_to_batch(rows, schema).equals(per_column())
    number = 20 * repeat

    def best(fn: Callable[[], Any]) -> float:
        return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6

    parse = best(lambda: json.loads(text, parse_float=Decimal))
    return parse, best(lambda: rows_to_batch(rows, schema)), best(per_column)


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


async def bench_fanout(tables: int, repeat: int) -> list[tuple[int, float]]:
    results = []
    names = [f"t{i:03d}" for i in range(tables)]
    async with FakeDremio(job_latency=0.02, request_latency=0.002) as fake:
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


async def demo_seconds(via: str, tables: int, rows: int) -> float:
    stream = io.StringIO()
    outcome = await run_demo(tables=tables, rows=rows, via=via, stream=stream)  # type: ignore[arg-type]
    assert outcome.result.status == "SUCCESS"
    assert outcome.total_rows == rows
    assert outcome.via == via
    return outcome.seconds


# -- report ---------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    print(
        f"{'mode':40s} {'latency':>8s} {'rows':>10s} {'median s':>9s} {'rows/s':>12s} {'MB/s':>8s}"
    )
    for r in rows:
        print(
            f"{r.mode:40s} {r.latency_ms:6g} ms {r.rows:10,d} {r.seconds:9.3f} "
            f"{r.rate:12,.0f} {r.mbps:8.1f}"
        )


async def main(args: argparse.Namespace) -> None:
    rest_seq = {"page_concurrency": 1}
    rest_conc = {"page_concurrency": 8}
    print(
        f"FakeDremio in a separate process; {args.rows:,} mixed-type rows; "
        f"median of {args.repeat}\n"
    )
    async with server_process(args.rows, 0) as server:
        flight = await measure(server, "Flight", 0, args.rows, args.repeat, via="flight")
        seq0 = await measure(
            server, "REST sequential (1 page at a time)", 0, args.rows, args.repeat, **rest_seq
        )
        conc0 = await measure(
            server, "REST concurrent (8 pages)", 0, args.rows, args.repeat, **rest_conc
        )
        thread0 = await measure_thread_decoding(server, args.rows, args.repeat)
    async with server_process(args.latency_rows, args.latency_ms) as slow:
        seq20 = await measure(
            slow,
            "REST sequential (1 page at a time)",
            args.latency_ms,
            args.latency_rows,
            args.repeat,
            **rest_seq,
        )
        conc20 = await measure(
            slow,
            "REST concurrent (8 pages)",
            args.latency_ms,
            args.latency_rows,
            args.repeat,
            **rest_conc,
        )
    print_table([seq0, conc0, thread0, flight, seq20, conc20])
    print()
    print(f"ratio flight/rest-concurrent rows/s (0 ms): {flight.rate / conc0.rate:.1f}x")
    print(f"ratio flight/rest-sequential rows/s (0 ms): {flight.rate / seq0.rate:.1f}x")
    print(f"ratio rest-concurrent/sequential rows/s (0 ms): {conc0.rate / seq0.rate:.2f}x")
    print(
        f"ratio rest-concurrent/sequential rows/s ({args.latency_ms:g} ms): "
        f"{conc20.rate / seq20.rate:.2f}x"
    )
    print(f"ratio decode-in-thread/on-loop rows/s (0 ms): {thread0.rate / conc0.rate:.2f}x")
    parse, struct, per_column = decode_micro(args.repeat)
    print(
        f"\nREST page decode, 500 rows: JSON parse {parse:.0f} us, struct converter "
        f"{struct:.0f} us, per-column {per_column:.0f} us; "
        f"ratio per-column/struct: {per_column / struct:.2f}x"
    )
    rests, flights = [], []
    for _ in range(args.repeat):  # alternated, so a noisy spell hits both paths
        rests.append(await demo_seconds("rest", args.demo_tables, args.demo_rows))
        flights.append(await demo_seconds("flight", args.demo_tables, args.demo_rows))
    rest_demo, flight_demo = statistics.median(rests), statistics.median(flights)
    print(
        f"\ndemo ({args.demo_tables} tables, {args.demo_rows:,} rows to Parquet; the pipeline "
        f"run, median of {args.repeat}): rest {rest_demo:.2f} s, flight {flight_demo:.2f} s; "
        f"ratio rest/flight: {rest_demo / flight_demo:.1f}x"
    )
    fan = await bench_fanout(args.tables, args.repeat)
    print(f"\n{args.tables}-table fan-out extraction to Parquet over REST (500 rows each)")
    for limit, seconds in fan:
        rate, speedup = args.tables / seconds, fan[0][1] / seconds
        line = f"max_concurrency={limit:<3d} {seconds:8.2f} s {rate:8.1f} tables/s  x{speedup:.2f}"
        print("    " + line)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--latency-rows", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--demo-tables", type=int, default=12)
    parser.add_argument("--demo-rows", type=int, default=300_000)
    parser.add_argument("--tables", type=int, default=200, help="tables in the fan-out")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (CI smoke)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.latency_rows, args.repeat = 20_000, 4_000, 1
        args.demo_tables, args.demo_rows, args.tables = 3, 6_000, 16
    return args


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.serve:
        anyio.run(serve, parsed.rows, parsed.latency_ms)
    else:
        anyio.run(main, parsed)
