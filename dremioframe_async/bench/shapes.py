"""The engine-overhead shapes, each written for the engine, raw anyio, asyncio.gather and aiodag.

Shared by ``dremioframe-async bench engine`` and ``benchmarks/engine_overhead.py``:

- ``fan-out``: a root, N no-op coroutine tasks, a sink (root -> each -> sink);
- ``chain``: N no-op tasks, each waiting for the one before;
- ``sleep``: a root, N tasks that each ``await anyio.sleep(0.02)``, a sink; the
  engine runs it with ``max_concurrency=N`` (a limit that never binds but is paid).

The floor, ``raw_anyio_once``, is one task group with one ``anyio.Event`` per
task: every task a coroutine spawned up front that awaits its upstream Events,
runs its body, then sets its own Event.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import anyio

from ..orchestration import Pipeline, Task

__all__ = [
    "SLEEP",
    "Shape",
    "aiodag_available",
    "aiodag_once",
    "build_pipeline",
    "gather_once",
    "nap",
    "noop",
    "raw_anyio_once",
    "task_body",
]

SLEEP = 0.02


@dataclass(frozen=True, slots=True)
class Shape:
    """A DAG shape (``fan-out``, ``chain`` or ``sleep``) with N middle tasks."""

    name: str
    n: int

    @property
    def tasks(self) -> int:
        """Task count including root and sink (the chain has neither)."""
        return self.n if self.name == "chain" else self.n + 2

    @property
    def floor_s(self) -> float:
        """Time the shape needs even with zero overhead (the one sleep on its path)."""
        return SLEEP if self.name == "sleep" else 0.0


async def noop() -> None:
    """A task body that does nothing."""
    return


async def nap(seconds: float) -> None:
    """A task body that sleeps."""
    await anyio.sleep(seconds)


def task_body(shape: Shape) -> tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]:
    """The middle tasks' coroutine function and arguments for ``shape``."""
    return (nap, (SLEEP,)) if shape.name == "sleep" else (noop, ())


def build_pipeline(shape: Shape) -> Pipeline:
    """The shape as a Pipeline of plain Tasks (built the way a user would)."""
    action, args = task_body(shape)
    if shape.name == "chain":
        chain = [Task(f"t{i}", noop) for i in range(shape.n)]
        for a, b in pairwise(chain):
            a >> b
        head = chain[0]
    else:
        head, sink = Task("root", noop), Task("sink", noop)
        for i in range(shape.n):
            mid = Task(f"t{i}", action, args=args)
            head >> mid
            mid >> sink
    limit = shape.n if shape.name == "sleep" else None
    return Pipeline(shape.name, max_concurrency=limit).add_task(head)


async def _node(
    ups: Sequence[anyio.Event],
    action: Callable[..., Awaitable[None]],
    args: tuple[Any, ...],
    done: anyio.Event,
) -> None:
    for event in ups:
        await event.wait()
    await action(*args)
    done.set()


async def raw_anyio_once(shape: Shape) -> None:
    """The shape as one task group of coroutines linked by anyio Events."""
    action, args = task_body(shape)
    async with anyio.create_task_group() as tg:
        if shape.name == "chain":
            prev: Sequence[anyio.Event] = ()
            for _ in range(shape.n):
                done = anyio.Event()
                tg.start_soon(_node, prev, noop, (), done)
                prev = (done,)
            return
        root = anyio.Event()
        tg.start_soon(_node, (), noop, (), root)
        mids = [anyio.Event() for _ in range(shape.n)]
        for done in mids:
            tg.start_soon(_node, (root,), action, args, done)
        tg.start_soon(_node, mids, noop, (), anyio.Event())


async def _chained(
    prev: asyncio.Event | None, done: asyncio.Event, action: Callable[[], Awaitable[None]]
) -> None:
    if prev is not None:
        await prev.wait()
    await action()
    done.set()


async def gather_once(shape: Shape) -> None:
    """The shape with nothing but asyncio.gather (and asyncio.Events for the chain)."""
    if shape.name == "chain":
        events = [asyncio.Event() for _ in range(shape.n)]
        prevs = [None, *events[:-1]]
        await asyncio.gather(*(_chained(p, d, noop) for p, d in zip(prevs, events, strict=True)))
        return
    action, args = task_body(shape)
    await noop()
    await asyncio.gather(*(action(*args) for _ in range(shape.n)))
    await noop()


def aiodag_available() -> bool:
    """Whether aiodag (the ``bench`` extra) is installed."""
    return importlib.util.find_spec("aiodag") is not None


async def aiodag_once(shape: Shape) -> None:
    """The shape in aiodag (the ``bench`` extra): each call schedules an asyncio task
    that awaits its inputs."""
    adtask: Any = importlib.import_module("aiodag").task  # untyped

    action, args = task_body(shape)

    async def root() -> None:
        await noop()

    async def middle(_up: Any = None) -> None:
        await action(*args)

    first, step = adtask(root), adtask(middle)
    if shape.name == "chain":
        last = first()
        for _ in range(shape.n - 1):
            last = step(last)
        await last
        return
    head = first()
    mids = [step(head) for _ in range(shape.n)]
    await adtask(noop, *mids)()
