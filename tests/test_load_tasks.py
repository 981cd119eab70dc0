"""MergeTask and InsertSelectTask on FakeDremio, and the never-twice rule for writes.

A data-changing statement is never submitted twice once it may have reached
Dremio, whatever the task's retry settings; a SELECT may be re-run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pyarrow as pa
import pytest
import pytest_asyncio

from dremioframe_async import Pipeline
from dremioframe_async.dremio import (
    DremioClient,
    DremioStatementUncertain,
    RetryPolicy,
    is_data_changing,
)
from dremioframe_async.orchestration import TaskState
from dremioframe_async.tasks import (
    DremioQueryTask,
    DremioSqlTask,
    InsertSelectTask,
    MergeTask,
    SqlArgumentError,
    merge_sql,
)
from dremioframe_async.testing import FakeDremio


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        server.add_table("lake.customers", pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]}))
        server.add_table("stage.updates", pa.table({"id": [2, 4], "name": ["B", "D"]}))
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    retry = RetryPolicy(attempts=3, max_time=5.0, backoff=0.01, max_backoff=0.02)
    async with DremioClient(fake.url, token=fake.token, retry=retry) as c:
        yield c


async def rows(client: DremioClient, table: str = "lake.customers") -> list[tuple[Any, ...]]:
    result = await client.query(f"SELECT id, name FROM {table} ORDER BY id")
    return list(zip(*(c.to_pylist() for c in result.columns), strict=True))


def submissions(fake: FakeDremio, verb: str) -> int:
    return sum(1 for job in fake.jobs.values() if job.sql.lstrip().upper().startswith(verb))


@pytest.mark.asyncio
async def test_merge_updates_matched_rows_and_inserts_the_others(
    fake: FakeDremio, client: DremioClient
) -> None:
    merge = MergeTask(
        "merge",
        target="lake.customers",
        source="stage.updates",
        on=["id"],
        columns=["name"],
        client=client,
    )
    result = await Pipeline("load").add_task(merge).run()
    assert result.status == "SUCCESS", result.tasks["merge"].error
    assert result["merge"] == {"Records": 2}
    assert await rows(client) == [(1, "a"), (2, "B"), (3, "c"), (4, "D")]


@pytest.mark.asyncio
async def test_merge_from_a_query_inserting_only(client: DremioClient) -> None:
    merge = MergeTask(
        "merge",
        target="lake.customers",
        source_sql="SELECT id, upper(name) AS name FROM stage.updates",
        on="id",
        columns=["name"],
        update=False,
        client=client,
    )
    result = await Pipeline("load").add_task(merge).run()
    assert result["merge"] == {"Records": 1}
    assert await rows(client) == [(1, "a"), (2, "b"), (3, "c"), (4, "D")]


@pytest.mark.asyncio
async def test_insert_select_from_a_query_and_from_a_table(client: DremioClient) -> None:
    by_query = InsertSelectTask(
        "by_query",
        target="lake.customers",
        select="SELECT id + 10, name FROM stage.updates",
        client=client,
    )
    by_table = InsertSelectTask(
        "by_table",
        target="lake.customers",
        source="stage.updates",
        columns=["id", "name"],
        client=client,
    )
    by_query.set_downstream(by_table)
    result = await Pipeline("load").add_task(by_query).run()
    assert result["by_query"] == result["by_table"] == {"Records": 2}
    assert await rows(client) == [
        (1, "a"),
        (2, "b"),
        (2, "B"),
        (3, "c"),
        (4, "D"),
        (12, "B"),
        (14, "D"),
    ]


def test_generated_sql_quotes_every_identifier() -> None:
    sql = merge_sql(
        ["my space", 'cust"omers'],
        "stage.updates",
        on=["id", "key; DROP TABLE x"],
        columns=["na.me", "select"],
    )
    assert sql == (
        'MERGE INTO "my space"."cust""omers" AS t USING stage.updates AS s '
        'ON t.id = s.id AND t."key; DROP TABLE x" = s."key; DROP TABLE x" '
        'WHEN MATCHED THEN UPDATE SET "na.me" = s."na.me", "select" = s."select" '
        'WHEN NOT MATCHED THEN INSERT (id, "key; DROP TABLE x", "na.me", "select") '
        'VALUES (s.id, s."key; DROP TABLE x", s."na.me", s."select")'
    )
    insert = InsertSelectTask("i", target='a."b;c"', source=["x", "y'z"], client="dremio")
    assert insert.statement == 'INSERT INTO a."b;c" SELECT * FROM x."y\'z"'


@pytest.mark.parametrize(
    "kwargs",
    [
        {"on": [], "columns": ["a"]},
        {"on": ["k"], "columns": ["a"], "update": False, "insert": False},
        {"on": ["k"], "columns": ["a"], "source_sql": "SELECT 1"},
    ],
    ids=["no-key", "nothing-to-do", "two-sources"],
)
def test_merge_arguments_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SqlArgumentError):
        merge_sql("t", "s", **kwargs)


@pytest.mark.parametrize(
    ("sql", "changing"),
    [
        ("SELECT * FROM t", False),
        ("  -- insert into x\n select 1", False),
        ("/* MERGE */ (SELECT 'DELETE FROM t')", False),
        ("insert into t values (1)", True),
        ("(\nMERGE INTO t USING s ON t.k = s.k WHEN MATCHED THEN DELETE)", True),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", True),
        ("WITH x AS (SELECT 'update') SELECT * FROM x", False),
        ("OPTIMIZE TABLE t", True),
        ("VACUUM TABLE t EXPIRE SNAPSHOTS", True),
        ("CREATE TABLE t AS SELECT 1", True),
        ("ALTER TABLE t ADD COLUMNS (c INT)", True),
        ("", False),
    ],
)
def test_data_changing_statements_are_recognised(sql: str, changing: bool) -> None:
    assert is_data_changing(sql) is changing


@pytest.mark.asyncio
async def test_an_insert_whose_status_polls_fail_is_not_retried(
    fake: FakeDremio, client: DremioClient
) -> None:
    """Status polls fail past the client's budget; the cancel lands after the INSERT ran.

    With retries on every exception, the task must still not submit the INSERT again.
    """
    fake.fail_status_polls(count=3)  # the client's retry budget for one status read
    fake.cancel_too_late()
    insert = InsertSelectTask(
        "insert",
        target="lake.customers",
        source="stage.updates",
        client=client,
        retries=3,
        retry_on=Exception,
        retry_delay=0,
    )
    result = await Pipeline("load").add_task(insert).run()
    assert submissions(fake, "INSERT") == 1
    assert await rows(client) == [(1, "a"), (2, "b"), (2, "B"), (3, "c"), (4, "D")]
    assert result.states["insert"] is TaskState.FAILED
    assert isinstance(result.tasks["insert"].error, DremioStatementUncertain)
    assert result.tasks["insert"].attempts == 1


@pytest.mark.asyncio
async def test_the_client_raises_uncertain_for_a_write_it_lost_track_of(
    fake: FakeDremio, client: DremioClient
) -> None:
    fake.fail_status_polls(count=3)
    with pytest.raises(DremioStatementUncertain) as info:
        await client.query("INSERT INTO lake.customers SELECT * FROM stage.updates")
    assert info.value.never_retry is True
    assert fake.cancelled_jobs == [info.value.job_id]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [DremioSqlTask, DremioQueryTask])
async def test_a_retry_after_an_attempt_timeout_follows_the_first_job(
    fake: FakeDremio, client: DremioClient, kind: type[DremioSqlTask | DremioQueryTask]
) -> None:
    """The engine's timeout= cancels the attempt; the cancel lands too late; the retry
    picks up the job that ran instead of inserting again."""
    fake.slow_jobs("INSERT INTO", latency=30.0)
    fake.cancel_too_late()
    insert = kind(
        "insert",
        "INSERT INTO lake.customers SELECT * FROM stage.updates",
        client=client,
        timeout=2.0,  # time for the POST to create the job; far below its 30 s latency
        retries=2,
        retry_on=TimeoutError,
        retry_delay=0,
    )
    result = await Pipeline("load").add_task(insert).run()
    assert result.status == "SUCCESS", result.tasks["insert"].error
    counts = result["insert"] if kind is DremioSqlTask else result["insert"].to_pylist()
    assert counts == [{"Records": 2}]
    assert result.tasks["insert"].attempts == 2
    assert submissions(fake, "INSERT") == 1
    assert len(await rows(client)) == 5


@pytest.mark.asyncio
async def test_a_select_may_still_be_re_run(fake: FakeDremio, client: DremioClient) -> None:
    fake.fail_status_polls(count=3)
    query = DremioQueryTask(
        "q", "SELECT count(*) AS n FROM lake.customers", client=client, retries=1, retry_delay=0
    )
    result = await Pipeline("read").add_task(query).run()
    assert result.status == "SUCCESS"
    assert result["q"].column("n").to_pylist() == [3]
    assert submissions(fake, "SELECT") == 2


@pytest.mark.asyncio
async def test_a_streamed_write_runs_as_a_rest_job_and_is_never_resubmitted(
    fake: FakeDremio, client: DremioClient
) -> None:
    fake.fail_status_polls(count=3)
    sql = "INSERT INTO lake.customers SELECT * FROM stage.updates"

    async def stream_all() -> list[Any]:
        async with client.stream(sql) as batches:
            return [b.to_pylist() async for b in batches]

    with pytest.raises(DremioStatementUncertain):
        await stream_all()
    assert submissions(fake, "INSERT") == 1
    assert await stream_all() == [[{"Records": 2}]]  # a new call is a new statement: it runs


@pytest.mark.asyncio
async def test_a_write_goes_over_rest_even_when_flight_is_the_default() -> None:
    async with FakeDremio(flight=True) as fake:
        fake.add_table("lake.t", pa.table({"id": [1]}))
        async with DremioClient(fake.url, token=fake.token, flight_url=fake.flight_url) as client:
            done = await client.query("INSERT INTO lake.t VALUES (2)")
            assert done.to_pylist() == [{"Records": 1}]
            assert fake.flight.calls == []  # a REST job: a handle the client can poll again
            assert submissions(fake, "INSERT") == 1
            count = await client.query("SELECT count(*) AS n FROM lake.t")  # over Flight
            assert count.column("n").to_pylist() == [2]
            assert {c.sql for c in fake.flight.calls} == {"SELECT count(*) AS n FROM lake.t"}
