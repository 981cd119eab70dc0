"""Bounded concurrent work that keeps order and raises a single error as itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

__all__ = ["map_bounded"]

T = TypeVar("T")
R = TypeVar("R")


async def map_bounded(fn: Callable[[T], Awaitable[R]], items: Sequence[T], limit: int) -> list[R]:
    """Await ``fn(item)`` for every item, at most ``limit`` at a time; results in input order.

    The first failure cancels the rest and is raised as itself (not in an
    ExceptionGroup), so callers see the client's typed errors.

    :raises Exception: the first exception raised by ``fn``.
    """
    results: list[R | None] = [None] * len(items)
    failures: list[Exception] = []
    pending = iter(range(len(items)))

    async def worker(scope: anyio.CancelScope) -> None:
        for index in pending:  # workers share one iterator: each index is taken once
            try:
                results[index] = await fn(items[index])
            except Exception as exc:
                failures.append(exc)
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        for _ in range(max(1, min(limit, len(items)))):
            tg.start_soon(worker, tg.cancel_scope)
    if failures:
        raise failures[0]
    return results  # type: ignore[return-value]  # every slot was filled
