"""The benchmark's FakeDremio in a child process, so client and server do not share a GIL.

``python -m dremioframe_async.bench._fake_process --latency 0.05 --limit 4 --rows 1000``
prints one JSON line (``url``, ``flight_url``, ``token``) once serving, then serves
until its standard input closes.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import Process

from ._dremio import embedded_dremio

__all__ = ["FakeEndpoint", "fake_dremio_process"]


@dataclass(frozen=True, slots=True)
class FakeEndpoint:
    """Where the child's FakeDremio serves, and the token it accepts."""

    url: str
    flight_url: str
    token: str


@asynccontextmanager
async def fake_dremio_process(
    *, latency: float, max_running_jobs: int | None, rows: int
) -> AsyncIterator[FakeEndpoint]:
    """Start FakeDremio (REST and Flight) in a child process; stop it on exit.

    :raises RuntimeError: the child did not start serving.
    """
    argv = [sys.executable, "-m", __name__, "--latency", str(latency), "--rows", str(rows)]
    if max_running_jobs is not None:
        argv += ["--limit", str(max_running_jobs)]
    process = await anyio.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        yield await _endpoint(process)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)


async def _endpoint(process: Process) -> FakeEndpoint:
    assert process.stdout is not None
    buffer = b""
    with anyio.fail_after(60):  # importing DuckDB on a loaded machine takes a while
        while not buffer.endswith(b"\n"):
            try:
                buffer += await process.stdout.receive()
            except anyio.EndOfStream:
                raise RuntimeError("the benchmark's FakeDremio process did not start") from None
    data = json.loads(buffer)
    return FakeEndpoint(data["url"], data["flight_url"], data["token"])


async def _stop(process: Process) -> None:
    if process.stdin is not None:
        await process.stdin.aclose()  # the child serves until its stdin closes
    with anyio.move_on_after(10):
        await process.wait()
        return
    process.kill()
    await process.wait()


async def _serve(latency: float, limit: int | None, rows: int) -> None:
    async with embedded_dremio(latency=latency, max_running_jobs=limit, rows=rows) as fake:
        line = json.dumps({"url": fake.url, "flight_url": fake.flight_url, "token": fake.token})
        print(line, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until standard input closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--rows", type=int, default=1_000)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group: the parent stops this server by closing stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    anyio.run(_serve, args.latency, args.limit, args.rows)


if __name__ == "__main__":
    main()
