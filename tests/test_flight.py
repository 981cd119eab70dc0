"""The Dremio client over Arrow Flight, against FakeDremio's real Flight endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator

import anyio
import duckdb
import pyarrow as pa
import pytest
import pytest_asyncio

from dremioframe_async.dremio import (
    BatchStream,
    DremioAuthError,
    DremioClient,
    DremioConnectionError,
    DremioJobFailed,
    DremioJobTimeout,
    DremioResultIncomplete,
    RetryPolicy,
)
from dremioframe_async.dremio._config import resolve_config
from dremioframe_async.dremio._flight import FlightOptions, FlightTransport
from dremioframe_async.testing import FakeDremio, FlightCall, sample_table

FAST = RetryPolicy(attempts=4, max_time=10.0, backoff=0.01, max_backoff=0.05)

TYPES_SQL = """
SELECT * FROM (VALUES
    (1, 12.34::DECIMAL(12, 2), TIMESTAMP '2024-01-02 03:04:05.678', [1, 2, NULL],
     {'a': 1, 'b': 'x'}, 'text', DATE '2024-02-29', TRUE, 1.5::DOUBLE),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, -0.01::DECIMAL(12, 2), TIMESTAMP '1999-12-31 23:59:59', [], {'a': NULL, 'b': NULL},
     '', DATE '1970-01-01', FALSE, -0.0::DOUBLE)
) AS t(id, amount, stamp, tags, info, label, day, flag, ratio)
ORDER BY id
"""


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        yield server


def flight_client(fake: FakeDremio, **options: object) -> DremioClient:
    options.setdefault("token", fake.token)
    options.setdefault("retry", FAST)
    return DremioClient(fake.url, flight_url=fake.flight_url, **options)  # type: ignore[arg-type]


def calls(fake: FakeDremio, method: str) -> list[FlightCall]:
    return [c for c in fake.flight.calls if c.method == method]


async def wait_for_call(fake: FakeDremio, method: str, status: str) -> FlightCall | None:
    def matches(call: FlightCall) -> bool:
        return call.method == method and call.status == status

    return await anyio.to_thread.run_sync(fake.flight.wait_for_call, matches, 5.0)


async def drain(stream: BatchStream) -> None:
    async with stream:
        async for _ in stream:
            pass


async def live_reader_threads() -> list[threading.Thread]:
    """Flight reader threads still alive a moment after their streams closed.

    A worker signals the loop as its last act and then returns; the join
    (in a thread, up to 1 s) covers the few instructions in between.
    """

    def join() -> list[threading.Thread]:
        readers = [t for t in threading.enumerate() if t.name == "dremio-flight-read"]
        for thread in readers:
            thread.join(1.0)
        return [t for t in readers if t.is_alive()]

    return await anyio.to_thread.run_sync(join)


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_pat_reads_over_flight_not_rest(fake: FakeDremio) -> None:
    fake.add_table("shop.sales", pa.table({"n": [1, 2, 3]}))
    async with flight_client(fake) as client:
        table = await client.query("SELECT SUM(n) AS total FROM shop.sales")
    assert table.to_pylist() == [{"total": 6}]
    assert [c.status for c in calls(fake, "do_get")] == ["ok"]
    assert fake.requests_to("/sql") == []  # nothing went over REST
    assert calls(fake, "handshake") == []  # a PAT needs no handshake


@pytest.mark.asyncio
async def test_username_and_password_use_the_basic_token_handshake(fake: FakeDremio) -> None:
    fake.add_table("shop.sales", pa.table({"n": [1, 2]}))
    async with flight_client(
        fake, token=None, username=fake.username, password=fake.password
    ) as client:
        await client.query("SELECT * FROM shop.sales", via="rest")  # REST logs in on its own
        rest_logins = len(fake.issued_tokens)
        for _ in range(3):
            table = await client.query("SELECT * FROM shop.sales")
            assert table.num_rows == 2
    assert [c.user for c in calls(fake, "handshake")] == [fake.username]  # once, then reused
    assert len(fake.issued_tokens) == rest_logins + 1


@pytest.mark.asyncio
async def test_an_expired_login_token_is_renewed_once(fake: FakeDremio) -> None:
    fake.add_table("shop.sales", pa.table({"n": [1]}))
    async with flight_client(
        fake, token=None, username=fake.username, password=fake.password
    ) as client:
        await client.query("SELECT * FROM shop.sales")
        fake.expire_sessions()
        table = await client.query("SELECT * FROM shop.sales")
    assert table.num_rows == 1
    assert len(calls(fake, "handshake")) == 2


@pytest.mark.asyncio
async def test_a_rejected_token_raises_auth_error_without_retrying(fake: FakeDremio) -> None:
    fake.flight.reject_tokens()
    async with flight_client(fake) as client:
        with pytest.raises(DremioAuthError) as caught:
            await client.query("SELECT 1")
    assert caught.value.status == 401
    assert fake.token not in str(caught.value)
    assert len(calls(fake, "get_flight_info")) == 1  # refused once, never re-sent


@pytest.mark.asyncio
async def test_a_wrong_password_raises_auth_error(fake: FakeDremio) -> None:
    # The REST login would refuse it first; the Flight transport alone shows its own check.
    config = resolve_config(fake.url, None, fake.username, "wrong", None, env={})
    transport = FlightTransport(config, FlightOptions(fake.flight_url), FAST)
    try:
        with pytest.raises(DremioAuthError) as caught:
            await transport.table("SELECT 1")
    finally:
        await transport.close()
    assert "wrong" not in str(caught.value)
    assert [c.status for c in calls(fake, "handshake")] == ["unauthenticated"]


@pytest.mark.asyncio
async def test_the_cloud_project_id_travels_as_the_catalog_header(fake: FakeDremio) -> None:
    async with DremioClient.cloud(
        url=fake.url, token=fake.token, project_id=fake.project_id, flight_url=fake.flight_url
    ) as client:
        await client.query("SELECT 1 AS one")
    assert [c.project for c in calls(fake, "get_flight_info")] == [fake.project_id]


# -- results ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_types_equal_duckdbs_own_arrow_result(fake: FakeDremio) -> None:
    expected = duckdb.connect().sql(TYPES_SQL).to_arrow_table()
    # Dremio's vectors are millisecond-based: TIMESTAMP is timestamp[ms], DATE date64.
    expected = expected.set_column(2, "stamp", expected["stamp"].cast(pa.timestamp("ms")))
    expected = expected.set_column(6, "day", expected["day"].cast(pa.date64()))
    async with flight_client(fake) as client:
        table = await client.query(TYPES_SQL)
    assert table.schema == expected.schema
    assert table.equals(expected)
    assert {str(t) for t in table.schema.types} >= {
        "decimal128(12, 2)",
        "timestamp[ms]",
        "date64[ms]",
        "list<l: int32>",
        "struct<a: int32, b: string>",
    }
    assert table.column("amount").null_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("rows", [0, 1, 1_000_000], ids=["0-rows", "1-row", "1M-rows"])
async def test_every_row_arrives(fake: FakeDremio, rows: int) -> None:
    source = sample_table(rows)
    fake.add_table("big.t", source)
    async with flight_client(fake) as client:
        table = await client.query("SELECT * FROM big.t ORDER BY id")
    assert table.num_rows == rows
    assert table.schema == source.schema
    assert table.equals(source)


@pytest.mark.asyncio
async def test_a_sql_error_raises_job_failed_with_dremios_message(fake: FakeDremio) -> None:
    fake.fail_jobs("broken_view", "Table 'broken_view' not found")
    async with flight_client(fake) as client:
        with pytest.raises(DremioJobFailed) as caught:
            await client.query("SELECT * FROM broken_view")
    assert caught.value.error_message == "Table 'broken_view' not found"


# -- broken streams -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_stream_broken_mid_way_raises_and_never_returns_a_partial_table(
    fake: FakeDremio, tmp_path: anyio.Path
) -> None:
    fake.add_table("big.t", sample_table(10_000))
    fake.flight.batch_rows = 1_000
    fake.flight.fail_mid_stream(after_batches=3, message="executor lost", count=3)
    target = tmp_path / "out.parquet"
    async with flight_client(fake) as client:
        with pytest.raises(DremioJobFailed, match="executor lost"):
            await client.query("SELECT * FROM big.t")
        stream = client.stream("SELECT * FROM big.t")
        with pytest.raises(DremioJobFailed, match="executor lost"):
            await drain(stream)
        with pytest.raises(DremioJobFailed, match="executor lost"):
            await client.query_to_parquet("SELECT * FROM big.t", target)
    assert stream.rows == 3_000  # the batches before the break were real; then it raised
    assert [c.status for c in calls(fake, "do_get")] == ["failed"] * 3
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


@pytest.mark.asyncio
async def test_a_stream_cut_short_without_an_error_is_incomplete(
    fake: FakeDremio, tmp_path: anyio.Path
) -> None:
    fake.add_table("big.t", sample_table(10_000))
    fake.flight.batch_rows = 1_000
    fake.flight.fail_mid_stream(after_batches=4, silently=True, count=2)
    async with flight_client(fake) as client:
        with pytest.raises(DremioResultIncomplete) as caught:
            await client.query("SELECT * FROM big.t")
        with pytest.raises(DremioResultIncomplete):
            await client.query_to_parquet("SELECT * FROM big.t", tmp_path / "out.parquet")
    assert (caught.value.expected, caught.value.received) == (10_000, 4_000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.asyncio
async def test_unavailable_is_retried_before_the_first_batch(fake: FakeDremio) -> None:
    fake.flight.unavailable_next(2)
    async with flight_client(fake) as client:
        table = await client.query("SELECT 42 AS answer")
    assert table.to_pylist() == [{"answer": 42}]
    statuses = [c.status for c in calls(fake, "get_flight_info")]
    assert statuses == ["unavailable", "unavailable", "ok"]


@pytest.mark.asyncio
async def test_unavailable_after_the_first_batch_raises_and_is_not_retried(
    fake: FakeDremio,
) -> None:
    fake.add_table("big.t", sample_table(10_000))
    fake.flight.batch_rows = 1_000
    fake.flight.fail_mid_stream(after_batches=2, message="connection reset", unavailable=True)
    async with flight_client(fake) as client:
        with pytest.raises(DremioConnectionError, match="connection reset"):
            await client.query("SELECT * FROM big.t")
    # Re-reading would hand the first batches over twice: the query is asked for once.
    assert len(calls(fake, "get_flight_info")) == 1


@pytest.mark.asyncio
async def test_a_doget_lost_before_its_first_batch_does_not_run_the_query_again(
    fake: FakeDremio,
) -> None:
    fake.add_table("big.t", sample_table(1_000))
    fake.flight.fail_mid_stream(after_batches=0, message="socket closed", unavailable=True)
    async with flight_client(fake) as client:
        with pytest.raises(DremioConnectionError, match="socket closed") as caught:
            await client.query("SELECT * FROM big.t")  # could as well be an INSERT
    assert caught.value.sent  # it may have run: the caller is told so
    # GetFlightInfo ran the statement; asking for it again would run it twice.
    assert len(calls(fake, "get_flight_info")) == 1


@pytest.mark.asyncio
async def test_unavailable_past_the_budget_raises_connection_error(fake: FakeDremio) -> None:
    fake.flight.unavailable_next(10)
    async with flight_client(fake) as client:
        with pytest.raises(DremioConnectionError):
            await client.query("SELECT 1")
    assert len(calls(fake, "get_flight_info")) == FAST.attempts


@pytest.mark.asyncio
async def test_an_unreachable_endpoint_raises_connection_error(fake: FakeDremio) -> None:
    async with DremioClient(
        fake.url, token=fake.token, flight_url="grpc+tcp://127.0.0.1:9", retry=FAST
    ) as client:
        with pytest.raises(DremioConnectionError):
            await client.query("SELECT 1")


@pytest.mark.asyncio
async def test_a_deadline_raises_job_timeout_and_stops_the_stream(fake: FakeDremio) -> None:
    fake.add_table("big.t", sample_table(10_000))
    fake.flight.batch_rows = 1_000
    fake.flight.slow_batches(5.0)
    async with flight_client(fake) as client:
        started = time.monotonic()
        with pytest.raises(DremioJobTimeout):
            await client.query("SELECT * FROM big.t", timeout=0.5)
        assert time.monotonic() - started < 3.0
    assert await wait_for_call(fake, "do_get", "cancelled") is not None


# -- cancellation, backpressure, the loop -------------------------------------------------------


@pytest.mark.asyncio
async def test_a_cancelled_read_returns_within_a_second_and_the_server_sees_it(
    fake: FakeDremio,
) -> None:
    fake.add_table("big.t", sample_table(10_000))
    fake.flight.batch_rows = 1_000
    fake.flight.slow_batches(30.0)  # the second batch would take 30 s
    cancelled_at: list[float] = []
    async with flight_client(fake) as client:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_when_blocked() -> None:
                    await anyio.wait_all_tasks_blocked()
                    cancelled_at.append(time.monotonic())
                    scope.cancel()

                async with client.stream("SELECT * FROM big.t") as stream:
                    await stream.__anext__()  # the first batch: the gRPC stream is open
                    tg.start_soon(cancel_when_blocked)
                    await stream.__anext__()  # blocks: cancelled here
        returned = time.monotonic() - cancelled_at[0]
    assert scope.cancelled_caught
    assert returned < 1.0
    call = await wait_for_call(fake, "do_get", "cancelled")
    assert call is not None
    assert call.batches == 1
    assert await live_reader_threads() == []  # the worker thread has returned too


@pytest.mark.asyncio
async def test_stream_holds_at_most_its_read_ahead(fake: FakeDremio) -> None:
    fake.add_table("big.t", sample_table(40_000))
    fake.flight.batch_rows = 1_000
    async with (
        flight_client(fake, flight_read_ahead=3) as client,
        client.stream("SELECT * FROM big.t") as stream,
    ):
        async for _ in stream:
            await anyio.sleep(0.005)  # a slow consumer: the reader must wait for it
    assert stream.rows == 40_000
    assert stream.stats is not None
    assert stream.stats.batches_read == 40
    assert 1 <= stream.stats.max_buffered <= 3


@pytest.mark.asyncio
async def test_the_loop_keeps_ticking_during_a_large_read(fake: FakeDremio) -> None:
    fake.add_table("big.t", sample_table(1_000_000))
    gaps: list[float] = []

    async def ticker(stop: anyio.Event) -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await anyio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with flight_client(fake) as client, anyio.create_task_group() as tg:
        stop = anyio.Event()
        tg.start_soon(ticker, stop)
        for _ in range(3):
            table = await client.query("SELECT * FROM big.t")
            assert table.num_rows == 1_000_000
        stop.set()
    assert len(gaps) >= 10
    assert max(gaps) < 0.5, sorted(gaps)[-5:]  # generous: a read on the loop gives no ticks


@pytest.mark.asyncio
async def test_concurrent_reads_share_the_limit_and_all_finish(fake: FakeDremio) -> None:
    fake.add_table("big.t", sample_table(20_000))
    totals: list[int] = []
    async with flight_client(fake, flight_streams=2) as client:

        async def read(offset: int) -> None:
            table = await client.query(f"SELECT * FROM big.t WHERE id >= {offset}")
            totals.append(table.num_rows)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(read, i * 1_000)
    assert sorted(totals) == sorted(20_000 - i * 1_000 for i in range(8))
    assert await live_reader_threads() == []


@pytest.mark.asyncio
async def test_the_sql_context_travels_as_the_schema_session_property(fake: FakeDremio) -> None:
    async with flight_client(fake) as client:
        await client.query("SELECT 1 AS one", context=["my space", 'folder "x"'])
    assert [c.context for c in calls(fake, "get_flight_info")] == ['"my space"."folder ""x"""']


@pytest.mark.asyncio
async def test_a_stream_abandoned_mid_way_is_cancelled_and_frees_its_slot(
    fake: FakeDremio,
) -> None:
    fake.add_table("big.t", sample_table(10_000))
    fake.flight.batch_rows = 1_000
    fake.flight.slow_batches(30.0)
    async with flight_client(fake, flight_streams=1) as client:
        async for _ in client.stream("SELECT * FROM big.t"):
            break  # no async with: the event loop's generator finaliser closes it
        call = await wait_for_call(fake, "do_get", "cancelled")
        fake.flight.slow_batches(0.0)
        with anyio.fail_after(5):  # the only slot must be free again
            table = await client.query("SELECT COUNT(*) AS n FROM big.t")
    assert call is not None
    assert table.to_pylist() == [{"n": 10_000}]
