"""A FakeDremio serving REST and Flight in a child process, so that a test can SIGSTOP it.

``python tests/_flight_child.py ROWS BATCH_ROWS DELAY`` prints one JSON line (``url``,
``flight_url``, ``token``, ``username``, ``password``) once serving, then serves until
its standard input closes.
Flight streams ``BATCH_ROWS`` rows a batch, ``DELAY`` seconds apart, so that a stream
is still running when the test stops the process. Tests start it with
:func:`stoppable_fake`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

from dremioframe_async.testing import FakeDremio, sample_table


@contextmanager
def stoppable_fake(
    rows: int = 2000, batch_rows: int = 10, delay: float = 0.02
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """The child process and its endpoint (``url``, ``flight_url``, ``token``).

    However the test ends, the child is continued (a stopped process cannot see its
    standard input close), asked to stop, and killed if it does not.
    """
    argv = [sys.executable, str(Path(__file__)), str(rows), str(batch_rows), str(delay)]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line, "the FakeDremio child did not start"
            yield process, json.loads(line)
        finally:
            process.send_signal(signal.SIGCONT)
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def serve(rows: int, batch_rows: int, delay: float) -> None:
    async with FakeDremio(flight=True) as fake:
        fake.add_table("shop.sales", sample_table(rows))
        fake.flight.batch_rows = batch_rows
        fake.flight.slow_batches(delay)
        line = {"url": fake.url, "flight_url": fake.flight_url, "token": fake.token}
        line |= {"username": fake.username, "password": fake.password}
        print(json.dumps(line), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the test stops it by closing stdin
    anyio.run(serve, int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
