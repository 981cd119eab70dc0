"""A backfill: one run per day of November, each extracting that day's rows.

    dremioframe-async backfill examples/15_backfill.py:pipeline \\
        --start 2026-11-01 --end 2026-12-01 --every 1d --max-active 4 --store sqlite:///runs.sqlite
    dremioframe-async backfill examples/15_backfill.py:pipeline ... --list     # what ran
    dremioframe-async backfill examples/15_backfill.py:pipeline ... --rerun-failed

Each run receives its data interval as ``context.params["interval_start"]`` and
``["interval_end"]`` (timezone-aware ISO strings); the task turns them into typed
``TIMESTAMP`` literals (never pasted text) and writes ``extract/daily/<day>.parquet``.
Scheduled runs get the same two parameters, so one pipeline serves the nightly
schedule and the backfill of last month after a bug fix. Re-running the same
command after Ctrl-C runs only the days that have no finished run.

``python examples/15_backfill.py`` backfills a week against an embedded
FakeDremio (``pip install 'dremioframe_async[testing]'``), then runs the same
backfill again to show that nothing is left to do.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa

from dremioframe_async import Pipeline, RunContext, task
from dremioframe_async.backfill import backfill
from dremioframe_async.dremio import DremioClient
from dremioframe_async.store import MemoryStore
from dremioframe_async.tasks import Watermark

OUT = Path(os.environ.get("EXTRACT_DIR", "extract")) / "daily"


@task(resources=("dremio",), retries=2, retry_delay=1.0)
async def extract_day(context: RunContext, dremio: DremioClient) -> int:
    start = dt.datetime.fromisoformat(context.params["interval_start"])
    end = dt.datetime.fromisoformat(context.params["interval_end"])
    sql = (
        "SELECT * FROM lake.events "
        f"WHERE updated_at >= {Watermark.of(start).literal()} "
        f"AND updated_at < {Watermark.of(end).literal()}"
    )
    return await dremio.query_to_parquet(sql, OUT / f"{start.date().isoformat()}.parquet")


pipeline = Pipeline("daily_events", resources={"dremio": DremioClient}).add_task(extract_day())


def events(days: int) -> pa.Table:
    """One row every 10 minutes for ``days`` days from November 1."""
    start = dt.datetime(2026, 11, 1)
    times = [start + dt.timedelta(minutes=10 * i) for i in range(days * 144)]
    return pa.table({"id": list(range(len(times))), "updated_at": times})


async def _a_week() -> None:
    from dremioframe_async.testing import FakeDremio

    global OUT
    store = MemoryStore()
    with tempfile.TemporaryDirectory() as folder:
        OUT = Path(folder)
        async with FakeDremio(flight=True) as fake:
            fake.add_table("lake.events", events(10))
            os.environ.update(
                DREMIO_URL=fake.url, DREMIO_PAT=fake.token, DREMIO_FLIGHT_URL=fake.flight_url
            )
            week: dict[str, Any] = {"start": "2026-11-01", "end": "2026-11-08", "every": "1d"}
            first = await backfill(pipeline, **week, store=store, max_active=4)
            rows = sum(result["extract_day"] for _, result in first.runs)
            files = len(list(OUT.iterdir()))
            print(f"backfill: {len(first.runs)} days, {files} files, {rows} rows")
            again = await backfill(pipeline, **week, store=store, max_active=4)
            print(f"again: {len(again.runs)} runs, {len(again.skipped)} days already done")
            run = (await store.list_runs(pipeline="daily_events", limit=1))[0]
            print(f"a run's interval: {run.interval}")


if __name__ == "__main__":
    sys.exit(anyio.run(_a_week))
