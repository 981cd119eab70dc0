"""A part of the library's own share of worker threads, apart from anyio's default ones.

anyio's default limiter (40 threads per event loop) is what a run's plain-function
tasks and ``to_thread`` calls in task code take. Work the library does for itself
(building a large run's views, rendering its page) must not wait behind them, nor
take threads they need: each such part takes its own few threads per event loop.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

__all__ = ["OwnThreads"]


class OwnThreads:
    """``count`` worker threads per event loop, for one part of the library."""

    def __init__(self, name: str, count: int) -> None:
        self.count = count
        self._limiters: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(name)

    def limiter(self) -> anyio.CapacityLimiter:
        """The limiter of this event loop (made at its first use there)."""
        try:
            return self._limiters.get()
        except LookupError:
            limiter = anyio.CapacityLimiter(self.count)
            self._limiters.set(limiter)
            return limiter
