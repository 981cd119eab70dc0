"""INSERT, MERGE, UPDATE and DELETE on FakeDremio's registered tables.

One statement at a time: the target table is copied into a DuckDB table,
changed there, and registered again in place of the old one (a new internal
name, so queries already running keep the table they started with). The
answer is one row, ``Records``: the number of rows changed, as Dremio reports
DML. Sources may be tables or views; the target must be a table.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from ._dialect import translate

if TYPE_CHECKING:
    from ._sql import SqlEngine

__all__ = ["change", "is_dml"]

_VERB = re.compile(r"\s*(?:INSERT|MERGE|UPDATE|DELETE)\b", re.I)
_TARGET = re.compile(
    r"\s*(?:INSERT\s+INTO|MERGE\s+INTO|UPDATE|DELETE\s+FROM)\s+(__fake_dremio_\d+)\b", re.I
)
_ONE_AT_A_TIME = threading.Lock()


def is_dml(sql: str) -> bool:
    """Whether ``sql`` is an INSERT, MERGE, UPDATE or DELETE."""
    return _VERB.match(sql) is not None


def change(engine: SqlEngine, sql: str, run: Callable[[str], pa.Table]) -> pa.Table:
    """Run ``sql`` (DML) on its target table; ``run`` runs a view's query (blocking).

    :raises ValueError: the target is not a registered table.
    """
    with _ONE_AT_A_TIME:
        rewritten, used, views = engine._rewrite(translate(sql))
        match = _TARGET.match(rewritten)
        if match is None or match[1] not in used:
            raise ValueError(
                "FakeDremio runs INSERT, MERGE, UPDATE and DELETE on a registered table only"
            )
        target = match[1]
        sources = {**used, **{name: run(view.sql) for name, view in views.items()}}
        con = engine.scratch()
        try:
            for name, table in sources.items():
                con.register(f"{name}_arrow" if name == target else name, table)
            con.execute(f"CREATE TEMP TABLE {target} AS SELECT * FROM {target}_arrow")
            changed = con.execute(rewritten).fetchall()
            new = con.sql(f"SELECT * FROM {target}").to_arrow_table()
        finally:
            con.close()
        engine.replace(target, new.cast(used[target].schema))
    count = changed[0][0] if changed else 0
    return pa.table({"Records": pa.array([count], pa.int64())})
