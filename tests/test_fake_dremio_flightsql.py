"""Flight SQL on FakeDremio's Flight port, spoken with pyarrow's Flight client and raw protobuf.

These tests need no Flight SQL client library: the messages are built with the same
wire rules Arrow's ``FlightSql.proto`` defines (and read back the same way), so they
also pin the bytes FakeDremio answers with. The compatibility suite runs ADBC itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import pytest_asyncio

from dremioframe_async.testing import FakeDremio
from dremioframe_async.testing import _protobuf as pb
from dremioframe_async.testing._flightsql import FlightSql
from dremioframe_async.testing._sql import SqlEngine

ORDERS = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "city": ["Lyon", "Nice", "Lyon"]})


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        server.add_table("lake.raw.orders", ORDERS)
        yield server


def _command(message: str, *fields: tuple[int, int | bytes | str]) -> bytes:
    return pb.pack_any(message, pb.encode(fields))


class Client:
    """A blocking Flight client with the fake's PAT, for use in a worker thread."""

    def __init__(self, fake: FakeDremio) -> None:
        self.client = flight.FlightClient(fake.flight_url)
        headers = [(b"authorization", f"Bearer {fake.token}".encode())]
        self.options = flight.FlightCallOptions(headers=headers)

    def info(self, command: bytes) -> Any:
        return self.client.get_flight_info(
            flight.FlightDescriptor.for_command(command), self.options
        )

    def table(self, command: bytes) -> pa.Table:
        info = self.info(command)
        return self.client.do_get(info.endpoints[0].ticket, self.options).read_all()

    def action(self, kind: str, body: bytes) -> list[bytes]:
        results = self.client.do_action(flight.Action(kind, body), self.options)
        return [r.body.to_pybytes() for r in results]

    def close(self) -> None:
        self.client.close()


async def run(fake: FakeDremio, fn: Any) -> Any:
    def call() -> Any:
        client = Client(fake)
        try:
            return fn(client)
        finally:
            client.close()

    return await anyio.to_thread.run_sync(call)


@pytest.mark.asyncio
async def test_a_statement_query_gets_a_statement_ticket(fake: FakeDremio) -> None:
    sql = "SELECT city, COUNT(*) FROM lake.raw.orders GROUP BY city ORDER BY city"
    command = _command("CommandStatementQuery", (1, sql))

    def go(c: Client) -> tuple[bytes, pa.Table]:
        info = c.info(command)
        return info.endpoints[0].ticket.ticket, c.table(command)

    ticket, table = await run(fake, go)
    unpacked = pb.unpack_any(ticket)
    assert unpacked is not None
    assert unpacked[0] == "TicketStatementQuery"
    assert table.to_pylist() == [{"city": "Lyon", "EXPR$1": 2}, {"city": "Nice", "EXPR$1": 1}]
    assert [c.sql for c in fake.flight.calls if c.method == "get_flight_info"] == [sql, sql]


@pytest.mark.asyncio
async def test_plain_flight_sql_text_still_works(fake: FakeDremio) -> None:
    table = await run(fake, lambda c: c.table(b"SELECT COUNT(*) FROM lake.raw.orders"))
    assert table.to_pylist() == [{"EXPR$0": 3}]


@pytest.mark.asyncio
async def test_prepared_statements_run_until_closed(fake: FakeDremio) -> None:
    request = _command(
        "ActionCreatePreparedStatementRequest", (1, "SELECT id FROM lake.raw.orders")
    )

    def go(c: Client) -> tuple[pa.Table, Exception]:
        [body] = c.action("CreatePreparedStatement", request)
        unpacked = pb.unpack_any(body)
        assert unpacked is not None
        assert unpacked[0] == "ActionCreatePreparedStatementResult"
        handle = pb.raw(pb.decode(unpacked[1]) or {}, 1)
        query = _command("CommandPreparedStatementQuery", (1, handle))
        table = c.table(query)
        c.action(
            "ClosePreparedStatement", _command("ActionClosePreparedStatementRequest", (1, handle))
        )
        with pytest.raises(flight.FlightServerError) as closed:
            c.info(query)
        return table, closed.value

    table, closed = await run(fake, go)
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert "Unknown prepared statement" in str(closed)


@pytest.mark.asyncio
async def test_metadata_commands_answer_flight_sqls_schemas(fake: FakeDremio) -> None:
    def go(c: Client) -> dict[str, pa.Table]:
        return {
            "catalogs": c.table(_command("CommandGetCatalogs")),
            "schemas": c.table(_command("CommandGetDbSchemas", (2, "lake%"))),
            "tables": c.table(_command("CommandGetTables", (3, "ord_rs"), (5, 1))),
            "views": c.table(_command("CommandGetTables", (4, "VIEW"))),
            "types": c.table(_command("CommandGetTableTypes")),
        }

    got = await run(fake, go)
    assert got["catalogs"].schema == pa.schema([pa.field("catalog_name", pa.utf8(), False)])
    assert got["catalogs"].column(0).to_pylist() == ["DREMIO"]
    assert got["schemas"].column("db_schema_name").to_pylist() == ["lake", "lake.raw"]
    assert got["schemas"].schema.field("db_schema_name").nullable is False
    tables = got["tables"]
    assert tables.column_names == [
        "catalog_name",
        "db_schema_name",
        "table_name",
        "table_type",
        "table_schema",
    ]
    assert tables.drop_columns("table_schema").to_pylist() == [
        {
            "catalog_name": "DREMIO",
            "db_schema_name": "lake.raw",
            "table_name": "orders",
            "table_type": "TABLE",
        }
    ]
    schema = pa.ipc.read_schema(pa.py_buffer(tables.column("table_schema")[0].as_py()))
    assert schema.names == ["id", "city"]
    assert got["views"].num_rows == 0  # the table_types filter
    assert got["types"].column(0).to_pylist() == ["SYSTEM_TABLE", "TABLE", "VIEW"]


@pytest.mark.asyncio
async def test_sql_info_is_a_dense_union_keyed_by_info_name(fake: FakeDremio) -> None:
    # Repeated uint32 fields arrive packed (one length-delimited field), as proto3 sends them.
    packed = pb.encode([(1, b"\x00\x03\xf8\x03")])  # 0, 3, 504
    command = pb.pack_any("CommandGetSqlInfo", packed)
    table = await run(fake, lambda c: c.table(command))
    assert table.schema.field("info_name").type == pa.uint32()
    assert pa.types.is_union(table.schema.field("value").type)
    values = dict(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
    assert values == {0: "Dremio", 3: False, 504: '"'}


@pytest.mark.asyncio
async def test_get_schema_plans_a_query_but_never_runs_ddl(fake: FakeDremio) -> None:
    query = _command("CommandStatementQuery", (1, "SELECT id FROM lake.raw.orders"))
    ddl = _command("CommandStatementQuery", (1, "CREATE VIEW lake.v AS SELECT 1 AS one"))
    types = _command("CommandGetTableTypes")

    def go(c: Client) -> list[pa.Schema]:
        describe = flight.FlightDescriptor.for_command
        return [c.client.get_schema(describe(x), c.options).schema for x in (query, ddl, types)]

    schemas = await run(fake, go)
    assert [s.names for s in schemas] == [["id"], ["ok", "summary"], ["table_type"]]
    assert "lake.v" not in fake.tables  # the view was described, not made


@pytest.mark.asyncio
async def test_an_unknown_command_is_unimplemented(fake: FakeDremio) -> None:
    command = _command("CommandGetXdbcTypeInfo")
    with pytest.raises(pa.ArrowNotImplementedError, match="not supported"):  # UNIMPLEMENTED
        await run(fake, lambda c: c.info(command))


@pytest.mark.asyncio
async def test_a_statement_update_answers_its_row_count(fake: FakeDremio) -> None:
    sql = "CREATE TABLE lake.dbt.copy AS SELECT * FROM lake.raw.orders"
    descriptor = flight.FlightDescriptor.for_command(_command("CommandStatementUpdate", (1, sql)))

    def go(c: Client) -> bytes:
        writer, reader = c.client.do_put(descriptor, pa.schema([]), c.options)
        writer.done_writing()
        metadata = reader.read()
        writer.close()
        return metadata.to_pybytes()

    metadata = await run(fake, go)
    assert pb.decode(metadata) == {1: [3]}  # DoPutUpdateResult.record_count
    assert fake.tables[-1] == "lake.dbt.copy"


def test_protobuf_round_trip_and_malformed_bytes() -> None:
    message = pb.encode([(1, "héllo"), (2, b"\x00\xff"), (3, 300), (4, -1)])
    fields = pb.decode(message)
    assert fields is not None
    assert pb.text(fields, 1) == "héllo"
    assert pb.raw(fields, 2) == b"\x00\xff"
    assert fields[3] == [300]
    assert fields[4] == [2**64 - 1]  # a negative int64 is ten bytes of two's complement
    assert pb.decode(message[:-1]) is None  # truncated
    assert pb.unpack_any(b"SELECT 1") is None  # SQL text is not an Any
    assert pb.unpack_any(pb.encode([(1, "type.googleapis.com/other.Msg")])) is None


# -- the same answers in-process (gRPC's own threads are not traced by coverage) -----------------


@pytest.fixture
def sql() -> Any:
    engine = SqlEngine(1)
    engine.add_table("lake.raw.orders", ORDERS)
    engine.execute("CREATE VIEW lake.dbt.v AS SELECT id FROM lake.raw.orders")
    try:
        yield FlightSql(engine.snapshot)
    finally:
        engine.close()


def test_requests_in_process(sql: FlightSql) -> None:
    assert sql.request(b"SELECT 1") is None  # plain Flight: SQL text
    query = sql.request(_command("CommandStatementQuery", (1, "SELECT 2")))
    assert query is not None
    assert (query.command, query.sql, query.table) == ("CommandStatementQuery", "SELECT 2", None)
    tables = sql.request(_command("CommandGetTables", (1, "DREMIO"), (2, "lake._bt")))
    assert tables is not None
    assert tables.table is not None
    assert tables.table.column("table_type").to_pylist() == ["VIEW"]
    other = sql.request(_command("CommandGetDbSchemas", (1, "elsewhere")))
    assert other is not None
    assert other.table is not None
    assert other.table.num_rows == 0  # only the DREMIO catalog exists
    schema = sql.schema_of(_command("CommandGetTableTypes"))
    assert schema is not None
    assert schema.names == ["table_type"]
    assert sql.schema_of(_command("CommandStatementQuery", (1, "SELECT 1"))) is None
    with pytest.raises(NotImplementedError):
        sql.request(_command("CommandGetPrimaryKeys", (3, "orders")))


def test_prepared_handles_in_process(sql: FlightSql) -> None:
    body = sql.create_prepared(_command("ActionCreatePreparedStatementRequest", (1, "SELECT 3")))
    unpacked = pb.unpack_any(body)
    assert unpacked is not None
    handle = pb.raw(pb.decode(unpacked[1]) or {}, 1)
    ticket = FlightSql.ticket(handle)
    assert FlightSql.handle(ticket) == handle
    assert FlightSql.handle(b"raw-handle") == b"raw-handle"
    request = sql.request(_command("CommandPreparedStatementQuery", (1, handle)))
    assert request is not None
    assert request.sql == "SELECT 3"
    sql.close_prepared(_command("ActionClosePreparedStatementRequest", (1, handle)))
    with pytest.raises(flight.FlightServerError):
        sql.request(_command("CommandPreparedStatementQuery", (1, handle)))
    with pytest.raises(flight.FlightServerError):
        sql.create_prepared(b"not an Any")


def test_sql_info_in_process(sql: FlightSql) -> None:
    every = sql.request(_command("CommandGetSqlInfo"))
    assert every is not None
    assert every.table is not None
    assert every.table.column("info_name").to_pylist() == [0, 1, 2, 3, 4, 5, 8, 9, 504, 529, 531]
    some = sql.request(pb.pack_any("CommandGetSqlInfo", pb.encode([(1, 8), (1, 9999)])))
    assert some is not None
    assert some.table is not None
    assert some.table.to_pylist() == [{"info_name": 8, "value": 0}]  # unknown ids are left out
