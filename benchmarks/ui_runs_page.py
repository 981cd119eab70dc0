"""What serving the UI's runs page costs with 10,000 runs in SQLite, and what it weighs.

Records ``--runs`` runs of 5 tasks each (3 pipelines, a fifth of them FAILED)
in a fresh SQLite file, serves the UI on loopback and times, over real HTTP,
the median of ``--repeat`` requests for: the first runs page (50 runs), a deep
page (``before=`` the cursor 100 pages in), a filtered page (one pipeline,
FAILED), the JSON API's first page, and a run's detail page. Ratios: each page
against the store's own ``query_runs`` for the same page (so what rendering and
HTTP add), and the deep page against the first (index-backed keyset pages cost
the same however deep). The page weight is the HTML plus the stylesheet and the
script it loads (nothing else is fetched).

    python benchmarks/ui_runs_page.py [--runs 10000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import anyio

from dremioframe_async.orchestration import RunFinished, RunStarted, TaskState, TaskStateChanged
from dremioframe_async.store import RunQuery, RunStatus, SQLiteStore
from dremioframe_async.ui import serve, ui_app

T0 = 1_700_000_000.0
KEYS = ("extract", "transform", "validate", "load", "report")


def run_events(i: int) -> list[object]:
    run_id, pipeline, start = f"run{i:06d}", ("etl", "daily", "backfill")[i % 3], T0 + 60 * i
    failed = i % 5 == 0
    events: list[object] = [RunStarted(run_id, pipeline, start, {"day": i}, KEYS)]
    for n, key in enumerate(KEYS):
        state = TaskState.FAILED if failed and key == "load" else TaskState.SUCCESS
        if failed and n > KEYS.index("load"):
            state = TaskState.UPSTREAM_FAILED
        events.append(TaskStateChanged(run_id, pipeline, key, TaskState.RUNNING, start + n, 1))
        events.append(TaskStateChanged(run_id, pipeline, key, state, start + n + 0.5, 1))
    status = "FAILED" if failed else "SUCCESS"
    events.append(RunFinished(run_id, pipeline, status, start + 6, start))
    return events


async def fill(store: SQLiteStore, runs: int) -> None:
    batch: list[object] = []
    for i in range(runs):
        batch.extend(run_events(i))
        if len(batch) >= 5000:
            await store.record(batch)  # type: ignore[arg-type]
            batch = []
    if batch:
        await store.record(batch)  # type: ignore[arg-type]


async def median_ms(repeat: int, call: Callable[[], Awaitable[object]]) -> float:
    await call()  # warm caches and prepared statements
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


async def measure(store: SQLiteStore, base: str, repeat: int) -> None:
    deep = RunQuery()
    for _ in range(100):
        deep = RunQuery(before=(await store.query_runs(deep)).older)
    failed = RunQuery(pipeline="etl", status=RunStatus.FAILED)
    async with aiohttp.ClientSession() as http:

        async def get(path: str, params: dict[str, str] | None = None) -> bytes:
            async with http.get(base + path, params=params) as response:
                assert response.status == 200, response.status
                return await response.read()

        rows = [
            ("runs page, first 50", "", {}, RunQuery()),
            ("runs page, 100 pages deep", "", {"before": deep.before or ""}, deep),
            ("runs page, pipeline + FAILED", "", {"pipeline": "etl", "status": "FAILED"}, failed),
            ("GET /api/runs, first 50", "api/runs", {}, RunQuery()),
        ]
        print(f"{'request':<32} {'median ms':>10} {'query_runs ms':>14} {'ratio':>6}")
        first_ms = 0.0
        for label, path, params, query in rows:
            page_ms = await median_ms(repeat, lambda p=path, q=params: get(p, q))
            query_ms = await median_ms(repeat, lambda q=query: store.query_runs(q))
            first_ms = first_ms or page_ms
            print(f"{label:<32} {page_ms:>10.1f} {query_ms:>14.1f} {page_ms / query_ms:>5.1f}x")
        detail_ms = await median_ms(repeat, lambda: get("runs/run000005"))
        print(f"{'run detail page':<32} {detail_ms:>10.1f}")
        deep_ms = await median_ms(repeat, lambda: get("", {"before": deep.before or ""}))
        print(f"ratio deep page / first page: {deep_ms / first_ms:.2f}x")
        html, css, js = await get(""), await get("static/ui.css"), await get("static/ui.js")
        total = len(html) + len(css) + len(js)
        print(
            f"page weight: {total / 1024:.1f} KiB (HTML {len(html) / 1024:.1f} KiB, "
            f"CSS {len(css) / 1024:.1f} KiB, JS {len(js) / 1024:.1f} KiB), 3 requests"
        )


async def main(runs: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteStore(Path(tmp) / "runs.sqlite") as store:
            start = time.perf_counter()
            await fill(store, runs)
            total = (await store.query_runs(RunQuery(limit=1))).total
            print(f"{total} runs recorded in {time.perf_counter() - start:.1f} s")
            async with anyio.create_task_group() as tg:
                ready, urls = anyio.Event(), []

                def on_ready(url: str) -> None:
                    urls.append(url)
                    ready.set()

                tg.start_soon(lambda: serve(ui_app(store), "127.0.0.1", 0, on_ready=on_ready))
                await ready.wait()
                await measure(store, urls[0], repeat)
                tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    anyio.run(main, args.runs, args.repeat)
