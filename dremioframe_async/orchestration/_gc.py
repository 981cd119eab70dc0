"""A run's per-task state, kept out of the cyclic collector's full collections.

CPython's collector (up to 3.13) scans the whole heap in a full collection: the
application's modules and objects, and every pipeline's graph. It runs one when
the objects that survived two younger collections since the last full one reach
a quarter of what the last one found. A run makes one node per task up front and
keeps it to the run's end, so a 20,000-task run adds 20,000 such survivors. An
application that runs such pipelines back to back got a full collection every few
runs, and its loop stalled 20-50 ms each time. At 10^6 tasks, making the nodes
cost 1.6 s of collections on top of 0.4 s of work.

So a run of ``FREEZE_MIN`` tasks or more (and a fan-out of as many instances)
makes its nodes this way:
1. It collects the young generations first (``gc.collect(1)``, then
   ``gc.collect(0)`` before each later slice). So the application's young
   garbage is freed as usual, not frozen with the rest.
2. It makes each slice with the collector paused.
3. It moves everything to the permanent generation (``gc.freeze()``) as soon as
   the slice is made.
4. Once the last slice is made, ``gc.unfreeze()`` puts it all into the oldest
   generation.

The nodes are then old without counting as survivors. So are the application's
objects that were alive at a freeze: they skip their remaining young
collections.

A run's running tasks are frozen under a claim too (``Run._freeze_running``): a
task that waits keeps its coroutines, frames and timers alive until it ends, so
100,000 waiting tasks made millions of survivors. The run takes the claim as its
runners reach ``FREEZE_MIN``, freezes what is alive at each new high of
``FREEZE_MIN`` more (``Freezing.freeze``), and thaws as it ends; a fan-out it makes
meanwhile is made under the same claim. While a run holds it, other runs make their
nodes plainly. Garbage frozen with the tasks (cycles they dropped) waits for the
thaw, which makes a full collection (``Freezing.thaw``). A claim whose run cannot
thaw it (its loop closed with the run inside, its thread ended) is taken back by
the next ``freezing``.

A finished run's nodes are freed by reference counting when its result is
dropped: a fan-out's parent lets go of its instances once they have all ended.
A run in which a task failed, was cancelled or retried may still hold cycles:
an error's traceback holds the engine's frames, which hold the nodes. Only a
full collection frees those. So once such a run has made its nodes frozen, no
run freezes again until the collector has made a full collection. At most one
run's cycles wait uncounted.

It is skipped when the application manages the collector itself: collection
disabled (``gc.disable()``), or objects already frozen (``gc.freeze()``, as
pre-fork servers do; ``gc.unfreeze()`` would hand those back). Once objects
frozen by somebody else are seen, the process never freezes again. Runs in other
threads (each loop its own) freeze one at a time. A thread that disables the
collector while another thread's run makes a slice (about a millisecond) may find
that undone; objects the application freezes while a run holds a claim (for the
whole run, once its running tasks are frozen) are thawed with the run's.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FREEZE_MIN", "Freezing", "freezing", "may_hold_cycles"]

FREEZE_MIN = 1_000  # fewer nodes than this cannot trigger a full collection of note

_lock = threading.Lock()
_busy = False  # a run is between its first freeze and its thaw
_hosts_own = False  # somebody else froze objects: the collector is theirs to manage
# The collector's count of full collections when a frozen run may have left cycles
# (None: none may have): no run freezes until that count moves. Read from the
# collector's statistics rather than kept by a ``gc.callbacks`` hook, which ran
# Python code in every collection, where a Ctrl-C that landed was swallowed
# ("Exception ignored in ...") and the process went on.
_suspect_at: int | None = None
_holder: Freezing | None = None  # the claim in force, while ``_busy``


def _full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


def _suspect() -> bool:
    """Whether a frozen run's cycles may still wait for a full collection."""
    global _suspect_at
    if _suspect_at is not None and _full_collections() != _suspect_at:
        _suspect_at = None  # whatever cycles it left have been looked at
    return _suspect_at is not None


class Freezing:
    """One run's (or one fan-out's) claim on freezing, from its first slice to its thaw."""

    __slots__ = ("_loop", "_thread", "_young")

    def __init__(self) -> None:
        self._young = 1  # the first slice collects both young generations
        # Where it was taken: a claim whose thread has ended or whose loop was closed
        # with the run still in it is never thawed by that run (``freezing``).
        self._thread = threading.current_thread()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def abandoned(self) -> bool:
        """Whether the run holding the claim can no longer thaw it."""
        if not self._thread.is_alive():
            return True
        return self._loop is not None and self._loop.is_closed()

    @contextmanager
    def slice(self) -> Iterator[None]:
        """Make objects with the collector paused, then freeze everything.

        Synchronous: nothing else runs on this thread until the objects are
        frozen. The collector is resumed only if it ran before.
        """
        gc.collect(self._young)  # the young garbage is freed, not frozen
        self._young = 0
        enabled = gc.isenabled()
        if enabled:
            gc.disable()
        try:
            yield
        finally:
            gc.freeze()
            if enabled:
                gc.enable()

    def freeze(self) -> None:
        """Freeze everything alive now, the young garbage collected first.

        For objects made outside a slice: a run's running tasks (``Run``), made as
        each starts, alive until it ends. Nothing once the application has disabled
        the collector.
        """
        if gc.isenabled():
            gc.collect(1)
            gc.freeze()

    def thaw(self, *, collect: bool = False) -> None:
        """Everything frozen back into the oldest generation; the claim ends.

        ``collect``: then a full collection, for a claim that froze whatever was
        alive as a run's tasks started (``Freezing.freeze``). Garbage frozen with
        them (cycles they dropped) would otherwise sit in the oldest generation
        without counting towards a full collection, and the next run would freeze
        it again; left to the collector instead (as after a failed run: no run
        freezes until one), that collection came in the middle of a later run's
        start, with its waiting tasks not yet frozen (up to 736 ms). One at the
        run's end costs the scan of what is alive then (90 ms with a 100,000-task
        pipeline kept). An application that disabled the collector meanwhile gets
        none: no run freezes until the collector makes one.

        Nothing if the claim was taken back meanwhile (``freezing``).
        """
        global _busy, _holder
        with _lock:
            if _holder is not self:
                return
            gc.unfreeze()
            _busy, _holder = False, None
        if not collect:
            return
        if gc.isenabled():
            gc.collect()
        else:
            may_hold_cycles()


def may_hold_cycles() -> None:
    """A run that made nodes frozen ended with a failure, a cancellation or a retry.

    Its nodes may be cyclic garbage once its result is dropped: no run freezes
    again until the collector's next full collection.
    """
    global _suspect_at
    _suspect_at = _full_collections()


def freezing(count: int) -> Freezing | None:
    """A claim on freezing ``count`` new objects' worth, or None to make them plainly."""
    global _busy, _hosts_own, _holder, _suspect_at
    if count < FREEZE_MIN or not gc.isenabled():
        return None
    with _lock:
        if _busy and _holder is not None and _holder.abandoned():
            # Its run's loop was closed, or its thread ended, with the run in it: take
            # the claim back. What it froze may hold cycles (its own coroutines).
            gc.unfreeze()
            _busy, _holder, _suspect_at = False, None, _full_collections()
        if _busy or _hosts_own or _suspect():
            return None
        if gc.get_freeze_count():  # walks the frozen list: none of ours is frozen now
            _hosts_own = True
            return None
        _busy = True
        _holder = claim = Freezing()
    return claim
