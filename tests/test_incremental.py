"""IncrementalExtractTask against FakeDremio over Flight, with failures injected.

The central test runs the task 20 times over a table that grows between runs,
with a failure injected at a different point in 5 of them, and checks that the
union of the files is the table: every row once, none missing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from dremioframe_async import Pipeline
from dremioframe_async.dremio import DremioClient, RetryPolicy
from dremioframe_async.orchestration import RunContext, TaskState, _dispatch
from dremioframe_async.store import SQLiteStore, StoreUnavailable
from dremioframe_async.tasks import (
    IncrementalExtractError,
    IncrementalExtractTask,
    SqlArgumentError,
    Watermark,
)
from dremioframe_async.tasks._incremental import increment_files
from dremioframe_async.testing import FakeDremio

TABLE = "lake.events"
T0 = dt.datetime(2026, 11, 1)


class Injected(RuntimeError):
    pass


class InjectingTask(IncrementalExtractTask):
    """The task with two failure points a test can switch on."""

    fail_after_write = False
    fail_after_state = False

    async def _written(self, path: Path) -> None:
        assert path.exists()
        if self.fail_after_write:
            raise Injected(f"after writing {path.name}")

    async def _execute(self, context: RunContext) -> str | None:
        result = await super()._execute(context)
        if self.fail_after_state:  # the new watermark is set: it must not be committed
            raise Injected("after setting the watermark")
        return result


class RefusingStore(SQLiteStore):
    """A store that can refuse batches carrying state writes (a crash before the commit)."""

    refuse = False

    async def record(self, events: Any) -> None:
        if self.refuse and any(getattr(e, "state_writes", None) for e in events):
            raise StoreUnavailable(self.name, "injected: the SUCCESS record was not committed")
        await super().record(events)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        server.flight.batch_rows = 2  # several batches per increment: room to break mid-stream
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    retry = RetryPolicy(attempts=2, max_time=5.0, backoff=0.01, max_backoff=0.05)
    async with DremioClient(
        fake.url, token=fake.token, flight_url=fake.flight_url, retry=retry
    ) as c:
        yield c


def rows_for_run(i: int, kind: str) -> list[dict[str, Any]]:
    """Run i's new rows: 5 of them (50 before the first), pairs sharing a watermark.

    Each run's values are past every earlier value (a row with the value of an
    earlier run is a late row: see the lookback test).
    """
    count, first = (50, 0) if i == 0 else (5, 50 + (i - 1) * 5)
    out = []
    for j, n in enumerate(range(first, first + count)):
        step = 100 * i + j // 2  # ties: two rows per watermark value
        wm: Any = T0 + dt.timedelta(minutes=step) if kind == "timestamp" else 1000 + step
        out.append({"id": n, "wm": wm, "payload": f"row {n}"})
    return out


def as_table(rows: list[dict[str, Any]], kind: str) -> pa.Table:
    wm_type = pa.timestamp("us") if kind == "timestamp" else pa.int64()
    schema = pa.schema([("id", pa.int64()), ("wm", wm_type), ("payload", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def extracted_ids(out: Path) -> list[int]:
    ids: list[int] = []
    for _, path in increment_files(out):
        ids.extend(pq.read_table(path, columns=["id"]).column(0).to_pylist())
    return sorted(ids)


def break_stream(fake: FakeDremio, via: str, hard: bool) -> None:
    """Break the next result stream part-way (Flight), or its pages (REST)."""
    if via == "flight":
        fake.flight.fail_mid_stream(after_batches=2 if hard else 1, unavailable=hard)
    elif hard:
        fake.fail_next(2, 500, path="/results")  # past the client's retry budget
    else:
        fake.short_pages(1, missing=1)  # a page short of a row: DremioResultIncomplete


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "via"),
    [("timestamp", "flight"), ("integer", "flight"), ("timestamp", "rest"), ("integer", "rest")],
)
async def test_twenty_runs_with_five_failures_extract_every_row_once(
    fake: FakeDremio,
    client: DremioClient,
    tmp_path: Path,
    kind: str,
    via: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_dispatch, "RECORD_BACKOFF", (0.0,))  # refused batches: give up at once
    out = tmp_path / "out"
    extract = InjectingTask("events", table=TABLE, watermark="wm", out=out, client=client, via=via)
    pipeline = Pipeline("nightly").add_task(extract)
    store = RefusingStore(tmp_path / "runs.sqlite")
    rows: list[dict[str, Any]] = []
    inject: dict[int, Callable[[], None]] = {
        2: lambda: break_stream(fake, via, hard=False),
        5: lambda: setattr(extract, "fail_after_write", True),
        8: lambda: setattr(store, "refuse", True),
        11: lambda: break_stream(fake, via, hard=True),
        14: lambda: setattr(extract, "fail_after_state", True),
    }
    outcomes = []
    try:
        for i in range(20):
            if i != 16:  # run 16 finds nothing new
                rows.extend(rows_for_run(i, kind))
            fake.add_table(TABLE, as_table(rows, kind))
            extract.fail_after_write = extract.fail_after_state = store.refuse = False
            if i in inject:
                inject[i]()
            before = await store.get_state("nightly", "events.watermark")
            result = await pipeline.run(store=store)
            failed = result.states["events"] is not TaskState.SUCCESS or result.history_error
            outcomes.append("failed" if failed else result["events"] and "file")
            after = await store.get_state("nightly", "events.watermark")
            if failed or result["events"] is None:
                assert after == before, f"run {i}: the watermark moved without a committed file"
            else:
                assert after["generation"] == (before or {"generation": 0})["generation"] + 1
                assert out / after["file"] == Path(result["events"])  # the file is in place
    finally:
        await store.aclose()
    assert outcomes.count("failed") == 5, outcomes
    assert outcomes[16] is None
    ids = extracted_ids(out)
    assert ids == sorted(r["id"] for r in rows)  # every row, each once
    async with RefusingStore(tmp_path / "runs.sqlite") as reopened:
        state = await reopened.get_state("nightly", "events.watermark")
    assert Watermark.from_json(state["watermark"]) == Watermark.of(rows[-1]["wm"])
    assert state["generation"] == len(increment_files(out)) == 20 - 5 - 1
    names = [p.name for _, p in increment_files(out)]
    assert names == sorted(names)  # names sort by time as generations do


@pytest.mark.asyncio
async def test_lookback_rereads_late_rows_and_says_so(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    rows = rows_for_run(0, "integer")
    fake.add_table(TABLE, as_table(rows, "integer"))
    out = tmp_path / "out"
    extract = IncrementalExtractTask(
        "events", table=TABLE, watermark="wm", out=out, client=client, lookback=2
    )
    store = SQLiteStore(tmp_path / "runs.sqlite")
    p = Pipeline("nightly").add_task(extract)
    try:
        await p.run(store=store)
        late = {"id": 999, "wm": rows[-1]["wm"] - 1, "payload": "late"}  # behind the watermark
        rows.append(late)
        fake.add_table(TABLE, as_table(rows, "integer"))
        second = await p.run(store=store)
    finally:
        await store.aclose()
    new = pq.read_table(second["events"]).column("id").to_pylist()
    assert 999 in new  # caught by the lookback
    # ... together with the rows within 2 of the old watermark, extracted again on purpose
    assert sorted(new) == sorted(r["id"] for r in rows if r["wm"] > rows[49]["wm"] - 2)


@pytest.mark.asyncio
async def test_initial_bound_and_an_empty_table(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    fake.add_table(TABLE, as_table(rows_for_run(0, "timestamp"), "timestamp"))
    out = tmp_path / "out"
    start = T0 + dt.timedelta(minutes=20)
    extract = IncrementalExtractTask(
        "events", table=TABLE, watermark="wm", out=out, client=client, initial=start
    )
    store = SQLiteStore(tmp_path / "runs.sqlite")
    try:
        first = await Pipeline("nightly").add_task(extract).run(store=store)
        assert extracted_ids(out) == list(range(42, 50))  # strictly after minute 20
        again = await Pipeline("nightly").add_task(extract).run(store=store)
    finally:
        await store.aclose()
    assert first.status == again.status == "SUCCESS"
    assert again["events"] is None
    assert len(increment_files(out)) == 1


@pytest.mark.asyncio
async def test_files_ahead_of_the_state_are_refused_not_deleted(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    fake.add_table(TABLE, as_table(rows_for_run(0, "integer"), "integer"))
    out = tmp_path / "out"
    out.mkdir()
    stray = out / "20261101T000000000000Z-g000007.parquet"
    pq.write_table(as_table([], "integer"), stray)
    extract = IncrementalExtractTask("events", table=TABLE, watermark="wm", out=out, client=client)
    store = SQLiteStore(tmp_path / "runs.sqlite")
    try:
        result = await Pipeline("nightly").add_task(extract).run(store=store)
    finally:
        await store.aclose()
    assert isinstance(result.tasks["events"].error, IncrementalExtractError)
    assert stray.exists()


# -- literals and identifiers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (dt.datetime(2026, 1, 2, 3, 4, 5, 123456), "TIMESTAMP '2026-01-02 03:04:05.123456'"),
        (
            dt.datetime(2026, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "TIMESTAMP '2026-01-02 03:04:05.000000'",
        ),
        (dt.date(2026, 1, 2), "DATE '2026-01-02'"),
        (-42, "-42"),
        (Decimal("12.50"), "12.50"),
        (Decimal("1E+3"), "1000"),
        ("it's", "'it''s'"),
        ("'; DROP TABLE x; --", "'''; DROP TABLE x; --'"),
    ],
    ids=["timestamp", "aware-timestamp", "date", "int", "decimal", "decimal-exp", "quote", "inj"],
)
def test_watermark_literals(value: Any, literal: str) -> None:
    mark = Watermark.of(value)
    assert mark.literal() == literal
    assert Watermark.from_json(mark.to_json()) == mark


@pytest.mark.parametrize(
    "stored",
    [
        {"kind": "integer", "value": "1; DROP TABLE x"},
        {"kind": "decimal", "value": "1 OR 1=1"},
        {"kind": "timestamp", "value": "2026-01-01' OR '1'='1"},
        {"kind": "date", "value": 5},
        {"kind": "sql", "value": "x"},
        "1",
    ],
    ids=["int-text", "decimal-text", "timestamp-text", "date-int", "unknown-kind", "bare"],
)
def test_tampered_stored_watermarks_are_refused(stored: Any) -> None:
    with pytest.raises(SqlArgumentError):
        Watermark.from_json(stored)


@pytest.mark.parametrize("value", [1.5, True, None, b"x", Decimal("NaN")])
def test_watermarks_of_other_types_are_refused(value: Any) -> None:
    with pytest.raises(SqlArgumentError):
        Watermark.of(value)


def test_identifiers_are_quoted() -> None:
    task = IncrementalExtractTask(
        "x",
        table=["my space", 'we"ird', "t; DROP TABLE y"],
        watermark='up"dated.at;',
        out="unused",
        columns=["a b", "select"],
        client="dremio",
    )
    sql = task.sql(Watermark.of("it's"))
    assert sql == (
        'SELECT "a b", "select", "up""dated.at;" FROM "my space"."we""ird"."t; DROP TABLE y" '
        "WHERE \"up\"\"dated.at;\" > 'it''s'"
    )


@pytest.mark.asyncio
async def test_hostile_names_and_string_watermarks_run_as_data(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    """Names with quotes, dots and semicolons, and a watermark holding a quote, on FakeDremio."""
    path = '"odd; space"."tab""le.x"'
    table = pa.table({"k'ey": ["a", "it's", "it's z", "z"], "n": [1, 2, 3, 4]})
    fake.add_table(path, table)
    extract = IncrementalExtractTask(
        "odd",
        table=["odd; space", 'tab"le.x'],
        watermark="k'ey",
        out=tmp_path / "out",
        client=client,
        initial="it's",
    )
    store = SQLiteStore(tmp_path / "runs.sqlite")
    try:
        result = await Pipeline("odd").add_task(extract).run(store=store)
        stored = await store.get_state("odd", "odd.watermark")
    finally:
        await store.aclose()
    assert result.status == "SUCCESS", result.tasks["odd"].error
    assert sorted(pq.read_table(result["odd"]).column("n").to_pylist()) == [3, 4]
    assert stored["watermark"] == {"kind": "string", "value": "z"}


@pytest.mark.asyncio
async def test_no_store_means_the_watermark_cannot_be_kept(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    fake.add_table(TABLE, as_table(rows_for_run(0, "integer"), "integer"))
    extract = IncrementalExtractTask(
        "events", table=TABLE, watermark="wm", out=tmp_path, client=client
    )
    result = await Pipeline("nightly").add_task(extract).run()
    assert result.states["events"] is TaskState.FAILED
    await anyio.lowlevel.checkpoint()


@pytest.mark.asyncio
async def test_a_state_of_another_shape_is_refused(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    fake.add_table(TABLE, as_table(rows_for_run(0, "integer"), "integer"))
    extract = IncrementalExtractTask(
        "events", table=TABLE, watermark="wm", out=tmp_path / "out", client=client
    )
    store = SQLiteStore(tmp_path / "runs.sqlite")
    try:
        await store.set_state("nightly", "events.watermark", "2026-11-01")
        result = await Pipeline("nightly").add_task(extract).run(store=store)
    finally:
        await store.aclose()
    assert isinstance(result.tasks["events"].error, IncrementalExtractError)
    assert "not this task's" in str(result.tasks["events"].error)
