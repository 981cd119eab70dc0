"""Fault injection in FakeDremio and the retry behaviour each fault should cause."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from dremioframe_async.dremio import (
    DremioAPIError,
    DremioAuthError,
    DremioBadRequest,
    DremioClient,
    DremioConnectionError,
    DremioNotFound,
    DremioRateLimited,
    DremioServerError,
    RetryPolicy,
)
from dremioframe_async.dremio._transport import _api_error, is_transient
from dremioframe_async.testing import FakeDremio, sample_table

RETRY = RetryPolicy(attempts=3, max_time=10.0, backoff=0.01, max_backoff=0.5)


SEEN: list[FakeDremio] = []


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # Retries log the failed attempt's error: none of those lines may carry a token.
    caplog.set_level(logging.DEBUG)
    yield
    secrets = [s for f in SEEN for s in (f.token, f.password, *f.issued_tokens)]
    for record in caplog.records:
        text = logging.Formatter().format(record)
        assert not any(secret in text for secret in secrets), text


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        SEEN.append(server)
        server.add_table("shop.sales", sample_table(1200))
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    async with DremioClient(fake.url, token=fake.token, retry=RETRY, poll_interval=0.01) as c:
        yield c


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 502, 503, 504], ids=lambda s: f"http-{s}")
async def test_transient_status_on_a_get_is_retried(
    client: DremioClient, fake: FakeDremio, status: int
) -> None:
    job_id = await client.submit("SELECT 1 AS x")
    fake.fail_next(2, status, path=f"/job/{job_id}", method="GET")
    assert (await client.job(job_id)).id == job_id
    assert [r.status for r in fake.requests_to(f"/job/{job_id}")] == [status, status, 200]


@pytest.mark.asyncio
async def test_503_on_submit_is_retried(client: DremioClient, fake: FakeDremio) -> None:
    fake.fail_next(2, 503, path="/sql")
    assert (await client.query("SELECT 1 AS x")).to_pylist() == [{"x": 1}]
    assert [r.status for r in fake.requests_to("/sql")] == [503, 503, 200]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(400, DremioBadRequest, id="400"),
        pytest.param(403, DremioAuthError, id="403"),
        pytest.param(404, DremioNotFound, id="404"),
    ],
)
async def test_non_transient_status_is_not_retried(
    client: DremioClient, fake: FakeDremio, status: int, error: type[DremioAPIError]
) -> None:
    fake.fail_next(1, status, path="/sql", message="nope")
    with pytest.raises(error, match="nope") as info:
        await client.submit("SELECT 1")
    assert (info.value.status, info.value.error_message) == (status, "nope")
    assert len(fake.requests_to("/sql")) == 1


@pytest.mark.asyncio
async def test_budget_exhausted_raises_the_last_error(
    client: DremioClient, fake: FakeDremio
) -> None:
    fake.fail_next(10, 503, path="/sql")
    with pytest.raises(DremioServerError) as info:
        await client.submit("SELECT 1")
    assert info.value.status == 503
    assert len(fake.requests_to("/sql")) == RETRY.attempts


@pytest.mark.asyncio
async def test_429_honours_retry_after(
    client: DremioClient, fake: FakeDremio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dremioframe_async.dremio")
    fake.rate_limit_next(1, retry_after=0.25, path="/sql")
    assert (await client.query("SELECT 1 AS x")).to_pylist() == [{"x": 1}]
    assert [r.status for r in fake.requests_to("/sql")] == [429, 200]
    assert any("in 0.25 s" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_429_after_budget_is_rate_limited(client: DremioClient, fake: FakeDremio) -> None:
    fake.rate_limit_next(10, retry_after=0.01, path="/job/")
    job_id = await client.submit("SELECT 1")
    with pytest.raises(DremioRateLimited) as info:
        await client.job(job_id)
    assert info.value.retry_after == 0.01


@pytest.mark.asyncio
async def test_dropped_connection_is_retried(client: DremioClient, fake: FakeDremio) -> None:
    fake.disconnect_next(1, path="/results")
    table = await client.query("SELECT * FROM shop.sales ORDER BY id")
    assert table.column("id").to_pylist() == list(range(1200))
    assert len(fake.requests_to("/results")) == 4  # 3 pages + 1 dropped


@pytest.mark.asyncio
async def test_page_failure_surfaces_as_itself(client: DremioClient, fake: FakeDremio) -> None:
    job_id = await client.submit("SELECT * FROM shop.sales")
    await client.wait(job_id)
    fake.fail_next(1, 400, path="/results")
    with pytest.raises(DremioBadRequest):
        await client.fetch_arrow(job_id)


@pytest.mark.asyncio
async def test_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with DremioClient(f"http://127.0.0.1:{port}", token="t", retry=RETRY) as c:
        with pytest.raises(DremioConnectionError, match="cannot reach Dremio"):
            await c.submit("SELECT 1")


@pytest.mark.asyncio
async def test_job_latency_moves_through_starting_and_running_to_completed() -> None:
    # A 30 s latency: STARTING for its first third, RUNNING after; the test moves
    # the job's clock instead of waiting.
    async with (
        FakeDremio(job_latency=30) as fake,
        DremioClient(fake.url, token=fake.token, poll_interval=0.01) as c,
    ):
        job_id = await c.submit("SELECT 1 AS x")
        starting = await c.job(job_id)
        fake.jobs[job_id].submitted -= 11
        running = await c.job(job_id)
        fake.jobs[job_id].submitted -= 20
        final = await c.wait(job_id)
    assert (starting.state, starting.final, starting.row_count) == ("STARTING", False, 0)
    assert (running.state, running.final, running.row_count) == ("RUNNING", False, 0)
    assert (final.state, final.final, final.row_count) == ("COMPLETED", True, 1)


@pytest.mark.parametrize(
    ("status", "error", "transient"),
    [
        pytest.param(400, DremioBadRequest, False, id="400"),
        pytest.param(401, DremioAuthError, False, id="401"),
        pytest.param(403, DremioAuthError, False, id="403"),
        pytest.param(404, DremioNotFound, False, id="404"),
        pytest.param(409, DremioAPIError, False, id="409"),
        pytest.param(429, DremioRateLimited, True, id="429"),
        pytest.param(500, DremioServerError, True, id="500"),
        pytest.param(502, DremioServerError, True, id="502"),
        pytest.param(503, DremioServerError, True, id="503"),
        pytest.param(504, DremioServerError, True, id="504"),
    ],
)
def test_every_status_is_mapped(status: int, error: type[DremioAPIError], transient: bool) -> None:
    exc = _api_error("GET", "/x", status, {"errorMessage": "m", "moreInfo": "i"}, {})
    assert type(exc) is error
    assert (exc.error_message, exc.more_info, is_transient(exc)) == ("m", "i", transient)


@pytest.mark.asyncio
async def test_a_dropped_connection_counts_once_per_attempt(
    client: DremioClient, fake: FakeDremio
) -> None:
    """One retry layer: aiohttp's own re-send of a GET must not double the attempts."""
    job_id = await client.submit("SELECT 1")
    await client.wait(job_id)
    before = len(fake.requests_to(f"/job/{job_id}", "GET"))  # the polls of wait()
    fake.disconnect_next(100, path=f"/job/{job_id}")
    with pytest.raises(DremioConnectionError):
        await client.job(job_id)
    assert len(fake.requests_to(f"/job/{job_id}", "GET")) - before == RETRY.attempts
