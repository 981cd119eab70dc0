"""Sensors: tasks that wait, without blocking the loop, until a condition holds.

Each poke is awaited and followed by ``anyio.sleep(poke_interval)``; file checks
go through ``anyio.Path`` (a worker thread), SQL through the async client.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import pyarrow as pa

from ..errors import DremioFrameError
from ..orchestration import RunContext, Task
from ._dremio import (
    ClientSource,
    ClientTask,
    client_options,
    client_scope,
    dremio_retry_options,
)

__all__ = ["FileSensor", "SensorTimeout", "SqlSensor"]


class SensorTimeout(DremioFrameError, TimeoutError):
    """A sensor's condition did not hold within its ``timeout``."""

    def __init__(self, sensor: str, timeout: float, pokes: int) -> None:
        self.sensor, self.timeout, self.pokes = sensor, timeout, pokes
        super().__init__(f"sensor {sensor!r} gave up after {timeout:g} s ({pokes} pokes)")


async def _poke_until(
    name: str, poke: Callable[[], Awaitable[Any]], interval: float, limit: float | None
) -> Any:
    pokes = 0
    try:
        with anyio.fail_after(limit):
            while True:
                pokes += 1
                result = await poke()
                if result is not None:
                    return result
                await anyio.sleep(interval)
    except TimeoutError as exc:
        raise SensorTimeout(name, limit or 0.0, pokes) from exc


def _first_cell_truthy(table: pa.Table) -> bool:
    return table.num_rows > 0 and table.num_columns > 0 and bool(table.column(0)[0].as_py())


class SqlSensor(ClientTask):
    """Run ``sql`` every ``poke_interval`` seconds until ``success(table)`` holds.

    By default success means the first cell of the first row is truthy (as in
    Airflow's SqlSensor). The task returns the table that satisfied it. The
    client comes from ``client=`` as for :class:`DremioQueryTask`. With
    ``retries=`` only Dremio's transient faults are retried (not a
    :class:`SensorTimeout`, an auth or a SQL error) unless ``retry_on=`` is given.

    :raises SensorTimeout: ``timeout`` seconds passed first.
    """

    def __init__(
        self,
        name: str,
        sql: str,
        *,
        client: ClientSource = None,
        poke_interval: float = 5.0,
        timeout: float | None = None,
        success: Callable[[pa.Table], bool] = _first_cell_truthy,
        sql_context: Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        self.sql, self.client, self.success = sql, client, success
        self.poke_interval, self.sensor_timeout = poke_interval, timeout
        self.sql_context = list(sql_context) if sql_context else None
        # A sensor that timed out gave up on purpose: only Dremio's own faults are retried.
        options = client_options(self, client, dremio_retry_options(options, timeouts=False))
        super().__init__(name, self._execute, **options)

    async def _execute(self, context: RunContext) -> pa.Table:
        async with client_scope(self, context) as client:

            async def poke() -> pa.Table | None:
                table = await client.query(self.sql, self.sql_context)
                return table if self.success(table) else None

            return await _poke_until(self.name, poke, self.poke_interval, self.sensor_timeout)


class FileSensor(Task):
    """Wait until ``path`` exists; return it as a string.

    :raises SensorTimeout: ``timeout`` seconds passed first.
    """

    def __init__(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        poke_interval: float = 5.0,
        timeout: float | None = None,
        **options: Any,
    ) -> None:
        self.path = anyio.Path(path)
        self.poke_interval, self.sensor_timeout = poke_interval, timeout
        super().__init__(name, self._execute, **options)

    async def _execute(self) -> str:
        async def poke() -> str | None:
            # anyio.Path.exists runs os.stat in a worker thread: a slow disk never blocks the loop.
            return str(self.path) if await self.path.exists() else None

        result: str = await _poke_until(self.name, poke, self.poke_interval, self.sensor_timeout)
        return result
