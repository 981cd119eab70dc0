"""SQLiteStore's writer process: plain batches written off the event loop's process.

Folding a batch and binding its rows hold the GIL, so a writer thread in the
run's own process takes the loop's CPU (and gets the GIL only when the loop
waits): a wide run's rows were written after its last task. A child process has
its own GIL and, on a second core, writes one batch while the loop runs the
tasks that make the next.

The store hands the child a batch when it is plain: task records whose error is
None and whose result is None or a small scalar, and run ends. Pickling those
costs the loop about 0.2 µs a record. Anything else (a run's start with its
parameters, errors with their tracebacks, arbitrary results, log lines) is
written by the store's thread, as before. The pump records one batch at a time
per run, so a run's batches still land in order whichever writer takes them.

The child (``_sqlite_child``) opens the very file the store has open, or none:
a file put at the path since (after a deletion, say) is not the store's. It is
bound to the store by a socket pair:

* store -> child: frames of ``<8-byte length><pickle of (owner, batch, ended)>``,
  ``ended`` the runs whose end the store's thread wrote (the child forgets them);
* child -> store: ``R`` once its connection is open, or ``E`` and a message
  when it cannot open one; then, per frame, in order, ``\\0`` (committed),
  ``\\1`` and a length-prefixed message (not written), or ``\\2`` (it could not
  unpickle the frame). After a frame it did not write, the child writes nothing
  more and leaves: the frames sent after it must not land before it.

A frame is *early* when the store answered its batch as recorded once it was sent
(``send(early=True)``): a run's batches in the middle of the run, which nothing
reads before the run's end, so the pump takes the next batch while the child
writes this one. Its answer is read later, by the next exchange that waits for
one, or once more than ``EARLY_FRAMES`` are owed (``make_room``: the oldest answers
first, after the next frame is sent, so a cancelled wait leaves it the writer's).
An early frame the child did not write, or whose answer was lost with the child, is
*lost*: the store takes it back (``take_lost``) and its thread writes it before
anything else. A run's end and the store's other work wait for every
answer owed (see ``SQLiteStore``).

The child leaves when its socket closes: the store closed or was dropped, or its
process is gone (even by SIGKILL), so it outlives the store only to write the
frames it was sent before (a forked copy of the store's process closes its copy
of the socket). It ignores SIGINT and SIGTERM from its first statement (the
terminal's Ctrl-C and a service manager reach the whole process group): the
store's process decides when writing ends, and may still be recording a
cancelled run's end. A child that dies, does not write a frame, or whose frame
is cut short as it is sent (a cancellation) retires: it is killed, and the store
writes in its thread from then on. A wait for an answer that is cancelled before
the answer came reads nothing, and leaves the answer to the next exchange. Each
child costs about 35 MB of memory, one per store instance that records runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from ..orchestration import Record, RunFinished

__all__ = ["Frame", "WriterProcess", "plain_ends"]

logger = logging.getLogger("dremioframe_async.store")

# The exchange (see the module docstring), shared with ``_sqlite_child``.
HEAD = struct.Struct("<Q")
READY, FAILED_TO_OPEN = b"R", b"E"
OK, ERROR, UNREADABLE = b"\x00", b"\x01", b"\x02"
NOT_TAKEN = "the writer process could not read the batch"  # what UNREADABLE means
# Results a record may carry to the child: they pickle small and fold the same there
# (ints within 64 bits: no digit limit of the interpreter comes into play).
_SCALARS = frozenset({float, bool})
_MAX_INT = 1 << 63
_MAX_TEXT = 1024  # a plain record's result or reason, in characters
# A plain record's upstream keys, at most: a wider fan-in's record (a sink after 10^6
# tasks: 15 MB of keys) costs the loop more to pickle, and the child as much again
# to read, than the thread takes to write it while the run waits for its end.
_MAX_UPSTREAM = 16_384
# The child checkpoints the WAL when no batch comes for IDLE_SECONDS after one from
# IDLE_CHECKPOINT_ROWS rows or IDLE_CHECKPOINT_COMMITS batches on; SQLite's own
# checkpoint at WAL_PAGES bounds the WAL while batches keep coming.
IDLE_SECONDS = 0.005
# About this many early frames wait for their answers: once one more is sent, the
# oldest answers are read until this many are owed, which bounds what a lost writer
# takes back.
EARLY_FRAMES = 16
START_TIMEOUT = 60.0  # seconds start_writer() waits for the child to be ready
IDLE_CHECKPOINT_ROWS = 5_000
IDLE_CHECKPOINT_COMMITS = 256
WAL_PAGES = 4_000
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
# The child's first statements, before any import: Ctrl-C and a service manager's
# SIGTERM reach the whole process group, and the store's process decides when
# writing ends (it may still be recording a cancelled run's end). The package's
# folder goes first on the path unless the path has it already (an installed
# package: its folder is site-packages, which must not go before the standard
# library); the child checks that it imported this very copy (``PACKAGE_FILE``).
_CHILD_CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    f"import sys; p = {_PACKAGE_PARENT!r}; "
    "p in sys.path or sys.path.insert(0, p); "
    "from dremioframe_async.store._sqlite_child import main; main()"
)
PACKAGE_FILE = str(Path(__file__).resolve().parents[1] / "__init__.py")


def plain_ends(events: Sequence[Record]) -> list[str] | None:
    """The runs ``events`` end when the child can take them (task records without an
    error or pipeline-state writes, with no result or a small scalar one and at most
    ``_MAX_UPSTREAM`` upstream keys, and run ends); None when it cannot. One pass: it
    runs on the loop, for every batch."""
    ends: list[str] = []
    for event in events:
        if type(event) is tuple:
            if event[5] is not None or event[9] is not None or len(event[7]) > _MAX_TEXT:
                return None
            if len(event[8]) > _MAX_UPSTREAM:
                return None
            if type(event[0]) is not str or type(event[1]) is not str:
                return None  # a str subclass may not unpickle in the child
            result = event[6]
            if result is None:
                continue
            kind = type(result)
            if kind is int:
                if not -_MAX_INT <= result < _MAX_INT:
                    return None
            elif kind is str:
                if len(result) > _MAX_TEXT:
                    return None
            elif kind not in _SCALARS:
                return None
        elif type(event) is RunFinished:
            ends.append(event.run_id)
        else:
            return None
    return ends


_LIVE: weakref.WeakSet[WriterProcess] = weakref.WeakSet()


class Frame:
    """One batch sent to the child, until its answer is read."""

    __slots__ = ("answer", "answered", "early", "events")

    def __init__(self, events: Sequence[Record], early: bool) -> None:
        self.events = events
        self.early = early
        self.answered = False
        self.answer: str | None = None


class WriterProcess:
    """The store's side of one writer process (see the module docstring)."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self._process = process
        self._sock = sock
        self._pid = os.getpid()  # a forked copy of the store's process must not write here
        self._send_lock = anyio.Lock()
        self._answer_lock = anyio.Lock()
        self._sent: deque[Frame] = deque()  # sent, not answered yet, in order
        self._lost: list[Frame] = []  # early frames the child may not have written
        self.ready = False
        self.retired = False
        # A store dropped without aclose() (or still open at exit) ends its child too.
        self._finalizer = weakref.finalize(self, _abandon, process, sock, self._pid)
        _LIVE.add(self)

    @classmethod
    def spawn(cls, settings: dict[str, Any]) -> WriterProcess | None:
        """Start a child for the store with ``settings`` (blocking: call it in a
        thread); None, with a warning, when no child can be started here."""
        if not sys.executable or getattr(sys, "frozen", False):
            return None  # no interpreter to run it (a frozen application's is the app)
        ours, theirs = socket.socketpair()
        argv = [
            sys.executable,
            *_interpreter_flags(),
            # -P: not the working directory first on the path, where a file named
            # like a module it imports would be imported instead.
            "-P",
            "-c",
            _CHILD_CODE,
            str(theirs.fileno()),
            json.dumps(settings),
        ]
        try:
            process = subprocess.Popen(
                argv,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches the store's group only
            )
        except OSError as exc:
            ours.close()
            logger.warning("SQLite writer process not started (%s); writing in a thread", exc)
            return None
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(process, ours)

    def usable(self) -> bool:
        """Whether a batch may go to the child now (it is ready, and still in step)."""
        if self.retired or os.getpid() != self._pid:
            return False
        if not self.ready:
            try:
                first = self._sock.recv(1)
            except BlockingIOError:
                return False  # still starting: the store's thread writes meanwhile
            except OSError as exc:
                self.retire(f"{type(exc).__name__}: {exc}")
                return False
            if first == READY:
                self.ready = True
            else:
                self.retire(self._message() if first == FAILED_TO_OPEN else "it exited")
                return False
        return True

    async def wait_ready(self) -> bool:
        """Wait until the child takes batches; False once it is retired instead, or
        when it is not ready within ``START_TIMEOUT`` seconds (it is retired then: a
        child stuck starting would hold ``start_writer()`` for ever).

        It looks every few milliseconds rather than waiting on the socket, where a
        batch's exchange may be waiting too once the child is ready.
        """
        deadline = anyio.current_time() + START_TIMEOUT
        while not self.usable():
            if self.retired:
                return False
            if anyio.current_time() >= deadline:
                self.retire(f"it was not ready within {START_TIMEOUT:g} s")
                return False
            await anyio.sleep(0.005)
        return True

    @property
    def owed(self) -> int:
        """Frames sent whose answers are not read yet."""
        return len(self._sent)

    async def make_room(self, frames: int) -> None:
        """Read answers in order until at most ``frames`` are owed: the oldest first,
        which were sent longest ago and are most likely in already. Cancelled, it
        reads nothing more, and the frames stay the writer's.

        :raises ConnectionError: as :meth:`answer` does.
        """
        while len(self._sent) > frames and not self.retired:
            await self.answer(self._sent[0], claim=False)

    async def send(
        self, owner: str, events: Sequence[Record], ended: list[str], *, early: bool
    ) -> Frame:
        """Send ``events`` to the child (``ended``: runs whose end the store's thread
        wrote, which the child forgets). An early frame is the writer's from then on
        (see the module docstring); wait for any other with :meth:`answer`.

        :raises ConnectionError: when the child is gone or the send was cut short
            (it is retired: nothing more goes to it, and ``events`` are the caller's).
        """
        data = pickle.dumps((owner, events, ended), protocol=pickle.HIGHEST_PROTOCOL)
        frame = Frame(events, early)
        async with self._send_lock:
            if self.retired:
                raise ConnectionError("the writer process is retired")
            view = memoryview(HEAD.pack(len(data)) + data)
            whole = len(view)
            try:
                while view:
                    try:
                        view = view[self._sock.send(view) :]
                    except BlockingIOError:
                        await anyio.wait_writable(self._sock)
            except Exception as exc:  # the child gone, or its socket closed by aclose()
                self.retire(f"{type(exc).__name__}: {exc}")
                raise ConnectionError(str(exc) or type(exc).__name__) from exc
            except BaseException:
                if len(view) != whole:  # cancelled mid-frame: the stream is out of step
                    self.retire("a batch was cut short as it was sent")
                raise
            # No checkpoint since the last byte went: no answer can be read before this.
            self._sent.append(frame)
        return frame

    async def answer(self, frame: Frame | None = None, *, claim: bool = True) -> None:
        """Read answers in order until ``frame``'s is read (every answer owed, when
        None). A frame the child did not write retires it.

        :raises ConnectionError: when the child is retired before ``frame`` was
            written (early frames it may not have written are then :meth:`take_lost`).
        """
        async with self._answer_lock:
            while self._sent and not (frame is not None and frame.answered):
                if self.retired:
                    break
                try:
                    status = await self._status()
                except Exception as exc:  # the child gone, or its socket closed by aclose()
                    self.retire(f"{type(exc).__name__}: {exc}")
                    break
                except BaseException:
                    # Cancelled before an answer came: nothing was read, and the next
                    # exchange reads it. The caller's frame is the writer's from now
                    # on (``claim=False``: a frame read for room is another caller's).
                    if frame is not None and claim:
                        frame.early = True
                    raise
                if status == OK:
                    why = None
                elif status == UNREADABLE:
                    why = NOT_TAKEN
                else:
                    # Sent with its status in one piece: there to read, or the child gone.
                    with anyio.CancelScope(shield=True):
                        try:
                            why = await self._reply_message()
                        except Exception as exc:
                            why = f"{type(exc).__name__}: {exc}"
                head = self._sent.popleft()
                head.answered, head.answer = True, why
                if why is not None:
                    # The child has left (see the module docstring): what it was sent
                    # after this frame was not written either.
                    if head.early:
                        self._lost.append(head)
                    self.retire(f"it could not write a batch: {why}")
        if frame is not None and (not frame.answered or frame.answer is not None):
            raise ConnectionError(frame.answer or "the writer process is retired")
        if frame is None and self.retired:
            raise ConnectionError("the writer process is retired")

    def take_lost(self) -> list[Record]:
        """The events of the early frames the retired child may not have written, in
        the order they were sent (each once: the caller writes them)."""
        lost, self._lost = self._lost, []
        return [event for frame in lost for event in frame.events]

    async def _status(self) -> bytes:
        """An answer's first byte; a cancellation while none has come reads nothing."""
        while True:
            try:
                status = self._sock.recv(1)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            if not status:
                raise ConnectionError("the writer process exited")
            return status

    async def _recv(self, size: int) -> bytes:
        parts: list[bytes] = []
        while size:
            try:
                part = self._sock.recv(size)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            if not part:
                raise ConnectionError("the writer process exited")
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    async def _reply_message(self) -> str:
        (size,) = HEAD.unpack(await self._recv(HEAD.size))
        return (await self._recv(size)).decode("utf-8", "replace")

    def _message(self) -> str:
        """A startup failure's message: the child sent it in one piece with its
        ``E`` before it exited, so it is there to read without waiting."""
        try:
            (size,) = HEAD.unpack(self._sock.recv(HEAD.size))
            return self._sock.recv(size).decode("utf-8", "replace")
        except (OSError, struct.error):
            return "it could not open the file"

    def retire(self, why: str) -> None:
        """Send nothing more to the child, and kill it (on the loop's thread).

        Killed, not left to finish: a batch it holds (sent before a cancellation cut
        the exchange short) must not commit after a later batch of the same run,
        which the store's thread writes next, once ``reap`` has seen the child gone.
        A transaction a killed child had not committed is rolled back by SQLite.
        """
        if self.retired:
            return
        self.retired = True
        # Early frames not answered: their callers were told they were recorded.
        self._lost.extend(frame for frame in self._sent if frame.early)
        self._sent.clear()
        if os.getpid() == self._pid:
            logger.warning("SQLite writer process retired (%s); writing in a thread", why)
            self._close_socket()
            self._process.kill()
            self._process.poll()  # reaped now if it is gone already

    def _close_socket(self) -> None:
        with contextlib.suppress(Exception):  # no event loop here (a finalizer, a thread)
            anyio.notify_closing(self._sock)  # an exchange waiting on it fails at once
        self._sock.close()

    def shutdown(self) -> None:
        """End the child (on the loop's thread; then ``reap`` in a thread).

        A ready child writes the frames it was sent, then sees the end of its socket
        and leaves; one still starting is killed (it holds nothing). Early frames not
        answered become lost (:meth:`take_lost`): the store writes them again once
        the child has exited.
        """
        if os.getpid() != self._pid:
            return
        self._finalizer.detach()
        ready, self.retired = self.ready and not self.retired, True
        self._lost.extend(frame for frame in self._sent if frame.early)
        self._sent.clear()
        self._close_socket()
        if not ready:
            self._process.kill()

    def reap(self) -> None:
        """Wait until a retired or shut-down child has exited (blocking: in a thread);
        one that does not leave within 5 s is killed. What it had not written by then
        is among its lost frames, which the store writes after this."""
        if not self.retired or os.getpid() != self._pid:
            return
        try:
            self._process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    @property
    def pid(self) -> int:
        return self._process.pid


def _interpreter_flags() -> list[str]:
    """This interpreter's flags (-X dev, -W ..., -O), for the child: as multiprocessing
    passes them to the processes it spawns."""
    flags = getattr(subprocess, "_args_from_interpreter_flags", None)
    return list(flags()) if callable(flags) else []


def _abandon(process: subprocess.Popen[bytes], sock: socket.socket, pid: int) -> None:
    """End the child of a store that was never closed: it writes the frames it was
    sent (early ones were answered as recorded), then leaves at its socket's end.
    A daemon thread reaps it: a finalizer may run on the event loop's thread."""
    if os.getpid() != pid:
        return
    sock.close()
    try:
        threading.Thread(target=process.wait, name="sqlite-writer-reaper", daemon=True).start()
    except RuntimeError:  # the interpreter is exiting: the child finishes on its own
        process.returncode = 0  # not waited for; Popen must not warn that it runs


def _forget_after_fork() -> None:
    """In a forked copy of the store's process: the children are not its own. Their
    sockets are closed here (so each child still sees its store's end), and nothing
    waits for or warns about them."""
    for writer in list(_LIVE):
        writer._finalizer.detach()
        writer.retired = True
        writer._sent.clear()  # the store's process writes them, not this copy
        writer._lost.clear()
        with contextlib.suppress(OSError):
            writer._sock.close()
        writer._process.returncode = 0  # not this process's child: Popen must not wait


os.register_at_fork(after_in_child=_forget_after_fork)
