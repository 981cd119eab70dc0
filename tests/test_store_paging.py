"""Paged run listing (``query_runs``): filters, totals and keyset cursors, on every store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import _store_fixtures
import pytest

from dremioframe_async.orchestration import Event, RunFinished, RunStarted
from dremioframe_async.store import RunQuery, RunStatus, RunStore, SQLiteStore
from dremioframe_async.store._paging import PageSQL, decode_cursor, encode_cursor

store_factory = _store_fixtures.store_factory
store = _store_fixtures.store
T0 = 1_700_000_000.0


def runs(n: int) -> list[Event]:
    """``n`` runs; pairs share a start time (the run id breaks the tie); odd ones fail."""
    events: list[Event] = []
    for i in range(n):
        run_id, pipeline, start = f"r{i:03d}", ("etl", "load")[i % 3 == 0], T0 + i // 2
        status = "FAILED" if i % 2 else "SUCCESS"
        events.append(RunStarted(run_id, pipeline, start, {}, ()))
        events.append(RunFinished(run_id, pipeline, status, start + 1, start))
    return events


def expected(n: int, *, pipeline: str | None = None, status: str | None = None) -> list[str]:
    keep = [
        (T0 + i // 2, f"r{i:03d}")
        for i in range(n)
        if (pipeline is None or ("etl", "load")[i % 3 == 0] == pipeline)
        and (status is None or ("SUCCESS", "FAILED")[i % 2] == status)
    ]
    return [run_id for _, run_id in sorted(keep, reverse=True)]


async def walk(store: RunStore, **filters) -> tuple[list[str], list[str], int]:
    """Page forward to the end, then back to the start; return both orders and the total."""
    forward: list[str] = []
    page = await store.query_runs(RunQuery(limit=4, **filters))
    pages = [page]
    while page.older is not None:
        page = await store.query_runs(RunQuery(limit=4, before=page.older, **filters))
        pages.append(page)
    forward = [r.run_id for p in pages for r in p.runs]
    backward: list[str] = [r.run_id for r in page.runs]
    while page.newer is not None:
        page = await store.query_runs(RunQuery(limit=4, after=page.newer, **filters))
        backward = [r.run_id for r in page.runs] + backward
    return forward, backward, pages[0].total


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "filters",
    [{}, {"pipeline": "load"}, {"status": "FAILED"}, {"pipeline": "etl", "status": "SUCCESS"}],
    ids=["all", "pipeline", "status", "both"],
)
async def test_pages_walk_every_run_once_both_ways(store: RunStore, filters: dict) -> None:
    await store.record(runs(23))
    forward, backward, total = await walk(store, **filters)
    want = expected(23, **filters)
    assert forward == want
    assert backward == want
    assert total == len(want)


@pytest.mark.asyncio
async def test_page_carries_counts_and_status(store: RunStore) -> None:
    await store.record(runs(3))
    page = await store.query_runs(RunQuery(status=RunStatus.FAILED))
    assert [(r.run_id, r.status) for r in page.runs] == [("r001", RunStatus.FAILED)]
    assert (page.older, page.newer, page.total) == (None, None, 1)
    empty = await store.query_runs(RunQuery(pipeline="nope"))
    assert (empty.runs, empty.total, empty.older, empty.newer) == ((), 0, None, None)


@pytest.mark.asyncio
async def test_pipeline_substring_and_date_range(store: RunStore) -> None:
    names = ["etl_daily", "ETL_hourly", "load", "a%b", "a_b", "axb", "Étape_nuit"]
    events: list[Event] = []
    for i, name in enumerate(names):
        events.append(RunStarted(f"s{i}", name, T0 + i * 100, {}, ()))
        events.append(RunFinished(f"s{i}", name, "SUCCESS", T0 + i * 100 + 1, T0 + i * 100))
    await store.record(events)

    async def ids(**filters) -> list[str]:
        forward, backward, total = await walk(store, **filters)
        assert forward == backward
        assert total == len(forward)
        return forward

    assert await ids(pipeline_contains="etl") == ["s1", "s0"]  # any case
    assert await ids(pipeline_contains="a%b") == ["s3"]  # % and _ are literal
    assert await ids(pipeline_contains="a_b") == ["s4"]
    assert await ids(since=T0 + 100, until=T0 + 300) == ["s2", "s1"]  # until excluded
    assert await ids(pipeline_contains="L", since=T0 + 100) == ["s2", "s1"]
    assert await ids(pipeline_contains="nothing") == []
    for text in ("Étape", "étape", "ÉTAPE_N"):  # beyond ASCII, in any case (SQLite too)
        assert await ids(pipeline_contains=text) == ["s6"], text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"since": 2.0, "until": 1.0},
        {"limit": 0},
        {"limit": 1001},
        {"limit": True},
        {"before": "x", "after": "y"},
        {"before": "7"},
        {"until": float("nan")},
        {"since": float("inf")},
        {"since": "2026-01-01"},
    ],
    ids=[
        *("since-after-until", "zero", "too-big", "bool", "both-cursors", "bad-cursor"),
        *("nan", "infinite", "text"),
    ],
)
def test_bad_queries_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=r"limit|before|cursor|since|until"):
        RunQuery(**kwargs)


def test_cursor_round_trip_is_exact() -> None:
    started = 1_700_000_000.123456789
    assert decode_cursor(encode_cursor(started, "a:b")) == (started, "a:b")
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor("nan:x")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query",
    [
        RunQuery(),
        RunQuery(before=encode_cursor(T0, "r")),
        RunQuery(after=encode_cursor(T0, "r")),
        RunQuery(pipeline="etl", before=encode_cursor(T0, "r")),
        RunQuery(status=RunStatus.FAILED, before=encode_cursor(T0, "r")),
    ],
    ids=["first", "older", "newer", "pipeline", "status"],
)
async def test_sqlite_pages_come_from_an_index_without_sorting(
    tmp_path: Path, query: RunQuery
) -> None:
    async with SQLiteStore(tmp_path / "runs.sqlite") as opened:
        await opened.record(runs(5))
    conn = sqlite3.connect(tmp_path / "runs.sqlite")
    try:
        sql, params = PageSQL(query, "runs", lambda n: "?").rows(query, "run_id")
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    finally:
        conn.close()
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
