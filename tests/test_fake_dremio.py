"""FakeDremio's protocol, checked with raw HTTP requests (no DremioClient)."""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pyarrow as pa
import pytest
import pytest_asyncio

from dremioframe_async.dremio import DremioClient, DremioJobFailed
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
    # The user's home space comes first, as on Dremio.
    assert [e["path"] for e in root["data"]] == [["@dremio"], ["space"]]
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


# -- INFORMATION_SCHEMA ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "view",
    ['information_schema."tables"', 'INFORMATION_SCHEMA."TABLES"', "INFORMATION_SCHEMA.TABLES"],
)
async def test_information_schema_tables_lists_added_tables(fake: FakeDremio, view: str) -> None:
    fake.add_table("space.orders", pa.table({"n": [1]}))
    async with DremioClient(fake.url, token=fake.token, poll_interval=0.01) as client:
        table = await client.query(
            f"SELECT * FROM {view} WHERE TABLE_TYPE = 'TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME"
        )
    assert table.column_names == ["TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "TABLE_TYPE"]
    assert [(r["TABLE_SCHEMA"], r["TABLE_NAME"]) for r in table.to_pylist()] == [
        ("space", "orders"),
        ("space.folder", "sales"),
    ]


@pytest.mark.asyncio
async def test_information_schema_columns_and_schemata(fake: FakeDremio) -> None:
    async with DremioClient(fake.url, token=fake.token, poll_interval=0.01) as client:
        columns = await client.query(
            "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS "
            "WHERE TABLE_NAME = 'sales' ORDER BY ORDINAL_POSITION"
        )
        schemata = await client.query(
            'SELECT SCHEMA_NAME FROM "INFORMATION_SCHEMA"."SCHEMATA" ORDER BY 1'
        )
    assert columns.to_pylist() == [
        {"COLUMN_NAME": "id", "ORDINAL_POSITION": 1, "DATA_TYPE": "BIGINT"},
        {"COLUMN_NAME": "name", "ORDINAL_POSITION": 2, "DATA_TYPE": "CHARACTER VARYING"},
        {"COLUMN_NAME": "amount", "ORDINAL_POSITION": 3, "DATA_TYPE": "DECIMAL"},
        {"COLUMN_NAME": "at", "ORDINAL_POSITION": 4, "DATA_TYPE": "TIMESTAMP"},
    ]
    assert schemata.column("SCHEMA_NAME").to_pylist() == [
        "INFORMATION_SCHEMA",
        "space",
        "space.folder",
    ]


@pytest.mark.asyncio
async def test_information_schema_view_not_emulated_fails_the_job(fake: FakeDremio) -> None:
    async with DremioClient(fake.url, token=fake.token, poll_interval=0.01) as client:
        with pytest.raises(DremioJobFailed, match="'VIEWS' not found within 'INFORMATION_SCHEMA'"):
            await client.query("SELECT * FROM information_schema.views")


# -- without DuckDB ----------------------------------------------------------------------------


@pytest.fixture
def no_duckdb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import duckdb`` fail, as without the testing extra."""
    monkeypatch.setitem(sys.modules, "duckdb", None)


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_duckdb")
async def test_missing_duckdb_is_one_clear_error_at_start() -> None:
    fake = FakeDremio()
    with pytest.raises(ImportError, match=r"pip install 'dremioframe_async\[testing\]'"):
        await fake.start()
    assert "not started" in repr(fake)


def test_failed_connections_give_their_slot_back(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = SqlEngine(connections=2)
    engine.add_table("s.t", pa.table({"n": [1]}))
    with monkeypatch.context() as blocked:
        blocked.setitem(sys.modules, "duckdb", None)
        for _ in range(5):  # more failures than slots: each used to keep one
            with pytest.raises(ImportError):
                engine.execute("SELECT n FROM s.t")
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(engine.execute("SELECT n FROM s.t")))
    worker.daemon = True  # if a slot leaked, this thread would wait forever
    worker.start()
    worker.join(timeout=10)
    try:
        assert not worker.is_alive(), "execute() hangs: the failed connections kept their slots"
        assert outcome[0].to_pylist() == [{"n": 1}]  # type: ignore[attr-defined]
    finally:
        engine.close()


@pytest.mark.asyncio
async def test_clear_faults_undoes_every_fault_knob_and_keeps_the_data() -> None:
    sql = "SELECT * FROM space.folder.sales"
    async with FakeDremio(flight=True) as fake:
        fake.add_table("space.folder.sales", sample_table(3))
        fake.add_response("SELECT 42 AS answer", table=pa.table({"answer": [42]}))
        fake.fail_jobs("sales", "boom")
        fake.slow_jobs("orders", 3600)
        fake.fail_next(5, 503)
        fake.rate_limit_next(5)
        fake.disconnect_next(5)
        fake.lose_reply_next(5)
        fake.fail_status_polls(5)
        fake.short_pages(5)
        fake.inflate_row_count(10, "sales")
        hold = fake.hold_next(None, path="/catalog")
        fake.flight.fail_mid_stream(0, count=5)
        fake.flight.reject_tokens()
        fake.flight.unavailable_next(5)

        fake.clear_faults()

        assert hold.released.is_set()  # a held request would be answered now
        client = DremioClient(fake.url, token=fake.token, flight_url=fake.flight_url)
        async with client:
            rest = await client.query(sql, via="rest")
            assert rest.num_rows == 3
            assert (await client.query(sql, via="flight")).num_rows == 3
            canned = await client.query("SELECT 42 AS answer", via="rest")
            assert canned.column("answer").to_pylist() == [42]  # data stays


@pytest.mark.asyncio
async def test_a_fault_cleared_mid_test_stops_at_once(fake: FakeDremio) -> None:
    fake.fail_jobs("sales", "boom")
    async with DremioClient(fake.url, token=fake.token, poll_interval=0.01) as client:
        with pytest.raises(DremioJobFailed, match="boom"):
            await client.query("SELECT * FROM space.folder.sales")
        fake.clear_faults()
        assert (await client.query("SELECT * FROM space.folder.sales")).num_rows == 3
