"""FakeDremio's server concurrency limit: at most ``max_running_jobs`` jobs run at once."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from dremioframe_async.dremio import DremioClient
from dremioframe_async.testing import FakeDremio, sample_table
from dremioframe_async.testing._model import JobSlots


def test_slots_queue_first_come_first_served() -> None:
    slots = JobSlots(2)
    # Five jobs of 1 s at t=0 on two slots: two run, then two, then one.
    assert [slots.queue_delay(1.0, 0.0) for _ in range(5)] == [0.0, 0.0, 1.0, 1.0, 2.0]
    # At t=10 every slot is free again.
    assert slots.queue_delay(1.0, 10.0) == 0.0


def test_no_limit_never_queues() -> None:
    slots = JobSlots(None)
    assert {slots.queue_delay(5.0, 0.0) for _ in range(100)} == {0.0}


@pytest.mark.parametrize("bad", [0, -3], ids=["zero", "negative"])
def test_limit_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FakeDremio(max_running_jobs=bad)


async def _state(http: aiohttp.ClientSession, job_id: str) -> str:
    async with http.get(f"/api/v3/job/{job_id}") as resp:
        body: dict[str, Any] = await resp.json()
    return str(body["jobState"])


@pytest.mark.asyncio
async def test_jobs_beyond_the_limit_wait_queued() -> None:
    # A long latency keeps every job where the schedule puts it while we look.
    async with FakeDremio(job_latency=60.0, max_running_jobs=2) as fake:
        assert fake.max_running_jobs == 2
        headers = {"Authorization": f"Bearer {fake.token}"}
        async with aiohttp.ClientSession(fake.url, headers=headers) as http:
            ids = []
            for _ in range(3):
                async with http.post("/api/v3/sql", json={"sql": "SELECT 1"}) as resp:
                    ids.append((await resp.json())["id"])
            states = [await _state(http, job_id) for job_id in ids]
    assert states == ["STARTING", "STARTING", "QUEUED"]


@pytest.mark.asyncio
async def test_flight_queries_take_the_job_latency() -> None:
    async with FakeDremio(job_latency=0.3, flight=True) as fake:
        fake.add_table("s.t", sample_table(5))
        async with DremioClient(fake.url, token=fake.token, flight_url=fake.flight_url) as client:
            start = time.monotonic()
            table = await client.query("SELECT * FROM s.t", via="flight")
            elapsed = time.monotonic() - start
    assert table.num_rows == 5
    assert elapsed >= 0.3  # a lower bound: the job's run time comes before the first batch
