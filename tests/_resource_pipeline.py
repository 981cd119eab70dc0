"""A module-level pipeline with a resource that logs its opening and closing.

For the command-line tests: ``RESOURCE_DIR`` names a directory where the
resource appends ``open`` and ``close`` to ``log``, and the tasks their own
lines. ``hold`` touches ``hold.started`` and, unless ``release`` exists, waits
forever (until the run is cancelled); ``cleanup`` (all_done) logs whether the
resource was still open when it ran, or, if ``hold_cleanup`` exists, touches
``cleanup.started`` and waits forever (until a second Ctrl-C).
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from dremioframe_async import Pipeline, task


def _dir() -> Path:
    return Path(os.environ["RESOURCE_DIR"])


def _log(line: str) -> None:
    with open(_dir() / "log", "a", encoding="utf-8") as log:
        log.write(line + "\n")


def logged(directory: Path) -> list[str]:
    """The lines logged in ``directory`` so far."""
    path = directory / "log"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


class Ledger:
    """An async context manager (a class, so only a real exit logs ``close``)."""

    def __init__(self) -> None:
        self.closed = False

    async def __aenter__(self) -> Ledger:
        await anyio.sleep(0)
        _log("open")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await anyio.sleep(0)
        self.closed = True
        _log("close")


@task(resources=("ledger",))
async def hold(ledger: Ledger) -> str:
    (_dir() / "hold.started").touch()
    if not (_dir() / "release").exists():
        await anyio.sleep_forever()
    _log("hold")
    return "held"


@task(trigger_rule="all_done", resources=("ledger",))
async def cleanup(ledger: Ledger) -> None:
    await anyio.sleep(0)
    if (_dir() / "hold_cleanup").exists():  # until a second Ctrl-C stops it
        (_dir() / "cleanup.started").touch()
        await anyio.sleep_forever()
    _log(f"cleanup closed={ledger.closed}")


_held = hold()
_held >> cleanup()
pipeline = Pipeline("ledgered", resources={"ledger": Ledger}).add_task(_held)
