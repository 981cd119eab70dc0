"""Review of the engine and Flight-path performance changes: defects found, each pinned."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from types import FrameType

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dremioframe_async.dremio._parquet import write_parquet_atomically
from dremioframe_async.dremio._stream import BatchStream
from dremioframe_async.testing import sample_table
from dremioframe_async.testing._sql import SqlEngine


def test_queries_racing_a_table_replacement_never_lose_the_table() -> None:
    """``add_table`` replacing a table gives it a new internal name; a query that
    was rewritten to the old name just before must still find a table, not fail
    with a KeyError (the SQL names a table that exists throughout).

    A race, so a stress: four threads share one connection (so most queries wait
    for it between their rewrite and their run) while another thread keeps
    replacing the table. Before the fix it failed in 7 of 8 runs.
    """
    engine = SqlEngine(connections=1)
    engine.add_table("s.t", pa.table({"v": [0]}))
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def replace() -> None:
        # Bounded: on a loaded machine the writer can starve the readers of the
        # engine's lock, so it stops on its own after enough replacements.
        for i in range(1, 20_001):
            if done.is_set():
                return
            engine.add_table("s.t", pa.table({"v": [i]}))

    def query() -> None:
        for _ in range(100):
            try:
                seen.append(engine.execute("SELECT max(v) AS m FROM s.t").column(0)[0].as_py())
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)
                return

    readers = [threading.Thread(target=query) for _ in range(4)]
    writer = threading.Thread(target=replace)
    try:
        writer.start()
        for t in readers:
            t.start()
        for t in readers:
            t.join()
    finally:
        done.set()
        writer.join()
        engine.close()
    assert errors == []
    assert len(seen) == 400


# -- write_parquet_atomically under asyncio's own cancellation ---------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "row_group_rows",
    [
        pytest.param(65_536, id="in-a-row-group-write"),
        pytest.param(1_000_000, id="in-the-final-thread-trip"),
    ],
)
async def test_a_natively_cancelled_parquet_write_leaves_nothing_to_happen_after_it_raises(
    tmp_path: Path, row_group_rows: int
) -> None:
    """``asyncio.timeout`` and ``task.cancel()`` cancel through anyio's shields, so
    the write's worker thread may still run when its cleanup starts. By the time
    the write raises, the folder must be in its final state: no thread may
    still create the file, write it or rename it into place afterwards.

    The worker thread is held (a profile hook, set for the threads started in
    this test) as it is about to open the file, and let go once the cleanup has
    started in another thread (or the write is over). Before the fix the write raised while that
    thread went on: it left its temporary file behind for good (a row group
    written mid-stream) or renamed the file into place after the raise (the
    final trip).
    """
    target = tmp_path / "out.parquet"
    opening, go, returned = (threading.Event() for _ in range(3))
    parquet_init = pq.ParquetWriter.__init__.__code__
    module = write_parquet_atomically.__code__.co_filename
    held: list[tuple[threading.Thread, FrameType]] = []  # the held thread, its job's frame
    active = True

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if not active:
            return
        me = threading.current_thread()
        ours = frame.f_code.co_filename == module
        if event == "call" and frame.f_code is parquet_init and not held:
            outer = frame  # the outermost frame of this module: the thread's job
            walk: FrameType | None = frame
            while walk is not None:
                if walk.f_code.co_filename == module:
                    outer = walk
                walk = walk.f_back
            held.append((me, outer))
            opening.set()
            go.wait()
        elif event == "call" and ours and held and me is not held[0][0]:
            go.set()  # the cleanup has started, in another worker thread
        elif event == "return" and held and me is held[0][0] and frame is held[0][1]:
            returned.set()

    table = sample_table(200_000)  # one row group that takes the thread a while to write

    async def batches() -> AsyncGenerator[pa.RecordBatch, None]:
        for batch in table.to_batches():
            yield batch

    threading.setprofile(hook)
    try:
        write = asyncio.ensure_future(
            write_parquet_atomically(
                BatchStream(batches(), "rest"),
                target,
                row_group_rows=row_group_rows,
            )
        )
        write.add_done_callback(lambda _: go.set())  # or once the write is over
        await anyio.to_thread.run_sync(opening.wait)
        write.cancel()  # what asyncio.timeout() does
        with pytest.raises(asyncio.CancelledError):
            await write
        when_raised = sorted(p.name for p in tmp_path.iterdir())
        await anyio.to_thread.run_sync(returned.wait)
        after = sorted(p.name for p in tmp_path.iterdir())
    finally:
        active = False
        threading.setprofile(None)
        go.set()
    assert after == when_raised
    assert not [name for name in after if name.endswith(".partial")]
    if after:  # finished before the cleanup could stop it: then complete
        assert pq.read_table(target).equals(table)


def test_a_staticmethod_object_does_not_poison_its_functions_profile() -> None:
    """Inspecting ``staticmethod(f)`` must not decide what ``f`` itself is: the
    cache once keyed both by ``f`` and answered for ``f`` what it found for the wrapper."""
    from dremioframe_async.orchestration import Task

    async def fetch() -> int:
        return 1

    wrapped = staticmethod(fetch)
    Task("wrapped", wrapped)
    assert Task("plain", fetch).is_async


def test_a_bound_methods_profile_is_its_functions() -> None:
    from dremioframe_async.orchestration import Task

    class Source:
        async def rows(self) -> int:
            return 1

        def count(self, context: object = None) -> int:
            return 1

    a, b = Source(), Source()
    assert Task("a", a.rows).is_async
    assert Task("b", b.rows).is_async
    counted = Task("c", a.count)
    assert not counted.is_async
    assert counted.wants_context
