"""DataQualityTask: every check type against FakeDremio, YAML loading, safe quoting."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pytest
import pytest_asyncio

from dremioframe_async import Pipeline, TaskState
from dremioframe_async.dremio import DremioClient, DremioServerError, RetryPolicy
from dremioframe_async.tasks import (
    AcceptedValues,
    CustomSql,
    DataQualityConfigError,
    DataQualityFailed,
    DataQualityTask,
    Expression,
    Freshness,
    NotNull,
    QualityReport,
    RowCount,
    SqlArgumentError,
    Unique,
    load_checks,
)
from dremioframe_async.testing import FakeDremio

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
EVIL = 'id" IS NULL OR 1=1 --'


def orders(ids, statuses, amounts, updated) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "status": pa.array(statuses, pa.string()),
            "amount": pa.array(amounts, pa.float64()),
            "updated_at": pa.array(updated, pa.timestamp("us")),
        }
    )


GOOD = orders(
    [1, 2, 3], ["NEW", "PAID", "PAID"], [10.0, 0.0, 5.5], [dt.datetime(2026, 6, 1, 11, 0)] * 3
)
BAD = orders(
    [1, 1, None, 4],
    ["NEW", "LOST", "PAID", "GONE"],
    [10.0, -1.0, None, 2.0],
    [dt.datetime(2026, 5, 28, 0, 0)] * 4,
)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        server.add_table("lake.good", GOOD)
        server.add_table("lake.bad", BAD)
        server.add_table("lake.evil", pa.table({EVIL: pa.array([1, None, 3], pa.int64())}))
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    retry = RetryPolicy(attempts=2, max_time=5.0, backoff=0.01, max_backoff=0.05)
    async with DremioClient(fake.url, token=fake.token, poll_interval=0.01, retry=retry) as c:
        yield c


def every_check(table: str) -> list:
    return [
        NotNull(table, "id"),
        Unique(table, "id"),
        AcceptedValues(table, "status", ["NEW", "PAID"]),
        RowCount(table, min=1, max=3),
        Freshness(table, "updated_at", dt.timedelta(hours=2)),
        Expression(table, "amount >= 0"),
        CustomSql(f"SELECT id FROM {table} WHERE status = 'LOST'", name="no_lost_orders"),
    ]


async def run_dq(client: DremioClient, **kwargs) -> tuple:
    t = DataQualityTask("dq", client=client, now=lambda: NOW, **kwargs)
    result = await Pipeline("p").add_task(t).run()
    return result, result.get("dq")


@pytest.mark.asyncio
async def test_every_check_passes_on_good_data(client: DremioClient, fake: FakeDremio) -> None:
    result, report = await run_dq(client, checks=every_check("lake.good"))
    result.raise_for_status()
    assert isinstance(report, QualityReport)
    assert report.passed
    assert [r.kind for r in report.results] == [
        "not_null",
        "unique",
        "accepted_values",
        "row_count",
        "freshness",
        "expression",
        "custom_sql",
    ]
    assert all(r.failing == 0 and r.samples == () for r in report.results)
    # one query per check
    assert len(fake.requests_to("/sql", "POST")) == 7


@pytest.mark.asyncio
async def test_every_check_fails_on_bad_data(client: DremioClient) -> None:
    result, report = await run_dq(client, checks=every_check("lake.bad"), on_failure="warn")
    result.raise_for_status()  # "warn": the task succeeds and returns the report
    by_kind = {r.kind: r for r in report.results}
    assert not report.passed
    assert all(not r.passed for r in report.results), report.summary()
    assert by_kind["not_null"].failing == 1
    assert by_kind["not_null"].samples[0]["status"] == "PAID"
    assert by_kind["unique"].failing == 1
    assert by_kind["unique"].samples == ({"id": 1, "__dq_rows": 2},)
    assert by_kind["accepted_values"].failing == 2
    assert sorted(s["status"] for s in by_kind["accepted_values"].samples) == ["GONE", "LOST"]
    assert by_kind["row_count"].observed == 4
    assert by_kind["freshness"].observed == dt.datetime(2026, 5, 28, tzinfo=dt.UTC)
    # NULL amount does not satisfy "amount >= 0": it fails too
    assert by_kind["expression"].failing == 2
    assert by_kind["custom_sql"].failing == 1
    assert by_kind["custom_sql"].name == "no_lost_orders"


@pytest.mark.asyncio
async def test_samples_are_capped(client: DremioClient) -> None:
    _, report = await run_dq(
        client,
        checks=[AcceptedValues("lake.bad", "status", ["X"])],
        on_failure="warn",
        sample_size=2,
    )
    (r,) = report.results
    assert r.failing == 4
    assert len(r.samples) == 2


@pytest.mark.asyncio
async def test_row_count_bounds(client: DremioClient) -> None:
    checks = [
        RowCount("lake.good", min=4),
        RowCount("lake.good", max=2),
        RowCount("lake.good", 3, 3),
    ]
    _, report = await run_dq(client, checks=checks, on_failure="warn")
    assert [r.passed for r in report.results] == [False, False, True]


@pytest.mark.asyncio
async def test_on_failure_fail_raises_with_the_report_and_is_not_retried(
    client: DremioClient,
) -> None:
    t = DataQualityTask("dq", client=client, checks=[NotNull("lake.bad", "id")], retries=2)
    result = await Pipeline("p").add_task(t).run()
    assert result.states["dq"] is TaskState.FAILED
    error = result.tasks["dq"].error
    assert isinstance(error, DataQualityFailed)
    assert error.report.failed[0].failing == 1
    assert "not_null(id): FAILED (1 failing)" in str(error)
    assert result.tasks["dq"].attempts == 1


@pytest.mark.asyncio
async def test_an_injection_attempt_in_a_column_name_is_quoted(
    client: DremioClient, fake: FakeDremio
) -> None:
    _, report = await run_dq(client, checks=[NotNull("lake.evil", EVIL)], on_failure="warn")
    (r,) = report.results
    # Injected, "OR 1=1" would fail all 3 rows; quoted, it is just a column with one NULL.
    assert r.failing == 1
    assert r.error is None
    sent = fake.requests_to("/sql", "POST")[-1].body["sql"]
    assert '"id"" IS NULL OR 1=1 --" IS NULL' in sent
    # And against a table without such a column it is an error, never a pass.
    _, report = await run_dq(client, checks=[NotNull("lake.good", EVIL)], on_failure="warn")
    assert not report.passed
    assert report.results[0].error


@pytest.mark.asyncio
async def test_a_rejected_query_is_reported_not_raised(client: DremioClient) -> None:
    checks = [NotNull("lake.good", "no_such_column"), NotNull("lake.good", "id")]
    _, report = await run_dq(client, checks=checks, on_failure="warn")
    assert report.results[0].error is not None
    assert report.results[1].passed


@pytest.mark.asyncio
async def test_a_server_failure_fails_the_task_as_itself(
    client: DremioClient, fake: FakeDremio
) -> None:
    fake.fail_next(50, 503)  # every attempt of the client's own retries
    result, _ = await run_dq(client, checks=every_check("lake.good"))
    assert isinstance(result.tasks["dq"].error, DremioServerError)


YAML = """
tests:
  - name: orders
    table: lake.bad
    checks:
      - {type: not_null, column: id}
      - {type: unique, columns: [id]}
      - {type: values_in, column: status, values: [NEW, PAID]}
      - {type: row_count, min: 1, max: 3}
      - {type: freshness, column: updated_at, max_age: 2h}
      - {type: expression, expression: "amount >= 0", name: non_negative}
      - type: custom_sql
        sql: SELECT id FROM lake.bad WHERE status = 'LOST'
"""


@pytest.mark.asyncio
async def test_yaml_directory(client: DremioClient, tmp_path: Path) -> None:
    (tmp_path / "orders.yaml").write_text(YAML)
    (tmp_path / "more.yml").write_text(
        "- table: lake.good\n  checks:\n    - {type: not_null, column: id}\n"
    )
    (tmp_path / "notes.txt").write_text("not a check file")
    _, report = await run_dq(client, directory=tmp_path, on_failure="warn")
    assert [r.passed for r in report.results] == [True] + [False] * 7
    assert report.results[6].name == "non_negative"


def test_yaml_problems_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "tests:\n  - table: t\n    checks:\n      - {type: nope}\n      - {type: not_null}\n"
        "      - {type: freshness, column: c, max_age: soon}\n"
    )
    (tmp_path / "b.yaml").write_text("tests: [\n")
    with pytest.raises(DataQualityConfigError) as info:
        load_checks(tmp_path)
    problems = info.value.problems
    assert len(problems) == 4
    assert "unknown check type 'nope'" in problems[0]
    assert "missing 'column'" in problems[1]
    assert "max_age" in problems[2]
    assert "b.yaml: not valid YAML" in problems[3]
    with pytest.raises(FileNotFoundError):
        load_checks(tmp_path / "missing")


def test_bad_definitions_fail_at_construction() -> None:
    with pytest.raises(DataQualityConfigError):
        DataQualityTask("dq")
    with pytest.raises(DataQualityConfigError):
        DataQualityTask("dq", checks=[NotNull("t", "c")], on_failure="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min and/or max"):
        DataQualityTask("dq", checks=[RowCount("t")])
    with pytest.raises(ValueError, match="accepted values"):
        DataQualityTask("dq", checks=[AcceptedValues("t", "c", [None])])
    with pytest.raises(ValueError, match="empty"):
        DataQualityTask("dq", checks=[NotNull("t", "")])


# -- Freshness's max_age ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("1d", dt.timedelta(days=1), id="days"),
        pytest.param("90m", dt.timedelta(minutes=90), id="minutes"),
        pytest.param(" 1.5 h ", dt.timedelta(hours=1.5), id="spaces"),
        pytest.param(3600, dt.timedelta(hours=1), id="seconds"),
        pytest.param(dt.timedelta(hours=2), dt.timedelta(hours=2), id="timedelta"),
    ],
)
def test_freshness_takes_max_age_as_written_in_yaml(given: object, expected: dt.timedelta) -> None:
    assert Freshness("lake.good", "updated_at", given).max_age == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("soon", id="word"),
        pytest.param("1y", id="unit"),
        pytest.param(-5, id="negative"),
        pytest.param(dt.timedelta(hours=-1), id="negative-timedelta"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
    ],
)
def test_a_bad_max_age_is_refused_at_construction(given: object) -> None:
    with pytest.raises(ValueError, match="max_age") as caught:
        Freshness("lake.good", "updated_at", given)  # type: ignore[arg-type]
    assert isinstance(caught.value, SqlArgumentError)


@pytest.mark.asyncio
async def test_a_freshness_check_with_a_string_max_age_runs(client: DremioClient) -> None:
    fresh = Freshness("lake.good", "updated_at", "2h")
    stale = Freshness("lake.bad", "updated_at", "1d")
    result, report = await run_dq(client, checks=[fresh, stale], on_failure="warn")
    assert result.states["dq"] is TaskState.SUCCESS
    assert [r.passed for r in report.results] == [True, False]
