"""DremioClient against FakeDremio over real HTTP: auth, jobs, paging, types, secrets."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import AsyncIterator, Iterable, Iterator
from decimal import Decimal
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from dremioframe_async.dremio import (
    DremioAuthError,
    DremioBackendError,
    DremioClient,
    DremioConfigError,
    DremioJobCancelled,
    DremioJobFailed,
    DremioJobTimeout,
    DremioNotFound,
    RetryPolicy,
    split_path,
)
from dremioframe_async.errors import DremioFrameError
from dremioframe_async.testing import FakeDremio, sample_table

FAST_RETRY = RetryPolicy(attempts=4, max_time=10.0, backoff=0.01, max_backoff=0.5)


def client_for(fake: FakeDremio, **options: object) -> DremioClient:
    """A PAT client for ``fake`` with quick retries and polling."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("poll_interval", 0.01)
    options.setdefault("max_poll_interval", 0.05)
    return DremioClient(fake.url, token=fake.token, **options)  # type: ignore[arg-type]


def assert_no_secret(texts: Iterable[str], secrets: Iterable[str]) -> None:
    """No secret occurs in any of the texts."""
    wanted = [s for s in secrets if s]
    for text in texts:
        for secret in wanted:
            assert secret not in text, f"a secret leaked into: {text[:200]!r}"


class SecretWatch:
    """Collects secrets during a test; checks every captured log line at the end."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def watch(self, fake: FakeDremio) -> FakeDremio:
        self.secrets += [fake.token, fake.password]
        return fake

    def check(self, caplog: pytest.LogCaptureFixture, fakes: Iterable[FakeDremio]) -> None:
        for fake in fakes:
            self.secrets += list(fake.issued_tokens)
        texts = [r.getMessage() for r in caplog.records]
        texts += [logging.Formatter().format(r) for r in caplog.records]
        assert_no_secret(texts, self.secrets)


WATCH = SecretWatch()
FAKES: list[FakeDremio] = []


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    WATCH.check(caplog, FAKES)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio() as server:
        FAKES.append(WATCH.watch(server))
        server.add_table("shop.sales", sample_table(1234))
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeDremio) -> AsyncIterator[DremioClient]:
    async with client_for(fake) as c:
        yield c


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pat_auth_runs_a_query(client: DremioClient, fake: FakeDremio) -> None:
    table = await client.query("SELECT COUNT(*) AS n FROM shop.sales")
    assert table.to_pylist() == [{"n": 1234}]
    assert not fake.requests_to("/apiv2/login")
    assert_no_secret([repr(client), repr(client.config), str(client.config)], [fake.token])


@pytest.mark.asyncio
async def test_password_auth_logs_in_and_records_no_password(fake: FakeDremio) -> None:
    async with DremioClient(fake.url, username=fake.username, password=fake.password) as c:
        assert (await c.query("SELECT 1 AS x")).to_pylist() == [{"x": 1}]
        assert_no_secret([repr(c)], [fake.password, *fake.issued_tokens])
    (login,) = fake.requests_to("/apiv2/login")
    assert login.body == {"userName": fake.username, "password": "***"}


@pytest.mark.asyncio
async def test_password_auth_logs_in_again_once_after_401(fake: FakeDremio) -> None:
    async with DremioClient(fake.url, username=fake.username, password=fake.password) as c:
        await c.query("SELECT 1 AS x")
        fake.expire_sessions()
        assert (await c.query("SELECT 2 AS x")).to_pylist() == [{"x": 2}]
    assert len(fake.requests_to("/apiv2/login")) == 2
    assert [r.status for r in fake.requests_to("/sql")] == [200, 401, 200]


@pytest.mark.asyncio
async def test_bad_token_raises_auth_error_without_retry(fake: FakeDremio) -> None:
    async with DremioClient(fake.url, token="not-the-token", retry=FAST_RETRY) as c:
        with pytest.raises(DremioAuthError) as info:
            await c.submit("SELECT 1")
    assert info.value.status == 401
    assert len(fake.requests_to("/sql")) == 1
    assert "not-the-token" not in str(info.value)


@pytest.mark.asyncio
async def test_bad_password_fails_on_enter(fake: FakeDremio) -> None:
    client = DremioClient(fake.url, username=fake.username, password="wrong-password")
    with pytest.raises(DremioAuthError, match="Invalid username or password") as info:
        await client.__aenter__()
    assert "wrong-password" not in str(info.value)


@pytest.mark.asyncio
async def test_cloud_client_uses_project_paths(fake: FakeDremio) -> None:
    cloud = DremioClient.cloud(token=fake.token, project_id=fake.project_id, url=fake.url)
    async with cloud as c:
        assert (await c.query("SELECT 3 AS x")).to_pylist() == [{"x": 3}]
    assert all(r.path.startswith(f"/v0/projects/{fake.project_id}/") for r in fake.requests)


def test_config_comes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREMIO_URL", "http://dremio.example:9047/")
    monkeypatch.setenv("DREMIO_USERNAME", "ann")
    monkeypatch.setenv("DREMIO_PASSWORD", "s3cret-pw")
    client = DremioClient()
    assert (client.config.root, client.config.auth, client.config.username) == (
        "http://dremio.example:9047",
        "password",
        "ann",
    )
    assert "s3cret-pw" not in repr(client) + repr(client.config)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({}, "no URL", id="no-url"),
        pytest.param({"url": "http://x"}, "no credentials", id="no-credentials"),
        pytest.param(
            {"project_id": "p", "username": "u", "password": "p"}, "access token", id="cloud-pw"
        ),
    ],
)
def test_config_errors(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, str], message: str
) -> None:
    for name in ("DREMIO_URL", "DREMIO_PAT", "DREMIO_USERNAME", "DREMIO_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DremioConfigError, match=message):
        DremioClient(**kwargs)


def test_trio_is_refused_with_a_clear_error() -> None:
    async def use() -> None:
        async with DremioClient("http://127.0.0.1:9", token="t"):
            pass

    with pytest.raises(DremioBackendError, match="asyncio only"):
        anyio.run(use, backend="trio")


def test_errors_share_the_project_root() -> None:
    for error in (DremioAuthError, DremioJobFailed, DremioBackendError, DremioJobTimeout):
        assert issubclass(error, DremioFrameError)
    assert issubclass(DremioJobTimeout, TimeoutError)


# -- jobs ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_job_success_reports_row_count(client: DremioClient) -> None:
    job_id = await client.submit("SELECT * FROM shop.sales")
    job = await client.wait(job_id)
    assert (job.state, job.row_count, job.final) == ("COMPLETED", 1234, True)


@pytest.mark.asyncio
async def test_sql_error_is_a_failed_job_with_dremio_message(client: DremioClient) -> None:
    with pytest.raises(DremioJobFailed, match="nowhere") as info:
        await client.query("SELECT * FROM nowhere.table_x")
    assert "nowhere" in info.value.error_message


@pytest.mark.asyncio
async def test_injected_job_failure(client: DremioClient, fake: FakeDremio) -> None:
    fake.fail_jobs("FROM shop.sales", error="Out of memory on executor 3")
    with pytest.raises(DremioJobFailed) as info:
        await client.query("SELECT * FROM shop.sales")
    assert info.value.error_message == "Out of memory on executor 3"


@pytest.mark.asyncio
async def test_cancelled_job_raises_job_cancelled(client: DremioClient, fake: FakeDremio) -> None:
    fake.slow_jobs("slow", latency=30)
    job_id = await client.submit("SELECT 'slow' AS s")
    await client.cancel(job_id)
    with pytest.raises(DremioJobCancelled, match="cancelled by user"):
        await client.wait(job_id)
    assert fake.cancelled_jobs == [job_id]


@pytest.mark.asyncio
async def test_wait_timeout_cancels_the_job(client: DremioClient, fake: FakeDremio) -> None:
    fake.slow_jobs("slow", latency=30)
    job_id = await client.submit("SELECT 'slow' AS s")
    with pytest.raises(DremioJobTimeout):
        await client.wait(job_id, timeout=0.1)
    assert fake.cancelled_jobs == [job_id]
    assert fake.jobs[job_id].state == "CANCELED"


@pytest.mark.asyncio
async def test_cancelled_query_sends_one_cancel_and_reraises(
    client: DremioClient, fake: FakeDremio
) -> None:
    fake.slow_jobs("slow", latency=30)
    poll = fake.hold_next(1, path="/job/", method="GET")  # the first status poll waits
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await client.query("SELECT 'slow' AS s")

        tg.start_soon(run)
        await poll.arrived.wait()  # the job exists and query() is waiting on it
        scope.cancel()
    assert scope.cancelled_caught  # the cancellation propagated out of query()
    (job_id,) = fake.jobs
    assert fake.cancelled_jobs == [job_id]
    assert fake.jobs[job_id].state == "CANCELED"


# -- results ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("rows", [0, 1, 500, 501, 100_000], ids=lambda n: f"{n}-rows")
async def test_paging_keeps_order_types_and_nulls(fake: FakeDremio, rows: int) -> None:
    fake.add_table("shop.paged", sample_table(rows))
    async with client_for(fake) as c:
        table = await c.query("SELECT * FROM shop.paged ORDER BY id")
    assert table.num_rows == rows
    assert table.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("amount", pa.decimal128(12, 2)),
            ("at", pa.timestamp("ms")),
        ]
    )
    assert table.equals(sample_table(rows))
    pages = fake.requests_to("/results")
    assert len(pages) == max(1, math.ceil(rows / 500))
    assert all(int(p.query["limit"]) <= 500 for p in pages)


TYPED_SQL = """
SELECT 'x' AS v, 9000000000::BIGINT AS b, 7::INTEGER AS i, 1.5::DOUBLE AS d,
       2.5::FLOAT AS f, 12345678901234567.89::DECIMAL(19, 2) AS dec, TRUE AS bo,
       DATE '2024-02-29' AS da, TIME '13:14:15.123' AS ti,
       TIMESTAMP '2024-02-29 13:14:15.678' AS ts, '\\xCA\\xFE'::BLOB AS vb,
       [1, NULL, 3] AS li, {'k': 'v', 'n': NULL::INTEGER} AS st
"""
EXPECTED_TYPES = pa.schema(
    [
        ("v", pa.string()),
        ("b", pa.int64()),
        ("i", pa.int32()),
        ("d", pa.float64()),
        ("f", pa.float32()),
        ("dec", pa.decimal128(19, 2)),
        ("bo", pa.bool_()),
        ("da", pa.date32()),
        ("ti", pa.time32("ms")),
        ("ts", pa.timestamp("ms")),
        ("vb", pa.binary()),
        ("li", pa.list_(pa.int32())),
        ("st", pa.struct([("k", pa.string()), ("n", pa.int32())])),
    ]
)


@pytest.mark.asyncio
async def test_every_dremio_type_maps_to_arrow(client: DremioClient) -> None:
    table = await client.query(TYPED_SQL)
    assert table.schema == EXPECTED_TYPES
    assert table.to_pylist() == [
        {
            "v": "x",
            "b": 9_000_000_000,
            "i": 7,
            "d": 1.5,
            "f": 2.5,
            "dec": Decimal("12345678901234567.89"),
            "bo": True,
            "da": dt.date(2024, 2, 29),
            "ti": dt.time(13, 14, 15, 123000),
            "ts": dt.datetime(2024, 2, 29, 13, 14, 15, 678000),
            "vb": b"\xca\xfe",
            "li": [1, None, 3],
            "st": {"k": "v", "n": None},
        }
    ]


@pytest.mark.asyncio
async def test_all_null_row_keeps_types(client: DremioClient) -> None:
    nulls = ", ".join(
        f"NULL::{t} AS c{i}" for i, t in enumerate(["VARCHAR", "DECIMAL(5,1)", "DATE"])
    )
    table = await client.query(f"SELECT {nulls}")
    assert table.schema.types == [pa.string(), pa.decimal128(5, 1), pa.date32()]
    assert table.to_pylist() == [{"c0": None, "c1": None, "c2": None}]


@pytest.mark.asyncio
async def test_iter_batches_and_parquet_match_fetch_arrow(
    client: DremioClient, tmp_path: anyio.Path
) -> None:
    job_id = await client.submit("SELECT * FROM shop.sales ORDER BY id")
    await client.wait(job_id)
    whole = await client.fetch_arrow(job_id)
    batches = [b async for b in client.iter_batches(job_id)]
    assert [b.num_rows for b in batches] == [500, 500, 234]
    assert pa.Table.from_batches(batches).equals(whole)
    path = tmp_path / "sales.parquet"
    assert await client.to_parquet(job_id, path, row_group_rows=600) == 1234
    assert pq.read_table(path).equals(whole)
    assert [p.name for p in Path(tmp_path).iterdir()] == ["sales.parquet"]  # no temporary file


@pytest.mark.asyncio
async def test_query_passes_context(client: DremioClient, fake: FakeDremio) -> None:
    await client.query("SELECT 1 AS x", context=["shop", "folder"])
    assert fake.requests_to("/sql")[0].body == {
        "sql": "SELECT 1 AS x",
        "context": ["shop", "folder"],
    }


# -- catalog ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_catalog_by_path(client: DremioClient) -> None:
    space = await client.catalog_by_path("shop")
    assert [c["path"] for c in space["children"]] == [["shop", "sales"]]
    dataset = await client.catalog_by_path(["shop", "sales"])
    assert dataset["entityType"] == "dataset"
    assert [f["name"] for f in dataset["fields"]] == ["id", "name", "amount", "at"]
    # The user's home space is listed first, as on Dremio.
    assert [e["path"] for e in await client.catalog()] == [["@dremio"], ["shop"]]
    with pytest.raises(DremioNotFound):
        await client.catalog_by_path("shop.nothing")


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        pytest.param("a.b.c", ["a", "b", "c"], id="plain"),
        pytest.param('a."b.c".d', ["a", "b.c", "d"], id="quoted-dot"),
        pytest.param('"say ""hi"""', ['say "hi"'], id="doubled-quote"),
    ],
)
def test_split_path(text: str, parts: list[str]) -> None:
    assert split_path(text) == parts
