"""Flight SQL on FakeDremio's Flight port, as Dremio (v22+) serves it.

Flight SQL clients (ADBC's ``adbc-driver-flightsql``, the Flight SQL JDBC driver,
BI tools) do not send SQL text as the descriptor's command: they send a
``google.protobuf.Any`` holding a Flight SQL message (Arrow's ``FlightSql.proto``).
This module reads those messages and answers them with Flight SQL's result
schemas. Plain Flight (SQL text as the command, what Dremio's own samples and
``dremioframe`` send) keeps working beside it: a command that is not an ``Any`` of
a Flight SQL message is SQL text.

Catalog mapping, as Dremio's: one catalog ``DREMIO``; a schema is a dotted
container path (``lake.dbt``); table types are ``TABLE``, ``VIEW`` and
``SYSTEM_TABLE``.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.flight as flight

from . import _protobuf as pb
from ._information_schema import Catalog
from ._login import VERSION
from ._results import dremio_arrow_schema

__all__ = ["FlightSql", "SqlRequest"]

CATALOG = "DREMIO"
_QUERIES = ("CommandStatementQuery", "CommandPreparedStatementQuery")
_SYSTEM_VIEWS = ("COLUMNS", "SCHEMATA", "TABLES")

GET_CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
GET_DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)
_TABLES_FIELDS = [
    pa.field("catalog_name", pa.utf8()),
    pa.field("db_schema_name", pa.utf8()),
    pa.field("table_name", pa.utf8(), nullable=False),
    pa.field("table_type", pa.utf8(), nullable=False),
]
GET_TABLES_SCHEMA = pa.schema(_TABLES_FIELDS)
GET_TABLES_SCHEMA_WITH_SCHEMA = pa.schema(
    [*_TABLES_FIELDS, pa.field("table_schema", pa.binary(), nullable=False)]
)
GET_TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
_SQL_INFO_VALUE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.utf8())),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ],
    type_codes=[0, 1, 2, 3, 4, 5],
)
GET_SQL_INFO_SCHEMA = pa.schema(
    [
        pa.field("info_name", pa.uint32(), nullable=False),
        pa.field("value", _SQL_INFO_VALUE, nullable=False),
    ]
)

# SqlInfo ids (FlightSql.proto's enum SqlInfo) and what this server says about each.
_SQL_INFO: dict[int, str | bool | int] = {
    0: "Dremio",  # FLIGHT_SQL_SERVER_NAME
    1: VERSION,  # FLIGHT_SQL_SERVER_VERSION
    2: pa.__version__,  # FLIGHT_SQL_SERVER_ARROW_VERSION
    3: False,  # FLIGHT_SQL_SERVER_READ_ONLY
    4: True,  # FLIGHT_SQL_SERVER_SQL
    5: False,  # FLIGHT_SQL_SERVER_SUBSTRAIT
    8: 0,  # FLIGHT_SQL_SERVER_TRANSACTION: none
    9: False,  # FLIGHT_SQL_SERVER_CANCEL
    504: '"',  # SQL_IDENTIFIER_QUOTE_CHAR
    529: "schema",  # SQL_SCHEMA_TERM
    531: "catalog",  # SQL_CATALOG_TERM
}


@dataclass(frozen=True, slots=True)
class SqlRequest:
    """What a Flight SQL command asks for: SQL to run, or a metadata table already built."""

    command: str
    sql: str = ""
    table: pa.Table | None = None


def _like(pattern: str | None) -> re.Pattern[str] | None:
    """Flight SQL's filter patterns: ``%`` any run, ``_`` any one character."""
    if pattern is None:
        return None
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL)


def _matches(pattern: re.Pattern[str] | None, value: str) -> bool:
    return pattern is None or pattern.fullmatch(value) is not None


def _catalog_ok(fields: dict[int, list[int | bytes]]) -> bool:
    wanted = pb.text(fields, 1)
    return wanted is None or wanted == CATALOG


def _schemas(catalog: Catalog) -> list[str]:
    names = {".".join(p[:i]) for p in catalog.tables for i in range(1, len(p))}
    names |= {".".join(f) for f in catalog.folders}
    return sorted(names | {"INFORMATION_SCHEMA"})


def _tables(catalog: Catalog) -> list[tuple[str, str, str, pa.Schema]]:
    rows = []
    for parts, table in catalog.tables.items():
        schema = table if isinstance(table, pa.Schema) else table.schema
        kind = "VIEW" if parts in catalog.views else "TABLE"
        rows.append((".".join(parts[:-1]), parts[-1], kind, dremio_arrow_schema(schema)))
    rows += [("INFORMATION_SCHEMA", v, "SYSTEM_TABLE", pa.schema([])) for v in _SYSTEM_VIEWS]
    return sorted(rows, key=lambda r: (r[0], r[1], r[2]))


def _packed(values: Iterable[int | bytes]) -> list[int]:
    """A repeated uint32 field, whether sent packed (one bytes value) or not."""
    out: list[int] = []
    for value in values:
        if isinstance(value, int):
            out.append(value)
            continue
        pos = 0
        while pos < len(value):
            number, pos = pb.varint(value, pos)
            if pos < 0:
                break
            out.append(number)
    return out


def _sql_info_table(ids: list[int]) -> pa.Table:
    wanted = [i for i in (ids or sorted(_SQL_INFO)) if i in _SQL_INFO]
    children: list[list[object]] = [[], [], [], []]
    types, offsets = [], []
    for info in wanted:
        value = _SQL_INFO[info]
        code = 1 if isinstance(value, bool) else 3 if isinstance(value, int) else 0
        types.append(code)
        offsets.append(len(children[code]))
        children[code].append(value)
    arrays = [
        pa.array(children[0], pa.utf8()),
        pa.array(children[1], pa.bool_()),
        pa.array([], pa.int64()),
        pa.array(children[3], pa.int32()),
        pa.array([], pa.list_(pa.utf8())),
        pa.array([], pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ]
    value = pa.UnionArray.from_dense(
        pa.array(types, pa.int8()),
        pa.array(offsets, pa.int32()),
        arrays,
        [f.name for f in _SQL_INFO_VALUE],
        [0, 1, 2, 3, 4, 5],
    )
    return pa.Table.from_arrays([pa.array(wanted, pa.uint32()), value], schema=GET_SQL_INFO_SCHEMA)


class FlightSql:
    """Flight SQL commands and prepared statements over FakeDremio's catalog."""

    def __init__(self, catalog: Callable[[], Catalog]) -> None:
        self._catalog = catalog
        self._prepared: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def request(self, command: bytes) -> SqlRequest | None:
        """What ``command`` asks for (None: it is not Flight SQL, so it is SQL text).

        :raises NotImplementedError: a Flight SQL command this server does not serve
            (gRPC's UNIMPLEMENTED, as the Flight SQL spec asks).
        :raises pyarrow.flight.FlightServerError: an unknown prepared statement handle.
        """
        unpacked = pb.unpack_any(command)
        if unpacked is None:
            return None
        name, payload = unpacked
        fields = pb.decode(payload) or {}
        if name == "CommandStatementQuery":
            return SqlRequest(name, sql=pb.text(fields, 1) or "")
        if name == "CommandPreparedStatementQuery":
            return SqlRequest(name, sql=self._prepared_sql(pb.raw(fields, 1)))
        builder = getattr(self, "_" + name.removeprefix("Command"), None)
        if builder is None:
            raise NotImplementedError(f"Flight SQL command {name} is not supported")
        table: pa.Table = builder(fields)
        return SqlRequest(name, table=table)

    def schema_of(self, command: bytes) -> pa.Schema | None:
        """The result schema of a metadata command (GetSchema), None for anything else."""
        unpacked = pb.unpack_any(command)
        if unpacked is None or unpacked[0] in _QUERIES:
            return None
        request = self.request(command)
        return request.table.schema if request is not None and request.table is not None else None

    # -- prepared statements (DoAction) ---------------------------------------------------------

    def create_prepared(self, body: bytes) -> bytes:
        """``CreatePreparedStatement``: a handle for the query; its result wrapped in an Any.

        :raises pyarrow.flight.FlightServerError: the body is not the request message.

        The dataset schema is left empty: the query is planned when it is executed, as it
        runs only once then (Flight SQL allows an empty schema here).
        """
        unpacked = pb.unpack_any(body)
        fields = pb.decode(unpacked[1]) if unpacked else None
        if fields is None:
            raise flight.FlightServerError(
                "CreatePreparedStatement needs an ActionCreatePreparedStatementRequest"
            )
        handle = secrets.token_hex(16).encode()
        with self._lock:
            self._prepared[handle] = pb.text(fields, 1) or ""
        result = pb.encode([(1, handle)])
        return pb.pack_any("ActionCreatePreparedStatementResult", result)

    def close_prepared(self, body: bytes) -> None:
        """``ClosePreparedStatement``: forget the handle."""
        unpacked = pb.unpack_any(body)
        fields = (pb.decode(unpacked[1]) if unpacked else None) or {}
        with self._lock:
            self._prepared.pop(pb.raw(fields, 1), None)

    def _prepared_sql(self, handle: bytes) -> str:
        with self._lock:
            sql = self._prepared.get(handle)
        if sql is None:
            raise flight.FlightServerError("Unknown prepared statement (closed, or never made)")
        return sql

    # -- tickets ----------------------------------------------------------------------------------

    @staticmethod
    def ticket(handle: bytes) -> bytes:
        """A ``TicketStatementQuery`` holding ``handle``."""
        return pb.pack_any("TicketStatementQuery", pb.encode([(1, handle)]))

    @staticmethod
    def handle(ticket: bytes) -> bytes:
        """The handle in a ``TicketStatementQuery`` (the ticket itself if it is not one)."""
        unpacked = pb.unpack_any(ticket)
        if unpacked is None or unpacked[0] != "TicketStatementQuery":
            return ticket
        return pb.raw(pb.decode(unpacked[1]) or {}, 1)

    # -- metadata commands (one method per Flight SQL message, named after it) ------------------

    def _GetSqlInfo(self, fields: dict[int, list[int | bytes]]) -> pa.Table:
        return _sql_info_table(_packed(fields.get(1, [])))

    def _GetCatalogs(self, fields: dict[int, list[int | bytes]]) -> pa.Table:
        return pa.Table.from_pylist([{"catalog_name": CATALOG}], schema=GET_CATALOGS_SCHEMA)

    def _GetDbSchemas(self, fields: dict[int, list[int | bytes]]) -> pa.Table:
        pattern = _like(pb.text(fields, 2))
        names = [n for n in _schemas(self._catalog()) if _matches(pattern, n)]
        names = names if _catalog_ok(fields) else []
        rows = [{"catalog_name": CATALOG, "db_schema_name": n} for n in names]
        return pa.Table.from_pylist(rows, schema=GET_DB_SCHEMAS_SCHEMA)

    def _GetTables(self, fields: dict[int, list[int | bytes]]) -> pa.Table:
        schema_pattern, table_pattern = _like(pb.text(fields, 2)), _like(pb.text(fields, 3))
        kinds = {v.decode() for v in fields.get(4, []) if isinstance(v, bytes)}
        include = bool(fields.get(5, [0])[-1])
        rows = []
        for schema_name, name, kind, schema in _tables(self._catalog()):
            if not (_matches(schema_pattern, schema_name) and _matches(table_pattern, name)):
                continue
            if (kinds and kind not in kinds) or not _catalog_ok(fields):
                continue
            row: dict[str, object] = {"catalog_name": CATALOG, "db_schema_name": schema_name}
            row |= {"table_name": name, "table_type": kind}
            if include:
                row["table_schema"] = schema.serialize().to_pybytes()
            rows.append(row)
        target = GET_TABLES_SCHEMA_WITH_SCHEMA if include else GET_TABLES_SCHEMA
        return pa.Table.from_pylist(rows, schema=target)

    def _GetTableTypes(self, fields: dict[int, list[int | bytes]]) -> pa.Table:
        rows = [{"table_type": t} for t in ("SYSTEM_TABLE", "TABLE", "VIEW")]
        return pa.Table.from_pylist(rows, schema=GET_TABLE_TYPES_SCHEMA)
