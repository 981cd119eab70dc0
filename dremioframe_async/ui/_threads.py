"""The UI's own worker threads, apart from those a run's tasks use."""

from __future__ import annotations

import anyio

from .._own_threads import OwnThreads

__all__ = ["IN_THREAD_FROM", "UI_THREADS", "ui_threads"]

# A run's tasks from which the UI builds its views, JSON and events in a worker thread.
IN_THREAD_FROM = 1_000

UI_THREADS = 2  # worker threads the UI's large answers take at once, per event loop
_THREADS = OwnThreads("dremioframe_async.ui.threads", UI_THREADS)


def ui_threads() -> anyio.CapacityLimiter:
    """The UI's own worker threads on this event loop: its large answers do not take the
    default threads that a run's plain-function tasks use (anyio's 40)."""
    return _THREADS.limiter()
