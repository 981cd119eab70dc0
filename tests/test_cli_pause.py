"""``dremioframe-async pause``: a schedule paused from the command line, in real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from dremioframe_async.orchestration import RunFinished, RunStarted
from dremioframe_async.store import SQLiteStore

_SCRIPT = Path(sys.executable).with_name("dremioframe-async")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dremioframe_async"]


def pause(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "pause", *args, "--store", url],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def paused(path: Path) -> set[str]:
    async def read() -> set[str]:
        async with SQLiteStore(path) as store:
            return set(await store.paused_schedules())

    return anyio.run(read)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    async def seed() -> None:
        async with SQLiteStore(tmp_path / "runs.sqlite") as store:
            await store.record(
                [
                    RunStarted("r1", "etl", 1.0, {}, ()),
                    RunFinished("r1", "etl", "SUCCESS", 2.0, 1.0),
                ]
            )

    anyio.run(seed)
    return f"sqlite:///{tmp_path / 'runs.sqlite'}"


def test_pause_list_and_lift_from_the_command_line(store_url: str, tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    assert pause(store_url).stdout == "no schedule is paused\n"
    done = pause(store_url, "etl")
    assert (done.returncode, done.stdout) == (0, "etl: schedule paused\n")
    assert paused(path) == {"etl"}  # in the store, for every process on it
    assert pause(store_url, "etl").stdout == "etl: schedule paused already\n"
    assert pause(store_url).stdout.startswith("etl\tpaused since ")
    typo = pause(store_url, "elt")
    assert "no run of 'elt' is recorded in this store" in typo.stdout
    lifted = pause(store_url, "etl", "--lift")
    assert (lifted.returncode, lifted.stdout) == (0, "etl: schedule resumed\n")
    assert paused(path) == {"elt"}


def test_lift_without_a_pipeline_is_a_usage_error(store_url: str) -> None:
    done = pause(store_url, "--lift")
    assert done.returncode == 2
    assert "--lift needs the PIPELINE" in done.stderr
