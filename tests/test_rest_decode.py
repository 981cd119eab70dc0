"""REST page decoding: Arrow's struct converter gives the same batch as the per-column path."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from dremioframe_async.dremio._types import (
    _column,
    _struct_batch,
    _wire_type,
    arrow_schema,
    rows_to_batch,
)
from dremioframe_async.testing import sample_table
from dremioframe_async.testing._json import dremio_schema, json_ready, page_json


def per_column(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    arrays = [_column([row.get(f.name) for row in rows], f.type) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def page(table: pa.Table) -> tuple[list[dict[str, Any]], pa.Schema]:
    body = json.loads(
        page_json(json_ready(table), dremio_schema(table.schema), 0, 500, False),
        parse_float=Decimal,
    )
    return body["rows"], arrow_schema(body["schema"])


def test_a_served_page_decodes_on_the_fast_path_to_the_same_batch() -> None:
    rows, schema = page(sample_table(500, offset=1_000))
    wire = _wire_type(schema)
    assert wire is not None  # ints, text, decimals, timestamps: all direct
    batch = _struct_batch(rows, schema, wire)  # no fallback taken
    assert batch.equals(per_column(rows, schema))
    expected = sample_table(500, offset=1_000).to_batches()[0]
    assert batch.equals(expected)


NESTED = pa.schema(
    [
        ("tags", pa.list_(pa.int64())),
        ("info", pa.struct([("at", pa.timestamp("ms")), ("day", pa.date32())])),
        ("flag", pa.bool_()),
        ("ratio", pa.float64()),
    ]
)


@pytest.mark.parametrize(
    ("schema", "rows", "fast"),
    [
        pytest.param(
            NESTED,
            [
                {
                    "tags": [1, None, 3],
                    "info": {"at": "2024-01-02 03:04:05.678", "day": "2024-02-29"},
                    "flag": True,
                    "ratio": 10,
                },
                {"tags": [], "info": {"at": None}},
                {},
            ],
            True,
            id="nested-and-absent-keys",
        ),
        pytest.param(
            pa.schema([("bin", pa.binary()), ("n", pa.int64())]),
            [{"bin": "aGVsbG8=", "n": 1}, {"n": 2}],
            False,
            id="base64-binary",
        ),
        pytest.param(
            pa.schema([("t", pa.time32("ms"))]),
            [{"t": "12:34:56.789"}, {}],
            False,
            id="time",
        ),
        pytest.param(
            pa.schema([("amount", pa.decimal128(12, 2)), ("ratio", pa.float64())]),
            [{"amount": Decimal("1.50"), "ratio": Decimal("0.25")}],
            False,
            id="floats-beside-decimals",
        ),
        pytest.param(
            pa.schema([("amount", pa.decimal128(12, 2))]),
            [{"amount": Decimal("1.239")}, {"amount": Decimal("2")}],
            True,
            id="decimal-off-scale-falls-back",
        ),
        pytest.param(
            pa.schema([("m", pa.string())]),
            [{"m": {"k": 1}}, {"m": "text"}, {"m": 5}],
            True,
            id="objects-in-a-text-column-fall-back",
        ),
    ],
)
def test_every_page_shape_matches_the_per_column_path(
    schema: pa.Schema, rows: list[dict[str, Any]], fast: bool
) -> None:
    assert (_wire_type(schema) is not None) is fast
    assert rows_to_batch(rows, schema).equals(per_column(rows, schema))


def test_timestamps_keep_their_milliseconds() -> None:
    schema = pa.schema([("at", pa.timestamp("ms"))])
    batch = rows_to_batch([{"at": "2013-02-10 20:00:00.123"}], schema)
    assert batch.column(0).to_pylist() == [dt.datetime(2013, 2, 10, 20, 0, 0, 123_000)]


def test_an_empty_page_keeps_its_schema() -> None:
    schema = pa.schema([("n", pa.int64()), ("at", pa.timestamp("ms"))])
    batch = rows_to_batch([], schema)
    assert (batch.num_rows, batch.schema) == (0, schema)
