"""``pipeline.run()`` without ``await``: an error that says so, not a silent coroutine.

``run()`` hands back a :class:`RunCall`, a coroutine (``await`` it, or give it to
``asyncio.run``; ``anyio.run(pipeline.run)`` and task groups take the method).
Used as if it were the result (``.status``, ``["extract"]``), as the synchronous
``dremioframe.orchestration`` taught, it raises with what to write instead; left
unawaited, it warns when dropped that nothing ran.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar

from ..errors import DremioFrameError

__all__ = ["RunCall", "RunNotAwaited", "run_call"]

P = ParamSpec("P")
T = TypeVar("T")

_NOT_A_RESULT = "pipeline.run() is a coroutine, not a RunResult"
_HOW = (
    "write `result = await pipeline.run()` inside async code, or "
    "`result = anyio.run(pipeline.run)` (or `asyncio.run(pipeline.run())`) in a script"
)


class RunNotAwaited(DremioFrameError, AttributeError, TypeError):
    """``pipeline.run()`` used as its result: an attribute (an ``AttributeError``,
    so ``hasattr`` still works) or an item (a ``TypeError``) of the coroutine."""


class RunCall(Coroutine[Any, Any, T], Generic[T]):
    """The coroutine of one ``run()`` call; await it for the :class:`RunResult`."""

    __slots__ = ("_coro", "_started")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._started = False

    def __await__(self) -> Generator[Any, None, T]:
        self._started = True
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        self._started = True
        return self._coro.send(value)

    def throw(self, *args: Any) -> Any:
        self._started = True
        return self._coro.throw(*args)

    def close(self) -> None:
        self._started = True
        self._coro.close()

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("_"):
            raise AttributeError(name)
        raise RunNotAwaited(f"{_NOT_A_RESULT} (no .{name}): {_HOW}")

    def __getitem__(self, key: object) -> NoReturn:
        raise RunNotAwaited(
            f"pipeline.run() is a coroutine, not a RunResult (no [{key!r}]): {_HOW}"
        )

    def __repr__(self) -> str:
        return f"<RunCall of {self._coro!r}>"

    def __del__(self) -> None:
        if getattr(self, "_started", True):
            return
        self._coro.close()  # no second, vaguer warning from the coroutine itself
        message = f"pipeline.run() was never awaited, so nothing ran: {_HOW}"
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def run_call(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, RunCall[T]]:
    """Make an ``async def`` method return a :class:`RunCall` of its coroutine."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> RunCall[T]:
        return RunCall(fn(*args, **kwargs))

    return call
