"""Pipeline state in the database stores: one row per (pipeline, key), JSON text values.

The engine hands a successful task's writes over on its SUCCESS event; the
fold turns them into :class:`StateRow` patches, which each store applies in the
same transaction as the task's row (see ``orchestration/_pstate.py``).
``set_state`` and ``delete_state`` write directly, for operators and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..orchestration import PipelineState
from ._codec import decode_json
from ._fold import StateRow
from ._model import StateEntry
from ._sql import Dialect

__all__ = ["StateSQL", "encode_state_value", "entry"]


encode_state_value = PipelineState.encode
"""``value`` as the JSON text a state row holds (raises ``StateValueError``)."""


def entry(row: Sequence[Any]) -> StateEntry:
    """A :class:`StateEntry` from ``(pipeline, key, value, updated, run_id, task)``."""
    pipeline, key, value, updated, run_id, task = row
    return StateEntry(pipeline, key, decode_json(value), updated, run_id, task)


class StateSQL:
    """The state statements of one dialect and table prefix."""

    def __init__(self, dialect: Dialect, prefix: str) -> None:
        def n(i: int) -> str:
            return f"${i}" if dialect == "postgres" else "?"

        table = f"{prefix}pipeline_state"
        self.upsert = (
            f"INSERT INTO {table} (pipeline, key, value, updated, run_id, task) "
            f"VALUES ({n(1)}, {n(2)}, {n(3)}, {n(4)}, {n(5)}, {n(6)}) "
            "ON CONFLICT (pipeline, key) DO UPDATE SET value = excluded.value, "
            "updated = excluded.updated, run_id = excluded.run_id, task = excluded.task"
        )
        self.delete = f"DELETE FROM {table} WHERE pipeline = {n(1)} AND key = {n(2)}"
        columns = "pipeline, key, value, updated, run_id, task"
        self.select_all = f"SELECT {columns} FROM {table} WHERE pipeline = {n(1)} ORDER BY key"
        self.select_one = f"SELECT {columns} FROM {table} WHERE pipeline = {n(1)} AND key = {n(2)}"

    def writes(self, rows: Sequence[StateRow]) -> list[tuple[str, tuple[Any, ...]]]:
        """Statements applying a batch's state rows, in order."""
        out: list[tuple[str, tuple[Any, ...]]] = []
        for r in rows:
            if r.value is None:
                out.append((self.delete, (r.pipeline, r.key)))
            else:
                out.append((self.upsert, (r.pipeline, r.key, r.value, r.updated, r.run_id, r.task)))
        return out
