"""Every one of anyio's default worker threads taken, as a run's blocked tasks take them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio.to_thread


@contextmanager
def default_threads_taken() -> Iterator[None]:
    """Hold all the tokens of this event loop's default thread limiter: a
    ``to_thread`` call without a limiter of its own waits until the block ends."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        limiter.acquire_on_behalf_of_nowait(holder)
    try:
        yield
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
