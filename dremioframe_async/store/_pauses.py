"""Paused schedules: a pipeline whose schedule is paused fires nothing, in every process.

A pause is a row in the store (``schedule_pauses``: the pipeline and when it was
paused), so it holds for every scheduler on the store at once: ``serve`` and
the UI, ``schedule_pipeline`` and the ``schedule`` command, on any host. A
scheduler reads the pauses before it claims each fire and skips the fire while
its pipeline is paused; runs already queued or running are left alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._sql import Dialect

__all__ = ["PauseSQL", "SchedulePauses"]


@runtime_checkable
class SchedulePauses(Protocol):
    """A store that keeps paused schedules (memory, SQLite and PostgreSQL all do)."""

    async def pause_schedule(self, pipeline: str, paused: bool = True) -> bool:
        """Pause (or with ``paused=False`` resume) ``pipeline``'s schedule, in every
        process on the store; whether that changed anything."""
        ...

    async def paused_schedules(self) -> dict[str, float]:
        """The paused pipelines, each with when it was paused (epoch seconds)."""
        ...


class PauseSQL:
    """The pause statements of one dialect and table prefix."""

    def __init__(self, dialect: Dialect, prefix: str) -> None:
        a, b = ("$1", "$2") if dialect == "postgres" else ("?", "?")
        table = f"{prefix}schedule_pauses"
        # The first pause's time is kept: pausing twice changes nothing.
        self.pause = (
            f"INSERT INTO {table} (pipeline, paused_at) VALUES ({a}, {b}) "
            "ON CONFLICT (pipeline) DO NOTHING"
        )
        self.resume = f"DELETE FROM {table} WHERE pipeline = {a}"
        self.select = f"SELECT pipeline, paused_at FROM {table}"
