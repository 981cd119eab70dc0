"""FakeDremio's SQL engine: DuckDB over registered Arrow tables, addressed by Dremio paths.

Dremio names a table by a dotted path of any depth (``space.folder.sales``,
``"my space"."sales 2024"``); DuckDB does not. Each registered table gets a flat
internal name, and the SQL is rewritten so that every spelling of a registered
path (bare or double-quoted parts, any case for bare parts) refers to it.
Queries run in worker threads on a small pool of DuckDB connections; a
connection registers the tables it has not seen yet before running a query.

INSERT, MERGE, UPDATE and DELETE run too, one at a time, on a registered
target table: it is copied into a DuckDB table, changed there, and registered
again in place of the old one. They answer one row with ``Records``, the
number of rows changed, as Dremio reports DML.
"""

from __future__ import annotations

import importlib
import queue
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..dremio import is_data_changing
from ._information_schema import rewrite_information_schema

if TYPE_CHECKING:
    import duckdb

__all__ = ["SqlEngine", "duckdb_missing", "path_parts"]


def _duckdb() -> Any:
    # Imported on first use, so that installing the package without the `testing`
    # extra never breaks an import (the pytest plugin loads in every session).
    try:
        return importlib.import_module("duckdb")
    except ImportError as exc:
        raise ImportError(
            "FakeDremio executes SQL with DuckDB: pip install 'dremioframe_async[testing]'"
        ) from exc


def duckdb_missing() -> str | None:
    """Why FakeDremio cannot run SQL here (DuckDB cannot be imported), or None."""
    try:
        _duckdb()
    except ImportError as exc:
        return str(exc)
    return None


def path_parts(path: str) -> tuple[str, ...]:
    """Split ``a."b.c".d`` into its parts (doubled quotes inside quotes are one quote)."""
    from ..dremio import split_path

    return tuple(split_path(path))


def _quoted(part: str) -> str:
    return '"' + part.replace('"', '""') + '"'


def _part_pattern(part: str) -> str:
    quoted = '"' + re.escape(part.replace('"', '""')) + '"'
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", part):
        return f"(?:{quoted}|(?i:{re.escape(part)})(?![A-Za-z0-9_$]))"
    return quoted


def _path_regex(parts: tuple[str, ...]) -> re.Pattern[str]:
    body = r"\s*\.\s*".join(_part_pattern(p) for p in parts)
    # Not preceded by an identifier character, a dot or a quote: "x.sales" must not match "sales".
    return re.compile(rf'(?<![A-Za-z0-9_$."]){body}(?!\s*\.\s*[A-Za-z_"])')


_DML_TARGET = re.compile(
    r"\s*(?:INSERT\s+INTO|MERGE\s+INTO|UPDATE|DELETE\s+FROM)\s+(__fake_dremio_\d+)\b", re.I
)


@dataclass(slots=True)
class _Connection:
    con: duckdb.DuckDBPyConnection
    registered: set[str] = field(default_factory=set)


class SqlEngine:
    """Registered tables plus a pool of DuckDB connections; ``execute`` is thread-safe."""

    def __init__(self, connections: int = 4) -> None:
        self._tables: dict[str, pa.Table] = {}
        self._paths: list[tuple[tuple[str, ...], str, re.Pattern[str]]] = []
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self._capacity = threading.Semaphore(connections)
        self._all: list[_Connection] = []
        self._serial = 0  # internal table names: one per registration, never reused
        # One in-memory database; the pool's connections are its cursors. Each
        # duckdb.connect() is a database of its own and costs 20-60 ms to open
        # (its own threads and catalog); a cursor costs nothing.
        self._db: duckdb.DuckDBPyConnection | None = None
        self._dml = threading.Lock()  # one data-changing statement at a time

    @property
    def paths(self) -> list[tuple[str, ...]]:
        """The registered table paths, in registration order."""
        with self._lock:
            return [parts for parts, _, _ in self._paths]

    def table(self, parts: tuple[str, ...]) -> pa.Table | None:
        """The table registered at ``parts`` (case-insensitive), if any."""
        wanted = tuple(p.lower() for p in parts)
        with self._lock:
            for registered, name, _ in self._paths:
                if tuple(p.lower() for p in registered) == wanted:
                    return self._tables[name]
        return None

    def add_table(self, path: str, table: pa.Table) -> None:
        """Register (or replace) ``table`` under the dotted Dremio ``path``."""
        parts = path_parts(path)
        with self._lock:
            name = f"__fake_dremio_{self._serial}"
            self._serial += 1
            for i, (registered, old, regex) in enumerate(self._paths):
                if registered == parts:
                    self._tables[name] = table  # new internal name: connections re-register
                    del self._tables[old]
                    self._paths[i] = (parts, name, regex)
                    return
            self._tables[name] = table
            self._paths.append((parts, name, _path_regex(parts)))
            # Longest paths first, so "a.b.c" is rewritten before its prefix "a.b".
            self._paths.sort(key=lambda entry: -len(entry[0]))

    def rewrite(self, sql: str) -> tuple[str, list[str]]:
        """Replace registered paths in ``sql`` by internal names; return the names used."""
        sql, used = self._rewrite(sql)
        return sql, list(used)

    def _rewrite(self, sql: str) -> tuple[str, dict[str, pa.Table]]:
        # The tables are taken with the names, under one lock: a replacement made
        # after the rewrite drops the old name, which the query still uses.
        used: dict[str, pa.Table] = {}
        with self._lock:
            for _, name, regex in self._paths:
                sql, count = regex.subn(name, sql)
                if count:
                    used[name] = self._tables[name]
        return sql, used

    def _registered(self) -> dict[tuple[str, ...], pa.Table]:
        with self._lock:
            return {parts: self._tables[name] for parts, name, _ in self._paths}

    def execute(self, sql: str) -> pa.Table:
        """Run ``sql`` (blocking: call from a worker thread).

        :raises duckdb.Error: the SQL failed.
        :raises InformationSchemaError: an ``INFORMATION_SCHEMA`` view that is not emulated.
        """
        if is_data_changing(sql):
            return self._change(sql)
        sql, views = rewrite_information_schema(sql, self._registered())
        rewritten, used = self._rewrite(sql)
        conn = self._acquire()
        try:
            for name, table in used.items():
                if name not in conn.registered:
                    conn.con.register(name, table)
                    conn.registered.add(name)
            for name, view in views.items():  # built per query: the tables may have changed
                conn.con.register(name, view)
            relation = conn.con.sql(rewritten)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        finally:
            self._idle.put(conn)
            self._capacity.release()

    def _change(self, sql: str) -> pa.Table:
        """Run INSERT/MERGE/UPDATE/DELETE on a registered table; ``Records`` changed."""
        with self._dml:
            rewritten, used = self._rewrite(sql)
            match = _DML_TARGET.match(rewritten)
            if match is None or match[1] not in used:
                raise ValueError(
                    "FakeDremio runs INSERT, MERGE, UPDATE and DELETE on a registered table only"
                )
            target = match[1]
            con = self._database().cursor()
            try:
                for name, table in used.items():
                    con.register(f"{name}_arrow" if name == target else name, table)
                con.execute(f"CREATE TEMP TABLE {target} AS SELECT * FROM {target}_arrow")
                changed = con.execute(rewritten).fetchall()
                new = con.sql(f"SELECT * FROM {target}").to_arrow_table()
            finally:
                con.close()
            self._replace(target, new.cast(used[target].schema))
        return pa.table({"Records": pa.array([changed[0][0] if changed else 0], pa.int64())})

    def _replace(self, name: str, table: pa.Table) -> None:
        with self._lock:
            path = next((parts for parts, n, _ in self._paths if n == name), None)
        if path is not None:  # replaced meanwhile by add_table: that one wins
            self.add_table(".".join(_quoted(p) for p in path), table)

    def _database(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._db is None:
                self._db = _duckdb().connect()
            return self._db

    def check(self) -> None:
        """Make sure DuckDB can be imported.

        :raises ImportError: it cannot, with the command that installs it.
        """
        _duckdb()

    def _acquire(self) -> _Connection:
        self._capacity.acquire()
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            conn = _Connection(self._database().cursor())
        except BaseException:
            # No connection was made: give the slot back, or every failure leaks one
            # and the engine hangs once all are gone.
            self._capacity.release()
            raise
        with self._lock:
            self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            conns, self._all = self._all, []
            db, self._db = self._db, None
        for conn in conns:
            conn.con.close()
        if db is not None:
            db.close()
