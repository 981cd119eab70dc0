"""What the engine asks of the running async library, looked up once rather than per task."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio.lowlevel
import sniffio

__all__ = [
    "call_soon_from_thread",
    "cancel_called_function",
    "cancel_is_stray",
    "checkpoint_function",
    "checkpoint_if_cancelled_function",
    "spawn_detached",
]


def _on_asyncio() -> bool:
    # sniffio, not "is an asyncio loop running": trio in guest mode runs inside one.
    return bool(sniffio.current_async_library() == "asyncio")


def checkpoint_function() -> Callable[[], Awaitable[None]]:
    """The current backend's plain yield, looked up once per run rather than per task."""
    if not _on_asyncio():
        return anyio.lowlevel.checkpoint
    # What anyio's asyncio backend does for a checkpoint, minus its per-call lookup.
    return functools.partial(asyncio.sleep, 0)


def checkpoint_if_cancelled_function() -> Callable[[], Awaitable[None]]:
    """The current backend's ``checkpoint_if_cancelled``, looked up once per run.

    ``anyio.lowlevel.checkpoint_if_cancelled`` finds the backend on every call,
    which costs about as much as the check itself; anyio's lookup is internal,
    so an anyio without it gets the public function.
    """
    try:
        from anyio._core._eventloop import get_async_backend
    except ImportError:  # pragma: no cover - an anyio that moved its internals
        return anyio.lowlevel.checkpoint_if_cancelled
    check: Callable[[], Awaitable[None]] | None = getattr(
        get_async_backend(), "checkpoint_if_cancelled", None
    )
    return check if check is not None else anyio.lowlevel.checkpoint_if_cancelled


def cancel_called_function() -> Callable[[], bool] | None:
    """For the current task: a quick check whether any cancel scope it runs in
    has been cancelled, or None where there is none (call the full check).

    anyio's ``checkpoint_if_cancelled`` finds the task's scope and walks its
    parents on every call; a runner's scopes stay the same while it runs, so it
    walks them once here. The check may say True for a scope whose
    cancellation a shield stops: the caller then makes the full check, which
    knows. It reads anyio's asyncio internals; an anyio that moved them gets None.
    """
    if not _on_asyncio():
        return None
    try:
        from anyio._backends._asyncio import _task_states

        state = _task_states.get(asyncio.current_task())  # type: ignore[arg-type]
        scope = state.cancel_scope if state is not None else None
        scopes = []
        while scope is not None:
            scopes.append(scope)
            scope = scope._parent_scope
    except (ImportError, AttributeError):  # pragma: no cover - an anyio that moved its internals
        return None
    if not scopes:
        return None
    chain = tuple(scopes)
    if not all(type(getattr(scope, "_cancel_called", None)) is bool for scope in chain):
        return None  # pragma: no cover - an anyio that renamed the field: the full check

    def cancel_called() -> bool:
        # The field, not the ``cancel_called`` property: a run with a store and log
        # capture runs in about seven scopes, and the property costs three times as
        # much to read (0.4 against 0.14 µs for the chain, once per task).
        for scope in chain:  # noqa: SIM110 -- a loop: this runs once per task
            if scope._cancel_called:
                return True
        return False

    return cancel_called


def cancel_is_stray() -> bool:
    """Whether a CancelledError arrived although nothing is cancelling this task."""
    if not _on_asyncio():
        return False  # trio raises Cancelled only for a cancelled scope
    current = asyncio.current_task()
    return current is not None and current.cancelling() == 0


def call_soon_from_thread() -> Callable[[Callable[[], Any]], None]:
    """A function that any thread may call to have a callback run on this event loop.

    It never blocks: a worker thread that outlives its run must not wait on a loop
    that may never run again (worker threads are not daemons, so the interpreter
    would wait for it at exit). Once the loop is gone it raises RuntimeError.
    """
    if _on_asyncio():
        loop = asyncio.get_running_loop()

        def on_loop(callback: Callable[[], Any]) -> None:
            loop.call_soon_threadsafe(callback)

        return on_loop
    import trio  # not on asyncio: anyio's only other backend

    token = trio.lowlevel.current_trio_token()

    def soon(callback: Callable[[], Any]) -> None:
        try:
            token.run_sync_soon(callback)
        except trio.RunFinishedError as exc:
            raise RuntimeError("the trio run has finished") from exc

    return soon


_detached: set[asyncio.Task[None]] = set()  # strong references: the loop keeps weak ones


def spawn_detached(fn: Callable[..., Coroutine[Any, Any, None]], *args: Any, name: str) -> None:
    """Start ``fn(*args)`` as a task that nothing waits for.

    For work that must be able to outlive the bound its caller waits for, such
    as a resource's ``__aexit__`` blocked in a worker thread: a task group would
    wait for it, whatever its deadline. ``fn`` must handle its own errors. It runs
    in a copy of the caller's context, on either backend.
    """
    if _on_asyncio():
        task = asyncio.get_running_loop().create_task(fn(*args), name=name)
        _detached.add(task)
        task.add_done_callback(_detached.discard)
        return
    import trio  # not on asyncio: anyio's only other backend

    # A system task starts from trio's own context unless given one: the caller's,
    # copied, as asyncio's tasks get (a resource opened here logs into the capture
    # of the task that asked for it, say).
    trio.lowlevel.spawn_system_task(fn, *args, name=name, context=contextvars.copy_context())
