"""Partitioned extraction: one table read as 1, 2, 4 and 8 concurrent Flight streams.

FakeDremio (REST and Flight, DuckDB) runs in a child process of its own and
serves ``bench.sample`` (``--rows`` rows: id, name, a decimal, a timestamp).
Each measurement runs in a fresh client process, so that its peak memory is its
own: ``client.partitions_to_parquet("bench.sample", dir, by="id", parts=N)``
over Flight, timed inside the process around the call (planning query, the
parts, the Parquet files). The baseline is one plain ``query_to_parquet`` of the
whole table in the same run.

Columns: median wall seconds of ``--repeat`` runs, rows/s, the ratio of rows/s
against the baseline, and the client process's peak resident memory (MiB,
``ru_maxrss``) and peak Arrow allocation (MiB). Usage::

    .venv/bin/python benchmarks/partitioned_extract.py [--rows 5000000] [--repeat 3]
    .venv/bin/python benchmarks/partitioned_extract.py --quick     # seconds; CI runs this
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa

from dremioframe_async.bench._fake_process import FakeEndpoint, fake_dremio_process
from dremioframe_async.dremio import DremioClient

TABLE = "bench.sample"
PARTS = (1, 2, 4, 8)


async def _extract(endpoint: FakeEndpoint, parts: int, out: Path) -> dict[str, Any]:
    async with DremioClient(
        endpoint.url, token=endpoint.token, flight_url=endpoint.flight_url
    ) as client:
        start = time.perf_counter()
        if parts == 0:  # the baseline: one stream, no planning query
            rows = await client.query_to_parquet(f"SELECT * FROM {TABLE}", out / "all.parquet")
        else:
            paths = await client.partitions_to_parquet(TABLE, out, by="id", parts=parts)
            rows = sum(_rows(p) for p in paths)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": rows,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "arrow_mib": pa.default_memory_pool().max_memory() / 2**20,
    }


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows)


def child(argv: list[str]) -> None:
    """One measurement in this process; prints one JSON line."""
    url, flight_url, token, parts, out = argv
    endpoint = FakeEndpoint(url, flight_url, token)
    print(json.dumps(anyio.run(_extract, endpoint, int(parts), Path(out))))


def _measure(endpoint: FakeEndpoint, parts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, __file__, "--child", endpoint.url, endpoint.flight_url]
        argv += [endpoint.token, str(parts), out]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the client process failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _main(rows: int, repeat: int) -> None:
    print(f"table {TABLE}: {rows:,} rows; FakeDremio in its own process; Flight; {repeat} runs")
    async with fake_dremio_process(latency=0.0, max_running_jobs=None, rows=rows) as endpoint:
        figures: dict[int, list[dict[str, Any]]] = {p: [] for p in (0, *PARTS)}
        for _ in range(repeat):  # interleaved, so a busy spell of the machine hits all alike
            for parts in figures:
                figures[parts].append(await anyio.to_thread.run_sync(_measure, endpoint, parts))
    base = rows / statistics.median(f["seconds"] for f in figures[0])
    print(
        f"{'parts':>8} {'median s':>9} {'rows/s':>12} {'x base':>7} {'rss MiB':>8} {'arrow MiB':>9}"
    )
    for parts, runs in figures.items():
        assert all(r["rows"] == rows for r in runs), runs
        seconds = statistics.median(r["seconds"] for r in runs)
        rate = rows / seconds
        rss = max(r["rss_mib"] for r in runs)
        arrow = max(r["arrow_mib"] for r in runs)
        label = "baseline" if parts == 0 else str(parts)
        print(f"{label:>8} {seconds:9.2f} {rate:12,.0f} {rate / base:7.2f} {rss:8.0f} {arrow:9.0f}")
    for parts in PARTS[1:]:
        ratio = statistics.median(r["seconds"] for r in figures[1]) / statistics.median(
            r["seconds"] for r in figures[parts]
        )
        print(f"ratio parts={parts}/parts=1: {ratio:.2f}x rows/s")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one run")
    args = parser.parse_args()
    rows, repeat = (100_000, 1) if args.quick else (args.rows, args.repeat)
    anyio.run(_main, rows, repeat)


if __name__ == "__main__":
    main()
