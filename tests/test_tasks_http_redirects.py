"""HttpTask against real aiohttp servers: redirects across origins, redirect loops, one retry
layer, and one connection pool per run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from dremioframe_async import Pipeline, TaskState
from dremioframe_async.tasks import (
    ClientPool,
    Credential,
    HttpError,
    HttpStatusError,
    HttpTask,
    SlackAlertTask,
)

Handler = Callable[[web.Request], web.StreamResponse]


@dataclass
class Site:
    url: str = ""
    hits: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)
    routes: dict[str, Handler] = field(default_factory=dict)


async def _serve(site: Site) -> web.AppRunner:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        site.hits.append((request.method, request.path, dict(request.headers), body))
        site.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        route = site.routes.get(request.path)
        if route is not None:
            return route(request)
        return web.json_response({"path": request.path, "method": request.method})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    site.url = f"http://127.0.0.1:{port}"
    return runner


@pytest_asyncio.fixture
async def sites() -> AsyncIterator[tuple[Site, Site]]:
    """Two origins: the one a task calls, and another (a different port)."""
    a, b = Site(), Site()
    runners = [await _serve(a), await _serve(b)]
    try:
        yield a, b
    finally:
        for runner in runners:
            await runner.cleanup()


def redirect(status: int, location: Callable[[], str]) -> Handler:
    return lambda _request: web.Response(status=status, headers={"Location": location()})


async def run_one(t: HttpTask) -> Any:
    return await Pipeline("p").add_task(t).run()


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_sends_no_credential(
    sites: tuple[Site, Site], code: int
) -> None:
    a, b = sites
    a.routes["/start"] = redirect(code, lambda: f"{b.url}/landing")
    t = HttpTask(
        "call",
        f"{a.url}/start",
        headers={
            "X-Api-Key": "k-123456",
            "Authorization": "Bearer t-abcdef",
            "X-Tenant-Pass": Credential("p-998877"),  # a Credential, whatever its name
            "X-Trace": "1",
        },
    )
    result = await run_one(t)
    result.raise_for_status()
    ((method, path, headers, _),) = b.hits
    assert path == "/landing"
    assert method == "GET"
    assert "X-Api-Key" not in headers
    assert "Authorization" not in headers
    assert "X-Tenant-Pass" not in headers
    assert headers["X-Trace"] == "1"  # what is not a credential still goes


@pytest.mark.asyncio
async def test_a_redirect_within_the_origin_keeps_the_credentials(
    sites: tuple[Site, Site],
) -> None:
    a, _ = sites
    a.routes["/start"] = redirect(307, lambda: "/landing")
    t = HttpTask("call", f"{a.url}/start", "POST", json={"n": 1}, headers={"X-Api-Key": "k-1234"})
    result = await run_one(t)
    result.raise_for_status()
    (_, (method, path, headers, body)) = a.hits
    assert (method, path, headers["X-Api-Key"], body) == ("POST", "/landing", "k-1234", b'{"n": 1}')


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [307, 308])
async def test_a_body_is_never_resent_to_another_origin(
    sites: tuple[Site, Site], code: int
) -> None:
    a, b = sites
    a.routes["/start"] = redirect(code, lambda: f"{b.url}/landing")
    t = HttpTask("call", f"{a.url}/start", "POST", data=b"secret-body", retries=2)
    result = await run_one(t)
    error = result.tasks["call"].error
    assert isinstance(error, HttpError)
    assert "another origin" in str(error)
    assert b.url in str(error)
    assert b.hits == []
    assert result.tasks["call"].attempts == 1


@pytest.mark.asyncio
async def test_follow_redirects_false_returns_the_redirect(sites: tuple[Site, Site]) -> None:
    a, b = sites
    a.routes["/start"] = redirect(302, lambda: f"{b.url}/landing")
    t = HttpTask(
        "call", f"{a.url}/start", follow_redirects=False, expect_status=302, result="response"
    )
    result = await run_one(t)
    result.raise_for_status()
    assert result["call"].status == 302
    assert result["call"].headers["Location"] == f"{b.url}/landing"
    assert b.hits == []


@pytest.mark.asyncio
async def test_a_redirect_loop_is_an_http_error_with_the_chain(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    a.routes["/loop"] = redirect(302, lambda: "/loop")
    result = await run_one(HttpTask("call", f"{a.url}/loop?api_key=s3cr3t-value", retries=2))
    error = result.tasks["call"].error
    assert type(error) is HttpError, repr(error)
    text = str(error)
    assert "too many redirects (10)" in text
    chain = text.split("too many redirects (10): ", 1)[1].split(" -> ")
    assert chain == [f"{a.url}/loop?api_key=***"] + [f"{a.url}/loop"] * 10  # the whole chain
    assert "s3cr3t-value" not in text
    assert result.tasks["call"].attempts == 1  # a loop stays a loop: not retried
    assert len(a.hits) == 11


def drop_the_reply(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.close()  # the request arrived; its reply never leaves
    return web.Response(text="never seen")


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_one_retry_layer_counts_requests_as_documented(
    sites: tuple[Site, Site], method: str
) -> None:
    a, _ = sites
    a.routes["/flaky"] = drop_the_reply
    result = await run_one(HttpTask("call", f"{a.url}/flaky", method, retries=3))
    assert result.states["call"] is TaskState.FAILED
    assert result.tasks["call"].attempts == 4
    assert len(a.hits) == 4  # retries=3: four requests, not eight


@pytest.mark.asyncio
async def test_a_fan_out_of_100_calls_shares_one_connection_pool(
    sites: tuple[Site, Site],
) -> None:
    a, _ = sites
    p = Pipeline("fan", max_concurrency=4)
    for i in range(100):
        p.add_task(HttpTask(f"c{i}", f"{a.url}/item/{i}"))
    result = await p.run()
    result.raise_for_status()
    assert len(a.hits) == 100
    # One pool kept alive across the run: at most one connection per concurrent call.
    assert len(a.peers) <= 4, len(a.peers)


@pytest.mark.asyncio
async def test_a_named_session_resource_is_used(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    pools: list[ClientPool] = []

    def make() -> ClientPool:
        pools.append(ClientPool())
        return pools[-1]

    p = Pipeline("named", resources={"api": make})
    for i in range(5):
        p.add_task(HttpTask(f"c{i}", f"{a.url}/x", session="api"))
    (await p.run()).raise_for_status()
    assert len(pools) == 1
    assert pools[0].opened == 1


@pytest.mark.asyncio
async def test_a_status_error_still_names_the_status(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    a.routes["/gone"] = lambda _r: web.Response(status=410, text="gone for good")
    result = await run_one(HttpTask("call", f"{a.url}/gone"))
    error = result.tasks["call"].error
    assert isinstance(error, HttpStatusError)
    assert error.status == 410


@pytest.mark.asyncio
async def test_slack_alerts_share_the_run_s_http_pool(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    p = Pipeline("alerts", max_concurrency=2)
    for i in range(20):
        p.add_task(SlackAlertTask(f"s{i}", f"{a.url}/services/T0/B0/{i}", text="hello"))
        p.add_task(HttpTask(f"h{i}", f"{a.url}/item/{i}"))
    (await p.run()).raise_for_status()
    assert len(a.hits) == 40
    assert len(a.peers) <= 2, len(a.peers)
