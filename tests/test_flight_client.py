"""DremioClient's Flight configuration, ``via=``, Parquet output, TLS and error mapping."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
import pytest_asyncio

from dremioframe_async.dremio import (
    CLOUD_FLIGHT_URL,
    DremioAuthError,
    DremioClient,
    DremioConfigError,
    DremioConnectionError,
    DremioError,
    DremioJobCancelled,
    DremioJobFailed,
    DremioJobFailedTransient,
    DremioJobTimeout,
    DremioTLSError,
    RetryPolicy,
)
from dremioframe_async.dremio._flight_errors import (
    flight_message,
    map_flight_error,
    unavailable_is_safe_to_retry,
)
from dremioframe_async.dremio._flight_options import CookieJar
from dremioframe_async.testing import FakeDremio, sample_table

FAST = RetryPolicy(attempts=3, max_time=10.0, backoff=0.01, max_backoff=0.05)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        server.add_table("shop.sales", sample_table(5_000))
        yield server


def client_for(fake: FakeDremio, **options: object) -> DremioClient:
    options.setdefault("retry", FAST)
    return DremioClient(
        fake.url,
        token=fake.token,
        flight_url=fake.flight_url,
        **options,  # type: ignore[arg-type]
    )


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://dremio:32010", id="http"),
        pytest.param("dremio:32010", id="no-scheme"),
        pytest.param("grpc+tcp://", id="no-host"),
        pytest.param("grpc+tcp://user:secret@dremio:32010", id="credentials"),
    ],
)
def test_a_bad_flight_url_is_refused_up_front(url: str) -> None:
    with pytest.raises(DremioConfigError) as caught:
        DremioClient("http://dremio:9047", token="t", flight_url=url)
    assert "secret" not in str(caught.value)


def test_flight_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREMIO_FLIGHT_URL", "grpc+tcp://dremio:32010")
    client = DremioClient("http://dremio:9047", token="pat-value")
    assert client.flight_url == "grpc+tcp://dremio:32010"
    assert "flight_url='grpc+tcp://dremio:32010'" in repr(client)
    assert "pat-value" not in repr(client)


def test_without_a_flight_url_the_client_is_rest_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DREMIO_FLIGHT_URL", raising=False)
    client = DremioClient("http://dremio:9047", token="t")
    assert client.flight_url is None
    with pytest.raises(DremioConfigError, match="flight_url"):
        client.stream("SELECT 1", via="flight")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(None, CLOUD_FLIGHT_URL, id="us"),
        pytest.param("https://api.eu.dremio.cloud", "grpc+tls://data.eu.dremio.cloud:443", id="eu"),
        pytest.param("http://127.0.0.1:9047", None, id="other-url"),
    ],
)
def test_cloud_defaults_to_dremio_clouds_flight_endpoint(
    monkeypatch: pytest.MonkeyPatch, url: str | None, expected: str | None
) -> None:
    monkeypatch.delenv("DREMIO_FLIGHT_URL", raising=False)
    monkeypatch.delenv("DREMIO_URL", raising=False)
    client = DremioClient.cloud(token="t", project_id="p-1", url=url)
    assert client.flight_url == expected


def test_an_unknown_via_is_refused() -> None:
    client = DremioClient("http://dremio:9047", token="t", flight_url="grpc+tcp://dremio:32010")
    with pytest.raises(DremioConfigError, match="via"):
        client.stream("SELECT 1", via="carrier-pigeon")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1])
def test_read_ahead_and_streams_must_be_positive(value: int) -> None:
    with pytest.raises(DremioConfigError):
        DremioClient("http://d:9047", token="t", flight_url="grpc://d:1", flight_read_ahead=value)


# -- via ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_via_rest_skips_flight_and_auto_uses_it(fake: FakeDremio) -> None:
    async with client_for(fake) as client:
        over_rest = await client.query("SELECT * FROM shop.sales ORDER BY id", via="rest")
        assert fake.flight.calls == []
        over_flight = await client.query("SELECT * FROM shop.sales ORDER BY id")
    assert len(fake.requests_to("/sql", "POST")) == 1
    assert over_flight.equals(over_rest)


@pytest.mark.asyncio
@pytest.mark.parametrize("via", ["rest", "flight"])
async def test_stream_says_which_path_it_took(fake: FakeDremio, via: str) -> None:
    async with (
        client_for(fake) as client,
        client.stream(
            "SELECT * FROM shop.sales",
            via=via,  # type: ignore[arg-type]
        ) as stream,
    ):
        rows = sum([batch.num_rows async for batch in stream])
    assert (stream.via, rows, stream.rows) == (via, 5_000, 5_000)
    assert stream.schema is not None
    assert "id" in stream.schema.names


@pytest.mark.asyncio
async def test_leaving_a_stream_early_stops_the_read(fake: FakeDremio) -> None:
    fake.flight.batch_rows = 100
    fake.flight.slow_batches(0.05)  # 50 batches: 2.5 s unless the read stops
    async with client_for(fake, flight_read_ahead=1) as client:
        async with client.stream("SELECT * FROM shop.sales") as stream:
            await stream.__anext__()
        call = await anyio.to_thread.run_sync(
            fake.flight.wait_for_call, lambda c: c.method == "do_get", 5.0
        )
    assert call is not None
    assert call.status == "cancelled"
    assert call.batches < 50


# -- Parquet ------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("via", ["rest", "flight"])
async def test_query_to_parquet_writes_the_whole_result(
    fake: FakeDremio, tmp_path: Path, via: str
) -> None:
    target = tmp_path / "sales.parquet"
    async with client_for(fake) as client:
        rows = await client.query_to_parquet(
            "SELECT * FROM shop.sales ORDER BY id",
            target,
            via=via,  # type: ignore[arg-type]
            row_group_rows=1_000,
        )
    assert rows == 5_000
    assert pq.read_table(target).equals(sample_table(5_000))
    assert [p.name for p in tmp_path.iterdir()] == ["sales.parquet"]


@pytest.mark.asyncio
async def test_an_empty_result_still_writes_its_schema(fake: FakeDremio, tmp_path: Path) -> None:
    target = tmp_path / "empty.parquet"
    async with client_for(fake) as client:
        rows = await client.query_to_parquet("SELECT * FROM shop.sales WHERE id < 0", target)
    assert rows == 0
    assert pq.read_schema(target).names == ["id", "name", "amount", "at"]


@pytest.mark.asyncio
async def test_a_cancelled_parquet_write_leaves_nothing_behind(
    fake: FakeDremio, tmp_path: Path
) -> None:
    fake.flight.batch_rows = 500
    fake.flight.slow_batches(30.0)
    target = tmp_path / "sales.parquet"
    async with client_for(fake) as client:
        with anyio.move_on_after(0.5) as scope:
            await client.query_to_parquet("SELECT * FROM shop.sales", target)
    assert scope.cancelled_caught
    assert list(tmp_path.iterdir()) == []


@pytest.mark.asyncio
async def test_an_existing_file_survives_a_failed_write(fake: FakeDremio, tmp_path: Path) -> None:
    target = tmp_path / "sales.parquet"
    pq.write_table(pa.table({"old": [1]}), target)
    fake.flight.fail_mid_stream(after_batches=0, message="boom")
    async with client_for(fake) as client:
        with pytest.raises(DremioJobFailed):
            await client.query_to_parquet("SELECT * FROM shop.sales", target)
    assert pq.read_table(target).column_names == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["sales.parquet"]


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - the machine has openssl
        pytest.skip("the TLS tests need the openssl command (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("flight-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest_asyncio.fixture
async def tls_fake(certificate: tuple[Path, Path]) -> AsyncIterator[FakeDremio]:
    cert, key = certificate
    async with FakeDremio(
        flight=True, flight_certificate=(cert.read_bytes(), key.read_bytes())
    ) as f:
        f.add_table("shop.sales", sample_table(100))
        yield f


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["ca-file", "context", "no-verify"])
async def test_flight_over_tls_uses_the_shared_ssl_option(
    tls_fake: FakeDremio, certificate: tuple[Path, Path], how: str
) -> None:
    assert tls_fake.flight_url.startswith("grpc+tls://")
    option: object = {
        "ca-file": certificate[0],
        "context": ssl.create_default_context(cafile=str(certificate[0])),
        "no-verify": False,
    }[how]
    async with client_for(tls_fake, ssl=option) as client:
        table = await client.query("SELECT COUNT(*) AS n FROM shop.sales")
    assert table.to_pylist() == [{"n": 100}]


@pytest.mark.asyncio
async def test_an_untrusted_certificate_is_a_tls_error_without_retries(
    tls_fake: FakeDremio,
) -> None:
    slow_retries = RetryPolicy(attempts=5, max_time=60.0, backoff=2.0, max_backoff=2.0)
    async with client_for(tls_fake, retry=slow_retries) as client:
        started = time.monotonic()
        with pytest.raises(DremioTLSError):
            await client.query("SELECT 1")
    assert time.monotonic() - started < 2.0  # five attempts would have waited 8 s


# -- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(flight.FlightUnauthenticatedError("no"), DremioAuthError, id="unauth"),
        pytest.param(flight.FlightUnauthorizedError("no"), DremioAuthError, id="forbidden"),
        pytest.param(flight.FlightUnavailableError("down"), DremioConnectionError, id="down"),
        pytest.param(flight.FlightTimedOutError("late"), DremioJobTimeout, id="deadline"),
        pytest.param(flight.FlightCancelledError("stop"), DremioJobCancelled, id="cancelled"),
        pytest.param(flight.FlightServerError("bad sql"), DremioJobFailed, id="server"),
        pytest.param(
            flight.FlightServerError("RESOURCE ERROR: query was cancelled: out of memory"),
            DremioJobFailedTransient,
            id="server-transient",
        ),
        pytest.param(flight.FlightInternalError("oops"), DremioJobFailed, id="internal"),
        pytest.param(pa.ArrowInvalid("bad ipc"), DremioConnectionError, id="arrow"),
    ],
)
def test_every_flight_error_maps_into_the_tree(
    error: Exception, expected: type[DremioError]
) -> None:
    mapped = map_flight_error(error, "DoGet", 3.0)
    assert type(mapped) is expected


def test_messages_lose_grpcs_debug_context() -> None:
    raw = (
        "Flight returned internal error, with message: Table 'x' not found. "
        "Detail: Failed. gRPC client debug context: UNKNOWN:... Client context: OK"
    )
    assert flight_message(Exception(raw)) == "Table 'x' not found"
    tls = flight.FlightUnavailableError("failed to connect: SSL handshake failed")
    assert isinstance(map_flight_error(tls, "DoGet", None), DremioTLSError)


@pytest.mark.parametrize(
    ("message", "safe"),
    [
        pytest.param(
            "Flight returned unavailable error, with message: failed to connect to all "
            "addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: Connection refused",
            True,
            id="never-connected",
        ),
        pytest.param("Dremio is restarting. Detail: Unavailable", True, id="server-refused"),
        pytest.param(
            "Flight returned unavailable error, with message: Socket closed", False, id="broke"
        ),
        pytest.param(
            "Flight returned unavailable error, with message: Connection reset by peer",
            False,
            id="reset",
        ),
    ],
)
def test_unavailable_is_repeated_only_when_the_statement_cannot_have_run(
    message: str, safe: bool
) -> None:
    error = flight.FlightUnavailableError(message)
    assert unavailable_is_safe_to_retry(error) is safe
    mapped = map_flight_error(error, "GetFlightInfo", None)
    assert isinstance(mapped, DremioConnectionError)
    assert mapped.sent is not (safe and "connect" in message)


def test_the_session_cookie_is_sent_back() -> None:
    jar = CookieJar()
    middleware = jar.start_call(None)
    assert middleware.sending_headers() == {}
    middleware.received_headers({"Set-Cookie": ["SESSION_ID=abc; Path=/; HttpOnly"]})
    assert jar.start_call(None).sending_headers() == {"cookie": "SESSION_ID=abc"}


@pytest.mark.asyncio
async def test_a_closed_client_refuses_flight_reads(fake: FakeDremio) -> None:
    client = client_for(fake)
    async with client:
        await client.query("SELECT 1 AS one")
    with pytest.raises(DremioError, match="closed"):
        await client.query("SELECT 1 AS one")


# -- error texts and the retry budget -------------------------------------------------------


@pytest.mark.asyncio
async def test_plaintext_to_a_tls_server_hints_at_tls(tls_fake: FakeDremio) -> None:
    url = tls_fake.flight_url.replace("grpc+tls://", "grpc+tcp://")
    async with DremioClient(tls_fake.url, token=tls_fake.token, flight_url=url, retry=FAST) as c:
        with pytest.raises(DremioConnectionError) as caught:
            await c.query("SELECT 1")
    assert "use a grpc+tls:// flight_url" in str(caught.value)
    assert not caught.value.sent


@pytest.mark.asyncio
async def test_a_lost_connection_mid_stream_gets_no_tls_hint(fake: FakeDremio) -> None:
    fake.flight.fail_mid_stream(after_batches=0, message="Socket closed", unavailable=True)
    async with client_for(fake) as client:
        with pytest.raises(DremioConnectionError) as caught:
            await client.query("SELECT * FROM shop.sales")
    assert "grpc+tls" not in str(caught.value)
    assert caught.value.sent


@pytest.mark.asyncio
async def test_refused_calls_past_the_retries_say_nothing_was_sent(fake: FakeDremio) -> None:
    fake.flight.unavailable_next(10)
    async with client_for(fake) as client:
        with pytest.raises(DremioConnectionError) as caught:
            await client.query("SELECT 1")
    assert not caught.value.sent  # the server refused every GetFlightInfo: nothing ran
    refused = [c for c in fake.flight.calls if c.method == "get_flight_info"]
    assert [c.status for c in refused] == ["unavailable"] * FAST.attempts


@pytest.mark.asyncio
async def test_flight_retries_end_within_max_time(fake: FakeDremio) -> None:
    fake.flight.unavailable_next(1_000)
    patient = RetryPolicy(attempts=50, max_time=1.0, backoff=0.3, max_backoff=0.3)
    async with client_for(fake, retry=patient) as client:
        started = time.monotonic()
        with pytest.raises(DremioConnectionError) as caught:
            await client.query("SELECT 1")
        elapsed = time.monotonic() - started
    # 2.5 s over the budget: room for a slow first connect on a loaded machine.
    assert elapsed < 1.0 + 2.5, f"{elapsed:.2f} s: 50 attempts would take 15 s"
    assert not caught.value.sent
    assert 2 <= len(fake.flight.calls) <= 4
