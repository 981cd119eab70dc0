"""Running a child process that owns a process group, with capped output and no orphans.

The child starts a new session, so it leads a process group that holds every
process it spawns. When the task is cancelled or times out, the group gets
SIGTERM, then SIGKILL after ``kill_grace`` seconds, under a shielded scope; when
the leader exits on its own, whatever it left running in the group is killed
too. On timeout or cancellation, processes of the command that left the group
(``setsid``, ``setpgid``) are found through /proc and signalled with it
(:mod:`._strays`, which says what still escapes). When the command ends on its own,
such a process (a daemon it started on purpose) is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import anyio
from anyio.abc import ByteReceiveStream, Process

from .._masking import margin, mask_text
from ._strays import MARKER, new_mark, signal_strays

__all__ = ["ProcessOutput", "masked", "run_process_group"]


@dataclass(frozen=True, slots=True)
class ProcessOutput:
    """A finished command: exit code and the tails of its output (decoded as UTF-8)."""

    argv: tuple[str, ...] = field(repr=False)
    returncode: int
    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration: float = 0.0


class _Tail:
    """Keeps the last ``limit`` bytes of a stream while reading all of it.

    Reading to the end matters: a child blocked on a full pipe would never exit.
    ``keep`` more bytes are held before the tail, so that a secret the cut would
    split is still whole when the text is masked (and then cut): the tail never
    shows a piece of one.
    """

    def __init__(self, limit: int, keep: int = 0) -> None:
        self.limit, self.keep = limit, keep
        self.buffer = bytearray()
        self.truncated = False

    async def drain(self, stream: ByteReceiveStream | None) -> None:
        if stream is None:
            return
        async for chunk in stream:
            self.buffer += chunk
            if len(self.buffer) > self.limit:
                self.truncated = True
                if len(self.buffer) > self.limit + self.keep:
                    del self.buffer[: len(self.buffer) - self.limit - self.keep]

    def text(self, secrets: Sequence[str] = ()) -> str:
        text = mask_text(self.buffer.decode("utf-8", errors="replace"), secrets)
        if not self.truncated:
            return text
        data = text.encode("utf-8")
        return data[-self.limit :].decode("utf-8", errors="ignore")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, sig)


async def _signal_all(pid: int, mark: str, sig: signal.Signals) -> None:
    """Signal the command's group, and its processes that left the group."""
    _signal_group(pid, sig)
    await anyio.to_thread.run_sync(signal_strays, pid, mark, sig)  # reads /proc: blocking


async def _terminate(process: Process, grace: float, mark: str) -> None:
    """SIGTERM the command's processes, SIGKILL them after ``grace`` s."""
    await _signal_all(process.pid, mark, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
    await _signal_all(process.pid, mark, signal.SIGKILL)
    await process.wait()


async def run_process_group(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    max_output: int = 1 << 20,
    kill_grace: float = 5.0,
    secrets: Sequence[str] = (),
) -> ProcessOutput:
    """Run ``argv`` (no shell) to completion; kill its whole group if cancelled.

    The output kept is masked (``secrets`` in every form, secret-keyed values, URL
    passwords) before it is cut to ``max_output``, so no piece of a secret is kept.

    :raises OSError: the program could not be started (missing, not executable, bad cwd).
    """
    started = time.monotonic()
    keep = margin(secrets)
    out, err = _Tail(max_output, keep), _Tail(max_output, keep)
    mark = new_mark()
    process = await anyio.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**(os.environ if env is None else env), MARKER: mark},
        start_new_session=True,
    )
    ended = False
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.drain, process.stdout)
            tg.start_soon(err.drain, process.stderr)
            await process.wait()
            # Children left in the group would hold the pipes open (and outlive the task).
            _signal_group(process.pid, signal.SIGKILL)
        ended = True
    finally:
        # Bounded even if the group ignores SIGKILL's aftermath (a process stuck in the kernel).
        with anyio.CancelScope(shield=True), anyio.move_on_after(kill_grace + 10):
            if process.returncode is None:
                await _terminate(process, kill_grace, mark)
            elif not ended:  # cut short while the output was still open: by a stray, perhaps
                await _signal_all(process.pid, mark, signal.SIGKILL)
            else:
                _signal_group(process.pid, signal.SIGKILL)
            await process.aclose()
    return ProcessOutput(
        tuple(mask_text(a, secrets) for a in argv),
        process.returncode if process.returncode is not None else -1,
        out.text(secrets),
        err.text(secrets),
        out.truncated,
        err.truncated,
        time.monotonic() - started,
    )


def masked(output: ProcessOutput, secrets: list[str]) -> ProcessOutput:
    """``output`` with every secret value (in every form) replaced by ``***``."""
    if not secrets:
        return output
    return replace(
        output,
        argv=tuple(mask_text(a, secrets) for a in output.argv),
        stdout=mask_text(output.stdout, secrets),
        stderr=mask_text(output.stderr, secrets),
    )
