"""The UI on the run queue: triggers queue runs, cancels reach runs wherever they run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async import Pipeline, task
from dremioframe_async.store import MemoryStore, RunStatus, RunStore
from dremioframe_async.ui import ui_app

pytestmark = pytest.mark.asyncio


class Held:
    """A pipeline whose task waits for ``release`` and whose cleanup can be slow."""

    def __init__(self) -> None:
        self.started, self.release = anyio.Event(), anyio.Event()
        self.cleanup_started, self.cleaned = anyio.Event(), False

        @task(name="hold")
        async def hold() -> None:
            self.started.set()
            await self.release.wait()

        @task(name="cleanup", trigger_rule="all_done")
        async def cleanup(context: Any) -> None:
            self.cleanup_started.set()
            await anyio.sleep(float(context.params.get("cleanup_sleep", 0)))
            self.cleaned = True

        self.pipeline = Pipeline("held", max_active_runs=1).add_task(hold() >> cleanup())


@pytest_asyncio.fixture
async def client_of() -> AsyncIterator[Any]:
    clients: list[TestClient] = []

    async def make(store: RunStore, pipelines: list[Pipeline]) -> TestClient:
        client = TestClient(TestServer(ui_app(store, pipelines)))
        await client.start_server()
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


async def _post(client: TestClient, path: str, body: object = None) -> Any:
    token = (await (await client.get("/api/csrf")).json())["csrf_token"]
    return await client.post(path, json=body, headers={"X-CSRF-Token": token})


async def _status(store: RunStore, run_id: str, status: RunStatus) -> None:
    with anyio.fail_after(10):
        while (await store.get_run(run_id)).status is not status:
            await anyio.sleep(0.01)


async def test_a_trigger_beyond_max_active_runs_waits_queued_and_can_be_cancelled(
    client_of: Any,
) -> None:
    store, held = MemoryStore(), Held()
    client = await client_of(store, [held.pipeline])
    first = await (await _post(client, "/api/pipelines/held/runs", {"params": {}})).json()
    await held.started.wait()
    response = await _post(client, "/api/pipelines/held/runs", {"params": {}})
    assert response.status == 202
    second = (await response.json())["run_id"]
    shown = await (await client.get(f"/api/runs/{second}")).json()
    assert (shown["run"]["status"], shown["cancellable"]) == ("QUEUED", True)
    cancelled = await _post(client, f"/api/runs/{second}/cancel")
    assert cancelled.status == 202
    assert (await store.get_run(second)).status is RunStatus.CANCELLED
    held.release.set()
    await _status(store, first["run_id"], RunStatus.SUCCESS)
    assert (await store.get_run(second)).status is RunStatus.CANCELLED  # never started


async def test_the_ui_cancels_a_run_it_did_not_start_and_a_second_cancel_stops_cleanup(
    client_of: Any,
) -> None:
    store, held = MemoryStore(), Held()
    client = await client_of(store, [])  # this UI serves nothing: it only reads and cancels
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: held.pipeline.run({"cleanup_sleep": 60}, store=store, run_id="elsewhere")
        )
        await held.started.wait()
        page = await (await client.get("/api/runs/elsewhere")).json()
        assert page["cancellable"] is True
        assert (await _post(client, "/api/runs/elsewhere/cancel")).status == 202
        await held.cleanup_started.wait()
        assert (await _post(client, "/api/runs/elsewhere/cancel")).status == 202
    run = await store.get_run("elsewhere")
    assert (run.status, run.cancel_requests, held.cleaned) == (RunStatus.CANCELLED, 2, False)
    refused = await _post(client, "/api/runs/elsewhere/cancel")
    assert refused.status == 409
    assert "already ended CANCELLED" in (await refused.json())["error"]


async def test_the_api_and_page_show_the_fire_time(client_of: Any) -> None:
    store, held = MemoryStore(), Held()
    held.release.set()
    client = await client_of(store, [held.pipeline])
    run_id = await store.claim_fire("held", 1_800_000_000.0)
    assert run_id is not None
    await _status(store, run_id, RunStatus.SUCCESS)  # this UI ran the queued fire
    shown = await (await client.get(f"/api/runs/{run_id}")).json()
    assert shown["run"]["scheduled_for"] == 1_800_000_000.0
    assert "Scheduled for" in await (await client.get(f"/runs/{run_id}")).text()


async def test_a_trigger_another_process_runs_leaves_nothing_waiting_for_its_start(
    client_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trigger() kept a start signal for every run it did not see start here (taken by
    # another replica, or left queued), for the life of the process.
    from dremioframe_async.ui import _launcher
    from dremioframe_async.ui._app import UI_KEY

    monkeypatch.setattr(_launcher, "QUEUED_START_WAIT", 0.0)
    store, held = MemoryStore(), Held()
    client = await client_of(store, [held.pipeline])
    launcher = client.server.app[UI_KEY].launcher
    launcher.holding = True  # this process claims nothing: another one will
    run_id = await launcher.trigger("held", {})
    assert (await store.get_run(run_id)).status is RunStatus.QUEUED
    assert run_id not in launcher.live._started
