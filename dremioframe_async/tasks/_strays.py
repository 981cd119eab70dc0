"""A command's processes that left its process group, found through /proc (Linux).

A command runs as the leader of its own process group, and the group is what gets
signalled. A process can leave the group (``setsid``, ``setpgid``: daemons, some
shells' job control) and then a group signal misses it. Each command's processes
therefore carry an environment marker they inherit; on timeout or cancellation,
every process that has the marker, or descends from the leader, is signalled too.
It still escapes if it both clears its environment and is orphaned (re-parented
away from the leader), or runs as another user (its /proc entries are closed to
us). Without /proc (not Linux) only the group is signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from pathlib import Path

__all__ = ["MARKER", "new_mark", "signal_strays"]

MARKER = "DREMIOFRAME_ASYNC_COMMAND"
"""The environment variable every process of a command inherits (a fresh id per run)."""
_PROC = Path("/proc")


def new_mark() -> str:
    """A fresh marker value for one command."""
    return uuid.uuid4().hex


def signal_strays(leader: int, mark: str, sig: signal.Signals) -> list[int]:
    """Send ``sig`` to every process of the command outside the leader's group.

    Blocking (reads /proc): run it in a thread. Returns the pids signalled.
    """
    needle = f"{MARKER}={mark}".encode()
    me = os.getpid()
    processes = _processes()
    parents = {pid: ppid for pid, ppid, _ in processes}
    outside = {pid for pid, _, pgid in processes if pgid != leader and pid != me}
    marked = {pid for pid in outside if _carries(pid, needle)}
    strays = (marked | _descendants(leader, parents)) & outside  # the group gets its own
    for pid in strays:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return sorted(strays)


def _processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every live process we can read."""
    found = []
    with contextlib.suppress(OSError):
        for entry in _PROC.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile, or not ours to read
            if fields[0] not in ("Z", "X"):  # a zombie needs no signal
                found.append((int(entry.name), int(fields[1]), int(fields[2])))
    return found


def _carries(pid: int, needle: bytes) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return needle in environ.split(b"\0")


def _descendants(leader: int, parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(leader, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found
