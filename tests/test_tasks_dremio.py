"""Dremio tasks and sensors inside real Pipelines, against FakeDremio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from dremioframe_async import Pipeline, TaskState, task
from dremioframe_async.dremio import (
    DremioAuthError,
    DremioClient,
    DremioConnectionError,
    DremioJobFailed,
    DremioJobFailedTransient,
    DremioServerError,
    DremioSubmitUncertain,
    RetryPolicy,
)
from dremioframe_async.orchestration import TaskRetrying
from dremioframe_async.tasks import (
    DremioQueryTask,
    DremioSqlTask,
    ExpireSnapshotsTask,
    FileSensor,
    OptimizeTask,
    RefreshReflectionTask,
    RemoveOrphanFilesTask,
    RollbackTableTask,
    SensorTimeout,
    SqlSensor,
    VacuumTask,
)
from dremioframe_async.testing import FakeDremio, sample_table


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        server.add_table("lake.sales", sample_table(1100))
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    async with DremioClient(fake.url, token=fake.token, poll_interval=0.01) as c:
        yield c


@pytest.mark.asyncio
async def test_query_task_result_flows_downstream(client: DremioClient) -> None:
    query = DremioQueryTask("sales", "SELECT * FROM lake.sales ORDER BY id", client=client)

    @task
    def count(context: Any) -> int:
        return int(context["sales"].num_rows)

    result = await Pipeline("p").add_task(query.set_downstream(count())).run()
    result.raise_for_status()
    assert result["count"] == 1100
    assert result["sales"].equals(sample_table(1100))


@pytest.mark.asyncio
async def test_query_task_writes_parquet(client: DremioClient, tmp_path: Path) -> None:
    out = tmp_path / "sales.parquet"
    query = DremioQueryTask("sales", "SELECT * FROM lake.sales", client=client, output_path=out)
    result = await Pipeline("p").add_task(query).run()
    assert result["sales"] == str(out)
    assert pq.read_table(out).num_rows == 1100


@pytest.mark.asyncio
async def test_query_task_without_client_reads_environment(
    fake: FakeDremio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DREMIO_URL", fake.url)
    monkeypatch.setenv("DREMIO_PAT", fake.token)
    result = await Pipeline("p").add_task(DremioQueryTask("q", "SELECT 5 AS x")).run()
    assert result["q"].to_pylist() == [{"x": 5}]


@pytest.mark.asyncio
async def test_failed_job_fails_the_task(client: DremioClient, fake: FakeDremio) -> None:
    fake.fail_jobs("lake.sales", "boom")
    result = (
        await Pipeline("p")
        .add_task(DremioQueryTask("q", "SELECT * FROM lake.sales", client=client))
        .run()
    )
    assert result.states["q"] == TaskState.FAILED
    assert isinstance(result.errors["q"], DremioJobFailed)


@pytest.mark.asyncio
async def test_task_timeout_cancels_the_dremio_job(client: DremioClient, fake: FakeDremio) -> None:
    fake.slow_jobs("slow", latency=30)
    # Long enough for the POST to create the job first; far below its 30 s latency.
    query = DremioQueryTask("q", "SELECT 'slow' AS s", client=client, timeout=1.0)
    result = await Pipeline("p").add_task(query).run()
    assert result.states["q"] == TaskState.FAILED  # a timed-out attempt fails (docs/concepts.md)
    assert isinstance(result.errors["q"], TimeoutError)
    (job_id,) = fake.cancelled_jobs
    assert fake.jobs[job_id].state == "CANCELED"


@pytest.mark.asyncio
async def test_cancelled_run_cancels_the_dremio_job(client: DremioClient, fake: FakeDremio) -> None:
    fake.slow_jobs("slow", latency=30)
    poll = fake.hold_next(1, path="/job/", method="GET")  # the job exists once this arrives
    pipeline = Pipeline("p").add_task(DremioQueryTask("q", "SELECT 'slow' AS s", client=client))
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await pipeline.run()

        tg.start_soon(run)
        await poll.arrived.wait()
        scope.cancel()
    assert scope.cancelled_caught
    (job_id,) = fake.cancelled_jobs
    assert fake.jobs[job_id].state == "CANCELED"


MAINTENANCE = [
    pytest.param(
        lambda c: RefreshReflectionTask("t", 'lake."my view"', client=c),
        'ALTER DATASET lake."my view" REFRESH REFLECTIONS',
        id="refresh",
    ),
    pytest.param(
        lambda c: OptimizeTask("t", "lake.ice", client=c, file_options={"MIN_INPUT_FILES": 2}),
        "OPTIMIZE TABLE lake.ice REWRITE DATA USING BIN_PACK (MIN_INPUT_FILES=2)",
        id="optimize",
    ),
    pytest.param(
        lambda c: VacuumTask("t", ["lake", 'we"ird'], client=c, retain_last=3),
        'VACUUM TABLE lake."we""ird" EXPIRE SNAPSHOTS retain_last = 3',
        id="vacuum",
    ),
    pytest.param(
        lambda c: ExpireSnapshotsTask("t", "lake.ice", client=c, older_than="2024-01-01"),
        "VACUUM TABLE lake.ice EXPIRE SNAPSHOTS older_than = '2024-01-01'",
        id="expire",
    ),
    pytest.param(
        lambda c: RemoveOrphanFilesTask("t", "lake.ice", client=c),
        "VACUUM TABLE lake.ice REMOVE ORPHAN FILES",
        id="orphans",
    ),
    pytest.param(
        lambda c: RollbackTableTask("t", "lake.ice", client=c, snapshot_id="42"),
        "ROLLBACK TABLE lake.ice TO SNAPSHOT '42'",
        id="rollback",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("make", "sql"), MAINTENANCE)
async def test_maintenance_tasks_send_dremio_sql(
    client: DremioClient, fake: FakeDremio, make: Any, sql: str
) -> None:
    fake.add_response(sql, table=pa.table({"ok": [True], "summary": ["done"]}))
    result = await Pipeline("p").add_task(make(client)).run()
    assert result["t"] == [{"ok": True, "summary": "done"}]
    assert [r.body["sql"] for r in fake.requests_to("/sql")] == [sql]


@pytest.mark.asyncio
async def test_sql_sensor_pokes_until_success(client: DremioClient, fake: FakeDremio) -> None:
    pokes: list[int] = []

    def third_time(table: pa.Table) -> bool:
        pokes.append(table.num_rows)
        return len(pokes) == 3

    sensor = SqlSensor(
        "s",
        "SELECT COUNT(*) FROM lake.sales",
        client=client,
        poke_interval=0.01,
        success=third_time,
    )
    result = await Pipeline("p").add_task(sensor).run()
    assert result["s"].to_pylist() == [{"EXPR$0": 1100}]  # Dremio's name for it
    assert len(fake.requests_to("/sql")) == 3


@pytest.mark.asyncio
async def test_sql_sensor_times_out(client: DremioClient) -> None:
    sensor = SqlSensor("s", "SELECT FALSE", client=client, poke_interval=0.01, timeout=0.1)
    result = await Pipeline("p").add_task(sensor).run()
    assert result.states["s"] == TaskState.FAILED
    assert isinstance(result.errors["s"], SensorTimeout)


@pytest.mark.asyncio
async def test_file_sensor_waits_for_an_upstream_file(tmp_path: Path) -> None:
    target = tmp_path / "ready.flag"

    @task
    async def produce() -> None:
        await anyio.Path(target).write_text("ok")

    sensor = FileSensor("f", target, poke_interval=0.01, timeout=5)
    result = await Pipeline("p").add_task(produce().set_downstream(sensor)).run()
    assert result["f"] == str(target)


@pytest.mark.asyncio
async def test_file_sensor_times_out(tmp_path: Path) -> None:
    sensor = FileSensor("f", tmp_path / "never", poke_interval=0.01, timeout=0.05)
    result = await Pipeline("p").add_task(sensor).run()
    assert isinstance(result.errors["f"], SensorTimeout)
    assert "gave up" in str(result.errors["f"])


# -- what Dremio tasks retry -------------------------------------------------------------------

FAST = RetryPolicy(attempts=2, max_time=5.0, backoff=0.001, max_backoff=0.001)


def _retries() -> tuple[list[TaskRetrying], Callable[[object], None]]:
    retried: list[TaskRetrying] = []

    def listen(event: object) -> None:
        if isinstance(event, TaskRetrying):
            retried.append(event)

    return retried, listen


def _submissions(fake: FakeDremio) -> int:
    return len(fake.requests_to("/sql", "POST"))


@pytest.mark.asyncio
async def test_wrong_token_is_not_retried(fake: FakeDremio) -> None:
    async with DremioClient(fake.url, token="wrong", retry=FAST) as bad:
        query = DremioQueryTask("q", "SELECT 1", client=bad, retries=3)
        result = await Pipeline("p").add_task(query).run()
    assert isinstance(result.errors["q"], DremioAuthError)
    assert _submissions(fake) == 1


@pytest.mark.asyncio
async def test_sql_error_is_not_retried(client: DremioClient, fake: FakeDremio) -> None:
    query = DremioQueryTask("q", "SELECT * FROM nowhere.at_all", client=client, retries=3)
    result = await Pipeline("p").add_task(query).run()
    assert type(result.errors["q"]) is DremioJobFailed
    assert _submissions(fake) == 1


@pytest.mark.asyncio
async def test_uncertain_submission_is_not_retried(client: DremioClient, fake: FakeDremio) -> None:
    fake.lose_reply_next(1, path="/sql")
    task_ = DremioSqlTask("q", "INSERT INTO lake.t SELECT 1", client=client, retries=3)
    result = await Pipeline("p").add_task(task_).run()
    assert isinstance(result.errors["q"], DremioSubmitUncertain)
    assert _submissions(fake) == 1
    assert len(fake.jobs) == 1


@pytest.mark.asyncio
async def test_transient_job_failure_is_retried(client: DremioClient, fake: FakeDremio) -> None:
    fake.fail_jobs("lake.sales", "RESOURCE ERROR: the queue is full")
    query = DremioQueryTask("q", "SELECT * FROM lake.sales", client=client, retries=2)
    result = await Pipeline("p").add_task(query).run()
    assert isinstance(result.errors["q"], DremioJobFailedTransient)
    assert _submissions(fake) == 3


@pytest.mark.asyncio
async def test_server_errors_after_the_client_budget_are_retried(fake: FakeDremio) -> None:
    fake.fail_next(100, 503, path="/sql")
    async with DremioClient(fake.url, token=fake.token, retry=FAST) as c:
        query = DremioQueryTask("q", "SELECT 1", client=c, retries=2)
        result = await Pipeline("p").add_task(query).run()
    assert isinstance(result.errors["q"], DremioServerError)
    assert _submissions(fake) == 3 * FAST.attempts


@pytest.mark.asyncio
async def test_connection_errors_are_retried_by_the_task() -> None:
    async with FakeDremio() as gone:
        url, token = gone.url, gone.token
    retried, listen = _retries()
    async with DremioClient(url, token=token, retry=FAST) as c:
        query = DremioQueryTask("q", "SELECT 1", client=c, retries=2)
        result = await Pipeline("p").add_task(query).run(on_event=listen)
    assert isinstance(result.errors["q"], DremioConnectionError)
    assert [e.attempt for e in retried] == [1, 2]


@pytest.mark.asyncio
async def test_users_retry_on_wins(client: DremioClient, fake: FakeDremio) -> None:
    query = DremioQueryTask(
        "q", "SELECT * FROM nowhere.at_all", client=client, retries=2, retry_on=DremioJobFailed
    )
    result = await Pipeline("p").add_task(query).run()
    assert isinstance(result.errors["q"], DremioJobFailed)
    assert _submissions(fake) == 3


@pytest.mark.asyncio
async def test_sensor_timeout_is_not_retried(client: DremioClient, fake: FakeDremio) -> None:
    sensor = SqlSensor(
        "s", "SELECT FALSE", client=client, poke_interval=0.01, timeout=0.05, retries=2
    )
    retried, listen = _retries()
    result = await Pipeline("p").add_task(sensor).run(on_event=listen)
    assert isinstance(result.errors["s"], SensorTimeout)
    assert result.states["s"] == TaskState.FAILED
    assert retried == []
