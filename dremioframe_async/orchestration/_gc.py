"""A run's per-task state, kept out of the cyclic collector's full collections.

CPython's collector scans the whole heap (the application's modules, its own
objects, every pipeline's graph) in a full collection. It runs one when the
objects that survived two younger collections since the last full one reach a
quarter of what the last one found. A run makes one node per task up front and
keeps it to the run's end, so a 20,000-task run adds 20,000 such survivors: an
application that runs such pipelines back to back got a full collection every
few runs, and its loop stalled 20-50 ms each time. At 10^6 tasks, making the
nodes cost 1.6 s of collections on top of 0.4 s of work.

So a run of ``FREEZE_MIN`` tasks or more makes its nodes a slice at a time with
the collector paused, and moves each slice to the permanent generation
(``gc.freeze()``) as soon as it is made. Frozen, the nodes are never counted
as survivors. Once the last slice is made, ``gc.unfreeze()`` puts everything
back into the oldest generation: the nodes are old without having triggered a
collection, and everything else frozen meanwhile is collectable again.

What this costs the application:
- Objects it made while the nodes were being made (a few ms between slices,
  0.5 s at 10^6 tasks) join the oldest generation at once. A cycle among them
  that became garbage waits for the next full collection rather than the next
  young one.
- While the slices are made, a full collection skips the frozen objects.

It is skipped when the application manages the collector itself: collection
disabled (``gc.disable()``), or objects already frozen (``gc.freeze()``, as
pre-fork servers do). ``gc.unfreeze()`` would hand those back to collection.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FREEZE_MIN", "freezing", "made_frozen", "thaw"]

FREEZE_MIN = 1_000  # fewer nodes than this cannot trigger a full collection of note


def freezing(count: int) -> bool:
    """Whether ``count`` new nodes are to be made frozen (see the module's doc)."""
    return count >= FREEZE_MIN and gc.isenabled() and gc.get_freeze_count() == 0


@contextmanager
def made_frozen() -> Iterator[None]:
    """Make objects with the collector paused, then move them to the permanent generation.

    Synchronous: nothing else runs on this thread until the objects are frozen.
    The collector is resumed only if it ran before (the application may have
    disabled it between two slices).
    """
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def thaw() -> None:
    """Everything frozen back into the oldest generation: collectable again."""
    gc.unfreeze()
