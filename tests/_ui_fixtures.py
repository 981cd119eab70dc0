"""Pipelines and helpers shared by the UI's API and browser tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async import Pipeline, task
from dremioframe_async.store import MemoryStore, RunStore
from dremioframe_async.ui import PipelineEntry, ui_app
from dremioframe_async.ui._state import UI_KEY, UIState

EVIL = "<script>alert('x')</script>"
EVIL_ERROR = '<img src=x onerror="alert(1)">'


@dataclass
class Gate:
    """Lets a test hold a task in RUNNING and release it when it wants."""

    opened: anyio.Event = field(default_factory=anyio.Event)
    entered: anyio.Event = field(default_factory=anyio.Event)
    calls: dict[str, int] = field(default_factory=dict)
    fail_flaky: bool = True


def pipelines(gate: Gate) -> list[Pipeline | PipelineEntry]:
    """``hello`` (a -> b), ``gated`` (held by the gate), ``evil`` (a script-like name
    failing with an HTML-like error), ``flaky`` (fails until told not to) and ``mapped``."""

    @task(name="a")
    async def a(context=None):
        gate.calls["a"] = gate.calls.get("a", 0) + 1
        return {"rows": 3, "password": "hunter2"}

    @task(name="b")
    async def b(context=None):
        return context.params.get("n", 0)

    hello = Pipeline("hello")
    hello.add_task(a().set_downstream(b()))

    @task(name="hold")
    async def hold():
        gate.entered.set()
        await gate.opened.wait()

    @task(name="after")
    async def after():
        return "done"

    gated = Pipeline("gated")
    gated.add_task(hold().set_downstream(after()))

    @task(name=EVIL)
    async def evil():
        raise ValueError(EVIL_ERROR)

    bad = Pipeline("evil")
    bad.add_task(evil())

    @task(name="flaky")
    async def flaky(value):
        if gate.fail_flaky:
            raise RuntimeError("flaky failed")
        return value["rows"] + 1

    first = a()
    flaky_pipeline = Pipeline("flaky").add_task(flaky(first))

    @task(name="items")
    async def items():
        return [1, 2, 3]

    @task(name="double")
    async def double(x):
        return 2 * x

    mapped = Pipeline("mapped").add_task(double.expand(x=items()))

    @task(name="loop")
    async def loop():
        return None

    one, two = loop(), loop()
    one.set_downstream(two)
    two.set_downstream(one)
    cyclic = Pipeline("cyclic").add_task(one)
    return [
        cyclic,
        hello,
        PipelineEntry(gated, schedule="cron */5 * * * *"),
        bad,
        flaky_pipeline,
        mapped,
    ]


@dataclass
class UI:
    client: TestClient
    state: UIState
    store: RunStore
    gate: Gate

    async def csrf(self) -> str:
        response = await self.client.get("/api/csrf")
        assert response.status == 200
        return (await response.json())["csrf_token"]

    async def post(self, path: str, json: object = None, **kw) -> object:
        token = await self.csrf()
        return await self.client.post(path, json=json, headers={"X-CSRF-Token": token}, **kw)

    async def trigger(self, name: str, params: dict | None = None) -> str:
        response = await self.post(f"/api/pipelines/{name}/runs", {"params": params or {}})
        assert response.status == 202, await response.text()
        return (await response.json())["run_id"]

    async def finish(self, run_id: str) -> None:
        with anyio.fail_after(10):
            await self.state.launcher.wait(run_id)


@asynccontextmanager
async def open_ui(store: RunStore, gate: Gate, **kw) -> AsyncIterator[UI]:
    app = ui_app(store, pipelines(gate), **kw)
    async with TestClient(TestServer(app)) as client:
        yield UI(client, app[UI_KEY], store, gate)


@pytest_asyncio.fixture
async def gate() -> Gate:
    return Gate()


@pytest_asyncio.fixture
async def ui(gate: Gate) -> AsyncIterator[UI]:
    async with open_ui(MemoryStore(), gate, poll_interval=0.05) as opened:
        yield opened
