"""Pipelines for the command-line probes: a slow import, a coroutine factory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from dremioframe_async import Pipeline, task


async def coroutine_factory() -> Pipeline:
    Path(os.environ["PROBE_MARKER"]).touch()  # must never run
    return Pipeline("never")


def one_task() -> Pipeline:
    @task(name="only")
    async def only() -> int:
        return 1

    return Pipeline("probe").add_task(only())


if os.environ.get("PROBE_SLOW_IMPORT"):
    # Blocks the import until the test has sent SIGINT (the test waits for this line).
    print("importing", file=sys.stderr, flush=True)
    anyio.run(anyio.sleep, 30)
