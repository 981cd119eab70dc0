"""Task logs in the UI: the JSON API with paging, the live tail over SSE, the task page,
and (Chromium) a failed task's lines beside its traceback and a running task's lines live.

The browser tests need Debian's ``chromium`` and the ``playwright`` package, as
``test_ui_browser.py`` explains; they skip without them (fail under ``CI=true``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import pytest_asyncio
from _ui_fixtures import UI, Gate
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async import Pipeline, task
from dremioframe_async.store import MemoryStore, RunStore, SQLiteStore
from dremioframe_async.ui import ui_app
from dremioframe_async.ui._state import UI_KEY

pytestmark = pytest.mark.asyncio
HTMLISH = "<b>not bold</b> & <script>alert(1)</script>"


@dataclass
class Steps:
    """Holds the ``tail`` task between its lines until the test lets it go on."""

    first_logged: anyio.Event = field(default_factory=anyio.Event)
    go_on: anyio.Event = field(default_factory=anyio.Event)
    second_seen: anyio.Event = field(default_factory=anyio.Event)


def log_pipelines(steps: Steps) -> list[Pipeline]:
    @task(name="fails", retries=1)
    async def fails(context: Any = None) -> None:
        context.log.info("loading %s", "table_a")
        context.log.warning(HTMLISH)
        raise ValueError("bad row 7")

    @task(name="slow")
    async def slow(context: Any = None) -> str:
        context.log.info("first line")
        steps.first_logged.set()
        await steps.go_on.wait()
        context.log.info("second line")
        await steps.second_seen.wait()
        return "done"

    return [Pipeline("noisy").add_task(fails()), Pipeline("tail").add_task(slow())]


@pytest_asyncio.fixture
async def served_store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[RunStore]:
    store: RunStore = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s")
    try:
        yield store
    finally:
        await store.aclose()


@pytest_asyncio.fixture
async def steps() -> Steps:
    return Steps()


async def open_ui(store: RunStore, steps: Steps) -> AsyncIterator[UI]:
    app = ui_app(store, log_pipelines(steps), poll_interval=0.05)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield UI(client, app[UI_KEY], store, Gate())


@pytest_asyncio.fixture
async def ui(served_store: RunStore, steps: Steps) -> AsyncIterator[UI]:
    async for opened in open_ui(served_store, steps):
        yield opened


async def get_json(ui: UI, path: str) -> tuple[int, Any]:
    response = await ui.client.get(path)
    return response.status, await response.json()


@pytest.mark.parametrize("served_store", ["memory", "sqlite"], indirect=True)
async def test_api_pages_a_runs_lines(ui: UI) -> None:
    run_id = await ui.trigger("noisy")
    await ui.finish(run_id)
    status, body = await get_json(ui, f"/api/runs/{run_id}/logs")
    assert status == 200
    lines = [(x["task"], x["attempt"], x["seq"], x["level"], x["message"]) for x in body["lines"]]
    assert lines == [
        ("fails", a, s, level, text)
        for a in (1, 2)
        for s, level, text in ((1, "INFO", "loading table_a"), (2, "WARNING", HTMLISH))
    ]
    assert body["more"] is False
    # Paging: two lines at a time, each page after the last id of the previous one.
    status, first = await get_json(ui, f"/api/runs/{run_id}/logs?task=fails&limit=2")
    assert first["more"] is True
    assert [x["seq"] for x in first["lines"]] == [1, 2]
    after = first["next_after"]
    status, second = await get_json(ui, f"/api/runs/{run_id}/logs?limit=2&after={after}")
    assert [(x["attempt"], x["seq"]) for x in second["lines"]] == [(2, 1), (2, 2)]
    status, only = await get_json(ui, f"/api/runs/{run_id}/logs?attempt=2")
    assert {x["attempt"] for x in only["lines"]} == {2}
    assert (await ui.client.get(f"/api/runs/{run_id}/logs?limit=0")).status == 400
    assert (await ui.client.get(f"/api/runs/{run_id}/logs?after=x")).status == 400
    assert (await ui.client.get("/api/runs/nope/logs")).status == 404


@pytest.mark.parametrize("served_store", ["memory", "sqlite"], indirect=True)
async def test_task_page_shows_escaped_lines_beside_each_attempts_traceback(ui: UI) -> None:
    run_id = await ui.trigger("noisy")
    await ui.finish(run_id)
    response = await ui.client.get(f"/runs/{run_id}/task", params={"key": "fails"})
    assert response.status == 200
    html = await response.text()
    assert "<script>alert(1)" not in html
    assert "&lt;b&gt;not bold&lt;/b&gt; &amp; &lt;script&gt;" in html
    for attempt in (1, 2):
        section = html.split(f'data-attempt="{attempt}"', 1)[1]
        assert section.index("ValueError: bad row 7") < section.index("loading table_a")
    run_page = await (await ui.client.get(f"/runs/{run_id}")).text()
    assert f"/runs/{run_id}/task?key=fails" in run_page
    missing = await ui.client.get(f"/runs/{run_id}/task", params={"key": "nope"})
    assert missing.status == 404


async def read_events(response: Any) -> AsyncIterator[tuple[str, Any]]:
    event = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


@pytest.mark.parametrize("served_store", ["memory", "sqlite"], indirect=True)
async def test_a_running_tasks_lines_stream_until_the_run_ends(ui: UI, steps: Steps) -> None:
    run_id = await ui.trigger("tail")
    with anyio.fail_after(10):
        await steps.first_logged.wait()
    response = await ui.client.get(f"/api/runs/{run_id}/logs/events", params={"task": "slow"})
    assert response.headers["Content-Type"] == "text/event-stream"
    seen: list[str] = []
    with anyio.fail_after(15):
        async for event, data in read_events(response):
            if event == "end":
                break
            assert event == "lines"
            seen.extend(x["message"] for x in data)
            if seen == ["first line"]:
                steps.go_on.set()  # the second line is logged only after the first arrived
            elif seen == ["first line", "second line"]:
                steps.second_seen.set()
    assert seen == ["first line", "second line"]
    await ui.finish(run_id)


# ---------------------------------------------------------------- Chromium

browser = pytest.importorskip("test_ui_browser").browser
page = pytest.importorskip("test_ui_browser").page


@pytest.mark.parametrize("served_store", ["memory"], indirect=True)
async def test_browser_failed_task_lines_next_to_traceback(ui: UI, page: Any) -> None:
    run_id = await ui.trigger("noisy")
    await ui.finish(run_id)
    await page.goto(str(ui.client.make_url(f"/runs/{run_id}")))
    await page.locator('tr[data-key="fails"] a').click()
    second = page.locator('section.attempt[data-attempt="2"]')
    await second.wait_for()
    assert "ValueError: bad row 7" in await second.locator("details.error pre").inner_text()
    log = await second.locator("pre.log").inner_text()
    assert "loading table_a" in log
    assert HTMLISH in log  # shown as text, never run as markup
    box_error = await second.locator("details.error").bounding_box()
    box_log = await second.locator("pre.log").bounding_box()
    assert box_error is not None
    assert box_log is not None
    assert box_log["y"] >= box_error["y"]  # together, in the attempt's own section


@pytest.mark.parametrize("served_store", ["memory"], indirect=True)
async def test_browser_running_tasks_lines_appear_live(ui: UI, steps: Steps, page: Any) -> None:
    run_id = await ui.trigger("tail")
    with anyio.fail_after(10):
        await steps.first_logged.wait()
    await page.goto(str(ui.client.make_url(f"/runs/{run_id}/task?key=slow")))
    # On the page as rendered, or arriving a moment later (lines are sent every 0.5 s).
    await page.locator('pre.log[data-attempt="1"] span', has_text="first line").wait_for()
    steps.go_on.set()
    # No reload: the line arrives over the event stream while the task still runs.
    await page.locator("pre.log span", has_text="second line").wait_for()
    assert await page.evaluate("document.getElementById('task').dataset.ended") is None
    steps.second_seen.set()
    await ui.finish(run_id)
    logging.getLogger(__name__).debug("run %s done", run_id)
