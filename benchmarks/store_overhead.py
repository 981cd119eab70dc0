"""What recording a run costs, against no store, on one warm Pipeline per shape.

Two shapes, each run several times per store in one process, rounds interleaved:

* fan-out: root -> 10,000 no-op async tasks -> sink (the CPU-bound worst case);
* sleep: root -> 1,000 tasks that ``await anyio.sleep(0.02)`` -> sink, with
  ``max_concurrency=1000`` (I/O-bound: writes should overlap the waiting).

For each store it prints the median wall time of ``pipeline.run`` (which
includes the run's durable start: its row is committed before the first task),
the ratio to the no-store median of the same shape, the extra µs per task, and
the median wait from the last leaf's end to ``run()``'s return (the sink, and
the store writing what is still unwritten: its tail).
Targets: SQLiteStore <= 1.5x (fan-out) and <= 1.10x (sleep); PostgresStore
<= 2.0x and <= 1.10x. The "events only" row attaches a listener that does
nothing: what the engine spends building and delivering events.

    python benchmarks/store_overhead.py [--tasks 10000] [--sleep-tasks 1000] [--repeat 5]

PostgreSQL: ``DREMIOFRAME_ASYNC_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``); the row is skipped with a
message when nothing answers there. A scratch schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from dremioframe_async import Pipeline, task
from dremioframe_async.store import MemoryStore, PostgresStore, RunStore, SQLiteStore

PG_URL = os.environ.get("DREMIOFRAME_ASYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


TARGETS = {
    ("fan-out", "SQLiteStore"): 1.5,
    ("sleep", "SQLiteStore"): 1.10,
    ("fan-out", "PostgresStore"): 2.0,
    ("sleep", "PostgresStore"): 1.10,
}


LAST_END = [0.0]  # perf_counter() as the latest leaf ended


def fan_out(width: int, sleep: float = 0.0) -> Pipeline:
    @task(name="root")
    async def root() -> int:
        return 0

    @task(name="leaf")
    async def leaf() -> None:
        if sleep:
            await anyio.sleep(sleep)
        LAST_END[0] = time.perf_counter()

    @task(name="sink")
    async def sink() -> str:
        return "done"

    top, bottom = root(), sink()
    for _ in range(width):
        node = leaf()
        top >> node
        node >> bottom
    return Pipeline("sleep" if sleep else "fan_out", max_concurrency=width + 2).add_task(top)


def _ignore(event: object) -> None:
    return None


Config = tuple[str, RunStore | None, bool]  # name, store, attach a do-nothing listener


async def run_once(
    pipeline: Pipeline, store: RunStore | None, listen: bool
) -> tuple[float, float, float]:
    """Wall and CPU seconds (this process, all threads) of one run, and its tail."""
    # Each run starts on a clean heap: otherwise the garbage of the previous row's
    # run is collected during this one, and the first row of each round pays for it.
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    result = await pipeline.run(store=store, on_event=_ignore if listen else None)
    end = time.perf_counter()
    elapsed, cpu = end - start, time.process_time() - cpu
    assert result.status == "SUCCESS", result.status
    assert result.history_error is None, result.history_error
    return elapsed, cpu, end - LAST_END[0]


Medians = tuple[float, float, float]  # wall, CPU and tail seconds


async def measure(pipeline: Pipeline, configs: list[Config], repeat: int) -> list[Medians]:
    """Median wall, CPU and tail seconds per configuration.

    Rounds are interleaved (each round runs every configuration once) so that
    load from other processes drifting over time hits every row alike. CPU time
    moves less than wall time on a busy machine; it leaves out the database
    server's own work (PostgreSQL).
    """
    times: list[list[tuple[float, float, float]]] = [[] for _ in configs]
    for _ in range(repeat):
        for i, (_, store, listen) in enumerate(configs):
            times[i].append(await run_once(pipeline, store, listen))
    return [
        (
            statistics.median(w for w, _, _ in t),
            statistics.median(c for _, c, _ in t),
            statistics.median(x for _, _, x in t),
        )
        for t in times
    ]


async def pg_store() -> tuple[PostgresStore | None, str]:
    schema = f"dfa_bench_{secrets.token_hex(4)}"
    store = PostgresStore(PG_URL, schema=schema)
    try:
        with anyio.fail_after(5):
            await store.list_runs(limit=1)
    except Exception as exc:
        return None, f"skipped: PostgreSQL not reachable at {PG_URL} ({type(exc).__name__})"
    return store, schema


async def drop(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def main(width: int, sleep_width: int, repeat: int) -> None:
    shapes = [
        ("fan-out", fan_out(width), width),
        ("sleep", fan_out(sleep_width, 0.02), sleep_width),
    ]
    for _, pipeline, _ in shapes:
        await pipeline.run()  # warm up (imports, graph planning caches)
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteStore(Path(tmp) / "bench.sqlite")
        configs: list[Config] = [
            ("no store", None, False),
            # The engine's own cost of building and delivering events, no store at all.
            ("events only", None, True),
            ("MemoryStore", MemoryStore(), False),
            ("SQLiteStore", sqlite, False),
        ]
        pg, schema_or_reason = await pg_store()
        if pg is not None:
            configs.append(("PostgresStore", pg, False))
        try:
            for store in (sqlite, pg):
                if store is not None:  # open (connect, migrate) outside the timings
                    await store.list_runs(limit=1)
            # SQLite's writer process starts with a store's first record; a store that
            # has recorded runs before has it running. Start it outside the timings.
            await sqlite.start_writer()
            results = [
                (shape, tasks, await measure(pipeline, configs, repeat))
                for shape, pipeline, tasks in shapes
            ]
        finally:
            await sqlite.aclose()
            if pg is not None:
                await pg.aclose()
                await drop(schema_or_reason)
    for shape, tasks, medians in results:
        rows: list[Row] = [
            (name, median, "") for (name, _, _), median in zip(configs, medians, strict=True)
        ]
        if pg is None:
            rows.append(("PostgresStore", None, schema_or_reason))
        report(shape, rows, tasks, repeat)


Row = tuple[str, Medians | None, str]  # name, (wall, cpu, tail) medians, note


def report(shape: str, rows: list[Row], tasks: int, repeat: int) -> None:
    base, base_cpu, _ = rows[0][1] or (1.0, 1.0, 0.0)
    print(f"\n{shape}: {tasks} tasks, median of {repeat} runs each")
    print(
        f"{'store':<14} {'median s':>9} {'ratio':>7} {'+µs/task':>9} {'+CPU µs/task':>13} "
        f"{'tail ms':>8}  target"
    )
    for name, medians, note in rows:
        if medians is None:
            print(f"{name:<14} {note}")
            continue
        seconds, cpu, tail = medians
        extra = (seconds - base) / tasks * 1e6
        extra_cpu = (cpu - base_cpu) / tasks * 1e6
        target = TARGETS.get((shape, name))
        verdict = ""
        if target is not None:
            verdict = f"<= {target}x {'met' if seconds / base <= target else 'MISSED'}"
        print(
            f"{name:<14} {seconds:>9.3f} {seconds / base:>6.2f}x {extra:>9.1f} "
            f"{extra_cpu:>13.1f} {tail * 1e3:>8.1f}  {verdict}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--sleep-tasks", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.tasks, args.sleep_tasks, args.repeat)
