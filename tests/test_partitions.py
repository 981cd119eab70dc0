"""Partitioned reads (client.partitions_to_parquet, client.query_partitions,
PartitionedExtractTask) against FakeDremio over Flight and REST."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from dremioframe_async import Pipeline
from dremioframe_async.dremio import (
    DremioClient,
    DremioConfigError,
    DremioError,
    PartitionCountMismatch,
    RetryPolicy,
)
from dremioframe_async.dremio._partitions import split_points
from dremioframe_async.tasks import PartitionedExtractTask
from dremioframe_async.testing import FakeDremio


def keyed_table(rows: int, null_every: int = 97) -> pa.Table:
    """``id`` 0..rows-1, ``k`` = id except NULL every ``null_every`` rows, ``v`` = id * 2."""
    ids = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), rows)), 1)
    k = pc.if_else(pc.equal(pc.remainder(ids, null_every), 0), None, ids)
    return pa.table({"id": ids, "k": k, "v": pc.multiply(ids, 2)})


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    retry = RetryPolicy(attempts=2, max_time=5.0, backoff=0.01, max_backoff=0.05)
    async with DremioClient(
        fake.url, token=fake.token, flight_url=fake.flight_url, retry=retry
    ) as c:
        yield c


def read_dataset(paths: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in paths]).sort_by("id")


@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_five_million_rows_in_eight_parts_over_flight_equal_the_table(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    table = keyed_table(5_000_000)
    fake.add_table("lake.big", table)
    paths = await client.partitions_to_parquet(
        "lake.big", tmp_path / "big", by="k", parts=8, via="flight"
    )
    assert [p.name for p in paths] == [f"part-{i:05d}.parquet" for i in range(8)]
    assert len(fake.flight.calls) >= 8  # the parts travelled over Flight
    got = read_dataset(paths)
    assert got.num_rows == table.num_rows
    assert got.column("id").equals(table.column("id"))
    assert got.column("v").equals(table.column("v"))
    assert got.column("k").null_count == table.column("k").null_count == 51_547
    sizes = [pq.read_metadata(p).num_rows for p in paths]
    assert min(sizes) > 600_000  # evenly spread values: parts of about 625,000 rows
    first = pq.read_table(paths[0]).column("k")
    assert first.null_count == 51_547  # the NULL part is the first one


@pytest.mark.parametrize(
    ("low", "high", "parts", "points"),
    [
        (0, 99, 4, [25, 50, 75]),
        (-10, 9, 2, [0]),
        (5, 6, 8, [6]),  # a narrow range gives fewer parts
        (7, 7, 3, []),
        (dt.date(2026, 1, 1), dt.date(2026, 1, 4), 2, [dt.date(2026, 1, 3)]),
        (
            dt.datetime(2026, 1, 1),
            dt.datetime(2026, 1, 1, 0, 0, 3, 999999),
            4,
            [
                dt.datetime(2026, 1, 1, 0, 0, 1),
                dt.datetime(2026, 1, 1, 0, 0, 2),
                dt.datetime(2026, 1, 1, 0, 0, 3),
            ],
        ),
    ],
    ids=["ints", "negative", "narrow", "one-value", "dates", "timestamps"],
)
def test_split_points(low: object, high: object, parts: int, points: list[object]) -> None:
    assert split_points(low, high, parts) == points


@pytest.mark.asyncio
async def test_skewed_dates_with_more_parts_than_streams_over_rest(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    # 900 rows on one day, 100 spread over 100 days, 2 without a day
    days = [dt.date(2026, 1, 1)] * 900 + [dt.date(2026, 1, 1) + dt.timedelta(d) for d in range(100)]
    table = pa.table({"id": list(range(1002)), "day": pa.array([*days, None, None], pa.date32())})
    fake.add_table("lake.skewed", table)
    paths = await client.partitions_to_parquet(
        "lake.skewed", tmp_path / "out", by="day", parts=16, streams=4, via="rest"
    )
    got = read_dataset(paths)
    assert got.column("id").to_pylist() == list(range(1002))
    assert len(paths) == 16


@pytest.mark.asyncio
async def test_a_query_as_source_and_timestamp_bounds(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    start = dt.datetime(2026, 11, 1)
    at = [start + dt.timedelta(minutes=i) for i in range(600)]
    fake.add_table("lake.events", pa.table({"id": list(range(600)), "ts": at}))
    paths = await client.partitions_to_parquet(
        "SELECT id, ts FROM lake.events WHERE id >= 100",
        tmp_path / "q",
        by="ts",
        parts=3,
        bounds=(start, start + dt.timedelta(minutes=299)),  # rows past it land in the last part
    )
    got = read_dataset(paths)
    assert got.column("id").to_pylist() == list(range(100, 600))
    assert pq.read_metadata(paths[2]).num_rows == 400


@pytest.mark.asyncio
async def test_a_count_that_does_not_match_removes_the_files(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    fake.add_table("lake.t", keyed_table(1000))
    stats = pa.table({"lo": [1], "hi": [999], "n": [1001]})  # one row more than the parts hold
    fake.add_response("COUNT(*) AS n", table=stats, match="substring")
    with pytest.raises(PartitionCountMismatch) as info:
        await client.partitions_to_parquet("lake.t", tmp_path / "out", by="k", parts=4)
    assert (info.value.expected, info.value.received) == (1001, 1000)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.asyncio
async def test_a_failed_part_raises_alone_and_leaves_no_file(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    fake.add_table("lake.t", keyed_table(100_000))
    fake.flight.batch_rows = 1000
    # Two streams: the planning query's (one batch: it ends before the break) and a part's.
    fake.flight.fail_mid_stream(after_batches=2, message="part broke", count=2)
    with pytest.raises(DremioError, match="part broke"):
        await client.partitions_to_parquet(
            "lake.t", tmp_path / "out", by="k", parts=4, via="flight"
        )
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.asyncio
async def test_query_partitions_yields_every_row_once(
    fake: FakeDremio, client: DremioClient
) -> None:
    table = keyed_table(50_000)
    fake.add_table("lake.t", table)
    fake.flight.batch_rows = 1000
    seen: dict[int, int] = {}
    batches = []
    async with client.query_partitions("lake.t", by="k", parts=5, buffer=2) as stream:
        async for part, batch in stream:
            seen[part.index] = seen.get(part.index, 0) + batch.num_rows
            batches.append(batch)
    assert sorted(seen) == [0, 1, 2, 3, 4]
    got = pa.Table.from_batches(batches).sort_by("id")
    assert got.column("id").equals(table.column("id"))


@pytest.mark.asyncio
async def test_leaving_query_partitions_early_stops_the_streams(
    fake: FakeDremio, client: DremioClient
) -> None:
    fake.add_table("lake.t", keyed_table(200_000))
    fake.flight.batch_rows = 100
    async with client.query_partitions("lake.t", by="k", parts=4, buffer=1) as stream:
        async for _ in stream:
            break
    # a new read still works: nothing was left holding the client's streams
    table = await client.query("SELECT count(*) AS n FROM lake.t")
    assert table.column("n").to_pylist() == [200_000]


@pytest.mark.asyncio
async def test_a_failed_part_ends_query_partitions_with_its_error(
    fake: FakeDremio, client: DremioClient
) -> None:
    fake.add_table("lake.t", keyed_table(50_000))
    fake.flight.batch_rows = 500
    # Two streams: the planning query's (one batch: it ends before the break) and a part's.
    fake.flight.fail_mid_stream(after_batches=3, message="broken part", count=2)

    async def read_all() -> None:
        async with client.query_partitions("lake.t", by="k", parts=4, via="flight") as stream:
            async for _ in stream:
                pass

    with pytest.raises(DremioError, match="broken part"):
        await read_all()


@pytest.mark.asyncio
@pytest.mark.parametrize("parts", [0, -1, True])
async def test_bad_part_counts_and_column_types(
    fake: FakeDremio, client: DremioClient, tmp_path: Path, parts: int
) -> None:
    fake.add_table("lake.t", pa.table({"s": ["a", "b"]}))
    with pytest.raises(DremioConfigError):
        await client.partitions_to_parquet("lake.t", tmp_path, by="s", parts=parts)
    with pytest.raises(DremioConfigError, match="integer, date or timestamp"):
        await client.partitions_to_parquet("lake.t", tmp_path, by="s", parts=2)


@pytest.mark.asyncio
async def test_partitioned_extract_task_in_a_pipeline(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    fake.add_table('"odd space"."t;x"', keyed_table(10_000))
    extract = PartitionedExtractTask(
        "big", table=["odd space", "t;x"], by="k", out=tmp_path / "ds", parts=4, client=client
    )
    result = await Pipeline("p").add_task(extract).run()
    assert result.status == "SUCCESS", result.tasks["big"].error
    got = read_dataset([Path(p) for p in result["big"]])
    assert got.num_rows == 10_000


@pytest.mark.asyncio
async def test_a_second_read_with_fewer_parts_leaves_only_its_own_files(
    fake: FakeDremio, client: DremioClient, tmp_path: Path
) -> None:
    fake.add_table("lake.t", keyed_table(10_000))
    out = tmp_path / "ds"
    await client.partitions_to_parquet("lake.t", out, by="k", parts=8)
    (out / "notes.txt").write_text("mine")
    paths = await client.partitions_to_parquet("lake.t", out, by="k", parts=3)
    assert sorted(p.name for p in out.iterdir()) == sorted([*(p.name for p in paths), "notes.txt"])
    assert read_dataset(paths).num_rows == 10_000


@pytest.mark.parametrize(
    ("source", "from_item"),
    [
        ("lake.big", '"lake"."big"'),
        ("select.t", '"select"."t"'),
        (["a;b", 'c"d'], '"a;b"."c""d"'),
        ("SELECT * FROM x", "(SELECT * FROM x) AS src"),
        ("  (select 1)", "(  (select 1)) AS src"),
        ("WITH q AS (SELECT 1) SELECT * FROM q", "(WITH q AS (SELECT 1) SELECT * FROM q) AS src"),
    ],
    ids=["path", "reserved-word-path", "parts", "query", "parenthesised", "with"],
)
def test_a_source_is_a_quoted_path_or_a_query(source: object, from_item: str) -> None:
    from dremioframe_async.dremio._partitions import source_sql

    assert source_sql(source) == from_item  # type: ignore[arg-type]
