"""A pipeline for the Ctrl-C tests: ``work`` -> ``cleanup`` (all_done), with marker files.

``work`` writes ``<CLEANUP_DIR>/work.started`` and blocks until cancelled.
``cleanup`` writes ``cleanup.started``; if ``<CLEANUP_DIR>/hang`` exists it
then blocks (until a second Ctrl-C), else it writes ``cleaned``.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from dremioframe_async import Pipeline, task


def pipeline() -> Pipeline:
    workdir = Path(os.environ["CLEANUP_DIR"])

    @task(name="work")
    async def work() -> None:
        (workdir / "work.started").touch()
        await anyio.sleep_forever()

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> str:
        (workdir / "cleanup.started").touch()
        if (workdir / "hang").exists():
            await anyio.sleep_forever()
        (workdir / "cleaned").touch()
        return "cleaned"

    w = work()
    w >> cleanup()
    return Pipeline("ctrl_c", cleanup_grace=3600).add_task(w)
