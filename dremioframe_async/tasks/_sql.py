"""Dremio identifiers, literals and the maintenance statements built from them.

Every identifier part goes through :func:`quote_identifier`, every value through
:func:`string_literal`, so a table called ``sales"; DROP TABLE x; --`` stays one
quoted identifier. ``for_partitions`` predicates are SQL by nature and are
inserted as given: only pass trusted text there.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

from ..dremio import split_path
from ..errors import DremioFrameError

__all__ = [
    "SqlArgumentError",
    "expire_snapshots_sql",
    "optimize_sql",
    "quote_identifier",
    "quote_path",
    "refresh_reflections_sql",
    "remove_orphan_files_sql",
    "rollback_sql",
    "string_literal",
]


class SqlArgumentError(DremioFrameError, ValueError):
    """A SQL builder got an argument it cannot turn into a valid statement."""


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words Dremio's parser reserves that are likely as table or folder names; quoted to be safe.
_RESERVED = frozenset(
    [
        "ALL",
        "ALTER",
        "AND",
        "AS",
        "BETWEEN",
        "BY",
        "CASE",
        "CAST",
        "CREATE",
        "CURRENT",
        "DATE",
        "DEFAULT",
        "DELETE",
        "DROP",
        "END",
        "EXISTS",
        "FALSE",
        "FETCH",
        "FILTER",
        "FOR",
        "FROM",
        "FULL",
        "FUNCTION",
        "GROUP",
        "HAVING",
        "IN",
        "INNER",
        "INSERT",
        "INTERVAL",
        "INTO",
        "IS",
        "JOIN",
        "LEFT",
        "LIKE",
        "LIMIT",
        "MERGE",
        "NOT",
        "NULL",
        "OF",
        "OFFSET",
        "ON",
        "OR",
        "ORDER",
        "OUTER",
        "PARTITION",
        "RANGE",
        "RIGHT",
        "ROW",
        "ROWS",
        "SELECT",
        "SET",
        "TABLE",
        "THEN",
        "TIME",
        "TIMESTAMP",
        "TO",
        "TRUE",
        "UNION",
        "UPDATE",
        "USER",
        "USING",
        "VALUE",
        "VALUES",
        "WHEN",
        "WHERE",
        "WINDOW",
        "WITH",
        "YEAR",
    ]
)
_OPTIMIZE_OPTIONS = (
    "TARGET_FILE_SIZE_MB",
    "MIN_FILE_SIZE_MB",
    "MAX_FILE_SIZE_MB",
    "MIN_INPUT_FILES",
)


def quote_identifier(part: str) -> str:
    """One identifier part: bare if plain and not reserved, else double-quoted.

    :raises SqlArgumentError: an empty part.
    """
    if not part:
        raise SqlArgumentError("an identifier part cannot be empty")
    if _PLAIN.fullmatch(part) and part.upper() not in _RESERVED:
        return part
    return '"' + part.replace('"', '""') + '"'


def quote_path(path: str | Sequence[str]) -> str:
    """A dataset path: a dotted string (quoted parts honoured) or a sequence of raw parts.

    :raises SqlArgumentError: an empty path or part.
    """
    parts = split_path(path) if isinstance(path, str) else list(path)
    if not parts:
        raise SqlArgumentError("a dataset path needs at least one part")
    return ".".join(quote_identifier(p) for p in parts)


def string_literal(value: str | dt.datetime | dt.date) -> str:
    """A SQL string literal; datetimes as Dremio's ``YYYY-MM-DD HH:MM:SS.mmm``."""
    if isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    elif isinstance(value, dt.date):
        text = value.isoformat()
    else:
        text = value
    return "'" + text.replace("'", "''") + "'"


def refresh_reflections_sql(dataset: str | Sequence[str]) -> str:
    """``ALTER DATASET <path> REFRESH REFLECTIONS``."""
    return f"ALTER DATASET {quote_path(dataset)} REFRESH REFLECTIONS"


def optimize_sql(
    table: str | Sequence[str],
    *,
    rewrite_data: bool = True,
    options: Mapping[str, int] | None = None,
    for_partitions: str | None = None,
    rewrite_manifests: bool = False,
) -> str:
    """``OPTIMIZE TABLE <path> [REWRITE DATA USING BIN_PACK [(opts)] [FOR PARTITIONS p]]
    [REWRITE MANIFESTS]``.

    :raises SqlArgumentError: an unknown option, a non-integer value, or nothing to rewrite.
    """
    parts = [f"OPTIMIZE TABLE {quote_path(table)}"]
    if rewrite_data:
        parts.append("REWRITE DATA USING BIN_PACK")
        if options:
            parts.append(f"({_optimize_options(options)})")
        if for_partitions:
            parts.append(f"FOR PARTITIONS {for_partitions}")
    elif options or for_partitions:
        raise SqlArgumentError("options and for_partitions apply to REWRITE DATA only")
    if rewrite_manifests:
        parts.append("REWRITE MANIFESTS")
    if not (rewrite_data or rewrite_manifests):
        raise SqlArgumentError("OPTIMIZE needs rewrite_data and/or rewrite_manifests")
    return " ".join(parts)


def _optimize_options(options: Mapping[str, int]) -> str:
    rendered = []
    for name, value in options.items():
        key = name.upper()
        if key not in _OPTIMIZE_OPTIONS:
            raise SqlArgumentError(
                f"unknown OPTIMIZE option {name!r}; valid: {', '.join(_OPTIMIZE_OPTIONS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SqlArgumentError(f"OPTIMIZE option {name} must be a non-negative integer")
        rendered.append(f"{key}={value}")
    return ", ".join(rendered)


def expire_snapshots_sql(
    table: str | Sequence[str],
    *,
    older_than: str | dt.datetime | None = None,
    retain_last: int | None = None,
) -> str:
    """``VACUUM TABLE <path> EXPIRE SNAPSHOTS [older_than = '<ts>'] [retain_last = <n>]``.

    :raises SqlArgumentError: ``retain_last`` is not a positive integer.
    """
    sql = f"VACUUM TABLE {quote_path(table)} EXPIRE SNAPSHOTS"
    if older_than is not None:
        sql += f" older_than = {string_literal(older_than)}"
    if retain_last is not None:
        if isinstance(retain_last, bool) or not isinstance(retain_last, int) or retain_last < 1:
            raise SqlArgumentError("retain_last must be a positive integer")
        sql += f" retain_last = {retain_last}"
    return sql


def remove_orphan_files_sql(
    table: str | Sequence[str],
    *,
    older_than: str | dt.datetime | None = None,
    location: str | None = None,
) -> str:
    """``VACUUM TABLE <path> REMOVE ORPHAN FILES [older_than = '<ts>'] [location = '<path>']``."""
    sql = f"VACUUM TABLE {quote_path(table)} REMOVE ORPHAN FILES"
    if older_than is not None:
        sql += f" older_than = {string_literal(older_than)}"
    if location is not None:
        sql += f" location = {string_literal(location)}"
    return sql


def rollback_sql(
    table: str | Sequence[str],
    *,
    snapshot_id: str | int | None = None,
    timestamp: str | dt.datetime | None = None,
) -> str:
    """``ROLLBACK TABLE <path> TO { SNAPSHOT '<id>' | TIMESTAMP '<ts>' }``.

    :raises SqlArgumentError: not exactly one of ``snapshot_id`` and ``timestamp``.
    """
    if (snapshot_id is None) == (timestamp is None):
        raise SqlArgumentError("give exactly one of snapshot_id and timestamp")
    if snapshot_id is not None:
        target = f"SNAPSHOT {string_literal(str(snapshot_id))}"
    else:
        assert timestamp is not None
        target = f"TIMESTAMP {string_literal(timestamp)}"
    return f"ROLLBACK TABLE {quote_path(table)} TO {target}"
