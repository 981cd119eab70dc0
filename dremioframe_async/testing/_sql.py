"""FakeDremio's SQL engine: DuckDB over registered Arrow tables, addressed by Dremio paths.

Dremio names a table by a dotted path of any depth (``space.folder.sales``,
``"my space"."sales 2024"``); DuckDB does not. Each registered table gets a flat
internal name, and the SQL is rewritten so that every spelling of a registered
path (bare or double-quoted parts, any case for bare parts) refers to it.
Queries run in worker threads on a small pool of DuckDB connections; a
connection registers the tables it has not seen yet before running a query.

The catalog is mutable as Dremio's is (:mod:`._ddl`): views (kept as SQL and run
when queried, so they see the tables as they are then), CTAS tables and folders.
Queries pass through :mod:`._dialect` on the way in, and their results and errors
through :mod:`._results` on the way out, so names, types and messages are Dremio's.
INSERT, MERGE, UPDATE and DELETE change registered tables (:mod:`._dml`).
"""

from __future__ import annotations

import importlib
import queue
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ._ddl import Statement, parse_ddl
from ._dialect import translate
from ._dml import change, is_dml
from ._information_schema import Catalog, rewrite_information_schema
from ._mutations import apply
from ._results import dremio_arrow, dremio_error, name_expressions

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


def _part_pattern(part: str) -> str:
    quoted = '"' + re.escape(part.replace('"', '""')) + '"'
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", part):
        return f"(?:{quoted}|(?i:{re.escape(part)})(?![A-Za-z0-9_$]))"
    return quoted


def _path_regex(parts: tuple[str, ...]) -> re.Pattern[str]:
    body = r"\s*\.\s*".join(_part_pattern(p) for p in parts)
    # Not preceded by an identifier character, a dot or a quote: "x.sales" must not match "sales".
    return re.compile(rf'(?<![A-Za-z0-9_$."]){body}(?!\s*\.\s*[A-Za-z_"])')


_MAX_VIEW_DEPTH = 16


@dataclass(frozen=True, slots=True)
class _View:
    sql: str
    schema: pa.Schema


@dataclass(slots=True)
class _Connection:
    con: duckdb.DuckDBPyConnection
    registered: set[str] = field(default_factory=set)


class SqlEngine:
    """Registered tables plus a pool of DuckDB connections; ``execute`` is thread-safe."""

    def __init__(self, connections: int = 4) -> None:
        self._tables: dict[str, pa.Table] = {}
        self._views: dict[str, _View] = {}
        self._folders: dict[tuple[str, ...], tuple[str, ...]] = {}  # lower-cased -> as created
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

    @property
    def paths(self) -> list[tuple[str, ...]]:
        """The registered dataset paths (tables and views), longest first."""
        with self._lock:
            return [parts for parts, _, _ in self._paths]

    @property
    def folders(self) -> list[tuple[str, ...]]:
        """Folders created on their own (``CREATE FOLDER``, ``POST /catalog``)."""
        with self._lock:
            return list(self._folders.values())

    def _find(self, parts: tuple[str, ...]) -> str | None:
        wanted = tuple(p.lower() for p in parts)
        for registered, name, _ in self._paths:
            if tuple(p.lower() for p in registered) == wanted:
                return name
        return None

    def table(self, parts: tuple[str, ...]) -> pa.Table | None:
        """The table registered at ``parts`` (case-insensitive), if any (None for a view)."""
        with self._lock:
            name = self._find(parts)
            return self._tables.get(name) if name is not None else None

    def dataset(self, parts: tuple[str, ...]) -> tuple[str, pa.Schema] | None:
        """``("TABLE" | "VIEW", schema)`` of the dataset at ``parts`` (case-insensitive)."""
        with self._lock:
            name = self._find(parts)
            if name is None:
                return None
            if name in self._views:
                return "VIEW", self._views[name].schema
            return "TABLE", self._tables[name].schema

    def is_container(self, parts: tuple[str, ...]) -> bool:
        """True if a space or folder exists at ``parts`` (case-insensitive)."""
        wanted = tuple(p.lower() for p in parts)
        with self._lock:
            if wanted in self._folders or any(f[: len(wanted)] == wanted for f in self._folders):
                return True
            return any(
                len(p) > len(wanted) and tuple(x.lower() for x in p[: len(wanted)]) == wanted
                for p, _, _ in self._paths
            )

    def add_table(self, path: str | tuple[str, ...], table: pa.Table) -> None:
        """Register (or replace) ``table`` under the Dremio ``path`` (dotted, or its parts)."""
        self._register(path_parts(path) if isinstance(path, str) else path, table=table)

    def add_view(self, parts: tuple[str, ...], sql: str, schema: pa.Schema) -> None:
        """Register (or replace) a view: ``sql`` runs each time the view is queried."""
        self._register(parts, view=_View(sql, schema))

    def add_folder(self, parts: tuple[str, ...]) -> None:
        """Create a folder (and its parents) at ``parts``."""
        with self._lock:
            for i in range(1, len(parts) + 1):
                self._folders.setdefault(tuple(p.lower() for p in parts[:i]), parts[:i])

    def remove_folder(self, parts: tuple[str, ...]) -> bool:
        """Remove the folder at ``parts`` (not its datasets); False if there was none."""
        with self._lock:
            return self._folders.pop(tuple(p.lower() for p in parts), None) is not None

    def drop(self, parts: tuple[str, ...]) -> bool:
        """Remove the dataset at ``parts``; False if there was none."""
        with self._lock:
            name = self._find(parts)
            if name is None:
                return False
            self._paths = [entry for entry in self._paths if entry[1] != name]
            self._tables.pop(name, None)
            self._views.pop(name, None)
            return True

    def _register(
        self, parts: tuple[str, ...], table: pa.Table | None = None, view: _View | None = None
    ) -> None:
        with self._lock:
            name = f"__fake_dremio_{self._serial}"
            self._serial += 1
            if table is not None:
                self._tables[name] = table
            if view is not None:
                self._views[name] = view
            old = self._find(parts)
            if old is not None:  # a new internal name: connections re-register
                self._tables.pop(old, None)
                self._views.pop(old, None)
                self._paths = [
                    (p, name, regex) if n == old else (p, n, regex) for p, n, regex in self._paths
                ]
                return
            self._paths.append((parts, name, _path_regex(parts)))
            # Longest paths first, so "a.b.c" is rewritten before its prefix "a.b".
            self._paths.sort(key=lambda entry: -len(entry[0]))

    def rewrite(self, sql: str) -> tuple[str, list[str]]:
        """Replace registered paths in ``sql`` by internal names; return the names used."""
        sql, used, views = self._rewrite(sql)
        return sql, [*used, *views]

    def _rewrite(self, sql: str) -> tuple[str, dict[str, pa.Table], dict[str, _View]]:
        # The tables are taken with the names, under one lock: a replacement made
        # after the rewrite drops the old name, which the query still uses.
        used: dict[str, pa.Table] = {}
        views: dict[str, _View] = {}
        with self._lock:
            for _, name, regex in self._paths:
                sql, count = regex.subn(name, sql)
                if count and name in self._views:
                    views[name] = self._views[name]
                elif count:
                    used[name] = self._tables[name]
        return sql, used, views

    def snapshot(self) -> Catalog:
        """The datasets, views and folders as they are now."""
        with self._lock:
            tables = {
                parts: self._tables[name] if name in self._tables else self._views[name].schema
                for parts, name, _ in self._paths
            }
            views = frozenset(parts for parts, name, _ in self._paths if name in self._views)
            return Catalog(tables, views, frozenset(self._folders.values()))

    def execute(self, sql: str) -> pa.Table:
        """Run ``sql``, a query or DDL (blocking: call from a worker thread).

        :raises duckdb.Error: the SQL failed; the message is in Dremio's words.
        :raises InformationSchemaError: an ``INFORMATION_SCHEMA`` view that is not emulated.
        """
        return self._execute(sql, 0)

    def _execute(self, sql: str, depth: int) -> pa.Table:
        statement = parse_ddl(sql)
        try:
            if statement is not None:
                return self._ddl(statement, depth)
            if is_dml(sql):
                return change(self, sql, lambda query: self._execute(query, depth + 1))
            return self._query(sql, depth)
        except _duckdb().Error as exc:
            raise type(exc)(dremio_error(str(exc), sql, self.is_container)) from exc

    def _ddl(self, statement: Statement, depth: int) -> pa.Table:
        return apply(statement, self, lambda query: self._execute(query, depth + 1))

    def _query(self, sql: str, depth: int) -> pa.Table:
        if depth > _MAX_VIEW_DEPTH:
            raise _duckdb().InvalidInputException("Views nest too deeply (one refers to itself?)")
        translated, info = rewrite_information_schema(
            name_expressions(translate(sql)), self.snapshot()
        )
        rewritten, used, views = self._rewrite(translated)
        for name, view in views.items():  # run before taking a connection: views nest
            used[name] = self._execute(view.sql, depth + 1)
        conn = self._acquire()
        try:
            for name, table in used.items():
                if name not in conn.registered or name in views:
                    conn.con.register(name, table)
                    conn.registered.add(name)
            for name, view in info.items():  # built per query: the tables may have changed
                conn.con.register(name, view)
            # None for statements without a result (DuckDB's own DDL, SET ...).
            relation: Any = conn.con.sql(rewritten)
            if relation is None:
                return pa.table({})
            hugeint = [i for i, t in enumerate(relation.types) if str(t) == "HUGEINT"]
            table = relation.to_arrow_table()
        finally:
            self._idle.put(conn)
            self._capacity.release()
        return dremio_arrow(table, hugeint)

    def scratch(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own on the engine's database (the caller closes it)."""
        with self._lock:
            if self._db is None:
                self._db = _duckdb().connect()
            return self._db.cursor()

    def replace(self, name: str, table: pa.Table) -> None:
        """Register ``table`` at the path internal name ``name`` stands for, if still there.

        A path replaced meanwhile (``add_table``) keeps its newer table.
        """
        with self._lock:
            path = next((parts for parts, n, _ in self._paths if n == name), None)
        if path is not None:
            self.add_table(path, table)

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
            with self._lock:
                if self._db is None:
                    self._db = _duckdb().connect()
                db = self._db
            conn = _Connection(db.cursor())
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
