"""The Dremio data path never lies: no short table, no statement run twice, no orphaned job.

Every test drives DremioClient against FakeDremio's fault knobs over real HTTP.
Ordering comes from FakeDremio's holds (a request that waits until released,
with an ``arrived`` event) and its recorded requests, never from sleeps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from dremioframe_async.dremio import (
    DremioBadRequest,
    DremioClient,
    DremioConnectionError,
    DremioJobTimeout,
    DremioNotFound,
    DremioRateLimited,
    DremioResultIncomplete,
    DremioServerError,
    DremioSubmitUncertain,
    RetryPolicy,
)
from dremioframe_async.dremio._errors import DremioAuthError
from dremioframe_async.dremio._transport import is_transient
from dremioframe_async.testing import FakeDremio, sample_table

RETRY = RetryPolicy(attempts=4, max_time=10.0, backoff=0.01, max_backoff=0.1)
ROWS = 100_000


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        server.add_table("lake.big", sample_table(ROWS))
        server.add_table("lake.small", sample_table(1_200))
        yield server


def client_for(fake: FakeDremio, **options: object) -> DremioClient:
    options.setdefault("retry", RETRY)
    options.setdefault("poll_interval", 0.005)
    options.setdefault("max_poll_interval", 0.02)
    return DremioClient(fake.url, token=fake.token, **options)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    async with client_for(fake) as c:
        yield c


async def drain(batches: AsyncIterator[pa.RecordBatch], sizes: list[int] | None = None) -> None:
    async for batch in batches:
        if sizes is not None:
            sizes.append(batch.num_rows)


# -- result integrity --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_short_page_in_100000_rows_raises(client: DremioClient, fake: FakeDremio) -> None:
    job = await client.wait(await client.submit("SELECT * FROM lake.big ORDER BY id"))
    fake.short_pages(1, missing=1)
    with pytest.raises(DremioResultIncomplete) as info:
        await client.fetch_arrow(job)
    error = info.value
    assert (error.job_id, error.expected, error.received) == (job.id, ROWS, ROWS - 1)
    assert job.id in str(error)
    assert "100,000" in str(error)
    assert "99,999" in str(error)


@pytest.mark.asyncio
async def test_query_with_an_empty_page_raises(client: DremioClient, fake: FakeDremio) -> None:
    fake.short_pages(1, missing=None)
    with pytest.raises(DremioResultIncomplete) as info:
        await client.query("SELECT * FROM lake.small ORDER BY id")
    assert (info.value.expected, info.value.received) == (1_200, 700)
    assert "offset 0 held 0 rows, not 500" in str(info.value)


@pytest.mark.asyncio
async def test_inflated_row_count_raises_for_every_reader(
    client: DremioClient, fake: FakeDremio, tmp_path: Path
) -> None:
    fake.inflate_row_count(800, "lake.small")
    job_id = await client.submit("SELECT * FROM lake.small")
    job = await client.wait(job_id)
    assert job.row_count == 2_000
    with pytest.raises(DremioResultIncomplete) as whole:
        await client.fetch_arrow(job_id)
    assert (whole.value.expected, whole.value.received) == (2_000, 1_200)
    with pytest.raises(DremioResultIncomplete):
        await drain(client.iter_batches(job_id))
    target = tmp_path / "small.parquet"
    with pytest.raises(DremioResultIncomplete):
        await client.to_parquet(job, target)
    assert sorted(tmp_path.iterdir()) == []  # neither the file nor its .partial


@pytest.mark.asyncio
async def test_a_row_count_of_a_trillion_is_an_incomplete_result_not_a_memory_error(
    client: DremioClient, fake: FakeDremio
) -> None:
    """A hostile (or broken) server's row count must not size anything up front:
    ``fetch_arrow`` once built a list of two billion page slots before the first
    page and died with MemoryError."""
    fake.inflate_row_count(10**12, "lake.small")
    job = await client.wait(await client.submit("SELECT * FROM lake.small"))
    with anyio.fail_after(30), pytest.raises(DremioResultIncomplete) as info:
        await client.fetch_arrow(job)
    assert (info.value.expected, info.value.received) == (10**12 + 1_200, 1_200)


@pytest.mark.asyncio
async def test_iter_batches_raises_at_the_short_page(
    client: DremioClient, fake: FakeDremio
) -> None:
    job = await client.wait(await client.submit("SELECT * FROM lake.small ORDER BY id"))
    seen: list[int] = []
    async with aclosing(client.iter_batches(job)) as batches:
        seen.append((await anext(batches)).num_rows)
        fake.short_pages(1, missing=3)
        with pytest.raises(DremioResultIncomplete) as info:
            await drain(batches, seen)
    assert seen == [500]
    assert info.value.received == 997
    assert "offset 500 held 497 rows, not 500" in str(info.value)


@pytest.mark.asyncio
async def test_results_reporting_more_rows_than_the_job_raise(
    client: DremioClient, fake: FakeDremio
) -> None:
    job = await client.wait(await client.submit("SELECT * FROM lake.small"))
    fake.jobs[job.id].extra_rows = 5  # the results now report 1,205 rows, the job said 1,200
    with pytest.raises(DremioResultIncomplete, match="the results report 1,205 rows"):
        await client.fetch_arrow(job)


@pytest.mark.asyncio
async def test_failed_to_parquet_removes_its_partial_file(
    client: DremioClient, fake: FakeDremio, tmp_path: Path
) -> None:
    job = await client.wait(await client.submit("SELECT * FROM lake.small ORDER BY id"))
    fake.fail_next(1, 400, path="/results", message="gone", after=1)
    target = tmp_path / "small.parquet"
    with pytest.raises(DremioBadRequest, match="gone"):
        await client.to_parquet(job, target, row_group_rows=100)
    assert list(tmp_path.iterdir()) == []
    assert await client.to_parquet(job, target) == 1_200
    assert pq.read_table(target).num_rows == 1_200
    assert [p.name for p in tmp_path.iterdir()] == ["small.parquet"]


@pytest.mark.asyncio
async def test_cancelled_to_parquet_removes_its_partial_file(
    client: DremioClient, fake: FakeDremio, tmp_path: Path
) -> None:
    job = await client.wait(await client.submit("SELECT * FROM lake.small ORDER BY id"))
    target = tmp_path / "small.parquet"
    hold = fake.hold_next(1, path="/results", after=1)
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def write() -> None:
            with scope:
                await client.to_parquet(job, target)

        tg.start_soon(write)
        await hold.arrived.wait()
        scope.cancel()
    assert scope.cancelled_caught
    assert list(tmp_path.iterdir()) == []


# -- POST /sql is never sent twice -------------------------------------------------------------


@pytest.mark.asyncio
async def test_lost_reply_leaves_exactly_one_job(client: DremioClient, fake: FakeDremio) -> None:
    fake.lose_reply_next(1, path="/sql")
    with pytest.raises(DremioSubmitUncertain, match="may have run") as info:
        await client.submit("INSERT INTO lake.t SELECT 1")
    assert len(fake.requests_to("/sql", "POST")) == 1
    assert len(fake.jobs) == 1
    assert isinstance(info.value.__cause__, DremioConnectionError)


@pytest.mark.asyncio
async def test_timeout_shorter_than_the_answer_sends_the_statement_once(
    fake: FakeDremio,
) -> None:
    hold = fake.hold_next(1, path="/sql")
    retry = RetryPolicy(attempts=5, max_time=0.3, backoff=0.01)
    async with client_for(fake, retry=retry) as c:
        with pytest.raises(DremioSubmitUncertain, match=r"no answer within 0\.3 s"):
            await c.submit("INSERT INTO lake.t SELECT 1")
        assert hold.waiting == 1  # the one POST is still being handled
        hold.release()
        await anyio.wait_all_tasks_blocked()
    assert len(fake.requests_to("/sql", "POST")) == 1
    assert len(fake.jobs) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 502, 504], ids=lambda s: f"http-{s}")
async def test_gateway_or_server_error_on_submit_is_uncertain_and_not_resent(
    client: DremioClient, fake: FakeDremio, status: int
) -> None:
    fake.fail_next(3, status, path="/sql")
    with pytest.raises(DremioSubmitUncertain) as info:
        await client.submit("INSERT INTO lake.t SELECT 1")
    assert isinstance(info.value.__cause__, DremioServerError)
    assert len(fake.requests_to("/sql", "POST")) == 1


@pytest.mark.asyncio
async def test_refused_submit_is_retried(client: DremioClient, fake: FakeDremio) -> None:
    fake.rate_limit_next(1, retry_after=0.01, path="/sql")
    fake.fail_next(1, 503, path="/sql")
    job_id = await client.submit("SELECT 1 AS x")
    assert [r.status for r in fake.requests_to("/sql")] == [429, 503, 200]
    assert list(fake.jobs) == [job_id]


@pytest.mark.parametrize(
    ("error", "get", "post"),
    [
        pytest.param(
            DremioConnectionError("M", "/p", "refused", sent=False), True, True, id="not-sent"
        ),
        pytest.param(DremioConnectionError("M", "/p", "lost", sent=True), True, False, id="sent"),
        pytest.param(DremioRateLimited("M", "/p", 429), True, True, id="429"),
        pytest.param(DremioServerError("M", "/p", 503), True, True, id="503"),
        pytest.param(DremioServerError("M", "/p", 500), True, False, id="500"),
        pytest.param(DremioServerError("M", "/p", 502), True, False, id="502"),
        pytest.param(DremioServerError("M", "/p", 501), False, False, id="501"),
        pytest.param(DremioAuthError("M", "/p", 401), False, False, id="401"),
    ],
)
def test_what_is_repeated(error: Exception, get: bool, post: bool) -> None:
    assert is_transient(error, idempotent=True) is get
    assert is_transient(error, idempotent=False) is post


@pytest.mark.asyncio
async def test_submit_to_a_closed_port_is_retried_as_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dremioframe_async.dremio")
    async with FakeDremio() as fake:
        url, token = fake.url, fake.token
    retry = RetryPolicy(attempts=3, max_time=5.0, backoff=0.01)
    async with DremioClient(url, token=token, retry=retry) as c:
        with pytest.raises(DremioConnectionError) as info:
            await c.submit("SELECT 1")
    assert info.value.sent is False  # so it was safe to repeat, and not reported as uncertain
    retries = [r for r in caplog.records if "retrying after attempt" in r.getMessage()]
    assert len(retries) == retry.attempts - 1


# -- no orphaned job ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancel_during_submit_cancels_the_created_job(
    client: DremioClient, fake: FakeDremio
) -> None:
    hold = fake.hold_next(1, path="/sql")
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await client.query("SELECT * FROM lake.small")

        tg.start_soon(run)
        await hold.arrived.wait()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert fake.jobs == {}  # the POST is still in flight, shielded
        hold.release()
    assert scope.cancelled_caught
    (job_id,) = fake.jobs
    assert fake.cancelled_jobs == [job_id]
    assert fake.jobs[job_id].state == "CANCELED"


@pytest.mark.asyncio
async def test_50_queries_cancelled_mid_submit_leave_no_job_running(
    client: DremioClient, fake: FakeDremio
) -> None:
    hold = fake.hold_next(None, path="/sql")
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                async with anyio.create_task_group() as queries:
                    for i in range(50):
                        queries.start_soon(client.query, f"SELECT {i} AS x")

        tg.start_soon(run)
        while hold.waiting < 50:  # each wait ends when the server holds one more POST
            await anyio.wait_all_tasks_blocked()
        scope.cancel()
        await anyio.wait_all_tasks_blocked()
        hold.release()
    assert len(fake.jobs) == 50
    assert sorted(fake.cancelled_jobs) == sorted(fake.jobs)
    assert {job.state for job in fake.jobs.values()} == {"CANCELED"}


@pytest.mark.asyncio
async def test_cancelled_submit_gives_up_after_cancel_timeout(fake: FakeDremio) -> None:
    hold = fake.hold_next(1, path="/sql")
    async with client_for(fake, cancel_timeout=0.2) as c:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.submit, "SELECT 1")
                await hold.arrived.wait()
                started = anyio.current_time()
                scope.cancel()
        assert anyio.current_time() - started < 5.0
    assert fake.cancelled_jobs == []


@pytest.mark.asyncio
async def test_one_500_on_a_status_poll_still_succeeds(
    client: DremioClient, fake: FakeDremio
) -> None:
    job_id = await client.submit("SELECT * FROM lake.small")
    fake.fail_status_polls(1, 500)
    job = await client.wait(job_id)
    assert job.state == "COMPLETED"
    assert [r.status for r in fake.requests_to(f"/job/{job_id}", "GET")][:2] == [500, 200]
    assert fake.cancelled_jobs == []


@pytest.mark.asyncio
async def test_persistent_500s_on_status_polls_raise_and_cancel_the_job(
    client: DremioClient, fake: FakeDremio
) -> None:
    fake.slow_jobs("lake.small", latency=30)
    job_id = await client.submit("SELECT * FROM lake.small")
    fake.fail_status_polls(100, 500)
    with pytest.raises(DremioServerError) as info:
        await client.wait(job_id)
    assert info.value.status == 500
    assert len(fake.requests_to(f"/job/{job_id}", "GET")) == RETRY.attempts
    assert fake.cancelled_jobs == [job_id]
    assert fake.jobs[job_id].state == "CANCELED"


@pytest.mark.asyncio
async def test_cancelled_wait_sends_one_cancel(client: DremioClient, fake: FakeDremio) -> None:
    fake.slow_jobs("lake.small", latency=30)
    job_id = await client.submit("SELECT * FROM lake.small")
    hold = fake.hold_next(1, path=f"/job/{job_id}", method="GET")
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await client.wait(job_id)

        tg.start_soon(run)
        await hold.arrived.wait()
        scope.cancel()
    assert scope.cancelled_caught
    assert fake.cancelled_jobs == [job_id]


@pytest.mark.asyncio
async def test_wait_timeout_sends_one_cancel(client: DremioClient, fake: FakeDremio) -> None:
    fake.slow_jobs("lake.small", latency=30)
    job_id = await client.submit("SELECT * FROM lake.small")
    with pytest.raises(DremioJobTimeout):
        await client.wait(job_id, timeout=0.05)
    assert fake.cancelled_jobs == [job_id]


# -- deadlines ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_suspended_server_with_max_time_5_raises_within_about_6_s(fake: FakeDremio) -> None:
    fake.suspend()
    retry = RetryPolicy(attempts=5, max_time=5.0, backoff=0.1)
    async with client_for(fake, retry=retry) as c:
        started = time.perf_counter()
        with pytest.raises(DremioSubmitUncertain, match="no answer within 5 s"):
            await c.query("SELECT 1")
        elapsed = time.perf_counter() - started
    assert 4.5 <= elapsed < 7.5  # the upper bound leaves room for a slow first connect


@pytest.mark.asyncio
async def test_max_time_bounds_retries_of_a_hung_get(fake: FakeDremio) -> None:
    async with client_for(fake) as c:
        job_id = await c.submit("SELECT 1")
    hold = fake.suspend()
    retry = RetryPolicy(attempts=50, max_time=0.5, backoff=0.01, max_backoff=0.01)
    async with client_for(fake, retry=retry, request_timeout=0.2) as c:
        started = time.perf_counter()
        with pytest.raises(DremioConnectionError, match="no answer within"):
            await c.job(job_id)
        elapsed = time.perf_counter() - started
    # Attempts of 0.2 s, then what is left of 0.5 s: never 50 attempts, never past the deadline
    # (the bound leaves room for a slow first connect; 50 attempts would take 10 s).
    assert elapsed < 3.5
    assert 2 <= hold.waiting <= 4


# -- paths cannot change the endpoint ----------------------------------------------------------


@pytest.mark.asyncio
async def test_catalog_path_with_dot_dot_stays_under_by_path(
    client: DremioClient, fake: FakeDremio
) -> None:
    job_id = await client.submit("SELECT 1")
    with pytest.raises(DremioNotFound):
        await client.catalog_by_path(["..", "..", "job", job_id])
    with pytest.raises(DremioNotFound):
        await client.catalog_by_path(["lake", "a/../../../job", "."])
    paths = [r.path for r in fake.requests if r.method == "GET"]
    assert paths == [
        f"/api/v3/catalog/by-path/../../job/{job_id}",
        "/api/v3/catalog/by-path/lake/a/../../../job/.",
    ]


@pytest.mark.asyncio
async def test_job_ids_are_encoded_too(client: DremioClient, fake: FakeDremio) -> None:
    with pytest.raises(DremioNotFound):
        await client.job("../catalog")
    (request,) = fake.requests
    assert request.path == "/api/v3/job/../catalog"
