"""The writer process's own side (see ``_sqlite_writer``): run by the child only.

It opens the very file the store has open (the same device and inode: a file put
at the path since, after a deletion say, is not the store's, and its writes there
would look recorded), then reads frames from its socket until the socket closes.
"""

from __future__ import annotations

import json
import pickle
import select
import signal
import socket
import sqlite3
import sys

from ._errors import StoreUnavailable
from ._sqlite import SQLiteStore, file_identity
from ._sqlite_writer import (
    CHECKPOINT_ROWS,
    ERROR,
    FAILED_TO_OPEN,
    HEAD,
    IDLE_CHECKPOINT_ROWS,
    OK,
    READY,
)

__all__ = ["main"]


def _open(store: SQLiteStore, identity: tuple[int, int] | None) -> sqlite3.Connection:
    """The store's connection to the file the parent has open, never another one."""
    if identity is not None and file_identity(store.path) != identity:
        raise StoreUnavailable(
            store.name, "the file was deleted or replaced before the writer started"
        )
    conn = store.open_writer()
    if identity is not None and file_identity(store.path) != identity:
        conn.close()
        raise StoreUnavailable(store.name, "the file was deleted or replaced as the writer started")
    return conn


def main() -> None:
    """Open the store's file, then write each batch it is sent (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(sys.argv[1]))
    settings = json.loads(sys.argv[2])
    identity = settings.pop("identity")
    try:
        store = SQLiteStore(settings.pop("path"), writer="thread", **settings)
        conn = _open(store, None if identity is None else (identity[0], identity[1]))
    except Exception as exc:
        _send_message(sock, FAILED_TO_OPEN, f"{type(exc).__name__}: {exc}")
        return
    conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints after each reply instead
    sock.sendall(READY)
    unchecked = 0  # rows written since the last checkpoint
    try:
        while True:
            head = _read_exact(sock, HEAD.size)
            if head is None:
                break  # the store closed, or its process is gone
            (size,) = HEAD.unpack(head)
            body = _read_exact(sock, size)
            if body is None:
                break  # cut short: write nothing of it
            owner, events = pickle.loads(body)
            try:
                store.write_batch(conn, events, owner)
            except Exception as exc:
                _send_message(sock, ERROR, f"{type(exc).__name__}: {exc}")
                continue
            sock.sendall(OK)
            # The WAL's pages go back into the database while no batch waits, not
            # within the commit that crosses the threshold (10-17 ms at the end of
            # a wide run, which the run waited for): from IDLE_CHECKPOINT_ROWS on
            # when idle (each checkpoint syncs the file), at CHECKPOINT_ROWS anyway.
            unchecked += len(events)
            if unchecked >= CHECKPOINT_ROWS or (
                unchecked >= IDLE_CHECKPOINT_ROWS and not select.select([sock], [], [], 0)[0]
            ):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                unchecked = 0
    except OSError:
        pass  # the store's end is gone mid-reply: nothing waits for it
    finally:
        conn.close()


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``sock``; None at its end (unbuffered: ``select`` then
    tells whether another frame waits)."""
    data = sock.recv(size, socket.MSG_WAITALL) if size else b""
    while len(data) < size:
        more = sock.recv(size - len(data), socket.MSG_WAITALL)
        if not more:
            return None
        data += more
    return data


def _send_message(sock: socket.socket, status: bytes, message: str) -> None:
    data = message.encode("utf-8", "replace")
    sock.sendall(status + HEAD.pack(len(data)) + data)
