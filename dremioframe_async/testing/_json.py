"""Arrow results -> Dremio's REST JSON (schema objects and row objects).

Dremio writes timestamps as ``YYYY-MM-DD HH:MM:SS.mmm``, dates as ``YYYY-MM-DD``,
DECIMAL as JSON numbers with their exact digits, VARBINARY as base64, and
leaves null values out of the row object. Top-level temporal columns are
formatted once per result, vectorised; nested values go through ``default``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["dremio_schema", "dremio_type", "json_ready", "page_json"]

# json cannot write a Decimal as a number with its exact digits; it is written as a
# marked string first and the marks are removed from the encoded text.
_MARK = "\x00dec:"
_MARKED = re.compile(r'"\\u0000dec:([-0-9.Ee+]+)"')


def dremio_type(t: pa.DataType) -> dict[str, Any]:
    """The Dremio ``type`` object for an Arrow type."""
    if pa.types.is_decimal(t):
        return {"name": "DECIMAL", "precision": t.precision, "scale": t.scale}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {
            "name": "LIST",
            "subSchema": [{"name": "$data$", "type": dremio_type(t.value_type)}],
        }
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        return {"name": "STRUCT", "subSchema": [_column(f) for f in fields]}
    return {"name": _scalar_name(t)}


def _scalar_name(t: pa.DataType) -> str:
    checks = [
        (pa.types.is_boolean, "BOOLEAN"),
        (lambda x: pa.types.is_integer(x) and x.bit_width == 64, "BIGINT"),
        (pa.types.is_integer, "INTEGER"),
        (lambda x: x == pa.float32() or x == pa.float16(), "FLOAT"),
        (pa.types.is_floating, "DOUBLE"),
        (pa.types.is_timestamp, "TIMESTAMP"),
        (pa.types.is_date, "DATE"),
        (pa.types.is_time, "TIME"),
        (lambda x: pa.types.is_binary(x) or pa.types.is_large_binary(x), "VARBINARY"),
        (pa.types.is_map, "MAP"),
    ]
    return next((name for check, name in checks if check(t)), "VARCHAR")


def _column(f: pa.Field) -> dict[str, Any]:
    return {"name": f.name, "type": dremio_type(f.type)}


def dremio_schema(schema: pa.Schema) -> list[dict[str, Any]]:
    """The Dremio result ``schema`` list for an Arrow schema."""
    return [_column(f) for f in schema]


def json_ready(table: pa.Table) -> pa.Table:
    """Format top-level temporal and binary columns as Dremio's JSON strings (vectorised)."""
    columns = [_format_column(col) for col in table.columns]
    return pa.table(columns, names=table.column_names)


def _format_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_timestamp(t):
        naive = col.cast(pa.timestamp(t.unit)) if t.tz else col
        return pc.strftime(naive.cast(pa.timestamp("ms"), safe=False), format="%Y-%m-%d %H:%M:%S")
    if pa.types.is_date(t):
        return pc.strftime(col.cast(pa.date32()), format="%Y-%m-%d")
    if pa.types.is_time(t):
        return pc.strftime(col.cast(pa.time32("ms"), safe=False), format="%H:%M:%S")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        values = [None if v is None else base64.b64encode(v).decode() for v in col.to_pylist()]
        return pa.chunked_array([pa.array(values, pa.string())])
    return col


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _MARK + str(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def page_json(
    ready: pa.Table,
    schema: list[dict[str, Any]],
    offset: int,
    limit: int,
    nested: bool,
    row_count: int | None = None,
) -> str:
    """One results page as Dremio's JSON text; ``ready`` comes from :func:`json_ready`.

    ``row_count`` overrides the reported total (a fault knob).
    """
    page = ready.slice(offset, limit)
    total = ready.num_rows if row_count is None else row_count
    fast = None if nested else _rows_text(page)
    if fast is not None:
        head = json.dumps({"rowCount": total, "schema": schema}, separators=(",", ":"))
        return head[:-1] + ',"rows":' + fast + "}"
    rows = page.to_pylist()
    if nested:
        rows = [_drop_nulls(row) for row in rows]
    else:
        rows = [{k: v for k, v in row.items() if v is not None} for row in rows]
    body = {"rowCount": total, "schema": schema, "rows": rows}
    return _MARKED.sub(r"\1", json.dumps(body, default=_default, separators=(",", ":")))


# Compute functions convert Python strings to scalars on every call, inferring the type
# (about 0.15 ms each): typed scalars made once cost nothing.
_EMPTY, _COMMA, _QUOTE = pa.scalar(""), pa.scalar(","), pa.scalar('"')
_OPEN, _CLOSE, _TRUE, _FALSE = pa.scalar("{"), pa.scalar("}"), pa.scalar("true"), pa.scalar("false")


def _rows_text(page: pa.Table) -> str | None:
    """The page's ``rows`` array as JSON text, built column by column in Arrow.

    A Python object per value made the fake server, not the client, the
    bottleneck of REST benchmarks (about 8 ms per 500-row page against under
    1 ms). Nulls are left out of the row objects, as Dremio does. None when a
    column needs the general path (nested values, control characters, NaN).
    """
    fragments = []
    for name, column in zip(page.column_names, page.columns, strict=True):
        values = _json_values(column.combine_chunks())
        if values is None:
            return None
        key = pa.scalar(json.dumps(name) + ":", pa.string())
        # '"key":value,' or "" for a null: a row is its fragments, less the last comma.
        joined = pc.binary_join_element_wise(key, values, _COMMA, _EMPTY, null_handling="emit_null")
        fragments.append(pc.coalesce(joined, _EMPTY))
    if not fragments or page.num_rows == 0:
        return None
    # Not null_handling="skip": pyarrow 26 then drops a row whose inputs are all null.
    body = pc.utf8_rtrim(pc.binary_join_element_wise(*fragments, _EMPTY), characters=",")
    rows = pc.binary_join_element_wise(_OPEN, body, _CLOSE, _EMPTY)
    listed = pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), rows)
    return "[" + str(pc.binary_join(listed, _COMMA)[0].as_py()) + "]"


def _json_values(values: pa.Array) -> pa.Array | None:
    """Each value as JSON text (nulls stay null), or None if Arrow cannot write it exactly."""
    t = values.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if pc.utf8_is_printable(values).false_count:
            return None  # control characters need unicode escapes: the general path
        escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
        return pc.binary_join_element_wise(_QUOTE, escaped, _QUOTE, _EMPTY)
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return values.cast(pa.string())  # decimals keep their exact digits
    if pa.types.is_boolean(t):
        return pc.if_else(values, _TRUE, _FALSE)
    if pa.types.is_floating(t):
        if pc.is_finite(values).false_count:
            return None
        return values.cast(pa.string())
    return None
