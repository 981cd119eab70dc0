"""Ctrl-C for the command line and the demo: the first cancels, the second stops the cleanup.

The first SIGINT (or SIGTERM) cancels the work, whose runs then still run their
cleanup tasks; the second sets the ``stop_cleanup`` event handed to those runs;
a third ends the process at once (exit 130), for a cleanup that does not stop.

The signal receiver is listening before the work starts: until then the event
loop's own handler is in place (asyncio's cancels the main task natively, trio
raises ``KeyboardInterrupt``), and a signal in that window once read as a crash.
Once an interrupt was heard the process is on its way out, so when the receiver
closes, later signals are ignored: Python would otherwise put back its default
handler, and a late second Ctrl-C would raise ``KeyboardInterrupt`` into the
event loop's teardown, or kill the process by the raw signal (exit -2).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

__all__ = ["EXIT_INTERRUPTED", "Interrupts", "interruptible"]

EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """SIGINT/SIGTERM, counted: cancel the work, then stop its cleanup, then exit at once."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.stop_cleanup = anyio.Event()
        self.count = 0

    async def watch(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            with anyio.open_signal_receiver(*_SIGNALS) as signals:
                task_status.started()
                async for _ in signals:
                    self.heard()
        except KeyboardInterrupt:
            # A signal in the instant between the loop restoring Python's handler
            # and the line below: one more interrupt, not a crash.
            self.heard()
        finally:
            if self.count:
                for number in _SIGNALS:
                    signal.signal(number, signal.SIG_IGN)

    def heard(self) -> None:
        self.count += 1
        if self.count == 1:
            _say(
                "\ninterrupted: cancelling; cleanup tasks still run (interrupt again to stop them)"
            )
            self.scope.cancel()
        elif self.count == 2:
            _say("interrupted again: stopping the cleanup (a third time exits at once)")
            self.stop_cleanup.set()
        else:
            _say("interrupted a third time: exiting now")
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)  # the cleanup did not stop: nothing else will end it


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def interruptible(work: Callable[[anyio.Event], Awaitable[int]]) -> int:
    """Run ``work(stop_cleanup)``; signals cancel it (see :class:`Interrupts`)."""
    scope = anyio.CancelScope()
    interrupts = Interrupts(scope)
    code = EXIT_INTERRUPTED
    try:
        # The watcher lives outside the cancelled scope, so it hears the second signal.
        async with anyio.create_task_group() as tg:
            await tg.start(interrupts.watch)  # listening before the work begins
            with scope:
                code = await work(interrupts.stop_cleanup)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One error (a bad resume id, a cron typo) should read as itself, not as a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return EXIT_INTERRUPTED if interrupts.count else code
