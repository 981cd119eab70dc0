"""Pipelines (and things that are not pipelines) for the command-line error tests."""

from __future__ import annotations

import os
from pathlib import Path

from dremioframe_async import Pipeline, task

NOISY_MESSAGE = (
    "\x1b[31mred\x1b]0;pwned\x07 and then a long explanation: "
    + " ".join(f"word{i}" for i in range(60))
    + " END"
)


def cycle() -> Pipeline:
    @task(name="a")
    async def a() -> None: ...

    @task(name="b")
    async def b() -> None: ...

    ta, tb = a(), b()
    ta >> tb
    tb >> ta
    return Pipeline("cyclic").add_task(ta)


def noisy() -> Pipeline:
    @task(name="shout")
    async def shout() -> None:
        raise RuntimeError(NOISY_MESSAGE)

    return Pipeline("noisy").add_task(shout())


def unannotated():  # type: ignore[no-untyped-def]
    Path(os.environ["CLI_MARKER"]).touch()  # must never run
    return noisy()


def needs_arguments(day: str) -> Pipeline:
    return noisy()
