"""A pipeline for the crash and CLI tests: a, b -> c -> d, with marker files.

Every task appends its name to ``<workdir>/ran`` when it completes. ``c`` writes
``<workdir>/c.started`` and, unless ``<workdir>/release`` exists, blocks forever
(until the process is killed or the run cancelled). ``b`` fails while
``<workdir>/fail_b`` exists. ``c`` has one retry: when ``<workdir>/fail_c_once``
exists, its first attempt removes that file and fails (so a blocked ``c`` is then
on its second attempt).

Run as a script: ``python _crash_pipeline.py WORKDIR STORE_URL`` records a run of
it in the store at STORE_URL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio

from dremioframe_async import Pipeline, task


def _mark(workdir: Path, name: str) -> None:
    with open(workdir / "ran", "a", encoding="utf-8") as ran:
        ran.write(name + "\n")


def ran(workdir: Path) -> list[str]:
    """Names of the tasks that completed in ``workdir``, in completion order."""
    path = workdir / "ran"
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def build(workdir: Path) -> Pipeline:
    """The a, b -> c -> d pipeline writing its markers into ``workdir``."""

    @task(name="a")
    async def a() -> dict[str, int]:
        _mark(workdir, "a")
        return {"n": 1}

    @task(name="b")
    async def b() -> int:
        if (workdir / "fail_b").exists():
            raise RuntimeError("b was told to fail")
        _mark(workdir, "b")
        return 2

    @task(name="c", retries=1, retry_delay=0)
    async def c(context: Any) -> int:
        if (workdir / "fail_c_once").exists():
            (workdir / "fail_c_once").unlink()
            raise RuntimeError("c fails its first attempt")
        (workdir / "c.started").touch()
        if not (workdir / "release").exists():
            await anyio.sleep_forever()
        _mark(workdir, "c")
        return int(context["a"]["n"]) + int(context["b"])

    @task(name="d")
    async def d(context: Any) -> int:
        _mark(workdir, "d")
        return int(context["c"]) * 10

    ta, tb, tc, td = a(), b(), c(), d()
    ta >> tc
    tb >> tc
    tc >> td
    return Pipeline("crashy").add_task(ta)


def pipeline() -> Pipeline:
    """Zero-argument factory for the CLI: the workdir comes from ``CRASHY_DIR``."""
    return build(Path(os.environ["CRASHY_DIR"]))


async def _main(workdir: Path, url: str) -> None:
    from dremioframe_async.store import open_store

    store = open_store(url)
    try:
        await build(workdir).run(store=store)
    finally:
        await store.aclose()


if __name__ == "__main__":
    anyio.run(_main, Path(sys.argv[1]), sys.argv[2])
