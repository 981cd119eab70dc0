"""FakeDremio's column-wise page encoder writes the same JSON as the general one."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from dremioframe_async.testing import sample_table
from dremioframe_async.testing._json import _rows_text, dremio_schema, json_ready, page_json

TRICKY = pa.table(
    {
        "text": ["plain", 'quote " inside', "back\\slash", "ünïcödé ✓", None, ""],
        "n": pa.array([1, -2, None, 2**62, 0, 7], pa.int64()),
        "small": pa.array([1, None, 3, 4, 5, 6], pa.int16()),
        "amount": pa.array(
            [Decimal("1.50"), Decimal("-0.01"), None, Decimal("12345678.91"), Decimal(0), None],
            pa.decimal128(12, 2),
        ),
        "ratio": [0.1, 1e20, None, -2.5, 3.0, 1e-7],
        "flag": [True, False, None, True, False, True],
    }
)


def both(table: pa.Table, offset: int = 0, limit: int = 500) -> tuple[Any, Any]:
    ready, schema = json_ready(table), dremio_schema(table.schema)
    fast = page_json(ready, schema, offset, limit, False)
    general = page_json(ready, schema, offset, limit, True)  # the per-value path
    return json.loads(fast, parse_float=Decimal), json.loads(general, parse_float=Decimal)


@pytest.mark.parametrize(
    ("table", "offset"),
    [
        pytest.param(TRICKY, 0, id="quotes-unicode-nulls-numbers"),
        pytest.param(sample_table(2_000), 1_000, id="sample-page"),
        pytest.param(sample_table(10), 8, id="last-short-page"),
        pytest.param(
            pa.table({"a": pa.array([None, 1], pa.int64()), "b": pa.array([None, "x"])}),
            0,
            id="a-row-of-nulls",
        ),
    ],
)
def test_the_fast_page_equals_the_general_one(table: pa.Table, offset: int) -> None:
    fast, general = both(table, offset)
    assert fast == general
    assert _rows_text(json_ready(table).slice(offset, 500)) is not None  # the fast path ran


@pytest.mark.parametrize(
    "table",
    [
        pytest.param(pa.table({"t": ["line\nbreak", "tab\there"]}), id="control-characters"),
        pytest.param(pa.table({"x": [float("nan"), 1.0]}), id="nan"),
        pytest.param(pa.table({"l": [[1, 2], None]}), id="nested"),
    ],
)
def test_what_arrow_cannot_write_exactly_takes_the_general_path(table: pa.Table) -> None:
    assert _rows_text(json_ready(table)) is None
    fast, general = both(table)
    assert fast["rows"] == general["rows"]


def test_an_empty_page_has_no_rows() -> None:
    fast, general = both(sample_table(3), offset=3)
    assert fast == general
    assert fast["rows"] == []
