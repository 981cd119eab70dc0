"""Child processes in tests: started in their own session, always ended in a ``finally``."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any


@contextmanager
def running(argv: Sequence[str], **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """``Popen(argv, **popen)``; on the way out the child and anything it started are killed.

    The child leads a session of its own, so a grandchild (an embedded server in
    another process, say) is killed with it and never outlives the test.
    """
    proc: subprocess.Popen[Any] = subprocess.Popen(argv, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        end(proc)


def end(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc``'s process group (if any of it still runs), reap it and close its pipes."""
    with suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
