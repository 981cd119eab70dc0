"""The writer process's own side (see ``_sqlite_writer``): run by the child only.

It opens the very file the store has open (the same device and inode: a file put
at the path since, after a deletion say, is not the store's, and its writes there
would look recorded), then reads frames from its socket until the socket closes.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import select
import socket
import sqlite3
import sys
from pathlib import Path

import dremioframe_async

from ._errors import StoreUnavailable
from ._sqlite import SQLiteStore, file_identity
from ._sqlite_writer import (
    ERROR,
    FAILED_TO_OPEN,
    HEAD,
    IDLE_CHECKPOINT_COMMITS,
    IDLE_CHECKPOINT_ROWS,
    IDLE_SECONDS,
    OK,
    READY,
    UNREADABLE,
    WAL_PAGES,
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
    sock = socket.socket(fileno=int(sys.argv[1]))
    settings = json.loads(sys.argv[2])
    identity, package = settings.pop("identity"), settings.pop("package")
    try:
        if str(Path(dremioframe_async.__file__).resolve()) != package:
            # Its fold and schema may differ from the store's (an installed release
            # beside a checkout, say): writing with them could migrate the file.
            raise ImportError(f"another copy of dremioframe_async: {dremioframe_async.__file__}")
        store = SQLiteStore(settings.pop("path"), writer="thread", **settings)
        conn = _open(store, None if identity is None else (identity[0], identity[1]))
    except Exception as exc:
        _send_message(sock, FAILED_TO_OPEN, _why(exc))
        sock.close()
        return
    try:
        # SQLite's own checkpoint, inside the commit that crosses it, only bounds the
        # WAL while batches keep coming; the checkpoints go between batches instead
        # (10-17 ms at the end of a wide run, which the run waited for).
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        sock.sendall(READY)
        _serve(sock, store, conn)
    except OSError:
        pass  # the store's end is gone (closed before it was ready, or mid-reply)
    finally:
        conn.close()
        sock.close()


def _serve(sock: socket.socket, store: SQLiteStore, conn: sqlite3.Connection) -> None:
    incoming = select.poll()  # not select(): the socket's number may be past 1023
    incoming.register(sock, select.POLLIN)
    rows = commits = 0  # written since the last checkpoint
    answering = True
    while True:
        head = _read_exact(sock, HEAD.size)
        if head is None:
            return  # the store closed, or its process is gone
        (size,) = HEAD.unpack(head)
        body = _read_exact(sock, size)
        if body is None:
            return  # cut short: write nothing of it
        # After a frame it did not write, the child leaves: frames the store sent
        # after that one must not land before it (the store's thread writes them all).
        try:
            owner, events, ended = pickle.loads(body)
        except Exception:
            sock.sendall(UNREADABLE)
            return
        store.forget_runs(ended)
        try:
            store.write_batch(conn, events, owner)
        except Exception as exc:
            _send_message(sock, ERROR, _why(exc))
            return
        if answering:
            try:
                sock.sendall(OK)
            except OSError:
                # The store's end is closed (aclose, or the store dropped): the frames
                # it sent before that were answered as recorded, so write them all.
                answering = False
        rows, commits = rows + len(events), commits + 1
        if rows < IDLE_CHECKPOINT_ROWS and commits < IDLE_CHECKPOINT_COMMITS:
            continue
        if not incoming.poll(IDLE_SECONDS * 1000):  # no batch came: checkpoint now
            # Only an optimisation: one that fails (a full disk) leaves the WAL to grow
            # until a later one, and the next batch that cannot be written says why.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            rows = commits = 0


def _why(exc: Exception) -> str:
    """What the store's StoreUnavailable says (its problem, without the store's name)."""
    if isinstance(exc, StoreUnavailable):
        return exc.problem
    return f"{type(exc).__name__}: {exc}"


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``sock``; None at its end (unbuffered: ``poll`` then
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
    with contextlib.suppress(OSError):  # the store's end is gone: nobody reads it
        sock.sendall(status + HEAD.pack(len(data)) + data)
