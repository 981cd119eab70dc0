"""Client configuration: URL validation, credentials in URLs, TLS (with FakeDremio over https)."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dremioframe_async.dremio import (
    DremioClient,
    DremioConfigError,
    DremioTLSError,
    RetryPolicy,
)
from dremioframe_async.dremio._config import redact_url, resolve_tls
from dremioframe_async.testing import FakeDremio

FAST_RETRY = RetryPolicy(attempts=4, max_time=10.0, backoff=0.01, max_backoff=0.2)
ENV = ("DREMIO_URL", "DREMIO_PAT", "DREMIO_USERNAME", "DREMIO_PASSWORD", "DREMIO_PROJECT_ID")
TLS_ENV = ("DREMIO_SSL_CA", "DREMIO_SSL_VERIFY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV + TLS_ENV:
        monkeypatch.delenv(name, raising=False)


# -- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("localhost:9047", "must start with http:// or https://", id="no-scheme"),
        pytest.param("dremio.example", "must start with http", id="bare-host"),
        pytest.param("ftp://dremio:21", "must start with http", id="ftp"),
        pytest.param("http://", "names no host", id="no-host"),
        pytest.param("http://dremio:port/", "malformed URL", id="bad-port"),
        pytest.param("http://dremio:9047/?x=1", "query", id="query"),
    ],
)
def test_bad_urls_fail_at_construction(url: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(DremioConfigError, match=message):
        DremioClient(url, token="t")
    assert time.perf_counter() - started < 1.0  # no network, no retries


def test_userinfo_becomes_credentials_and_is_redacted() -> None:
    client = DremioClient("https://ann:p%40ss%3Aword@dremio.example:9047/prefix/")
    cfg = client.config
    assert (cfg.root, cfg.auth, cfg.username) == (
        "https://dremio.example:9047/prefix",
        "password",
        "ann",
    )
    assert cfg.password is not None
    assert cfg.password.value == "p@ss:word"
    for text in (repr(client), repr(cfg), str(cfg)):
        assert "p%40ss" not in text
        assert "p@ss" not in text


def test_userinfo_with_other_credentials_is_refused_without_showing_the_password() -> None:
    with pytest.raises(DremioConfigError, match="give one of them") as info:
        DremioClient("http://ann:hunter2@dremio:9047", token="pat")
    assert "hunter2" not in str(info.value)
    assert "***@dremio:9047" in str(info.value)


def test_malformed_url_with_userinfo_never_shows_the_password() -> None:
    with pytest.raises(DremioConfigError) as info:
        DremioClient("ftp://ann:hunter2@dremio:9047", token="pat")
    assert "hunter2" not in str(info.value)


def test_user_without_password_takes_it_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREMIO_PASSWORD", "from-env")
    cfg = DremioClient("http://ann@dremio:9047").config
    assert (cfg.username, cfg.password and cfg.password.value) == ("ann", "from-env")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("http://a:b@h:1/p", "http://***@h:1/p", id="user-password"),
        pytest.param("https://h/p", "https://h/p", id="none"),
        pytest.param("a:b@h", "***@h", id="no-scheme"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.asyncio
async def test_credentials_in_the_url_log_in() -> None:
    async with FakeDremio() as fake:
        url = fake.url.replace("://", f"://{fake.username}:{fake.password}@")
        async with DremioClient(url, retry=FAST_RETRY) as client:
            assert (await client.query("SELECT 1 AS x")).to_pylist() == [{"x": 1}]
            assert fake.password not in repr(client)
        (login,) = fake.requests_to("/apiv2/login")
        assert login.body == {"userName": fake.username, "password": "***"}


# -- TLS options -----------------------------------------------------------------------------


def test_ssl_option_forms(tmp_path: Path) -> None:
    context = ssl.create_default_context()
    assert resolve_tls(context, {}).context is context
    assert resolve_tls(False, {}).verify is False
    assert resolve_tls(True, {}).verify is True
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until the client opens")
    assert resolve_tls(str(ca), {}).ca_file == ca
    assert resolve_tls(ca, {}).ca_file == ca
    assert resolve_tls(None, {"DREMIO_SSL_CA": str(ca)}).ca_file == ca
    assert resolve_tls(None, {"DREMIO_SSL_VERIFY": "false"}).verify is False
    assert resolve_tls(None, {"DREMIO_SSL_VERIFY": "1"}) == resolve_tls(None, {})


@pytest.mark.parametrize(
    ("option", "env", "message"),
    [
        pytest.param("/no/such/ca.pem", {}, "is not a file", id="missing-ca"),
        pytest.param(None, {"DREMIO_SSL_CA": "/no/such.pem"}, "is not a file", id="missing-env"),
        pytest.param(None, {"DREMIO_SSL_VERIFY": "maybe"}, "true or false", id="bad-flag"),
        pytest.param(42, {}, "ssl= takes", id="bad-type"),
    ],
)
def test_bad_ssl_options(option: object, env: dict[str, str], message: str) -> None:
    with pytest.raises(DremioConfigError, match=message):
        resolve_tls(option, env)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_unreadable_ca_bundle_fails_when_opening(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("this is no certificate")
    client = DremioClient("https://127.0.0.1:9", token="t", ssl=ca)
    with pytest.raises(DremioConfigError, match="cannot load the CA bundle"):
        await client.__aenter__()


# -- TLS against FakeDremio over https --------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the TLS tests need the openssl command")
        pytest.skip("the TLS tests need the openssl command (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest_asyncio.fixture
async def https_fake(certificate: tuple[Path, Path]) -> AsyncIterator[FakeDremio]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with FakeDremio(ssl_context=context) as fake:
        yield fake


@pytest.mark.asyncio
async def test_https_with_the_ca_bundle(
    https_fake: FakeDremio, certificate: tuple[Path, Path]
) -> None:
    assert https_fake.url.startswith("https://")
    async with DremioClient(https_fake.url, token=https_fake.token, ssl=certificate[0]) as client:
        assert (await client.query("SELECT 1 AS x")).to_pylist() == [{"x": 1}]


@pytest.mark.asyncio
async def test_https_with_a_context_or_the_environment(
    https_fake: FakeDremio, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    async with DremioClient(https_fake.url, token=https_fake.token, ssl=context) as client:
        assert (await client.query("SELECT 2 AS x")).to_pylist() == [{"x": 2}]
    monkeypatch.setenv("DREMIO_SSL_CA", str(certificate[0]))
    async with DremioClient(https_fake.url, token=https_fake.token) as client:
        assert (await client.query("SELECT 3 AS x")).to_pylist() == [{"x": 3}]


@pytest.mark.asyncio
async def test_https_without_verification(
    https_fake: FakeDremio, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with DremioClient(https_fake.url, token=https_fake.token, ssl=False) as client:
        assert (await client.query("SELECT 4 AS x")).to_pylist() == [{"x": 4}]
    monkeypatch.setenv("DREMIO_SSL_VERIFY", "no")
    async with DremioClient(https_fake.url, token=https_fake.token) as client:
        assert (await client.query("SELECT 5 AS x")).to_pylist() == [{"x": 5}]


@pytest.mark.asyncio
async def test_untrusted_certificate_is_a_tls_error_without_retries(
    https_fake: FakeDremio,
) -> None:
    retry = RetryPolicy(attempts=5, max_time=30.0, backoff=1.0, max_backoff=1.0)
    started = time.perf_counter()
    async with DremioClient(https_fake.url, token=https_fake.token, retry=retry) as client:
        with pytest.raises(DremioTLSError, match="DREMIO_SSL_CA") as info:
            await client.submit("SELECT 1")
    # Five attempts would have waited 4 s between them: a refused certificate is final.
    assert time.perf_counter() - started < 3.0
    assert "certificate" in str(info.value).lower()
    assert https_fake.requests == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"attempts": 0}, id="no-attempts"),
        pytest.param({"attempts": 1.5}, id="fractional-attempts"),
        pytest.param({"max_time": 0}, id="no-time"),
        pytest.param({"max_time": float("nan")}, id="nan-time"),
        pytest.param({"backoff": -1}, id="negative-backoff"),
    ],
)
def test_bad_retry_policy(options: dict[str, float]) -> None:
    with pytest.raises(DremioConfigError, match="RetryPolicy"):
        RetryPolicy(**options)  # type: ignore[arg-type]
