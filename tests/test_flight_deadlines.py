"""Every Flight call ends on time against a server that stops answering.

The server is a FakeDremio in another process, stopped with SIGSTOP (the kernel
still accepts connections and keeps them open, but nothing answers): before the
call, and in the middle of a stream. A read must fail within ``request_timeout``
plus a margin, and leave no worker thread behind.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator

import anyio
import pytest
from _flight_child import stoppable_fake

from dremioframe_async.dremio import DremioClient, DremioConnectionError, RetryPolicy

REQUEST_TIMEOUT = 2.0
MARGIN = 5.0
RETRY = RetryPolicy(attempts=3, max_time=4.0, backoff=0.05, max_backoff=0.2)


@pytest.fixture
def child() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """FakeDremio in a child process: 2,000 rows, 10 a batch, 20 ms apart (4 s a stream)."""
    with stoppable_fake(rows=2000, batch_rows=10, delay=0.02) as started:
        yield started


def client_for(endpoint: dict[str, str]) -> DremioClient:
    return DremioClient(
        endpoint["url"],
        token=endpoint["token"],
        flight_url=endpoint["flight_url"],
        request_timeout=REQUEST_TIMEOUT,
        retry=RETRY,
    )


def flight_workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dremio-flight-read" and t.is_alive()]


def wait_for_no_workers(within: float) -> None:
    deadline = time.monotonic() + within
    while flight_workers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not flight_workers(), "a Flight worker thread outlived its read"


async def read_stream(client: DremioClient, on_first: Callable[[], None] | None = None) -> int:
    """Read the whole table over Flight as a stream; call ``on_first`` after its first batch."""
    rows = 0
    async with client.stream("SELECT * FROM shop.sales", via="flight") as stream:
        async for batch in stream:
            if rows == 0 and on_first is not None:
                on_first()
            rows += batch.num_rows
    return rows


async def read_table(client: DremioClient) -> int:
    table = await client.query("SELECT * FROM shop.sales", via="flight")
    return table.num_rows


@pytest.mark.asyncio
@pytest.mark.timeout(45)
async def test_a_read_fails_on_time_when_the_server_stops_mid_stream(
    child: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    process, endpoint = child
    stopped: list[float] = []

    def stop_the_server() -> None:
        os.kill(process.pid, signal.SIGSTOP)
        stopped.append(time.monotonic())

    async with client_for(endpoint) as client:
        with pytest.raises(DremioConnectionError) as caught:
            await read_stream(client, on_first=stop_the_server)
        elapsed = time.monotonic() - stopped[0]
    assert elapsed < REQUEST_TIMEOUT + MARGIN, f"the read took {elapsed:.1f} s"
    assert f"request_timeout={REQUEST_TIMEOUT:g} s" in str(caught.value)
    wait_for_no_workers(within=MARGIN)


@pytest.mark.asyncio
@pytest.mark.timeout(45)
@pytest.mark.parametrize("read", [read_table, read_stream], ids=["query", "stream"])
async def test_a_read_fails_on_time_when_the_server_is_stopped_before_the_call(
    child: tuple[subprocess.Popen[str], dict[str, str]],
    read: Callable[[DremioClient], Awaitable[int]],
) -> None:
    process, endpoint = child
    os.kill(process.pid, signal.SIGSTOP)
    async with client_for(endpoint) as client:
        started = time.monotonic()
        with pytest.raises(DremioConnectionError) as caught:
            await read(client)
        elapsed = time.monotonic() - started
    assert elapsed < REQUEST_TIMEOUT + MARGIN, f"the read took {elapsed:.1f} s"
    assert "GetFlightInfo" in str(caught.value)
    wait_for_no_workers(within=MARGIN)


@pytest.mark.asyncio
@pytest.mark.timeout(45)
async def test_the_same_server_serves_the_whole_stream_when_it_is_not_stopped(
    child: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    """The control: the stream the tests above interrupt takes longer than ``request_timeout``
    as a whole (4 s), but every wait between batches is short."""
    _, endpoint = child
    async with client_for(endpoint) as client:
        started = time.monotonic()
        assert await read_stream(client) == 2000
    assert time.monotonic() - started > REQUEST_TIMEOUT


@pytest.mark.timeout(45)
def test_a_worker_that_outlives_its_event_loop_releases_its_stream(
    child: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    """A read cancelled while GetFlightInfo hangs leaves its worker behind (gRPC cannot
    interrupt that call); when the server answers after the event loop has ended, the
    worker still closes its stream instead of leaving it to the garbage collector."""
    process, endpoint = child
    os.kill(process.pid, signal.SIGSTOP)

    async def give_up_early() -> None:
        client = DremioClient(
            endpoint["url"], token=endpoint["token"], flight_url=endpoint["flight_url"]
        )  # request_timeout: 300 s, so the worker waits for the server
        async with client:
            with anyio.move_on_after(0.5):
                await read_table(client)

    anyio.run(give_up_early)
    assert flight_workers(), "the worker should still be waiting for GetFlightInfo"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        os.kill(process.pid, signal.SIGCONT)  # the server answers; the loop is gone
        wait_for_no_workers(within=MARGIN)
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]


@pytest.mark.asyncio
@pytest.mark.timeout(45)
async def test_the_flight_handshake_fails_on_time_when_the_server_stops_after_the_login(
    child: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    """With a username and password, the first Flight call is the handshake."""
    process, endpoint = child
    client = DremioClient(
        endpoint["url"],
        username=endpoint["username"],
        password=endpoint["password"],
        flight_url=endpoint["flight_url"],
        request_timeout=REQUEST_TIMEOUT,
        retry=RETRY,
    )
    async with client:  # the REST login happens here, while the server answers
        os.kill(process.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(DremioConnectionError) as caught:
            await read_table(client)
        elapsed = time.monotonic() - started
    assert elapsed < REQUEST_TIMEOUT + MARGIN, f"the handshake took {elapsed:.1f} s"
    assert "Handshake" in str(caught.value)
    wait_for_no_workers(within=MARGIN)


@pytest.mark.asyncio
@pytest.mark.timeout(45)
async def test_a_server_killed_mid_stream_fails_the_read_at_once(
    child: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    """What held before the deadlines must still hold: a closed connection is seen at once."""
    process, endpoint = child
    killed: list[float] = []

    def kill_the_server() -> None:
        process.kill()
        killed.append(time.monotonic())

    async with client_for(endpoint) as client:
        with pytest.raises(DremioConnectionError):
            await read_stream(client, on_first=kill_the_server)
        elapsed = time.monotonic() - killed[0]
    assert elapsed < REQUEST_TIMEOUT, f"the read took {elapsed:.1f} s to see a closed connection"
    wait_for_no_workers(within=MARGIN)
