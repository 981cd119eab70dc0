"""FakeDremio's ``INFORMATION_SCHEMA``: ``TABLES``, ``COLUMNS`` and ``SCHEMATA``.

DuckDB has an ``information_schema`` of its own, which knows nothing of the
registered tables: a query against it would return no rows and no error. So
every reference to ``INFORMATION_SCHEMA.<view>`` (bare or quoted, any case, as
Dremio's identifiers are case-insensitive) is rewritten to a table built from
the registered paths, with Dremio's column names. A view Dremio has but this
emulation lacks raises an error (the job FAILS) rather than returning nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from ._json import dremio_type

__all__ = ["Catalog", "InformationSchemaError", "rewrite_information_schema"]

_CATALOG = "DREMIO"
_SCHEMA = "INFORMATION_SCHEMA"
_VIEWS = ("TABLES", "COLUMNS", "SCHEMATA")
_REFERENCE = re.compile(
    r'(?<![A-Za-z0-9_$."])(?:"information_schema"|information_schema)\s*\.\s*'
    r'(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*))',
    re.IGNORECASE,
)
_DATA_TYPES = {"VARCHAR": "CHARACTER VARYING", "VARBINARY": "BINARY VARYING"}


@dataclass(frozen=True, slots=True)
class Catalog:
    """What the views describe: datasets (a table or a view's schema), views, folders."""

    tables: Mapping[tuple[str, ...], pa.Table | pa.Schema]
    views: frozenset[tuple[str, ...]] = field(default_factory=frozenset)
    folders: frozenset[tuple[str, ...]] = field(default_factory=frozenset)


class InformationSchemaError(ValueError):
    """The SQL names an ``INFORMATION_SCHEMA`` view that FakeDremio does not emulate."""


def _schema_name(parts: tuple[str, ...]) -> str:
    return ".".join(parts)


def _tables(catalog: Catalog) -> pa.Table:
    rows = [
        (_schema_name(p[:-1]), p[-1], "VIEW" if p in catalog.views else "TABLE")
        for p in catalog.tables
    ]
    rows += [(_SCHEMA, view, "SYSTEM_TABLE") for view in _VIEWS]
    return pa.table(
        {
            "TABLE_CATALOG": [_CATALOG] * len(rows),
            "TABLE_SCHEMA": [r[0] for r in rows],
            "TABLE_NAME": [r[1] for r in rows],
            "TABLE_TYPE": [r[2] for r in rows],
        }
    )


def _columns(catalog: Catalog) -> pa.Table:
    out: dict[str, list[object]] = {
        name: []
        for name in (
            "TABLE_CATALOG",
            "TABLE_SCHEMA",
            "TABLE_NAME",
            "COLUMN_NAME",
            "ORDINAL_POSITION",
            "IS_NULLABLE",
            "DATA_TYPE",
            "NUMERIC_PRECISION",
            "NUMERIC_SCALE",
        )
    }
    for parts, table in catalog.tables.items():
        schema = table if isinstance(table, pa.Schema) else table.schema
        for position, f in enumerate(schema, start=1):
            kind = dremio_type(f.type)
            values = (
                _CATALOG,
                _schema_name(parts[:-1]),
                parts[-1],
                f.name,
                position,
                "YES" if f.nullable else "NO",
                _DATA_TYPES.get(kind["name"], kind["name"]),
                kind.get("precision"),
                kind.get("scale"),
            )
            for column, value in zip(out, values, strict=True):
                out[column].append(value)
    types = {"ORDINAL_POSITION": pa.int32(), "NUMERIC_PRECISION": pa.int32()}
    types["NUMERIC_SCALE"] = pa.int32()
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in out.items()})


def _schemata(catalog: Catalog) -> pa.Table:
    found = {_schema_name(p[:i]) for p in catalog.tables for i in range(1, len(p))}
    names = sorted(found | {_schema_name(f) for f in catalog.folders} | {_SCHEMA})
    return pa.table(
        {
            "CATALOG_NAME": [_CATALOG] * len(names),
            "SCHEMA_NAME": names,
            "SCHEMA_OWNER": ["<owner>"] * len(names),
            "TYPE": ["SIMPLE"] * len(names),
            "IS_MUTABLE": ["NO"] * len(names),
        }
    )


_BUILDERS: dict[str, Callable[[Catalog], pa.Table]] = {
    "TABLES": _tables,
    "COLUMNS": _columns,
    "SCHEMATA": _schemata,
}


def rewrite_information_schema(sql: str, catalog: Catalog) -> tuple[str, dict[str, pa.Table]]:
    """Replace ``INFORMATION_SCHEMA`` views in ``sql`` by internal names; return their tables.

    :raises InformationSchemaError: a view that is not emulated.
    """
    used: dict[str, pa.Table] = {}

    def replace(match: re.Match[str]) -> str:
        view = (match.group(1) or match.group(2)).replace('""', '"').upper()
        builder = _BUILDERS.get(view)
        if builder is None:
            known = ", ".join(f'INFORMATION_SCHEMA."{v}"' for v in _VIEWS)
            raise InformationSchemaError(
                f"Object '{view}' not found within 'INFORMATION_SCHEMA' "
                f"(FakeDremio emulates {known})"
            )
        name = f"__fake_dremio_information_schema_{view.lower()}"
        if name not in used:
            used[name] = builder(catalog)
        return name

    return _REFERENCE.sub(replace, sql), used
