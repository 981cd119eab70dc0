"""A pipeline for the backfill CLI tests: one task per data interval, gated by files.

``$BACKFILL_DIR/<day>.started`` appears when the run of that day starts; the run
then waits for ``<day>.go`` (or ``go-all``), and fails if the day is listed in
``$BACKFILL_FAIL`` (comma-separated ``YYYY-MM-DD``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

from dremioframe_async import Pipeline, task


@task
async def day(context: Any = None) -> str:
    folder = Path(os.environ["BACKFILL_DIR"])
    start: str = context.params["interval_start"]
    name = start[:10]
    (folder / f"{name}.started").touch()
    while not ((folder / f"{name}.go").exists() or (folder / "go-all").exists()):
        await anyio.sleep(0.01)  # polling the test's gate file
    if name in os.environ.get("BACKFILL_FAIL", "").split(","):
        raise RuntimeError(f"day {name} fails")
    return start


pipeline = Pipeline("daily").add_task(day())
