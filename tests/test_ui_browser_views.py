"""The operator views in Chromium: filtering the runs list, the pipelines page (every
pipeline of the store, a schedule's next fire and its pause switch), the trigger form
built from default params, and the cancel confirmation. Screenshots go to
``test-artifacts/ui/`` (ignored by git)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest
import pytest_asyncio
import test_ui_browser
from _ui_fixtures import UI, Gate
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import RunFinished, RunStarted
from dremioframe_async.schedule import Schedule
from dremioframe_async.store import MemoryStore, RunStatus
from dremioframe_async.ui import PipelineEntry, ui_app
from dremioframe_async.ui._state import UI_KEY

browser = test_ui_browser.browser
shot = test_ui_browser.shot
pytestmark = pytest.mark.asyncio
DAY = datetime(2026, 3, 10, tzinfo=UTC).timestamp()


def view_pipelines(gate: Gate) -> list[PipelineEntry]:
    @task(name="echo")
    async def echo(context=None):
        return dict(context.params)

    echoing = Pipeline("echo").add_task(echo())

    @task(name="tick")
    async def tick() -> None:
        return None

    hourly = Pipeline("hourly").add_task(tick())

    @task(name="hold")
    async def hold() -> None:
        gate.entered.set()
        await gate.opened.wait()

    held = Pipeline("held").add_task(hold())
    defaults = {"day": "2026-12-01", "limit": 10, "full": False, "api_key": "s3cret-value"}
    return [
        PipelineEntry(echoing, params=defaults),
        PipelineEntry(hourly, schedule=Schedule(hourly, interval=3600)),
        PipelineEntry(held),
    ]


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[UI, str]]:
    gate = Gate()
    store = MemoryStore()
    app = ui_app(store, view_pipelines(gate), poll_interval=0.1)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield UI(client, app[UI_KEY], store, gate), str(client.make_url("/"))


@pytest_asyncio.fixture
async def page(browser):
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    opened.set_default_timeout(test_ui_browser.TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield opened
        assert errors == []  # no uncaught script error on any page
    finally:
        await context.close()


async def test_the_runs_list_filters_by_pipeline_part_and_dates(served, page) -> None:
    ui, base = served
    events = []
    for i, name in enumerate(["etl_daily", "ETL_hourly", "load"] * 3):
        start = DAY + i * 43_200  # every 12 h from 10 March 2026, 00:00 UTC
        events += [
            RunStarted(f"r{i}", name, start, {"i": i}, ()),
            RunFinished(f"r{i}", name, "SUCCESS", start + 1, start),
        ]
    await ui.store.record(events)
    await page.goto(base)
    await page.get_by_label("pipeline contains").fill("etl")
    await page.get_by_label("from").fill("2026-03-11")
    await page.get_by_label("to").fill("2026-03-12")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r".*pipeline_contains=etl.*since=2026-03-11.*"))
    rows = page.locator("tr[data-run]")
    assert await rows.evaluate_all("(rs) => rs.map((r) => r.dataset.run)") == ["r4", "r3"]
    assert await page.get_by_label("pipeline contains").input_value() == "etl"
    assert "2 runs" in await page.locator(".pager").inner_text()
    await shot(page, "runs-filtered")
    await page.locator('tr[data-run="r4"] a', has_text="ETL_hourly").click()
    await page.wait_for_url("**/?pipeline=ETL_hourly")
    assert await rows.count() == 3
    assert "pipeline ETL_hourly" in await page.locator("p.backfill").inner_text()


async def test_the_pipelines_page_lists_the_store_and_pauses_a_schedule(served, page) -> None:
    ui, base = served
    await ui.store.record(
        [
            RunStarted("x1", "nightly_export", DAY, {}, ()),
            RunFinished("x1", "nightly_export", "FAILED", DAY + 5, DAY),
        ]
    )
    await page.goto(f"{base}pipelines")
    other = page.locator('section[data-pipeline="nightly_export"]')
    assert "not served by this UI" in await other.inner_text()
    assert await other.locator("form").count() == 0  # no trigger, no switch
    hourly = page.locator('section[data-pipeline="hourly"]')
    text = await hourly.locator(".schedule").inner_text()
    assert "every 3600 s" in text
    # Within the hour's last minute the next fire is seconds away ("in 50 s", "in a few s").
    in_words = r"in (\d+ min|1 h|\d+ s|a few s)"
    assert re.search(rf"next fire \d{{4}}-\d\d-\d\d \d\d:00:00 UTC \({in_words}\)", text), text
    await hourly.get_by_role("button", name="Pause schedule").click()
    await page.wait_for_url("**/pipelines#pipeline-hourly")
    hourly = page.locator('section[data-pipeline="hourly"]')
    assert "paused since" in await hourly.locator(".schedule").inner_text()
    assert list(await ui.store.paused_schedules()) == ["hourly"]
    await shot(page, "pipelines-paused")
    await hourly.get_by_role("button", name="Resume schedule").click()
    await page.wait_for_url("**/pipelines#pipeline-hourly")
    assert "next fire" in await page.locator('section[data-pipeline="hourly"]').inner_text()
    assert await ui.store.paused_schedules() == {}


async def test_the_trigger_form_has_a_field_per_param(served, page) -> None:
    ui, base = served
    await page.goto(f"{base}pipelines")
    form = page.locator('section[data-pipeline="echo"] form.trigger')
    assert await form.get_by_label("day").get_attribute("type") == "date"
    assert await form.get_by_label("day").input_value() == "2026-12-01"
    assert await form.get_by_label("limit").get_attribute("type") == "number"
    secret = form.get_by_label("api_key")
    assert (await secret.get_attribute("type"), await secret.input_value()) == ("password", "")
    await form.get_by_label("day").fill("2026-12-24")
    await form.get_by_label("limit").fill("25")
    await form.get_by_label("full").check()
    await form.get_by_role("button", name="Trigger echo").click()
    await page.wait_for_url("**/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    await ui.finish(run_id)
    run = await ui.store.get_run(run_id)
    assert dict(run.params) == {"day": "2026-12-24", "limit": 25, "full": True}
    await shot(page, "triggered-from-fields")


async def test_cancel_asks_first_and_a_no_sends_nothing(served, page) -> None:
    ui, base = served
    run_id = await ui.trigger("held")
    with anyio.fail_after(10):
        await ui.gate.entered.wait()
    try:
        await page.goto(f"{base}runs/{run_id}")
        asked: list[str] = []

        async def answer(dialog) -> None:
            asked.append(dialog.message)
            await (dialog.dismiss() if len(asked) == 1 else dialog.accept())

        page.on("dialog", answer)
        await page.get_by_role("button", name="Cancel run").click()  # declined
        await page.get_by_role("button", name="Cancel run").click()  # accepted
        await page.locator('#run-live[data-status="CANCELLED"]').wait_for()
        assert asked == [f"Cancel run {run_id[:12]} of held?"] * 2
    finally:
        ui.gate.opened.set()
        await ui.finish(run_id)
    run = await ui.store.get_run(run_id)
    assert (run.status, run.cancel_requests) == (RunStatus.CANCELLED, 1)  # one sent, not two
