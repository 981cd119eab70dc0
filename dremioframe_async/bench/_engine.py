"""``bench engine``: the engine's overhead shapes beside raw anyio, asyncio.gather and aiodag."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from ..orchestration import Pipeline
from ._results import Machine
from .shapes import (
    Shape,
    aiodag_available,
    aiodag_once,
    build_pipeline,
    gather_once,
    raw_anyio_once,
)

__all__ = ["EngineReport", "EngineRow", "measure_engine"]

FORMAT = "dremioframe_async.bench.engine/1"
BASELINES = ("raw-anyio", "gather")


@dataclass(frozen=True, slots=True)
class EngineRow:
    """One implementation of one shape: its repetition times (seconds, monotonic clock).

    ``impl`` is ``engine`` (a reused Pipeline; its first run is warm-up),
    ``engine cold`` (build + validate + first run), ``raw-anyio``, ``gather`` or ``aiodag``.
    """

    shape: str
    n: int
    tasks: int
    impl: str
    times: tuple[float, ...]
    floor_s: float = 0.0

    @property
    def median_s(self) -> float:
        """The median repetition."""
        return statistics.median(self.times)

    @property
    def per_task_us(self) -> float:
        """(median - the shape's unavoidable sleep) / tasks, in microseconds."""
        return (self.median_s - self.floor_s) / self.tasks * 1e6


@dataclass(frozen=True, slots=True)
class EngineReport:
    """Every row of one ``bench engine`` run, with the machine it ran on."""

    rows: tuple[EngineRow, ...]
    reps: int
    machine: Machine
    machine_after: Machine

    def ratio(self, row: EngineRow, baseline: str) -> float | None:
        """``row``'s median over ``baseline``'s median for the same shape (None if absent)."""
        base = next((r for r in self.rows if r.shape == row.shape and r.impl == baseline), None)
        return None if base is None else row.median_s / base.median_s

    def to_json(self) -> str:
        """JSON text (``from_json`` reads it back)."""
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EngineReport:
        """Read JSON written by :meth:`to_json`.

        :raises ValueError: the text is not an engine report.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a bench engine report")
        try:
            rows = tuple(
                EngineRow(**{**r, "times": tuple(float(t) for t in r["times"])})
                for r in data["rows"]
            )
            return cls(
                rows, int(data["reps"]), _machine(data["machine"]), _machine(data["machine_after"])
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed bench engine report: {exc!r}") from exc


def _machine(data: Mapping[str, Any]) -> Machine:
    a, b, c = (float(x) for x in data["load_average"])
    return Machine(int(data["cpu_count"]), (a, b, c), str(data["python"]), str(data["platform"]))


Measure = Callable[[], float]


def _clocked(
    once: Callable[[Shape], Awaitable[None]], shape: Shape
) -> Callable[[], Coroutine[Any, Any, float]]:
    async def timed() -> float:
        gc.collect()
        start = time.monotonic()
        await once(shape)
        return time.monotonic() - start

    return timed


async def _run_pipeline(pipeline: Pipeline) -> float:
    gc.collect()
    start = time.monotonic()
    result = await pipeline.run()
    elapsed = time.monotonic() - start
    if result.status != "SUCCESS":
        raise RuntimeError(f"benchmark run of {result.pipeline!r} ended {result.status}")
    return elapsed


async def _cold(shape: Shape) -> float:
    gc.collect()
    start = time.monotonic()
    result = await build_pipeline(shape).run()  # building and validating are the cold cost
    elapsed = time.monotonic() - start
    if result.status != "SUCCESS":
        raise RuntimeError(f"benchmark run of {shape.name!r} ended {result.status}")
    return elapsed


def _contenders(shape: Shape) -> dict[str, Measure]:
    pipeline = build_pipeline(shape)
    anyio.run(_run_pipeline, pipeline)  # first run validates: warm-up, not timed
    out: dict[str, Measure] = {
        "engine": functools.partial(anyio.run, _run_pipeline, pipeline),
        "raw-anyio": functools.partial(anyio.run, _clocked(raw_anyio_once, shape)),
        # asyncio.run takes a coroutine, a fresh one per repetition
        "gather": lambda: asyncio.run(_clocked(gather_once, shape)()),
    }
    if aiodag_available():
        out["aiodag"] = lambda: asyncio.run(_clocked(aiodag_once, shape)())
    return out


def measure_shape(shape: Shape, reps: int) -> list[EngineRow]:
    """All implementations of one shape on asyncio, ``reps`` each, interleaved.

    The cold rows run first: building any Task invalidates cached plans, so cold
    runs interleaved with warm ones would make the warm ones validate again.
    Warm implementations take turns, repetition by repetition, rotating the order,
    so drifting load on a shared machine weighs on all of them alike.
    """
    cold = [anyio.run(_cold, shape) for _ in range(reps)]
    contenders = _contenders(shape)
    for measure in contenders.values():
        measure()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(contenders[name]())
    rows = [EngineRow(shape.name, shape.n, shape.tasks, "engine cold", tuple(cold), shape.floor_s)]
    rows += [
        EngineRow(shape.name, shape.n, shape.tasks, n, tuple(t), shape.floor_s)
        for n, t in times.items()
    ]
    return rows


def measure_engine(
    shapes: Sequence[Shape], reps: int, on_row: Callable[[EngineRow], object] | None = None
) -> EngineReport:
    """Measure every shape (blocking: runs its own event loops; call it from a thread
    or outside any loop).

    :raises ValueError: ``reps`` below 1.
    """
    if reps < 1:
        raise ValueError(f"reps must be at least 1, not {reps}")
    machine = Machine.current()
    rows: list[EngineRow] = []
    for shape in shapes:
        for row in measure_shape(shape, reps):
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return EngineReport(tuple(rows), reps, machine, Machine.current())
