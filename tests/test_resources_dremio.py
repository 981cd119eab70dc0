"""A Dremio client as a run resource, against FakeDremio (username/password: one login each).

The Dremio layer is asyncio-only, so these tests use pytest-asyncio; the
resource machinery itself is tested on asyncio and trio in test_resources.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Self

import anyio
import pytest
import pytest_asyncio

from dremioframe_async import Pipeline, TaskState, task
from dremioframe_async.dremio import DremioClient, DremioConfigError
from dremioframe_async.orchestration import PipelineDefinitionError, ResourceError
from dremioframe_async.tasks import (
    DataQualityTask,
    DremioQueryTask,
    DremioSqlTask,
    NotNull,
    SqlSensor,
)
from dremioframe_async.testing import FakeDremio, sample_table

pytestmark = pytest.mark.asyncio

GUARD = 60  # seconds; a liveness bound only
_ENV = ("DREMIO_URL", "DREMIO_PAT", "DREMIO_USERNAME", "DREMIO_PASSWORD", "DREMIO_PROJECT_ID")


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        server.add_table("lake.sales", sample_table(30))
        yield server


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def env(fake: FakeDremio, monkeypatch: pytest.MonkeyPatch, no_env: None) -> None:
    monkeypatch.setenv("DREMIO_URL", fake.url)
    monkeypatch.setenv("DREMIO_USERNAME", fake.username)
    monkeypatch.setenv("DREMIO_PASSWORD", fake.password)


class CountingClient(DremioClient):
    """A DremioClient that counts how often it is opened and closed."""

    opened = 0
    closed = 0

    async def __aenter__(self) -> Self:
        type(self).opened += 1
        return await super().__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        type(self).closed += 1
        await super().__aexit__(*exc)


@pytest.fixture
def counting(fake: FakeDremio) -> type[CountingClient]:
    class Counting(CountingClient):
        opened = 0
        closed = 0

        def __init__(self) -> None:
            super().__init__(
                fake.url, username=fake.username, password=fake.password, poll_interval=0.005
            )

    return Counting


def _logins(fake: FakeDremio) -> int:
    return len(fake.requests_to("/apiv2/login", "POST"))


async def test_a_fan_out_of_200_tasks_logs_in_once(
    fake: FakeDremio, counting: type[CountingClient], no_env: None
) -> None:
    @task(resources=("dremio",))
    async def count(dremio: DremioClient) -> int:
        table = await dremio.query("SELECT COUNT(*) AS n FROM lake.sales")
        return int(table.column(0)[0].as_py())

    pipeline = Pipeline("fan_out", resources={"dremio": counting})
    for i in range(199):
        pipeline.add_task(DremioQueryTask(f"q{i}", f"SELECT {i} AS i"))
    pipeline.add_task(count())
    with anyio.fail_after(GUARD):
        result = await pipeline.run()
    assert result.status == "SUCCESS", result.errors
    assert result["q123"].to_pylist() == [{"i": 123}]
    assert result["count"] == 30
    assert len(fake.requests_to("/sql", "POST")) == 200
    assert _logins(fake) == 1
    assert (counting.opened, counting.closed) == (1, 1)


async def test_without_a_declared_client_one_per_run_from_the_environment(
    fake: FakeDremio, env: None
) -> None:
    pipeline = Pipeline("from_env")
    for i in range(30):
        pipeline.add_task(DremioSqlTask(f"q{i}", f"SELECT {i} AS i", retries=2))
    pipeline.add_task(SqlSensor("ready", "SELECT TRUE", poke_interval=0.01))
    first = await pipeline.run()
    assert first.status == "SUCCESS", first.errors
    assert first["q7"] == [{"i": 7}]
    assert _logins(fake) == 1  # not one per task, nor one per attempt
    second = await pipeline.run()
    assert second.status == "SUCCESS"
    assert _logins(fake) == 2  # and a fresh client for the next run


async def test_a_run_resource_replaces_the_pipeline_s_environment_client(
    fake: FakeDremio, counting: type[CountingClient], no_env: None
) -> None:
    # Declared at module level from the environment (unset here); a test passes its own.
    pipeline = Pipeline("override", resources={"dremio": DremioClient})
    pipeline.add_task(DremioQueryTask("q", "SELECT 1 AS one"))
    result = await pipeline.run(resources={"dremio": counting})
    assert result["q"].to_pylist() == [{"one": 1}]
    assert (counting.opened, counting.closed) == (1, 1)


async def test_a_missing_environment_fails_only_the_dremio_tasks(no_env: None) -> None:
    @task
    async def local() -> str:
        return "fine"

    pipeline = Pipeline("no_env").add_task(local())
    pipeline.add_task(DremioQueryTask("q1", "SELECT 1"))
    pipeline.add_task(DremioSqlTask("q2", "SELECT 2"))
    result = await pipeline.run()
    assert result["local"] == "fine"
    for key in ("q1", "q2"):
        assert result.states[key] is TaskState.FAILED
        error = result.errors[key]
        assert isinstance(error, ResourceError)
        assert isinstance(error.__cause__, DremioConfigError)


async def test_client_names_another_resource(
    fake: FakeDremio, counting: type[CountingClient], no_env: None
) -> None:
    pipeline = Pipeline("named").add_task(DremioQueryTask("q", "SELECT 2 AS two", client="lake"))
    with pytest.raises(PipelineDefinitionError, match="resource 'lake' is needed by task 'q'"):
        await pipeline.run()
    result = await pipeline.run(resources={"lake": counting})
    assert result["q"].to_pylist() == [{"two": 2}]
    assert _logins(fake) == 1


async def test_the_client_is_closed_when_the_run_is_cancelled(
    fake: FakeDremio, counting: type[CountingClient], no_env: None
) -> None:
    hold = fake.hold_next(path="/job/", method="GET")  # the job's status poll
    pipeline = Pipeline("cancelled", resources={"dremio": counting})
    pipeline.add_task(DremioQueryTask("q", "SELECT 1"))
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            await hold.arrived.wait()
            tg.cancel_scope.cancel()
    fake.resume()
    assert len(fake.requests_to("/cancel", "POST")) == 1  # the job, before the client closed
    assert (counting.opened, counting.closed) == (1, 1)


async def test_a_lent_client_stays_open_after_the_run(fake: FakeDremio, no_env: None) -> None:
    pipeline = Pipeline("lent").add_task(DremioQueryTask("q", "SELECT 3 AS three"))
    async with DremioClient(fake.url, username=fake.username, password=fake.password) as client:
        lend = {"dremio": lambda: contextlib.nullcontext(client)}
        for _ in range(2):
            result = await pipeline.run(resources=lend)
            assert result["q"].to_pylist() == [{"three": 3}]
        assert (await client.query("SELECT 4 AS four")).to_pylist() == [{"four": 4}]
    assert _logins(fake) == 1


async def test_a_client_factory_given_to_tasks_makes_one_client_per_run(
    fake: FakeDremio, counting: type[CountingClient], no_env: None
) -> None:
    pipeline = Pipeline("factory")
    for i in range(10):
        pipeline.add_task(DremioSqlTask(f"q{i}", f"SELECT {i} AS i", client=counting))
    for run in (1, 2):
        result = await pipeline.run()
        assert result.status == "SUCCESS", result.errors
        assert (counting.opened, counting.closed) == (run, run)
    assert _logins(fake) == 2


async def test_data_quality_and_query_tasks_share_the_run_s_client(
    fake: FakeDremio, counting: type[CountingClient], no_env: None
) -> None:
    pipeline = Pipeline("checked", resources={"dremio": counting})
    pipeline.add_task(DataQualityTask("dq", checks=[NotNull("lake.sales", "id")]))
    pipeline.add_task(DremioQueryTask("q", "SELECT COUNT(*) AS n FROM lake.sales"))
    result = await pipeline.run()
    assert result.status == "SUCCESS", result.errors
    assert result["dq"].passed
    assert (counting.opened, counting.closed) == (1, 1)
    assert _logins(fake) == 1


# ---------------------------------------------------------------- a user's own Dremio task


@pytest.mark.parametrize(
    ("error", "retry_on", "attempts"),
    [
        ("PARSE ERROR: no viable alternative", None, 3),  # the default rule retries it
        ("PARSE ERROR: no viable alternative", "dremio", 1),  # a SQL error: once
        ("RESOURCE ERROR: out of memory on executor 2", "dremio", 3),  # transient: retried
    ],
    ids=["default-retries-bad-sql", "dremio-rule-bad-sql", "dremio-rule-transient"],
)
async def test_a_users_own_dremio_task_takes_the_dremio_retry_rule(
    fake: FakeDremio, error: str, retry_on: str | None, attempts: int
) -> None:
    """What docs/concepts.md's Retries paragraph says: ``retry_on=RETRYABLE_ERRORS``."""
    from dremioframe_async.dremio import RETRYABLE_ERRORS

    fake.fail_jobs("lake.sales", error)
    options: dict[str, Any] = {"retries": 2, "retry_delay": 0, "resources": ("dremio",)}
    if retry_on == "dremio":
        options["retry_on"] = RETRYABLE_ERRORS

    @task(**options)
    async def count(dremio: DremioClient) -> int:
        return (await dremio.query("SELECT * FROM lake.sales")).num_rows

    def client() -> DremioClient:
        return DremioClient(fake.url, token=fake.token, poll_interval=0.01)

    with anyio.fail_after(GUARD):
        result = await Pipeline("own", resources={"dremio": client}).add_task(count()).run()
    assert result.states["count"] is TaskState.FAILED
    assert result.tasks["count"].attempts == attempts
