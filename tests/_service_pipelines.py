"""Pipelines the multi-process service tests serve in real ``serve``/``schedule``/``run`` processes.

Tasks leave their traces in files (``SERVICE_LOG``, markers named by params),
so the test process can tell what ran where, without sharing memory.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import anyio

from dremioframe_async import Pipeline, task
from dremioframe_async.schedule import Schedule


def _trace(line: str) -> None:
    log = os.environ.get("SERVICE_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


@task(name="tick")
async def tick(context: Any) -> int:
    _trace(f"tick {context.run_id} {os.getpid()}")
    return os.getpid()


ticker = Pipeline("ticker").add_task(tick())
every_second = Schedule(ticker, interval=1)


@task(name="step")
async def step(context: Any) -> float:
    started = time.time()
    _trace(f"step {context.run_id} {os.getpid()} {started}")
    await anyio.sleep(float(context.params.get("sleep", 0.02)))
    return started


limited = Pipeline("limited", max_active_runs=2).add_task(step())


async def _until(path: str | None) -> None:
    while path and not Path(path).exists():
        await anyio.sleep(0.02)


@task(name="hold")
async def hold(context: Any) -> str:
    """Fails when the file ``fail_if`` exists; else waits until the file ``release`` exists."""
    params = context.params
    if params.get("started"):
        Path(params["started"]).touch()
    if params.get("fail_if") and Path(params["fail_if"]).exists():
        raise RuntimeError("asked to fail")
    await _until(params.get("release"))
    return "held"


@task(name="cleanup", trigger_rule="all_done")
async def cleanup(context: Any) -> str:
    params = context.params
    if params.get("cleanup_started"):
        Path(params["cleanup_started"]).touch()
    await anyio.sleep(float(params.get("cleanup_sleep", 0)))
    if params.get("cleanup_done"):
        Path(params["cleanup_done"]).touch()
    return "clean"


held = Pipeline("held", resume_interrupted=True, cleanup_grace=120).add_task(hold() >> cleanup())


def _steps(n: int) -> list[Any]:
    @task(name="slow_step")
    async def slow_step(context: Any) -> int:
        await anyio.sleep(float(context.params.get("each", 0.3)))
        return 1

    made = [slow_step() for _ in range(n)]
    for a, b in itertools.pairwise(made):
        a >> b
    return made


chain = Pipeline("chain").add_task(_steps(12)[0])
