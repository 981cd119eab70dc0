"""Generated sample tables for tests, demos and benchmarks (no randomness: reproducible)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["sample_table"]

_EPOCH_MS = (dt.datetime(2024, 1, 1, 12) - dt.datetime(1970, 1, 1)) // dt.timedelta(milliseconds=1)


def sample_table(rows: int, *, offset: int = 0) -> pa.Table:
    """``rows`` rows: ``id`` (ordered), ``name`` (null every 5th), ``amount`` (DECIMAL(12,2),
    null every 7th) and ``at`` (a millisecond timestamp), built with vectorised Arrow code.
    """
    # offset, offset + 1, ...: a running sum of ones (pa.array(range(...)) goes
    # through a Python int per row, several times slower).
    ones = pa.repeat(pa.scalar(1, pa.int64()), rows)
    ids = pc.add(pc.cumulative_sum(ones), pa.scalar(offset - 1, pa.int64()))
    names = pc.binary_join_element_wise("n", pc.cast(ids, pa.string()), "")
    names = pc.if_else(pc.equal(pc.remainder(ids, 5), 0), None, names)
    whole = pc.cast(ids, pa.decimal128(19, 0))
    cents = pc.divide(whole, pa.scalar(100, pa.decimal128(3, 0)))  # exact: decimal(23, 4)
    amounts = pc.cast(cents, pa.decimal128(12, 2))
    amounts = pc.if_else(pc.equal(pc.remainder(ids, 7), 0), None, amounts)
    at = pc.cast(pc.add(ids, _EPOCH_MS), pa.timestamp("ms"))
    return pa.table({"id": ids, "name": names, "amount": amounts, "at": at})
