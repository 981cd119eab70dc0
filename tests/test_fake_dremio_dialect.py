"""FakeDremio speaks Dremio's SQL: dialect rules, EXPR$ names, Dremio's types, errors, DDL.

The dialect rules are a table (Dremio SQL in, DuckDB SQL out), and every rule's
output is run through DuckDB to show it means what the Dremio construct means.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import duckdb
import pyarrow as pa
import pytest
import pytest_asyncio

from dremioframe_async.testing import FakeDremio
from dremioframe_async.testing._dialect import RULES, translate
from dremioframe_async.testing._results import name_expressions
from dremioframe_async.testing._sql import SqlEngine

ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "qty": pa.array([5, 6, 7, 8], pa.int32()),
        "city": ["Paris", "paris", "Lyon", None],
        "day": pa.array([dt.date(2024, 1, d) for d in (1, 2, 3, 4)], pa.date32()),
        "stamp": pa.array([dt.datetime(2024, 1, 1, 10, 0, 0, 123456)] * 4, pa.timestamp("us")),
    }
)


@pytest.fixture
def engine() -> Any:
    sql = SqlEngine(2)
    sql.add_table("lake.raw.orders", ORDERS)
    try:
        yield sql
    finally:
        sql.close()


# -- the dialect rules, as a table ----------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_each_rule_rewrites_its_construct(rule: Any) -> None:
    assert translate(rule.dremio) == rule.duckdb


TRANSLATIONS = [
    pytest.param(
        "SELECT ilike('Paris', 'pa%'), ilike('Lyon', 'pa%')",
        [(True, False)],
        id="ilike-function",
    ),
    pytest.param(
        "SELECT ilike('50%_Off', '%50!%%', '!'), ilike('500_Off', '%50!%%', '!')",
        [(True, False)],
        id="ilike-function-escape",
    ),
    pytest.param(
        "SELECT ilike(substring('a,b', 1, 3), 'A,%')",
        [(True,)],
        id="ilike-nested-call-and-comma-in-string",
    ),
    pytest.param("SELECT nvl(NULL, 3), nvl(2, 3)", [(3, 2)], id="nvl"),
    pytest.param(
        "SELECT TIMESTAMPADD(DAY, 2, DATE '2024-02-28')",
        [(dt.datetime(2024, 3, 1),)],
        id="timestampadd-day",
    ),
    pytest.param(
        "SELECT TIMESTAMPADD(QUARTER, 1, TIMESTAMP '2024-01-31 00:00:00')",
        [(dt.datetime(2024, 4, 30),)],
        id="timestampadd-quarter",
    ),
    pytest.param(
        "SELECT TIMESTAMPDIFF(DAY, TIMESTAMP '2024-01-01 12:00:00', "
        "TIMESTAMP '2024-01-03 11:00:00')",
        [(1,)],  # whole days, as Calcite counts them (not 2 boundaries)
        id="timestampdiff-whole-units",
    ),
    pytest.param(
        "SELECT TO_DATE('2024/03/05', 'YYYY/MM/DD')", [(dt.date(2024, 3, 5),)], id="to-date"
    ),
    pytest.param(
        "SELECT 'ilike(a, b)' AS \"nvl(x, y)\"", [("ilike(a, b)",)], id="text-is-left-alone"
    ),
]


@pytest.mark.parametrize(("dremio_sql", "rows"), TRANSLATIONS)
def test_translated_sql_means_what_dremio_means(dremio_sql: str, rows: list[tuple]) -> None:
    assert duckdb.connect().sql(translate(dremio_sql)).fetchall() == rows


NAMES = [
    pytest.param("SELECT COUNT(*), id FROM t GROUP BY id", ["EXPR$0", "id"], id="aggregate"),
    pytest.param("SELECT id, SUM(qty) FROM t GROUP BY id", ["id", "EXPR$1"], id="position"),
    pytest.param(
        "SELECT SUM(id) AS total, qty + 1 FROM t GROUP BY qty", ["total", "EXPR$1"], id="alias"
    ),
    pytest.param("SELECT SUM(qty) total FROM t", ["total"], id="implicit-alias"),
    pytest.param('SELECT t.id, "qty" FROM t', ["id", "qty"], id="column-refs"),
    pytest.param("SELECT * FROM (SELECT COUNT(*) FROM t)", ["EXPR$0"], id="through-subquery"),
    pytest.param("SELECT NULL, TRUE", ["EXPR$0", "EXPR$1"], id="literals"),
    # After a * the positions are not the list's: DuckDB's own name stays (documented).
    pytest.param("SELECT *, 1 FROM t", ["id", "qty", "1"], id="star-left-alone"),
    pytest.param("SELECT * EXCLUDE (qty), 2 * 3 FROM t", ["id", "(2 * 3)"], id="star-exclude"),
    pytest.param("SELECT 2 * qty FROM t", ["EXPR$0"], id="a-product-is-no-star"),
]


@pytest.mark.parametrize(("sql", "names"), NAMES)
def test_unaliased_expressions_are_named_like_dremio(sql: str, names: list[str]) -> None:
    con = duckdb.connect()
    con.sql("CREATE TABLE t AS SELECT 1::BIGINT AS id, 2 AS qty")
    assert con.sql(name_expressions(sql)).columns == names


# -- results: names and types as Dremio returns them ---------------------------------------------


def test_aggregates_have_dremio_names_and_types(engine: SqlEngine) -> None:
    table = engine.execute(
        "SELECT COUNT(*), SUM(id), SUM(qty), MIN(day), MAX(stamp) FROM lake.raw.orders"
    )
    assert table.column_names == ["EXPR$0", "EXPR$1", "EXPR$2", "EXPR$3", "EXPR$4"]
    # SUM over BIGINT and INTEGER is BIGINT (DuckDB: HUGEINT, decimal128(38, 0) in Arrow);
    # DATE and TIMESTAMP are Dremio's millisecond vectors.
    assert table.schema.types == [
        pa.int64(),
        pa.int64(),
        pa.int64(),
        pa.date64(),
        pa.timestamp("ms"),
    ]
    expected = (
        duckdb.connect()
        .sql("SELECT COUNT(*), SUM(id), SUM(qty), MIN(day), MAX(stamp) FROM ORDERS")
        .fetchall()[0]
    )
    got = table.to_pylist()[0]
    assert list(got.values())[:4] == list(expected)[:4]
    assert got["EXPR$4"] == expected[4].replace(microsecond=123000)  # milliseconds kept


def test_every_field_is_nullable_and_small_ints_are_integer(engine: SqlEngine) -> None:
    table = engine.execute("SELECT 1::TINYINT AS a, 2::SMALLINT AS b, TIME '01:02:03.456' AS c")
    assert table.schema.types == [pa.int32(), pa.int32(), pa.time32("ms")]
    assert all(f.nullable for f in table.schema)


ERRORS = [
    pytest.param("SELECT * FROM lake.nope", "Object 'nope' not found within 'lake'", id="table"),
    pytest.param(
        "SELECT * FROM lake.raw.nope", "Object 'nope' not found within 'lake.raw'", id="deep"
    ),
    pytest.param("SELECT * FROM lake.gone.t", "Object 'gone' not found within 'lake'", id="folder"),
    pytest.param("SELECT * FROM nope", "Object 'nope' not found", id="bare"),
    pytest.param(
        "SELECT nope FROM lake.raw.orders", "Column 'nope' not found in any table", id="column"
    ),
    pytest.param(
        "SELECT o.nope FROM lake.raw.orders o",
        "Column 'nope' not found in table 'o'",
        id="qualified-column",
    ),
    pytest.param(
        "SELECT nope(1, 'x') FROM lake.raw.orders",
        "No match found for function signature nope(<NUMERIC>, <CHARACTER>)",
        id="function",
    ),
]


@pytest.mark.parametrize(("sql", "message"), ERRORS)
def test_errors_use_dremios_wording(engine: SqlEngine, sql: str, message: str) -> None:
    with pytest.raises(duckdb.Error) as caught:
        engine.execute(sql)
    assert str(caught.value) == message


# -- the mutable catalog --------------------------------------------------------------------------


def test_views_ctas_and_drops_change_the_catalog(engine: SqlEngine) -> None:
    view = 'CREATE OR REPLACE VIEW "lake"."dbt"."big" AS SELECT id, qty FROM lake.raw.orders'
    assert engine.execute(view + " WHERE qty > 5").to_pylist() == [
        {"ok": True, "summary": "View [lake.dbt.big] created successfully"}
    ]
    assert engine.execute("SELECT COUNT(*) AS n FROM lake.dbt.big").to_pylist() == [{"n": 3}]
    # A view runs when queried: it sees a table replaced after it was made.
    engine.add_table("lake.raw.orders", ORDERS.slice(0, 2))
    assert engine.execute("SELECT COUNT(*) AS n FROM lake.dbt.big").to_pylist() == [{"n": 1}]
    ctas = engine.execute("CREATE TABLE lake.dbt.copy AS (SELECT * FROM lake.dbt.big)")
    assert ctas.to_pylist() == [{"Fragment": "0_0", "Records": 1, "Path": "lake.dbt.copy"}]
    with pytest.raises(duckdb.Error, match=r"given name \[lake.dbt.copy\] already exists"):
        engine.execute("CREATE TABLE lake.dbt.copy AS SELECT 1")
    with pytest.raises(duckdb.Error, match=r"\[lake.dbt.copy\] is not a VIEW"):
        engine.execute("DROP VIEW lake.dbt.copy")
    engine.execute("DROP TABLE lake.dbt.copy")
    engine.execute("DROP VIEW IF EXISTS lake.dbt.big")
    with pytest.raises(duckdb.Error, match=r"Object 'big' not found within 'lake\.dbt'"):
        engine.execute("SELECT * FROM lake.dbt.big")


def test_information_schema_shows_views_and_empty_folders(engine: SqlEngine) -> None:
    engine.execute("CREATE VIEW lake.dbt.v AS SELECT id FROM lake.raw.orders")
    engine.execute("CREATE FOLDER lake.empty")
    tables = engine.execute(
        'SELECT table_schema, table_name, table_type FROM information_schema."tables" '
        "WHERE ilike(table_schema, 'lake.%') ORDER BY 2"
    )
    assert tables.to_pylist() == [
        {"TABLE_SCHEMA": "lake.raw", "TABLE_NAME": "orders", "TABLE_TYPE": "TABLE"},
        {"TABLE_SCHEMA": "lake.dbt", "TABLE_NAME": "v", "TABLE_TYPE": "VIEW"},
    ]
    schemata = engine.execute("SELECT schema_name FROM information_schema.schemata")
    assert {"lake", "lake.dbt", "lake.empty", "lake.raw"} <= set(schemata.column(0).to_pylist())


# -- catalog and login over HTTP ------------------------------------------------------------------


@pytest_asyncio.fixture
async def http() -> AsyncIterator[tuple[FakeDremio, aiohttp.ClientSession]]:
    async with FakeDremio() as fake:
        fake.add_table("lake.raw.orders", ORDERS)
        headers = {"Authorization": f"Bearer {fake.token}"}
        async with aiohttp.ClientSession(fake.url, headers=headers) as session:
            yield fake, session


async def _get(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(path) as resp:
        return resp.status, await resp.json()


@pytest.mark.asyncio
async def test_catalog_entities_by_id_carry_tag_created_at_and_name(http: Any) -> None:
    _, session = http
    _, root = await _get(session, "/api/v3/catalog")
    home, space = root["data"]
    assert (home["path"], home["containerType"]) == (["@dremio"], "HOME")
    status, entity = await _get(session, f"/api/v3/catalog/{space['id']}")
    assert status == 200
    assert entity["entityType"] == "space"
    assert entity["name"] == "lake"
    assert {"id", "path", "tag", "createdAt", "children"} <= set(entity)
    dt.datetime.fromisoformat(entity["createdAt"])  # an ISO-8601 instant
    folder_id = entity["children"][0]["id"]
    _, folder = await _get(session, f"/api/v3/catalog/{folder_id}")
    dataset_id = folder["children"][0]["id"]
    _, dataset = await _get(session, f"/api/v3/catalog/{dataset_id}")
    assert (dataset["entityType"], dataset["type"]) == ("dataset", "PHYSICAL_DATASET")
    assert [f["name"] for f in dataset["fields"]] == ORDERS.column_names
    status, _ = await _get(session, "/api/v3/catalog/00000000-0000-0000-0000-000000000000")
    assert status == 404


@pytest.mark.asyncio
async def test_folders_are_created_once_and_deleted_by_id(http: Any) -> None:
    _, session = http
    body = {"entityType": "folder", "path": ["lake", "dbt"]}
    async with session.post("/api/v3/catalog", json=body) as resp:
        assert resp.status == 200
        folder = await resp.json()
    assert (folder["entityType"], folder["path"], folder["children"]) == (
        "folder",
        ["lake", "dbt"],
        [],
    )
    async with session.post("/api/v3/catalog", json=body) as resp:
        assert resp.status == 409  # dbt-dremio reads this as "already exists"
    async with session.post("/api/v3/catalog", json={"entityType": "space", "name": "s2"}) as r:
        assert (r.status, (await r.json())["name"]) == (200, "s2")
    async with session.delete(f"/api/v3/catalog/{folder['id']}") as resp:
        assert resp.status == 204
    status, _ = await _get(session, "/api/v3/catalog/by-path/lake/dbt")
    assert status == 404


@pytest.mark.asyncio
async def test_a_tag_changes_when_the_entity_does(http: Any) -> None:
    fake, session = http
    _, before = await _get(session, "/api/v3/catalog/by-path/lake/raw/orders")
    fake.add_table("lake.raw.orders", ORDERS.select(["id"]))
    _, after = await _get(session, "/api/v3/catalog/by-path/lake/raw/orders")
    assert before["id"] == after["id"]
    assert before["tag"] != after["tag"]


@pytest.mark.asyncio
async def test_login_answers_dremios_session_object(http: Any) -> None:
    fake, session = http
    body = {"userName": fake.username, "password": fake.password}
    async with session.post("/apiv2/login", json=body) as resp:
        login = await resp.json()
    assert set(login) >= {
        "token",
        "userName",
        "firstName",
        "lastName",
        "expires",
        "email",
        "userId",
        "admin",
        "clusterId",
        "clusterCreatedAt",
        "version",
        "permissions",
        "userCreatedAt",
    }
    assert login["token"] in fake.issued_tokens
    # Login tokens live 30 hours on Dremio.
    lifetime_h = (login["expires"] - dt.datetime.now().timestamp() * 1000) / 3_600_000
    assert 29.9 < lifetime_h <= 30
    assert login["permissions"]["canUploadProfiles"] is True


DDL = [
    pytest.param(
        "CREATE TABLE IF NOT EXISTS lake.raw.orders AS SELECT 1",
        [{"ok": True, "summary": "Table [lake.raw.orders] already exists"}],
        id="ctas-if-not-exists",
    ),
    pytest.param(
        "CREATE FOLDER IF NOT EXISTS lake.raw",
        [{"ok": True, "summary": "Folder [lake.raw] created"}],
        id="folder-if-not-exists",
    ),
    pytest.param(
        "ALTER PDS lake.raw.orders REFRESH METADATA AUTO PROMOTION",
        [{"ok": True, "summary": "Metadata for table [lake.raw.orders] refreshed"}],
        id="alter-pds-refresh",
    ),
    pytest.param(
        "/* dbt */ DROP VIEW IF EXISTS lake.raw.none;",
        [{"ok": True, "summary": "View [lake.raw.none] does not exist"}],
        id="drop-if-exists-after-a-comment",
    ),
    pytest.param("CREATE FOLDER lake.raw", "Folder [lake.raw] already exists", id="folder-twice"),
    pytest.param("DROP TABLE lake.raw.none", "Table [lake.raw.none] not found", id="drop-missing"),
    pytest.param(
        "CREATE VIEW lake.raw.orders AS SELECT 1",
        "A table or view with given name [lake.raw.orders] already exists",
        id="view-over-a-table",
    ),
    pytest.param("CREATE TABLE AS SELECT 1", "A path is required", id="no-path"),
]


@pytest.mark.parametrize(("sql", "answer"), DDL)
def test_ddl_answers_and_refusals(engine: SqlEngine, sql: str, answer: Any) -> None:
    if isinstance(answer, list):
        assert engine.execute(sql).to_pylist() == answer
        return
    with pytest.raises(duckdb.CatalogException) as caught:
        engine.execute(sql)
    assert str(caught.value) == answer


def test_statements_that_are_not_ddl_run_as_queries(engine: SqlEngine) -> None:
    # "ALTER ... REFRESH REFLECTIONS" is not handled here: it reaches DuckDB, which refuses it,
    # so a test that expects maintenance SQL to succeed adds a canned answer for it.
    with pytest.raises(duckdb.Error):
        engine.execute("ALTER DATASET lake.raw.orders REFRESH REFLECTIONS")
    assert engine.execute("SELECT 'CREATE VIEW x AS y' AS s").to_pylist() == [
        {"s": "CREATE VIEW x AS y"}
    ]
