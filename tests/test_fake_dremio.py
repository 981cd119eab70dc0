"""FakeDremio's protocol, checked with raw HTTP requests (no DremioClient)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pyarrow as pa
import pytest
import pytest_asyncio

from dremioframe_async.testing import FakeDremio, sample_table
from dremioframe_async.testing._sql import SqlEngine


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        server.add_table("space.folder.sales", sample_table(3))
        yield server


@pytest_asyncio.fixture
async def http(fake: FakeDremio) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {fake.token}"}
    async with aiohttp.ClientSession(fake.url, headers=headers) as session:
        yield session


async def _json(resp: aiohttp.ClientResponse) -> Any:
    async with resp:
        return resp.status, await resp.json()


async def _run(http: aiohttp.ClientSession, sql: str) -> str:
    status, body = await _json(await http.post("/api/v3/sql", json={"sql": sql}))
    assert status == 200
    job_id: str = body["id"]
    return job_id


@pytest.mark.asyncio
async def test_missing_token_gets_401_in_dremio_format(fake: FakeDremio) -> None:
    async with aiohttp.ClientSession(fake.url) as anonymous:
        status, body = await _json(await anonymous.post("/api/v3/sql", json={"sql": "SELECT 1"}))
    assert status == 401
    assert set(body) == {"errorMessage", "moreInfo"}


@pytest.mark.asyncio
async def test_results_format_and_limit_rules(http: aiohttp.ClientSession) -> None:
    job_id = await _run(http, "SELECT * FROM space.folder.sales ORDER BY id")
    status, job = await _json(await http.get(f"/api/v3/job/{job_id}"))
    assert (status, job["jobState"], job["rowCount"]) == (200, "COMPLETED", 3)
    path = f"/api/v3/job/{job_id}/results"
    status, page = await _json(await http.get(path, params={"offset": 0, "limit": 2}))
    assert status == 200
    assert page["rowCount"] == 3
    assert page["schema"][2] == {
        "name": "amount",
        "type": {"name": "DECIMAL", "precision": 12, "scale": 2},
    }
    assert page["rows"] == [
        {"id": 0, "at": "2024-01-01 12:00:00.000"},  # null keys are left out
        {"id": 1, "name": "n1", "amount": 0.01, "at": "2024-01-01 12:00:00.001"},
    ]
    status, error = await _json(await http.get(path, params={"offset": 0, "limit": 501}))
    assert status == 400
    assert "500" in error["errorMessage"]


@pytest.mark.asyncio
async def test_results_of_unfinished_job_and_cancel_of_ended_job_are_400(
    fake: FakeDremio, http: aiohttp.ClientSession
) -> None:
    fake.slow_jobs("slow", latency=30)
    slow = await _run(http, "SELECT 'slow'")
    status, _ = await _json(await http.get(f"/api/v3/job/{slow}/results"))
    assert status == 400
    done = await _run(http, "SELECT 1")
    await _json(await http.get(f"/api/v3/job/{done}"))
    status, body = await _json(await http.post(f"/api/v3/job/{done}/cancel"))
    assert (status, "already ended" in body["errorMessage"]) == (400, True)
    async with await http.post(f"/api/v3/job/{slow}/cancel") as resp:
        assert resp.status == 204
    assert fake.jobs[slow].state == "CANCELED"


@pytest.mark.asyncio
async def test_unknown_job_and_wrong_cloud_project_are_404(http: aiohttp.ClientSession) -> None:
    status, _ = await _json(await http.get("/api/v3/job/no-such-job"))
    assert status == 404
    status, body = await _json(await http.post("/v0/projects/other/sql", json={"sql": "SELECT 1"}))
    assert (status, body["errorMessage"]) == (404, "Project other not found")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        pytest.param("SELECT 1 AS answer", [{"x": 42}], id="exact"),
        pytest.param("select   1 as answer  -- comment", [{"x": 7}], id="substring"),
    ],
)
async def test_canned_responses(
    fake: FakeDremio, http: aiohttp.ClientSession, sql: str, rows: list[dict[str, int]]
) -> None:
    fake.add_response("SELECT 1 AS answer", table=pa.table({"x": [42]}))
    fake.add_response("-- comment", table=pa.table({"x": [7]}), match="substring")
    job_id = await _run(http, sql)
    await _json(await http.get(f"/api/v3/job/{job_id}"))
    _, page = await _json(await http.get(f"/api/v3/job/{job_id}/results"))
    assert page["rows"] == rows


def test_path_spellings_resolve_to_the_table() -> None:
    engine = SqlEngine(connections=1)
    try:
        engine.add_table("space.folder.sales", pa.table({"n": [1]}))
        engine.add_table('my space."we""ird".t 1', pa.table({"n": [2]}))
        engine.add_table("space.folder", pa.table({"n": [3]}))
        spellings = {
            "SELECT n FROM space.folder.sales": 1,
            'SELECT n FROM "space"."folder"."sales"': 1,
            'SELECT n FROM SPACE . "folder".Sales': 1,
            'SELECT n FROM "my space"."we""ird"."t 1"': 2,
            "SELECT n FROM space.folder": 3,
        }
        for sql, expected in spellings.items():
            assert engine.execute(sql).to_pylist() == [{"n": expected}], sql
        rewritten, used = engine.rewrite("SELECT n FROM myspace.folder.sales")
        assert (rewritten, used) == ("SELECT n FROM myspace.folder.sales", [])
    finally:
        engine.close()


@pytest.mark.asyncio
async def test_catalog_lists_spaces_folders_and_datasets(http: aiohttp.ClientSession) -> None:
    _, root = await _json(await http.get("/api/v3/catalog"))
    assert [e["path"] for e in root["data"]] == [["space"]]
    _, folder = await _json(await http.get("/api/v3/catalog/by-path/space/folder"))
    assert folder["entityType"] == "folder"
    assert folder["children"][0]["type"] == "DATASET"
    status, _ = await _json(await http.get("/api/v3/catalog/by-path/space/none"))
    assert status == 404


@pytest.mark.asyncio
async def test_request_latency_and_repr_hide_the_token() -> None:
    async with FakeDremio(request_latency=0.002) as fake:
        headers = {"Authorization": f"Bearer {fake.token}"}
        async with aiohttp.ClientSession(fake.url, headers=headers) as http:
            job_id = await _run(http, "SELECT 1")
        assert fake.token not in repr(fake)
        assert fake.token not in repr(fake.requests)
        assert fake.requests[0].body == {"sql": "SELECT 1"}
        assert job_id in fake.jobs
