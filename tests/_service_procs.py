"""Real processes on one store for the service tests: start them, end them, wait on the store.

Every process is started through :class:`Procs`, whose ``close`` (called in a
``finally`` by the fixture) ends all of them: SIGTERM, then SIGKILL after a
bound. ``host=`` runs a process in its own UTS namespace under another host
name, so that a store sees its runs as another host's (no process-id check,
only the heartbeat).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import pytest_asyncio
from _store_fixtures import PG_SERVER, _admin, _pg_unreachable, with_database

from dremioframe_async.store import RunInfo, RunStatus, RunStore, StoreError

T = TypeVar("T")
PIPELINES = str(Path(__file__).with_name("_service_pipelines.py"))
FINAL = (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)


class Procs:
    """The processes one test started; all are ended by :meth:`close`."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str, host: str | None = None) -> subprocess.Popen[bytes]:
        """``python -m dremioframe_async ARGS``; output goes to a file (see :meth:`output`)."""
        cmd = [sys.executable, "-m", "dremioframe_async", *args]
        if host is not None:
            if shutil.which("unshare") is None or os.geteuid() != 0:
                pytest.skip("another host name needs root and unshare (util-linux)")
            cmd = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *cmd]
        log = self.folder / f"proc-{len(self.started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        self.started.append((proc, log))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """What ``proc`` printed so far."""
        log = next(log for p, log in self.started if p is proc)
        return log.read_text(errors="replace")

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
        """SIGTERM ``proc`` and return its exit code."""
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def close(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc, _ in self.started:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    env = {**os.environ, "SERVICE_LOG": str(tmp_path / "service.log")}
    env.pop("DREMIOFRAME_ASYNC_STORE", None)
    made = Procs(tmp_path, env)
    try:
        yield made
    finally:
        made.close()


@pytest_asyncio.fixture
async def fresh_pg() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes fresh PostgreSQL databases (URLs), dropped after the test.

    Skips when no server answers, except under ``CI=true``.
    """
    reason = await _pg_unreachable()
    if reason is not None:
        message = (
            f"PostgreSQL not reachable at {PG_SERVER} ({reason}); start one there or set "
            "DREMIOFRAME_ASYNC_TEST_PG=postgresql://user@host:port/db to run these tests"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    made: list[str] = []

    async def make() -> str:
        name = f"dfa_svc_{secrets.token_hex(5)}"
        await _admin(f'CREATE DATABASE "{name}"')
        made.append(name)
        return with_database(PG_SERVER, name)

    try:
        yield make
    finally:
        with anyio.CancelScope(shield=True):
            for name in made:
                await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def terminate_backends(url: str) -> int:
    """``pg_terminate_backend`` every other session of ``url``'s database; how many."""
    import asyncpg

    conn = await asyncpg.connect(PG_SERVER)
    try:
        database = url.rsplit("/", 1)[1].split("?")[0]
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        )
    finally:
        await conn.close()


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """Poll ``check`` (every 50 ms) until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = await check()
        except StoreError:  # a read through a connection that was just terminated
            found = None
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(0.05)


async def all_runs(store: RunStore, pipeline: str | None = None) -> list[RunInfo]:
    return list(await store.list_runs(pipeline=pipeline, limit=None))


def overlap(runs: list[RunInfo]) -> int:
    """The most runs whose [started, finished] intervals overlap at one instant."""
    edges = sorted(
        [(r.started, 1) for r in runs] + [(r.finished or r.started, -1) for r in runs],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def params_arg(**params: Any) -> list[str]:
    """``--param k=v`` arguments."""
    out: list[str] = []
    for key, value in params.items():
        out += ["--param", f"{key}={value}"]
    return out
