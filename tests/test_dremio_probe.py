"""The Dremio client under hostile servers and careless settings: it fails loudly, never lies.

Each test drives DremioClient over real HTTP: FakeDremio, or a small aiohttp
server on 127.0.0.1 where FakeDremio has no knob for the fault.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from aiohttp import web

from dremioframe_async.dremio import (
    DremioClient,
    DremioConfigError,
    DremioConnectionError,
    DremioError,
    DremioJobError,
    DremioResultIncomplete,
    DremioSubmitUncertain,
    Job,
    RetryPolicy,
)
from dremioframe_async.dremio._results import row_count
from dremioframe_async.testing import FakeDremio, sample_table

RETRY = RetryPolicy(attempts=2, max_time=10.0, backoff=0.01, max_backoff=0.05)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        server.add_table("lake.small", sample_table(1_200))
        yield server


def client_for(fake: FakeDremio, **options: Any) -> DremioClient:
    options.setdefault("retry", RETRY)
    options.setdefault("poll_interval", 0.005)
    options.setdefault("max_poll_interval", 0.02)
    return DremioClient(fake.url, token=fake.token, **options)


# -- settings that would make the client lie ---------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        {"page_concurrency": 0},
        {"page_concurrency": 2.0},
        {"page_concurrency": -1},
        {"request_timeout": 0},
        {"request_timeout": -5.0},
        {"cancel_timeout": 0},
        {"cancel_timeout": -1.0},
    ],
)
def test_settings_that_cannot_work_are_config_errors(option: dict[str, Any]) -> None:
    # page_concurrency=-1 used to yield only the first page of iter_batches (500 of
    # 1,200 rows, no error); request_timeout=0 reported a POST that was never sent
    # as "may have run"; cancel_timeout<=0 silently never cancelled an orphaned job.
    name = next(iter(option))
    with pytest.raises(DremioConfigError, match=name):
        DremioClient("http://127.0.0.1:9047", token="t", **option)


@pytest.mark.asyncio
async def test_an_infinite_request_timeout_and_max_time_still_query(fake: FakeDremio) -> None:
    # Both infinite used to raise a raw OverflowError out of aiohttp's timer.
    retry = RetryPolicy(max_time=float("inf"))
    async with client_for(fake, retry=retry, request_timeout=float("inf")) as client:
        table = await client.query("SELECT * FROM lake.small")
    assert table.num_rows == 1_200


# -- a results page with another schema --------------------------------------------------------


async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _schema_switching_app() -> web.Application:
    """A completed 600-row job whose second results page has another column."""

    async def submit(_: web.Request) -> web.Response:
        return web.json_response({"id": "j1"})

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"jobState": "COMPLETED", "rowCount": 600})

    async def results(request: web.Request) -> web.Response:
        if int(request.query["offset"]) == 0:
            schema = [{"name": "a", "type": {"name": "BIGINT"}}]
            return web.json_response(
                {"rowCount": 600, "schema": schema, "rows": [{"a": i} for i in range(500)]}
            )
        schema = [{"name": "b", "type": {"name": "VARCHAR"}}]
        rows = [{"b": str(i)} for i in range(100)]
        return web.json_response({"rowCount": 600, "schema": schema, "rows": rows})

    app = web.Application()
    app.router.add_post("/api/v3/sql", submit)
    app.router.add_get("/api/v3/job/j1", status)
    app.router.add_get("/api/v3/job/j1/results", results)
    return app


@pytest_asyncio.fixture
async def switching_url() -> AsyncIterator[str]:
    async for url in _serve(_schema_switching_app()):
        yield url


@pytest.mark.asyncio
async def test_a_page_with_another_schema_raises_instead_of_turning_into_nulls(
    switching_url: str,
) -> None:
    # The second page's rows have no "a": decoded with the first page's schema they
    # used to become 100 silent nulls in a 600-row table.
    async with DremioClient(switching_url, token="t", retry=RETRY) as client:
        with pytest.raises(DremioResultIncomplete, match="offset 500 has another schema"):
            await client.query("SELECT 1")
        with pytest.raises(DremioResultIncomplete, match="offset 500 has another schema"):
            async for _ in client.iter_batches("j1"):
                pass


# -- a Parquet file that cannot be put in place ------------------------------------------------


@pytest.mark.asyncio
async def test_to_parquet_onto_a_directory_leaves_no_partial_file(
    fake: FakeDremio, tmp_path: Path
) -> None:
    target = tmp_path / "out.parquet"
    target.mkdir()  # the final rename fails
    async with client_for(fake) as client:
        job = await client.wait(await client.submit("SELECT * FROM lake.small"))
        with pytest.raises(IsADirectoryError):
            await client.to_parquet(job, target)
        with pytest.raises(IsADirectoryError):
            await client.query_to_parquet("SELECT * FROM lake.small", target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
    assert list(target.iterdir()) == []


# -- a request that never left the client ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_used_up_budget_is_reported_as_not_sent(fake: FakeDremio) -> None:
    # Raised before anything is sent: a POST /sql that hit it cannot have run, so
    # it must not be reported as DremioSubmitUncertain ("the statement may have run").
    async with client_for(fake) as client:
        transport = client._transport
        with pytest.raises(DremioConnectionError, match="used up") as info:
            await transport._send(
                "POST",
                "/api/v3/sql",
                {"sql": "SELECT 1"},
                None,
                json.loads,
                anyio.current_time() - 1.0,
            )
    assert info.value.sent is False
    assert fake.requests_to("/sql") == []


# -- a timeout that has run out before the query starts ----------------------------------------


@pytest_asyncio.fixture
async def flight_fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        server.add_table("lake.small", sample_table(1_200))
        yield server


@pytest.mark.asyncio
@pytest.mark.parametrize("timeout", [0, -1.0, float("nan")])
@pytest.mark.parametrize("via", ["rest", "flight"])
async def test_a_timeout_that_is_not_positive_is_refused_before_anything_runs(
    flight_fake: FakeDremio, tmp_path: Path, via: str, timeout: float
) -> None:
    # It used to submit the statement and cancel it at once (an INSERT may run in
    # part), reporting "did not finish within -1 s".
    sql = "SELECT * FROM lake.small"
    async with client_for(flight_fake, flight_url=flight_fake.flight_url) as client:
        with pytest.raises(DremioConfigError, match="timeout must be positive"):
            await client.query(sql, timeout=timeout, via=via)  # type: ignore[arg-type]
        with pytest.raises(DremioConfigError, match="timeout must be positive"):
            client.stream(sql, timeout=timeout, via=via)  # type: ignore[arg-type]
        with pytest.raises(DremioConfigError, match="timeout must be positive"):
            await client.query_to_parquet(sql, tmp_path / "x.parquet", timeout=timeout)
        with pytest.raises(DremioConfigError, match="timeout must be positive"):
            await client.wait("no-such-job", timeout=timeout)
    assert flight_fake.requests_to("/sql") == []
    assert flight_fake.requests_to("/job") == []
    assert flight_fake.flight.calls == []
    assert list(tmp_path.iterdir()) == []


# -- replies that are not what Dremio sends ----------------------------------------------------


def _odd_reply_app(kind: str, count: object = None) -> web.Application:
    """Every request answered 200 with HTML (a proxy's page), or with a garbled row count."""

    async def answer(request: web.Request) -> web.Response:
        if kind == "html":
            return web.Response(text="<html>sign in to the proxy</html>", content_type="text/html")
        if request.path.endswith("/sql"):
            return web.json_response({"id": "j1"})
        if request.path.endswith("/results"):
            schema = [{"name": "a", "type": {"name": "BIGINT"}}]
            return web.json_response({"rowCount": -3, "schema": schema, "rows": []})
        return web.json_response({"jobState": "COMPLETED", "rowCount": count})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


@pytest.mark.asyncio
async def test_a_reply_that_is_not_json_is_a_dremio_error() -> None:
    # It used to escape as json.JSONDecodeError: not a DremioError, and for POST /sql
    # without the warning that the statement may have run.
    async for url in _serve(_odd_reply_app("html")):
        async with DremioClient(url, token="t", retry=RETRY) as client:
            with pytest.raises(DremioSubmitUncertain, match="not JSON"):
                await client.submit("INSERT INTO t VALUES (1)")
            with pytest.raises(DremioConnectionError, match="not JSON"):
                await client.job("j1")
            with pytest.raises(DremioConnectionError, match="not JSON"):
                await client.fetch_arrow(Job("j1", "COMPLETED", 3))


@pytest.mark.asyncio
@pytest.mark.parametrize("count", ["12abc", -3, 2.5, True])
async def test_a_row_count_that_is_not_a_count_is_a_dremio_error(count: object) -> None:
    # "12abc" raised a raw ValueError; -3 on both the job and its results page
    # returned an empty table as if complete; 2.5 was silently read as 2.
    async for url in _serve(_odd_reply_app("count", count)):
        async with DremioClient(url, token="t", retry=RETRY) as client:
            with pytest.raises(DremioError, match="row count"):
                await client.query("SELECT 1", via="rest")
            with pytest.raises(DremioError, match="row count"):
                await client.job("j1")


# -- a Flight read cancelled while GetFlightInfo is still running ------------------------------


class _HeldInfoServer(flight.FlightServerBase):  # type: ignore[misc]
    """GetFlightInfo waits until released (Dremio planning); DoGet calls are counted."""

    def __init__(self) -> None:
        super().__init__("grpc+tcp://127.0.0.1:0")
        self.arrived, self.release = threading.Event(), threading.Event()
        self.do_gets = 0

    def get_flight_info(self, context: Any, descriptor: Any) -> flight.FlightInfo:
        self.arrived.set()
        self.release.wait(30)
        schema = pa.schema([("a", pa.int64())])
        endpoint = flight.FlightEndpoint(b"t", [])
        return flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)

    def do_get(self, context: Any, ticket: Any) -> flight.RecordBatchStream:
        self.do_gets += 1
        return flight.RecordBatchStream(pa.table({"a": [1, 2, 3]}))


@pytest.mark.asyncio
async def test_a_read_cancelled_during_get_flight_info_never_starts_do_get() -> None:
    # The worker used to send DoGet once GetFlightInfo returned, though its consumer
    # had left: Dremio started running the query only to have it cancelled.
    server = _HeldInfoServer()
    try:
        url = f"grpc+tcp://127.0.0.1:{server.port}"
        async with DremioClient("http://127.0.0.1:9", token="t", flight_url=url) as client:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.query, "SELECT a FROM t")
                    await anyio.to_thread.run_sync(server.arrived.wait, 10)
                    scope.cancel()
            server.release.set()
            workers = [t for t in threading.enumerate() if t.name == "dremio-flight-read"]
            for worker in workers:
                await anyio.to_thread.run_sync(worker.join, 10)
        assert workers
        assert not any(w.is_alive() for w in workers)
        assert server.do_gets == 0
    finally:
        server.release.set()
        server.shutdown()


# -- results of a job that has not completed ---------------------------------------------------


def _running_job_app() -> web.Application:
    """A job still RUNNING with 500 rows so far, whose results the server serves anyway."""

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"jobState": "RUNNING", "rowCount": 500})

    async def results(_: web.Request) -> web.Response:
        schema = [{"name": "a", "type": {"name": "BIGINT"}}]
        rows = [{"a": i} for i in range(500)]
        return web.json_response({"rowCount": 500, "schema": schema, "rows": rows})

    app = web.Application()
    app.router.add_get("/api/v3/job/j1", status)
    app.router.add_get("/api/v3/job/j1/results", results)
    return app


@pytest.mark.asyncio
async def test_results_of_a_job_that_has_not_completed_are_refused(tmp_path: Path) -> None:
    # The row count of a RUNNING job is the rows so far: its pages add up to it, so
    # fetch_arrow returned 500 rows of a job still producing more, as if complete.
    async for url in _serve(_running_job_app()):
        async with DremioClient(url, token="t", retry=RETRY) as client:
            with pytest.raises(DremioJobError, match="RUNNING, not COMPLETED"):
                await client.fetch_arrow("j1")
            with pytest.raises(DremioJobError, match="RUNNING, not COMPLETED"):
                await client.fetch_arrow(Job("j1", "RUNNING", 500))
            with pytest.raises(DremioJobError, match="RUNNING, not COMPLETED"):
                await client.to_parquet("j1", tmp_path / "x.parquet")
            with pytest.raises(DremioJobError, match="RUNNING, not COMPLETED"):
                async for _ in client.iter_batches("j1"):
                    pass
    assert list(tmp_path.iterdir()) == []


# -- two writes onto one path ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_to_parquet_onto_one_path_never_report_a_file_they_did_not_write(
    fake: FakeDremio, tmp_path: Path
) -> None:
    # Both used to write the same "<name>.partial": the file on disk came out corrupt
    # (or the other query's rows) while one call reported success, and the other
    # failed with FileNotFoundError.
    fake.add_table("lake.other", sample_table(3_000))
    target = tmp_path / "out.parquet"
    written: dict[str, int] = {}
    async with client_for(fake) as client:
        jobs = {
            name: await client.wait(await client.submit(f"SELECT * FROM lake.{name}"))
            for name in ("small", "other")
        }

        async def write(name: str) -> None:
            written[name] = await client.to_parquet(jobs[name], target, row_group_rows=100)

        async with anyio.create_task_group() as tg:
            for name in jobs:
                tg.start_soon(write, name)
    assert written == {"small": 1_200, "other": 3_000}
    assert pq.read_table(target).num_rows in written.values()
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


# -- a Flight result whose endpoints disagree on the schema ------------------------------------


class _TwoSchemaServer(flight.FlightServerBase):  # type: ignore[misc]
    """Two endpoints: the first sends column ``a``, the second column ``b``."""

    def get_flight_info(self, context: Any, descriptor: Any) -> flight.FlightInfo:
        endpoints = [flight.FlightEndpoint(b"1", []), flight.FlightEndpoint(b"2", [])]
        return flight.FlightInfo(pa.schema([("a", pa.int64())]), descriptor, endpoints, -1, -1)

    def do_get(self, context: Any, ticket: Any) -> flight.RecordBatchStream:
        if ticket.ticket == b"1":
            return flight.RecordBatchStream(pa.table({"a": [1, 2, 3]}))
        return flight.RecordBatchStream(pa.table({"b": ["x", "y"]}))


async def _collect_names(batches: AsyncIterator[pa.RecordBatch], seen: list[list[str]]) -> None:
    async for batch in batches:
        seen.append(batch.schema.names)


@pytest.mark.asyncio
async def test_a_flight_result_that_changes_schema_is_a_dremio_error(tmp_path: Path) -> None:
    # query() and query_to_parquet() raised pyarrow's raw ArrowInvalid; stream()
    # yielded batches of two schemas without a word.
    server = _TwoSchemaServer("grpc+tcp://127.0.0.1:0")
    try:
        url = f"grpc+tcp://127.0.0.1:{server.port}"
        async with DremioClient("http://127.0.0.1:9", token="t", flight_url=url) as client:
            with pytest.raises(DremioError, match="another schema"):
                await client.query("SELECT 1")
            with pytest.raises(DremioError, match="another schema"):
                await client.query_to_parquet("SELECT 1", tmp_path / "x.parquet")
            seen: list[list[str]] = []
            with pytest.raises(DremioError, match="another schema"):
                await _collect_names(client.stream("SELECT 1"), seen)
        assert seen == [["a"]]
        assert list(tmp_path.iterdir()) == []
    finally:
        server.shutdown()


@pytest.mark.parametrize(("value", "count"), [(1_200, 1_200), (1_200.0, 1_200), ("1200", 1_200)])
def test_a_row_count_may_be_a_whole_float_or_digits(value: object, count: int) -> None:
    assert row_count(value, "j1") == count
