"""Who owns a RUNNING run, and how a store tells a dead owner from a live one.

The rule (documented for operators):

* Every run records its owner as ``host:pid:start`` where ``start`` identifies
  the process incarnation: on Linux the boot id plus the process start time
  from ``/proc/<pid>/stat`` (so a recycled pid is not mistaken for the owner),
  elsewhere a random per-process nonce.
* SQLite and memory stores: a RUNNING run owned by **this host** is
  interrupted when no process with that pid exists, or when the pid now
  belongs to a process that started at another time. Runs owned by another
  host are left alone (SQLite files are not meant to be shared over a network
  filesystem).
* PostgreSQL: the owning store holds a session-level advisory lock for as long
  as it is open; the server releases it when the process dies, so any host can
  tell (see ``_postgres``).

Such runs are marked ``INTERRUPTED`` when the store is opened and whenever runs
are listed or read.
"""

from __future__ import annotations

import os
import secrets
import socket
from functools import cache

__all__ = ["current_owner", "is_dead"]


def _linux_start(pid: int) -> str | None:
    """Boot id + start time (clock ticks since boot) of ``pid``, None when not on Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Field 22; the command name (field 2) may hold spaces, so split after it.
            start = stat.read().rsplit(")", 1)[1].split()[19]
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            return f"{boot.read().strip()}/{start}"
    except (OSError, IndexError):
        return None


def current_owner() -> str:
    """``host:pid:start`` for this process (stable for the process's lifetime)."""
    return _owner_of(os.getpid())  # keyed by pid so a forked child gets its own


@cache
def _owner_of(pid: int) -> str:
    start = _linux_start(pid) or f"nonce-{secrets.token_hex(8)}"
    return f"{socket.gethostname()}:{pid}:{start}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def is_dead(owner: str) -> bool:
    """True only when ``owner`` is certainly gone (see the module docstring)."""
    if owner == current_owner():
        return False
    try:
        host, pid_text, start = owner.split(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    if not _pid_exists(pid):
        return True
    if start.startswith("nonce-"):
        return False
    now = _linux_start(pid)
    return now is not None and now != start
