"""Carrying out Dremio DDL (:mod:`._ddl`) on the engine's mutable catalog.

Results have Dremio's shapes: a view, a drop or a folder answers one row
``ok BOOLEAN, summary VARCHAR``; a CTAS answers ``Fragment, Records, Path``. A
failure raises DuckDB's ``CatalogException`` with Dremio's message, so it ends the
job FAILED like any other SQL error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from ._ddl import Statement

if TYPE_CHECKING:
    from ._sql import SqlEngine

__all__ = ["apply"]

Run = Callable[[str], pa.Table]


def _summary(text: str) -> pa.Table:
    return pa.table({"ok": pa.array([True]), "summary": pa.array([text])})


def _dotted(parts: tuple[str, ...]) -> str:
    return ".".join(parts)


def _fail(message: str) -> pa.Table:
    from ._sql import _duckdb

    raise _duckdb().CatalogException(message)


def _create_view(statement: Statement, engine: SqlEngine, run: Run) -> pa.Table:
    existing = engine.dataset(statement.path)
    name = _dotted(statement.path)
    if existing is not None and (existing[0] != "VIEW" or not statement.replace):
        return _fail(f"A table or view with given name [{name}] already exists")
    schema = run(statement.query).schema  # validates the query, as Dremio does
    engine.add_folder(statement.path[:-1])
    engine.add_view(statement.path, statement.query, schema)
    verb = "replaced" if existing is not None else "created"
    return _summary(f"View [{name}] {verb} successfully")


def _create_table(statement: Statement, engine: SqlEngine, run: Run) -> pa.Table:
    name = _dotted(statement.path)
    if engine.dataset(statement.path) is not None:
        if statement.if_exists:
            return _summary(f"Table [{name}] already exists")
        return _fail(f"A table or view with given name [{name}] already exists")
    table = run(statement.query)
    engine.add_folder(statement.path[:-1])
    engine.add_table(statement.path, table)
    return pa.table(
        {
            "Fragment": pa.array(["0_0"]),
            "Records": pa.array([table.num_rows], pa.int64()),
            "Path": pa.array([name]),
        }
    )


def _drop(statement: Statement, engine: SqlEngine) -> pa.Table:
    name = _dotted(statement.path)
    existing = engine.dataset(statement.path)
    noun = statement.kind.capitalize()
    if existing is None:
        if statement.if_exists:
            return _summary(f"{noun} [{name}] does not exist")
        return _fail(f"{noun} [{name}] not found")
    if existing[0] != statement.kind:
        return _fail(f"[{name}] is not a {statement.kind}")
    engine.drop(statement.path)
    return _summary(f"{noun} [{name}] dropped" if noun == "Table" else f"View [{name}] deleted")


def apply(statement: Statement, engine: SqlEngine, run: Run) -> pa.Table:
    """Carry out ``statement``; ``run`` executes its query (a view's or a CTAS's).

    :raises duckdb.CatalogException: the statement cannot be carried out (Dremio's message).
    """
    if not statement.path:
        return _fail("A path is required")
    if statement.action == "create_view":
        return _create_view(statement, engine, run)
    if statement.action == "create_table":
        return _create_table(statement, engine, run)
    if statement.action == "drop":
        return _drop(statement, engine)
    if statement.action == "create_folder":
        if engine.is_container(statement.path) and not statement.if_exists:
            return _fail(f"Folder [{_dotted(statement.path)}] already exists")
        engine.add_folder(statement.path)
        return _summary(f"Folder [{_dotted(statement.path)}] created")
    return _summary(f"Metadata for table [{_dotted(statement.path)}] refreshed")
