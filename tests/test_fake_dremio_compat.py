"""Dremio clients written by others, pointed unchanged at FakeDremio.

Each client runs for real (``pip install 'dremioframe_async[compat]'``; dbt-dremio from
the dbt virtualenv CI builds) and its rows are compared with DuckDB's own answer to
the same query over the same Arrow table. ``COMPAT`` below is the table of what each
client does; ``docs/fake-dremio-compat.md`` shows it, and a test keeps the two equal.
A client that is not installed skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import anyio
import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import pytest_asyncio

from dremioframe_async.dremio import DremioClient
from dremioframe_async.testing import FakeDremio

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "fake-dremio-compat.md"
DBT = os.environ.get("DREMIOFRAME_ASYNC_TEST_DBT") or str(ROOT / ".venv-dbt" / "bin" / "dbt")

ORDERS = pa.table(
    {
        "id": pa.array(range(1, 9), pa.int64()),
        "city": ["Lyon", "Paris", "Lyon", "Nice", "Paris", "Paris", "Nice", "Lyon"],
        "qty": pa.array([3, 1, 4, 1, 5, 9, 2, 6], pa.int32()),
        "amount": [9.5, 1.25, 3.0, 7.75, 2.5, 8.0, 4.5, 6.25],
        "day": pa.array([dt.date(2024, 3, d) for d in range(1, 9)], pa.date32()),
    }
)
QUERY = (
    "SELECT city, COUNT(*), SUM(qty), MIN(id), MAX(day) FROM lake.raw.orders "
    "GROUP BY city ORDER BY city"
)
QUERY_NAMES = ["city", "EXPR$1", "EXPR$2", "EXPR$3", "EXPR$4"]

# What each client does in this suite: (client, authentication, what it does, test).
# docs/fake-dremio-compat.md shows this table; test_the_docs_table_is_this_suite keeps it so.
COMPAT = [
    (
        "adbc-driver-flightsql",
        "username + password (Flight handshake)",
        "`execute` (prepared statement), `fetch_arrow_table`, `fetchone`",
        "test_adbc_queries[password]",
    ),
    (
        "adbc-driver-flightsql",
        "username + PAT as the password",
        "`execute` (prepared statement), `fetch_arrow_table`, `fetchone`",
        "test_adbc_queries[pat-as-password]",
    ),
    (
        "adbc-driver-flightsql",
        "`authorization: Bearer <PAT>` header",
        "`execute` (prepared statement), `fetch_arrow_table`, `fetchone`",
        "test_adbc_queries[bearer-header]",
    ),
    (
        "adbc-driver-flightsql",
        "username + PAT as the password",
        "`adbc_get_objects`, `adbc_get_table_schema`, `adbc_get_table_types`, `adbc_get_info`",
        "test_adbc_metadata",
    ),
    (
        "dremio-simple-query",
        "PAT (`connect.DremioConnection`)",
        "`toArrow`",
        "test_dremio_simple_query[v1-pat]",
    ),
    (
        "dremio-simple-query",
        "`get_token` (`/apiv2/login`), then the token",
        "`toPandas`",
        "test_dremio_simple_query[v1-login-token]",
    ),
    (
        "dremio-simple-query",
        "PAT (`connectv2.DremioConnection`)",
        "`toPolars`",
        "test_dremio_simple_query[v2-pat]",
    ),
    (
        "dremio-simple-query",
        "username + password (Flight handshake, `connectv2`)",
        "`toArrow`",
        "test_dremio_simple_query[v2-password]",
    ),
    (
        "dremio-simple-query",
        "username + PAT as the password (`connectv2`)",
        "`toArrow`",
        "test_dremio_simple_query[v2-pat-as-password]",
    ),
    (
        "dremio-simple-query",
        "OAuth client credentials (`/oauth/token` at `base_url`, then the access token)",
        "`toArrow`",
        "test_dremio_simple_query[v2-client-credentials]",
    ),
    (
        "dremioframe",
        "`mode='v26'`, PAT (username read from the `@user` home space)",
        "`sql().collect`, the builder (`table().select().filter()`), "
        "`catalog.list_catalog`, `catalog.get_entity_by_id`",
        "test_dremioframe_v26_pat",
    ),
    (
        "dremioframe",
        "`mode='v25'`, username + password (`/apiv2/login`, Flight handshake)",
        "`sql().collect`",
        "test_dremioframe_v25_password",
    ),
    (
        "dbt-dremio",
        "username + password (REST)",
        "views in a space (`POST /catalog` makes it and its folders), tables in a source: "
        "`dbt run` (twice), `dbt test`",
        "test_dbt_dremio_run_and_test[space-and-source]",
    ),
    (
        "dbt-dremio",
        "username + password (REST)",
        "views and tables in one namespace: `dbt run` (twice), `dbt test`",
        "test_dbt_dremio_run_and_test[one-namespace]",
    ),
]


def need(module: str, install: str) -> Any:
    """Import ``module``; skip (fail under CI=true) when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed: {install}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


COMPAT_EXTRA = "pip install 'dremioframe_async[compat]'"


def duckdb_rows(sql: str) -> list[tuple[Any, ...]]:
    """DuckDB's own answer to ``sql`` over ``ORDERS``."""
    con = duckdb.connect()
    con.register("orders", ORDERS)
    return con.sql(sql.replace("lake.raw.orders", "orders")).fetchall()


def _day(value: Any) -> Any:
    # Dremio's DATE is Arrow date64, which polars and pandas turn into a datetime at
    # midnight (as they do against Dremio): compare the day.
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date()
    return value


def rows_of(table: pa.Table) -> list[tuple[Any, ...]]:
    return [tuple(_day(v) for v in row.values()) for row in table.to_pylist()]


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        server.add_table("lake.raw.orders", ORDERS)
        yield server


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking client off the loop that serves FakeDremio."""
    return await anyio.to_thread.run_sync(fn)


# -- the documentation's table ---------------------------------------------------------------


def _doc_rows() -> list[tuple[str, ...]]:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- compat-table -->\n(.*?)<!-- /compat-table -->", text, re.DOTALL)
    assert block is not None, "docs/fake-dremio-compat.md lost its compat table markers"
    lines = [line for line in block.group(1).splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return [tuple(c) for c in cells]


def test_the_docs_table_is_this_suite() -> None:
    assert _doc_rows() == [(c, a, d, f"`{t}`") for c, a, d, t in COMPAT]


def test_every_row_names_a_test_of_this_suite() -> None:
    ids = {
        "test_adbc_queries": ADBC_AUTH,
        "test_dremio_simple_query": DSQ_MODES,
        "test_dbt_dremio_run_and_test": list(DBT_LAYOUTS),
    }
    for *_, test in COMPAT:
        name, _, param = test.partition("[")
        assert callable(globals().get(name)), f"{name} is not a test here"
        assert not param or param.rstrip("]") in ids[name], f"{test} is not a test id here"


# -- Flight protocol details other clients depend on --------------------------------------------


def _basic(user: str, password: str) -> bytes:
    return base64.b64encode(f"{user}:{password}".encode()).rstrip(b"=")


@pytest.mark.asyncio
@pytest.mark.parametrize("secret", ["password", "token"])
async def test_unpadded_basic_auth_with_a_password_or_a_pat(fake: FakeDremio, secret: str) -> None:
    # Arrow's Go client (under ADBC) sends base64 without its '=' padding.
    password = getattr(fake, secret)
    # A username length that leaves "user:password" needing padding in base64.
    pad = next(n for n in range(3) if len(f"{fake.username}{'x' * n}:{password}") % 3)
    fake.username += "x" * pad
    header = _basic(fake.username, password)
    assert len(header) % 4  # really unpadded

    def call() -> list[Any]:
        client = flight.FlightClient(fake.flight_url)
        try:
            options = flight.FlightCallOptions(headers=[(b"authorization", b"Basic " + header)])
            return list(client.list_actions(options))
        finally:
            client.close()

    actions = await in_thread(call)
    assert "CreatePreparedStatement" in {a.type for a in actions}
    assert [c.status for c in fake.flight.calls if c.method == "handshake"] == ["ok"]


# -- ADBC Flight SQL ----------------------------------------------------------------------------

ADBC_AUTH = ["password", "pat-as-password", "bearer-header"]


def _adbc_kwargs(fake: FakeDremio, auth: str) -> dict[str, str]:
    if auth == "password":
        return {"username": fake.username, "password": fake.password}
    if auth == "pat-as-password":
        return {"username": fake.username, "password": fake.token}
    return {"adbc.flight.sql.authorization_header": f"Bearer {fake.token}"}


@pytest.mark.asyncio
@pytest.mark.parametrize("auth", ADBC_AUTH)
async def test_adbc_queries(fake: FakeDremio, auth: str) -> None:
    dbapi = need("adbc_driver_flightsql.dbapi", COMPAT_EXTRA)

    def run() -> tuple[pa.Table, Any, Any]:
        kwargs = _adbc_kwargs(fake, auth)
        connect = dbapi.connect(fake.flight_url, db_kwargs=kwargs, autocommit=True)
        with connect as conn, conn.cursor() as cur:
            cur.execute(QUERY)
            table = cur.fetch_arrow_table()
            cur.execute("SELECT COUNT(*) FROM lake.raw.orders WHERE qty > 2")
            one = cur.fetchone()
            cur.execute("SELECT qty FROM lake.raw.orders WHERE city = 'Nowhere'")
            none = cur.fetchone()
        return table, one, none

    table, one, none = await in_thread(run)
    assert table.column_names == QUERY_NAMES
    assert table.schema.field("EXPR$2").type == pa.int64()  # SUM over INTEGER: BIGINT
    assert table.schema.field("EXPR$4").type == pa.date64()  # Dremio's DATE vector
    assert rows_of(table) == duckdb_rows(QUERY)
    assert one == duckdb_rows("SELECT COUNT(*) FROM lake.raw.orders WHERE qty > 2")[0]
    assert none is None
    actions = [c.sql for c in fake.flight.calls if c.method == "do_action"]
    assert "CreatePreparedStatement" in actions  # ADBC prepares every statement


@pytest.mark.asyncio
async def test_adbc_metadata(fake: FakeDremio) -> None:
    dbapi = need("adbc_driver_flightsql.dbapi", COMPAT_EXTRA)

    def run() -> dict[str, Any]:
        kwargs = _adbc_kwargs(fake, "pat-as-password")
        with dbapi.connect(fake.flight_url, db_kwargs=kwargs, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE VIEW lake.dbt.big AS SELECT id, qty FROM lake.raw.orders")
            return {
                "objects": conn.adbc_get_objects().read_all().to_pylist(),
                "schema": conn.adbc_get_table_schema("orders", db_schema_filter="lake.raw"),
                "types": conn.adbc_get_table_types(),
                "info": conn.adbc_get_info(),
            }

    got = await in_thread(run)
    [catalog] = got["objects"]
    assert catalog["catalog_name"] == "DREMIO"
    tables = {
        (s["db_schema_name"], t["table_name"]): t
        for s in catalog["catalog_db_schemas"]
        for t in s["db_schema_tables"] or []
    }
    assert tables["lake.raw", "orders"]["table_type"] == "TABLE"
    assert tables["lake.dbt", "big"]["table_type"] == "VIEW"
    columns = [c["column_name"] for c in tables["lake.raw", "orders"]["table_columns"]]
    assert columns == ORDERS.column_names
    # The table's schema is what a query of it returns (Dremio's types: date64 for DATE).
    expected = pa.schema([pa.field(f.name, f.type) for f in ORDERS.schema])
    expected = expected.set(4, pa.field("day", pa.date64()))
    assert got["schema"] == expected
    assert got["types"] == ["SYSTEM_TABLE", "TABLE", "VIEW"]
    assert got["info"]["vendor_name"] == "Dremio"


# -- dremio-simple-query ------------------------------------------------------------------------

DSQ_MODES = [
    "v1-pat",
    "v1-login-token",
    "v2-pat",
    "v2-password",
    "v2-pat-as-password",
    "v2-client-credentials",
]


def _dsq_oauth(fake: FakeDremio, client_secret: str) -> Any:
    v2 = importlib.import_module("dremio_simple_query.connectv2")
    # Without base_url the client would ask http://<Flight host>:9047/oauth/token;
    # base_url is its documented way to name the REST server.
    return v2.DremioConnection(
        location=fake.flight_url,
        client_id=fake.oauth.client_id,
        client_secret=client_secret,
        base_url=fake.url,
    )


def _dsq_table(fake: FakeDremio, mode: str, sql: str) -> pa.Table:
    v1 = importlib.import_module("dremio_simple_query.connect")
    v2 = importlib.import_module("dremio_simple_query.connectv2")
    if mode == "v1-pat":
        return v1.DremioConnection(fake.token, fake.flight_url).toArrow(sql).read_all()
    if mode == "v1-login-token":
        login = {"userName": fake.username, "password": fake.password}
        token = v1.get_token(f"{fake.url}/apiv2/login", login)
        frame = v1.DremioConnection(token, fake.flight_url).toPandas(sql)
        return pa.Table.from_pandas(frame, preserve_index=False)
    if mode == "v2-client-credentials":
        return _dsq_oauth(fake, fake.oauth.client_secret).toArrow(sql).read_all()
    if mode == "v2-pat":
        frame = v2.DremioConnection(location=fake.flight_url, token=fake.token).toPolars(sql)
        return frame.to_arrow()
    password = fake.password if mode == "v2-password" else fake.token
    conn = v2.DremioConnection(location=fake.flight_url, username=fake.username, password=password)
    return conn.toArrow(sql).read_all()


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", DSQ_MODES)
async def test_dremio_simple_query(fake: FakeDremio, mode: str) -> None:
    need("dremio_simple_query.connectv2", COMPAT_EXTRA)
    table = await in_thread(lambda: _dsq_table(fake, mode, QUERY))
    assert table.column_names == QUERY_NAMES
    assert rows_of(table) == duckdb_rows(QUERY)
    if "pat" in mode:
        assert not [r for r in fake.requests if r.path == "/apiv2/login"]
    if mode == "v2-client-credentials":
        # It posts JSON first, which the token endpoint refuses (form-encoded only),
        # then the form; the Flight calls then carry the access token, no handshake.
        assert [r.status for r in fake.requests if r.path == "/oauth/token"] == [400, 200]
        assert len(fake.issued_tokens) == 1
        calls = fake.flight.calls
        assert {c.method for c in calls} == {"get_flight_info", "do_get"}
        assert {c.status for c in calls} == {"ok"}


@pytest.mark.asyncio
async def test_dremio_simple_query_oauth_with_a_wrong_secret_is_refused(fake: FakeDremio) -> None:
    need("dremio_simple_query.connectv2", COMPAT_EXTRA)
    with pytest.raises(ConnectionError, match="401"):
        await in_thread(lambda: _dsq_oauth(fake, fake.oauth.client_secret + "x"))
    assert [r.status for r in fake.requests if r.path == "/oauth/token"] == [400, 401]
    assert fake.issued_tokens == ()


# -- dremioframe --------------------------------------------------------------------------------


def _dremioframe(fake: FakeDremio, **auth: Any) -> Any:
    client_module = need("dremioframe.client", COMPAT_EXTRA)
    rest, port = urlparse(fake.url), urlparse(fake.flight_url).port
    return client_module.DremioClient(
        hostname=rest.hostname,
        port=rest.port,
        flight_port=port,
        tls=False,
        base_url=f"{fake.url}/api/v3",
        **auth,
    )


@pytest.mark.asyncio
async def test_dremioframe_v26_pat(fake: FakeDremio) -> None:
    # Built in a thread as well: a client may call the server as it starts.
    client = await in_thread(lambda: _dremioframe(fake, pat=fake.token, mode="v26"))

    def run() -> tuple[Any, Any, Any, Any, Any]:
        frame = client.sql(QUERY).collect("polars")
        built = client.table("lake.raw.orders").select("id", "qty").filter("qty > 4")
        catalog = client.catalog.list_catalog()
        space = client.catalog.get_entity_by_id(catalog[1]["id"])
        return client.username, frame, built.collect("pandas"), catalog, space

    username, frame, built, catalog, space = await in_thread(run)
    # As against Dremio: the username comes from the home space, then the PAT is
    # the Flight basic-auth password.
    assert username == fake.username
    handshakes = [c for c in fake.flight.calls if c.method == "handshake"]
    assert handshakes
    assert {c.status for c in handshakes} == {"ok"}
    assert frame.columns == QUERY_NAMES
    assert rows_of(frame.to_arrow()) == duckdb_rows(QUERY)
    expected = duckdb_rows("SELECT id, qty FROM lake.raw.orders WHERE qty > 4")
    assert [tuple(r) for r in built.itertuples(index=False)] == expected
    assert [e["path"] for e in catalog] == [["@dremio"], ["lake"]]
    assert (space["entityType"], space["name"]) == ("space", "lake")  # GET /catalog/{id}


@pytest.mark.asyncio
async def test_dremioframe_v25_password(fake: FakeDremio) -> None:
    client = await in_thread(
        lambda: _dremioframe(fake, username=fake.username, password=fake.password, mode="v25")
    )
    frame = await in_thread(lambda: client.sql(QUERY).collect("polars"))
    assert rows_of(frame.to_arrow()) == duckdb_rows(QUERY)
    assert [r.status for r in fake.requests if r.path == "/apiv2/login"] == [200]


# -- dbt-dremio ---------------------------------------------------------------------------------

DBT_HINT = (
    "needs dbt-dremio: python3 -m venv .venv-dbt && .venv-dbt/bin/pip install "
    "'dbt-core>=1.8,<1.12' dbt-duckdb dbt-dremio (or set DREMIOFRAME_ASYNC_TEST_DBT)"
)
DBT_VIEW = "select id, city, qty from {{ source('raw', 'orders') }} where qty > 1"
DBT_TABLE = (
    "{{ config(materialized='table') }}\n"
    "select city, count(*) as n, sum(qty) as qty_sum from {{ ref('orders_view') }} group by city"
)
DBT_SCHEMA = """
version: 2
sources:
  - name: raw
    database: lake
    schema: raw
    tables: [{name: orders}]
models:
  - name: orders_view
    columns: [{name: id, tests: [unique, not_null]}]
  - name: orders_table
    columns: [{name: city, tests: [unique, not_null]}]
"""


# Where views go (a space and folders) and where CTAS tables go (a source and folders).
# With both the same, dbt-dremio creates no folder itself ("enterprise catalog" layout).
DBT_LAYOUTS = {
    "space-and-source": (("analytics", "marts.core"), ("lake", "dbt")),
    "one-namespace": (("lake", "dbt"), ("lake", "dbt")),
}


def _dbt_project(path: Path, fake: FakeDremio, layout: str) -> None:
    (path / "models").mkdir()
    (path / "dbt_project.yml").write_text(
        "name: shop\nversion: '1.0'\nprofile: shop\nmodels: {shop: {+materialized: view}}\n"
    )
    (space, folder), (source, source_path) = DBT_LAYOUTS[layout]
    output = {
        "type": "dremio",
        "software_host": "127.0.0.1",
        "port": urlparse(fake.url).port,
        "user": fake.username,
        "password": fake.password,
        "use_ssl": False,
        "object_storage_source": source,
        "object_storage_path": source_path,
        "dremio_space": space,
        "dremio_space_folder": folder,
        "threads": 1,
    }
    profile = {"shop": {"target": "dev", "outputs": {"dev": output}}}
    (path / "profiles.yml").write_text(json.dumps(profile))  # JSON is YAML
    (path / "models" / "orders_view.sql").write_text(DBT_VIEW)
    (path / "models" / "orders_table.sql").write_text(DBT_TABLE)
    (path / "models" / "schema.yml").write_text(DBT_SCHEMA)


async def _dbt(path: Path, command: str) -> dict[str, str]:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    argv = [DBT, command, "--project-dir", str(path), "--profiles-dir", str(path)]
    done = await anyio.run_process(argv, env=env, check=False)
    results = json.loads((path / "target" / "run_results.json").read_text())
    statuses = {r["unique_id"].split(".")[-1]: r["status"] for r in results["results"]}
    assert done.returncode == 0, (statuses, done.stdout.decode()[-3000:])
    return statuses


@pytest.mark.asyncio
@pytest.mark.timeout(300)  # dbt starts slowly (seconds) on a busy machine
@pytest.mark.parametrize("layout", list(DBT_LAYOUTS))
async def test_dbt_dremio_run_and_test(fake: FakeDremio, tmp_path: Path, layout: str) -> None:
    adapter = Path(DBT).parent.parent.glob("lib/*/site-packages/dbt/adapters/dremio")
    if not Path(DBT).exists() or not list(adapter):
        if os.environ.get("CI") == "true":
            pytest.fail(f"dbt-dremio missing at {DBT}: {DBT_HINT}")
        pytest.skip(DBT_HINT)
    _dbt_project(tmp_path, fake, layout)
    (space, folder), (source, source_path) = DBT_LAYOUTS[layout]
    views, tables = f"{space}.{folder}", f"{source}.{source_path}"
    assert await _dbt(tmp_path, "run") == {"orders_view": "success", "orders_table": "success"}
    # A second run replaces the view and drops and re-creates the table, as on Dremio.
    assert set((await _dbt(tmp_path, "run")).values()) == {"success"}
    tests = await _dbt(tmp_path, "test")
    assert len(tests) == 4
    assert set(tests.values()) == {"pass"}
    async with DremioClient(fake.url, token=fake.token) as client:
        table = await client.query(f"SELECT * FROM {tables}.orders_table ORDER BY city")
        view = await client.query(f"SELECT * FROM {views}.orders_view ORDER BY id")
    model = "SELECT city, count(*) AS n, sum(qty) AS qty_sum FROM lake.raw.orders"
    assert rows_of(table) == duckdb_rows(f"{model} WHERE qty > 1 GROUP BY city ORDER BY city")
    assert rows_of(view) == duckdb_rows(
        "SELECT id, city, qty FROM lake.raw.orders WHERE qty > 1 ORDER BY id"
    )
    created = [r.body for r in fake.requests_to("/catalog", "POST") if r.status == 200]
    if layout == "space-and-source":  # the space, then each folder, made once
        assert created == [
            {"entityType": "space", "name": "analytics"},
            {"entityType": "folder", "path": ["analytics", "marts"]},
            {"entityType": "folder", "path": ["analytics", "marts", "core"]},
        ]
