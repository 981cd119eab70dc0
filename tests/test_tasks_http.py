"""HttpTask and SlackAlertTask in real pipelines against an aiohttp server on loopback."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import pytest_asyncio
from aiohttp import web

from dremioframe_async import Pipeline, TaskState, task
from dremioframe_async.tasks import (
    Credential,
    HttpConnectionError,
    HttpResponse,
    HttpStatusError,
    HttpTask,
    HttpTransientError,
    SlackAlertTask,
)
from dremioframe_async.tasks._http import parse_retry_after


@dataclass
class Server:
    url: str
    hits: list[tuple[float, web.Request, bytes]] = field(default_factory=list)
    script: list[Callable[[web.Request], web.StreamResponse]] = field(default_factory=list)
    started: anyio.Event = field(default_factory=anyio.Event)
    aborted: anyio.Event = field(default_factory=anyio.Event)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    state = Server("")

    async def handle(request: web.Request) -> web.StreamResponse:
        state.hits.append((time.monotonic(), request, await request.read()))
        if request.path == "/hang":
            state.started.set()
            try:
                await anyio.sleep_forever()
            finally:
                # handler_cancellation: the client went away, so aiohttp cancels the handler
                state.aborted.set()
        if state.script:
            return state.script.pop(0)(request)
        return web.json_response({"ok": True, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def status(code: int, text: str = "", **headers: str) -> Callable[[web.Request], web.Response]:
    return lambda _request: web.Response(status=code, text=text, headers=headers)


async def run_one(t: HttpTask, **run: Any) -> Any:
    return await Pipeline("p").add_task(t).run(**run)


@pytest.mark.asyncio
async def test_503_twice_then_200_is_retried_to_success(server: Server) -> None:
    server.script = [status(503), status(503)]
    t = HttpTask("call", f"{server.url}/data", retries=3)
    result = await run_one(t)
    result.raise_for_status()
    assert result["call"] == {"ok": True, "path": "/data"}
    assert len(server.hits) == 3
    assert result.tasks["call"].attempts == 3


@pytest.mark.asyncio
async def test_404_is_not_retried(server: Server) -> None:
    server.script = [status(404, "no such thing")]
    result = await run_one(HttpTask("call", f"{server.url}/missing", retries=3))
    assert result.states["call"] is TaskState.FAILED
    error = result.tasks["call"].error
    assert isinstance(error, HttpStatusError)
    assert not isinstance(error, HttpTransientError)
    assert error.status == 404
    assert "no such thing" in str(error)
    assert len(server.hits) == 1


@pytest.mark.asyncio
async def test_retry_on_overrides_the_default(server: Server) -> None:
    server.script = [status(404), status(404)]
    t = HttpTask("call", f"{server.url}/x", retries=2, retry_on=HttpStatusError)
    result = await run_one(t)
    result.raise_for_status()
    assert len(server.hits) == 3


@pytest.mark.asyncio
async def test_retry_after_is_honoured(server: Server) -> None:
    server.script = [status(429, **{"Retry-After": "1"})]
    t = HttpTask("call", f"{server.url}/limited", retries=2, retry_delay=0.0)
    result = await run_one(t)
    result.raise_for_status()
    (first, *_), (second, *_) = server.hits
    # The engine's own delay is 0: only the server's Retry-After can explain the gap.
    assert second - first >= 0.95


@pytest.mark.asyncio
async def test_retry_after_is_bounded_by_max_retry_delay(server: Server) -> None:
    server.script = [status(503, **{"Retry-After": "3600"})]
    t = HttpTask("call", f"{server.url}/x", retries=1, max_retry_delay=0.05)
    with anyio.fail_after(10):
        result = await run_one(t)
    result.raise_for_status()


@pytest.mark.asyncio
async def test_cancellation_aborts_the_request(server: Server) -> None:
    t = HttpTask("call", f"{server.url}/hang")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def run_and_record() -> None:
                await run_one(t)
                pytest.fail("run() returned although it was cancelled")

            tg.start_soon(run_and_record)
            await server.started.wait()
            tg.cancel_scope.cancel()
        # The server saw the client go: the connection was closed, not left hanging.
        await server.aborted.wait()


@pytest.mark.asyncio
async def test_timeout_aborts_the_request(server: Server) -> None:
    result = await run_one(HttpTask("call", f"{server.url}/hang", timeout=0.3))
    assert result.states["call"] is TaskState.FAILED
    assert isinstance(result.tasks["call"].error, TimeoutError)
    with anyio.fail_after(10):
        await server.aborted.wait()


@pytest.mark.asyncio
async def test_connection_refused_is_transient_even_for_post() -> None:
    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there any more
        t = HttpTask("call", f"http://127.0.0.1:{port}/", "POST", retries=2)
        result = await run_one(t)
    assert isinstance(result.tasks["call"].error, HttpConnectionError)
    assert result.tasks["call"].attempts == 3


@pytest.mark.asyncio
async def test_post_502_is_not_retried_but_503_is(server: Server) -> None:
    server.script = [status(502)]
    result = await run_one(HttpTask("call", f"{server.url}/x", "POST", json={}, retries=2))
    assert result.states["call"] is TaskState.FAILED
    assert len(server.hits) == 1
    server.script = [status(503)]
    result = await run_one(HttpTask("call", f"{server.url}/x", "POST", json={}, retries=2))
    result.raise_for_status()


@pytest.mark.asyncio
async def test_results_and_request_parts(server: Server) -> None:
    server.script = [lambda r: web.Response(text=f"{r.method} {r.query['q']} {r.headers['X-A']}")]
    t = HttpTask(
        "call",
        f"{server.url}/t",
        "PUT",
        headers={"X-A": "b"},
        params={"q": "1"},
        data=b"raw",
        result="text",
    )
    assert (await run_one(t))["call"] == "PUT 1 b"
    assert server.hits[-1][2] == b"raw"
    resp = (await run_one(HttpTask("r", f"{server.url}/r", result="response")))["r"]
    assert isinstance(resp, HttpResponse)
    assert resp.status == 200
    assert resp.json()["path"] == "/r"
    assert '"ok"' in resp.text()
    got = (await run_one(HttpTask("b", f"{server.url}/b", result="bytes")))["b"]
    assert got.startswith(b"{")


@pytest.mark.asyncio
async def test_a_body_over_max_bytes_fails_and_is_not_retried(server: Server) -> None:
    server.script = [status(200, "x" * 300_000), status(200, "x" * 300_000)]
    t = HttpTask("call", f"{server.url}/big", result="text", max_bytes=100_000, retries=2)
    result = await run_one(t)
    assert "exceeds max_bytes=100000" in str(result.tasks["call"].error)
    assert result.tasks["call"].attempts == 1
    t = HttpTask("call", f"{server.url}/big", result="text", max_bytes=None)
    assert len((await run_one(t))["call"]) == 300_000


@pytest.mark.asyncio
async def test_a_body_that_is_not_json_fails_clearly(server: Server) -> None:
    server.script = [status(200, "not json")]
    result = await run_one(HttpTask("call", f"{server.url}/x"))
    assert "not JSON" in str(result.tasks["call"].error)


@pytest.mark.asyncio
async def test_secrets_never_show(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "tok-5f2a9c81e7"
    monkeypatch.setenv("API_TOKEN", f"Bearer {token}")
    server.script = [lambda r: web.Response(status=400, text=f"bad {r.headers['Authorization']}")]
    t = HttpTask(
        "call",
        f"{server.url}/x?api_key=k-123456",
        headers={"Authorization": Credential.from_env("API_TOKEN"), "X-Api-Key": "plain-key-777"},
    )
    result = await run_one(t)
    error = result.tasks["call"].error
    assert server.hits[0][1].headers["Authorization"] == f"Bearer {token}"
    shown = f"{error} {t!r} {t.headers!r}"
    for secret in (token, "k-123456", "plain-key-777"):
        assert secret not in shown
    assert "bad ***" in str(error)
    # userinfo in the URL, and aiohttp refusing it beside an Authorization header
    port = server.url.rsplit(":", 1)[1]
    t = HttpTask("c", f"http://u:pw-9911@127.0.0.1:{port}/", headers={"Authorization": "x"})
    error = (await run_one(t)).tasks["c"].error
    assert "Cannot combine" in str(error)
    assert "pw-9911" not in f"{error} {t!r}"


@pytest.mark.asyncio
async def test_secret_from_the_run_context(server: Server) -> None:
    t = HttpTask("call", f"{server.url}/x", headers={"X-Token": Credential.from_context("token")})
    (await run_one(t, context={"token": "from-ctx"})).raise_for_status()
    assert server.hits[0][1].headers["X-Token"] == "from-ctx"


@pytest.mark.asyncio
async def test_slack_alert_lists_the_failures(server: Server) -> None:
    @task
    async def load() -> None:
        raise RuntimeError("source is down")

    @task
    async def ok() -> int:
        return 1

    alert = SlackAlertTask(
        "alert", f"{server.url}/hooks/T000/SECRETPATH", trigger_rule="one_failed"
    )
    a, b = load(), ok()
    a >> alert
    b >> alert
    result = await Pipeline("p").add_task(a).run()
    assert result.states["alert"] is TaskState.SUCCESS
    (_, request, body) = server.hits[0]
    assert request.method == "POST"
    import json

    text = json.loads(body)["text"]
    assert "load: RuntimeError: source is down" in text
    assert "SECRETPATH" not in repr(alert)


@pytest.mark.asyncio
async def test_slack_template_and_env_url(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{server.url}/hooks/secret")
    alert = SlackAlertTask("alert", text="run {run_id} failed: {failed_tasks}\n{failures}")
    result = await run_one(alert)
    result.raise_for_status()
    assert result["alert"] == '{"ok": true, "path": "/hooks/secret"}'
    assert b"failed: " in server.hits[0][2]
    assert "secret" not in repr(alert)


@pytest.mark.asyncio
async def test_slack_unset_webhook_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    result = await run_one(SlackAlertTask("alert", text=lambda ctx: "hi"))
    assert "SLACK_WEBHOOK_URL" in str(result.tasks["alert"].error)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="result"):
        HttpTask("x", "http://h/", result="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expect_status"):
        HttpTask("x", "http://h/", expect_status=[99])
    with pytest.raises(ValueError, match="json or data"):
        HttpTask("x", "http://h/", json={}, data=b"")


def test_parse_retry_after() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
