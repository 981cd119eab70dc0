"""Limits on retrying: a server's Retry-After is capped (5 minutes by default, settable),
and ``deadline=`` bounds a task's attempts together; ``DremioRateLimited`` follows the
same rule. Engine tests run on asyncio and trio; HttpTask ones against a real server.

``fail_after(GUARD)`` is only a liveness bound: a task that waits as long as a server
asks fails the test.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiohttp import web

from dremioframe_async import Pipeline, TaskState, task
from dremioframe_async.dremio import DremioRateLimited
from dremioframe_async.orchestration import TaskOptions, TaskRetrying
from dremioframe_async.orchestration._errors import TaskDefinitionError
from dremioframe_async.tasks import HttpTask, HttpTransientError

pytestmark = pytest.mark.anyio

GUARD = 10  # seconds; a liveness bound only
FOREVER = 999_999_999.0  # what a hostile server asks for


async def first_retry_delay(p: Pipeline) -> float:
    """Run ``p`` until its first TaskRetrying event; cancel the run there; its delay."""
    delays: list[float] = []
    seen = anyio.Event()

    def on_event(event: Any) -> None:
        if isinstance(event, TaskRetrying) and not delays:
            delays.append(event.delay)
            seen.set()

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await p.run(on_event=on_event)

            tg.start_soon(run)
            await seen.wait()
            tg.cancel_scope.cancel()
    return delays[0]


def rate_limited(asked: float) -> DremioRateLimited:
    return DremioRateLimited("POST", "/api/v3/sql", 429, "slow down", retry_after=asked)


def test_the_default_cap_is_five_minutes_and_is_checked() -> None:
    assert TaskOptions().max_retry_after == 300.0
    assert TaskOptions().deadline is None
    with pytest.raises(TaskDefinitionError, match="max_retry_after"):
        task(max_retry_after=-1)(lambda: None)
    with pytest.raises(TaskDefinitionError, match="deadline"):
        task(deadline=0)(lambda: None)


async def test_dremio_rate_limited_waits_at_most_the_default_cap() -> None:
    @task(retries=1)
    async def query() -> None:
        raise rate_limited(FOREVER)

    assert await first_retry_delay(Pipeline("rl").add_task(query())) == 300.0


async def test_the_cap_is_settable_and_dremio_rate_limited_obeys_it() -> None:
    calls = 0

    @task(retries=1, max_retry_after=0.05)
    async def query() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise rate_limited(FOREVER)
        return "rows"

    with anyio.fail_after(GUARD):
        result = await Pipeline("rl").add_task(query()).run()
    assert result["query"] == "rows"
    assert calls == 2


async def test_no_retry_starts_that_would_wait_past_the_deadline() -> None:
    calls = 0

    @task(retries=5, deadline=1.0)
    async def query() -> None:
        nonlocal calls
        calls += 1
        raise rate_limited(60.0)  # within the cap, but beyond the deadline

    with anyio.fail_after(GUARD):
        result = await Pipeline("dl").add_task(query()).run()
    assert isinstance(result.errors["query"], DremioRateLimited)
    assert calls == 1


async def test_the_deadline_cuts_the_attempt_that_would_outlive_it() -> None:
    attempts: list[float] = []

    @task(retries=100, deadline=0.6, retry_on=TimeoutError)
    async def slow() -> None:
        attempts.append(time.monotonic())
        await anyio.sleep_forever()

    with anyio.fail_after(GUARD):
        result = await Pipeline("cut").add_task(slow()).run()
    assert result.states["slow"] is TaskState.FAILED
    assert isinstance(result.errors["slow"], TimeoutError)
    assert len(attempts) == 1  # the deadline ended the attempt, and no retry follows it


async def test_the_deadline_spans_attempts_with_their_own_timeout() -> None:
    attempts = 0

    @task(retries=100, timeout=0.2, deadline=1.0, retry_on=TimeoutError)
    async def slow() -> None:
        nonlocal attempts
        attempts += 1
        await anyio.sleep_forever()

    with anyio.fail_after(GUARD):
        result = await Pipeline("span").add_task(slow()).run()
    assert isinstance(result.errors["slow"], TimeoutError)
    assert 2 <= attempts <= 5  # 1 s of 0.2 s attempts: never the 101 that retries allow


# -- HttpTask against a server that asks for 31 years --------------------------------------


ON_ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # aiohttp


@pytest.fixture
async def forever_503() -> AsyncIterator[tuple[str, list[float]]]:
    hits: list[float] = []

    async def handle(_request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        return web.Response(status=503, headers={"Retry-After": str(int(FOREVER))})

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/", hits
    finally:
        await runner.cleanup()


@ON_ASYNCIO
async def test_http_retry_after_is_capped_by_default(
    forever_503: tuple[str, list[float]],
) -> None:
    url, _ = forever_503
    assert await first_retry_delay(Pipeline("h").add_task(HttpTask("call", url, retries=1))) == 300


@ON_ASYNCIO
async def test_http_retry_after_cap_is_settable(forever_503: tuple[str, list[float]]) -> None:
    url, hits = forever_503
    t = HttpTask("call", url, retries=2, max_retry_after=0.1)
    with anyio.fail_after(GUARD):
        result = await Pipeline("h").add_task(t).run()
    assert isinstance(result.errors["call"], HttpTransientError)
    assert len(hits) == 3


@ON_ASYNCIO
async def test_http_deadline_stops_the_retries(forever_503: tuple[str, list[float]]) -> None:
    url, hits = forever_503
    t = HttpTask("call", url, retries=10, deadline=2.0)
    with anyio.fail_after(GUARD):
        result = await Pipeline("h").add_task(t).run()
    assert isinstance(result.errors["call"], HttpTransientError)
    assert len(hits) == 1  # the server's wait (capped at 300 s) is past the deadline
