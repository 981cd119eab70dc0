"""Review of the engine and Flight-path performance changes: defects found, each pinned."""

from __future__ import annotations

import threading

import pyarrow as pa

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
        i = 0
        while not done.is_set():
            i += 1
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
