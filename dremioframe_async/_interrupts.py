"""Ctrl-C for the command line and the demo: the first cancels, the second stops the cleanup.

The first SIGINT (or SIGTERM) cancels the work, whose runs then still run their
cleanup tasks; the second sets the ``stop_cleanup`` event handed to those runs.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["EXIT_INTERRUPTED", "Interrupts", "interruptible"]

EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class Interrupts:
    """SIGINT/SIGTERM, counted: the first cancels the work, the second stops its cleanup."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.stop_cleanup = anyio.Event()
        self.count = 0

    async def watch(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.count += 1
                if self.count == 1:
                    print(
                        "\ninterrupted: cancelling; cleanup tasks still run "
                        "(interrupt again to stop them)",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.scope.cancel()
                else:
                    print("interrupted again: stopping the cleanup", file=sys.stderr, flush=True)
                    self.stop_cleanup.set()


async def interruptible(work: Callable[[anyio.Event], Awaitable[int]]) -> int:
    """Run ``work(stop_cleanup)``; signals cancel it (see :class:`Interrupts`)."""
    scope = anyio.CancelScope()
    interrupts = Interrupts(scope)
    code = EXIT_INTERRUPTED
    try:
        # The watcher lives outside the cancelled scope, so it hears the second signal.
        async with anyio.create_task_group() as tg:
            tg.start_soon(interrupts.watch)
            with scope:
                code = await work(interrupts.stop_cleanup)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One error (a bad resume id, a cron typo) should read as itself, not as a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return EXIT_INTERRUPTED if interrupts.count else code
