"""bench against FakeDremio: the concurrency curve, injected errors, and the Dremio work."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from dremioframe_async.bench import Sweep, embedded_dremio, flight_work, rest_work, sweep
from dremioframe_async.bench._dremio import BEFORE_EXECUTION
from dremioframe_async.bench._fake_process import fake_dremio_process
from dremioframe_async.dremio import DremioClient, Job
from dremioframe_async.testing import FakeDremio

LATENCY = 0.05
LIMIT = 3
SQL = "SELECT * FROM bench.sample"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with embedded_dremio(latency=LATENCY, max_running_jobs=LIMIT, rows=10) as server:
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    async with DremioClient(
        fake.url, token=fake.token, flight_url=fake.flight_url, flight_streams=16
    ) as c:
        yield c


@pytest_asyncio.fixture
async def remote() -> AsyncIterator[DremioClient]:
    """A client of FakeDremio in a child process: server and client do not share a GIL."""
    async with (
        fake_dremio_process(latency=LATENCY, max_running_jobs=LIMIT, rows=10) as fake,
        DremioClient(fake.url, token=fake.token, flight_url=fake.flight_url) as c,
    ):
        yield c


@pytest.mark.asyncio
@pytest.mark.parametrize("via", ["rest", "flight"])
async def test_throughput_scales_to_the_server_limit_and_the_knee_is_there(
    remote: DremioClient, via: str
) -> None:
    work = (rest_work if via == "rest" else flight_work)(remote, [SQL])
    # This is a measurement of a curve, so a machine starved of CPU can bend it (p95 at
    # 3 callers inflated by contention, not by queueing). Other tenants of a shared host
    # slow it without raising this machine's load average, so any failing sweep is
    # measured again, at most three sweeps in all. The assertions themselves never loosen.
    for attempt in range(3):
        result = await sweep(work, concurrency=[1, 3, 12], queries=48, warmup=0.1, label=via)
        try:
            _assert_curve(result)
        except AssertionError:
            if attempt == 2:
                raise
        else:
            return


def _assert_curve(result: Sweep) -> None:
    qps = {s.concurrency: s.queries_per_s for s in result.steps}
    curve = [
        (s.concurrency, round(s.queries_per_s, 1), round(s.latency.p95 * 1e3)) for s in result.steps
    ]
    # Near-linear up to the limit: 3x ideally; generous, because on a shared, loaded
    # machine the REST path (four requests per query) runs short of CPU first ...
    assert qps[3] >= 1.5 * qps[1], curve
    # ... and never past what 3 slots of 50 ms allow, however many callers wait.
    assert qps[12] <= LIMIT / LATENCY * 1.1, curve
    twelve = result.steps[-1]
    assert twelve.measured_concurrency > 6  # the callers were really in flight
    assert twelve.latency.p95 > 2 * result.steps[0].latency.p95, curve  # queueing shows
    knee = result.knee
    assert knee is not None
    assert knee.concurrency == LIMIT, curve
    assert not any(s.flagged for s in result.steps)
    assert all(s.rows == 10 * s.queries for s in result.steps)


@pytest.mark.asyncio
async def test_errors_injected_at_one_step_are_counted_and_flagged_there(
    fake: FakeDremio, client: DremioClient
) -> None:
    # Steps of 8 queries: the 9th to 11th submissions fall in the second step.
    fake.fail_next(3, 400, path="/sql", method="POST", message="injected", after=8)
    result = await sweep(rest_work(client, [SQL]), concurrency=[1, 3, 12], queries=8)
    first, second, third = result.steps
    assert second.errors == {"DremioBadRequest": 3}
    assert second.flagged
    assert second.queries == 5
    assert not first.flagged
    assert not third.flagged
    assert result.knee is first  # the walk stops at a failing step


@pytest.mark.asyncio
async def test_rest_phases_split_queue_from_execution(
    fake: FakeDremio, client: DremioClient
) -> None:
    result = await sweep(rest_work(client, [SQL]), concurrency=[12], queries=24)
    phases = result.steps[0].phases
    assert set(phases) == {"submit", "queue", "execute", "fetch"}
    # 12 callers on 3 slots: most of the wait is for a slot.
    assert phases["queue"].p95 >= 2 * LATENCY


@pytest.mark.asyncio
async def test_wait_reports_every_status_it_reads(fake: FakeDremio, client: DremioClient) -> None:
    fake.slow_jobs("slow", 0.5)
    first = [await client.submit(f"SELECT 'slow{i}'") for i in range(LIMIT)]
    queued = await client.submit("SELECT 'slow, queued'")
    states: list[str] = []

    def seen(job: Job) -> None:
        states.append(job.state)

    await client.wait(queued, on_status=seen)
    assert states[0] == "QUEUED"
    assert states[-1] == "COMPLETED"
    assert "QUEUED" in BEFORE_EXECUTION
    for job_id in first:
        await client.wait(job_id)


def test_work_needs_a_statement() -> None:
    client = DremioClient("http://127.0.0.1:9", token="t")
    with pytest.raises(ValueError, match="SQL statement"):
        rest_work(client, ["  "])
    with pytest.raises(ValueError, match="SQL statement"):
        flight_work(client, [])
