"""FakeDremio's ``POST /oauth/token``: Dremio's grants, its token object, RFC 6749's errors.

Requests go over real HTTP; the access token handed out is then used over REST and
over Arrow Flight, where it must work as Dremio's does, until sessions expire.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import pytest_asyncio

from dremioframe_async.testing import FakeDremio

PAT_TYPE = "urn:ietf:params:oauth:token-type:dremio:personal-access-token"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ORDERS = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "qty": pa.array([4, 5, 6], pa.int32())})


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDremio]:
    async with FakeDremio(flight=True) as server:
        server.add_table("lake.raw.orders", ORDERS)
        yield server


@pytest_asyncio.fixture
async def http(fake: FakeDremio) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=fake.url) as session:
        yield session


async def _token(
    http: aiohttp.ClientSession, form: dict[str, str], **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post("/oauth/token", data=form, **kwargs) as resp:
        return resp.status, await resp.json()


def _credentials(fake: FakeDremio, **changes: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": fake.oauth.client_id,
        "client_secret": fake.oauth.client_secret,
        "scope": "dremio.all",
    }
    return {**form, **changes}


async def _rest_status(http: aiohttp.ClientSession, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get("/api/v3/catalog", headers=headers) as resp:
        return resp.status


def _flight_rows(fake: FakeDremio, token: str) -> list[dict[str, Any]]:
    client = flight.FlightClient(fake.flight_url)
    try:
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
        sql = "SELECT id, qty FROM lake.raw.orders WHERE qty > 4 ORDER BY id"
        info = client.get_flight_info(flight.FlightDescriptor.for_command(sql), options)
        rows: list[dict[str, Any]] = (
            client.do_get(info.endpoints[0].ticket, options).read_all().to_pylist()
        )
        return rows
    finally:
        client.close()


@pytest.mark.asyncio
async def test_client_credentials_give_a_bearer_token_for_rest_and_flight(
    fake: FakeDremio, http: aiohttp.ClientSession
) -> None:
    status, body = await _token(http, _credentials(fake))
    assert status == 200
    # Dremio's OAuth token object.
    assert body == {
        "access_token": body["access_token"],
        "expires_in": 3600,
        "token_type": "Bearer",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "scope": "dremio.all",
    }
    token = body["access_token"]
    assert token in fake.issued_tokens
    assert token != fake.token
    assert await _rest_status(http, token) == 200
    rows = await anyio.to_thread.run_sync(_flight_rows, fake, token)
    assert rows == [{"id": 2, "qty": 5}, {"id": 3, "qty": 6}]
    assert {c.status for c in fake.flight.calls} == {"ok"}


@pytest.mark.asyncio
async def test_client_credentials_as_http_basic(
    fake: FakeDremio, http: aiohttp.ClientSession
) -> None:
    # RFC 6749 (2.3.1): the server accepts the client's id and secret as HTTP Basic.
    pair = f"{fake.oauth.client_id}:{fake.oauth.client_secret}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    status, body = await _token(http, {"grant_type": "client_credentials"}, headers=headers)
    assert status == 200
    assert await _rest_status(http, body["access_token"]) == 200


@pytest.mark.asyncio
async def test_configured_client_credentials(fake: FakeDremio, http: aiohttp.ClientSession) -> None:
    fake.oauth.client_id, fake.oauth.client_secret = "svc-reports", "s3cret"
    status, _ = await _token(http, _credentials(fake))
    assert status == 200
    status, _ = await _token(http, _credentials(fake, client_id="svc-other"))
    assert status == 401


REFUSED = [
    pytest.param({"client_secret": "wrong"}, 401, "invalid_client", id="wrong-secret"),
    pytest.param({"client_id": "someone-else"}, 401, "invalid_client", id="wrong-id"),
    pytest.param({"client_secret": ""}, 401, "invalid_client", id="no-secret"),
    pytest.param({"grant_type": "password"}, 400, "unsupported_grant_type", id="password-grant"),
    pytest.param({"scope": "admin"}, 400, "invalid_scope", id="other-scope"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("change", "status", "error"), REFUSED)
async def test_refused_requests_get_rfc6749_errors_and_no_token(
    fake: FakeDremio, http: aiohttp.ClientSession, change: dict[str, str], status: int, error: str
) -> None:
    got, body = await _token(http, _credentials(fake, **change))
    assert (got, body["error"]) == (status, error)
    assert body["error_description"]
    assert fake.issued_tokens == ()


@pytest.mark.asyncio
async def test_a_json_body_is_refused(fake: FakeDremio, http: aiohttp.ClientSession) -> None:
    # The token endpoint takes form fields only; the secret stays out of the request log.
    async with http.post("/oauth/token", json=_credentials(fake)) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"
    [recorded] = fake.requests_to("/oauth/token")
    assert recorded.body["client_secret"] == "***"
    assert fake.issued_tokens == ()


EXCHANGES = [
    pytest.param(None, PAT_TYPE, 200, id="pat"),
    pytest.param("not-the-pat", PAT_TYPE, 400, id="wrong-pat"),
    pytest.param(None, "urn:ietf:params:oauth:token-type:jwt", 400, id="jwt-not-configured"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("subject", "kind", "status"), EXCHANGES)
async def test_a_pat_exchanges_for_an_access_token(
    fake: FakeDremio, http: aiohttp.ClientSession, subject: str | None, kind: str, status: int
) -> None:
    form = {
        "grant_type": EXCHANGE,
        "subject_token": subject or fake.token,
        "subject_token_type": kind,
        "scope": "dremio.all",
    }
    got, body = await _token(http, form)
    assert got == status
    if status == 200:
        assert await _rest_status(http, body["access_token"]) == 200
    else:
        assert fake.issued_tokens == ()


@pytest.mark.asyncio
async def test_access_tokens_end_with_the_sessions(
    fake: FakeDremio, http: aiohttp.ClientSession
) -> None:
    _, body = await _token(http, _credentials(fake))
    fake.expire_sessions()
    assert await _rest_status(http, body["access_token"]) == 401
    with pytest.raises(flight.FlightUnauthenticatedError):
        await anyio.to_thread.run_sync(_flight_rows, fake, body["access_token"])
