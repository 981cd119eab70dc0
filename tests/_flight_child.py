"""A FakeDremio serving REST and Flight in a child process, so that a test can SIGSTOP it.

``python tests/_flight_child.py ROWS BATCH_ROWS DELAY`` prints one JSON line (``url``,
``flight_url``, ``token``) once serving, then serves until its standard input closes.
Flight streams ``BATCH_ROWS`` rows a batch, ``DELAY`` seconds apart, so that a stream
is still running when the test stops the process.
"""

from __future__ import annotations

import json
import signal
import sys

import anyio

from dremioframe_async.testing import FakeDremio, sample_table


async def serve(rows: int, batch_rows: int, delay: float) -> None:
    async with FakeDremio(flight=True) as fake:
        fake.add_table("shop.sales", sample_table(rows))
        fake.flight.batch_rows = batch_rows
        fake.flight.slow_batches(delay)
        line = {"url": fake.url, "flight_url": fake.flight_url, "token": fake.token}
        print(json.dumps(line), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the test stops it by closing stdin
    anyio.run(serve, int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
