"""Pipelines for the ``logs`` command and ``run --log-level`` tests (imported by the CLI)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio

from dremioframe_async import Pipeline, task


@task(name="talk")
async def talk(context: Any = None) -> None:
    context.log.info("hello <b>there</b>")
    context.log.warning("careful now")


@task(name="fails", retries=1)
async def fails(context: Any = None) -> None:
    context.log.error("about to fail")
    raise RuntimeError("fails always")


pipeline = Pipeline("chatty").add_task(talk()).add_task(fails())


@task(name="slow")
async def slow(context: Any = None) -> None:
    release = Path(os.environ["LOGS_DIR"]) / "release"
    context.log.info("first line")
    deadline = time.monotonic() + 30
    while not release.exists() and time.monotonic() < deadline:  # bounded: the test creates it
        await anyio.sleep(0.05)
    context.log.info("second line")


slow_pipeline = Pipeline("slow").add_task(slow())
