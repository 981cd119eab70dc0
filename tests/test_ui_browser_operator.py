"""What an operator sees, in Chromium: a 200-instance mapped run, long errors, a stopped
server, a runs list left open, a refused trigger, dark mode and a phone-sized screen.
Screenshots go to ``test-artifacts/ui/`` (ignored by git)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio
import pytest
import pytest_asyncio
import test_ui_browser
from _ui_fixtures import UI, Gate
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async import Pipeline, task
from dremioframe_async.schedule import Schedule
from dremioframe_async.store import MemoryStore, RunStatus
from dremioframe_async.ui import PipelineEntry, ui_app
from dremioframe_async.ui._state import UI_KEY

browser = test_ui_browser.browser
shot = test_ui_browser.shot
pytestmark = pytest.mark.asyncio
LONG = "the partition manifest is inconsistent: " + "row group mismatch; " * 64  # ~1.3 KB
FAILING = {3, 50, 99, 120, 160, 199}


def operator_pipelines(gate: Gate) -> list[Pipeline | PipelineEntry]:
    @task(name="list_partitions")
    async def list_partitions() -> list[int]:
        return list(range(200))

    @task(name="process_partition")
    async def process_partition(p: int) -> dict[str, int]:
        if p in FAILING:
            raise ValueError(f"partition {p} is corrupt")
        return {"partition": p, "rows": p * 10}

    @task(name="merge_partitions", trigger_rule="all_done")
    async def merge_partitions() -> str:
        return "merged what succeeded"

    @task(name="check_manifest", retries=1, retry_delay=0)
    async def check_manifest() -> None:
        raise RuntimeError(LONG)

    @task(name="publish")
    async def publish(done: object) -> None:
        return None

    parts = process_partition.expand(p=list_partitions())
    fanout = Pipeline("fanout").add_task(parts.set_downstream(merge_partitions()))
    checked = Pipeline("checked").add_task(publish(check_manifest()))

    @task(name="hold")
    async def hold() -> None:
        gate.entered.set()
        await gate.opened.wait()

    gated = Pipeline("gated").add_task(hold())

    @task(name="build_report")
    async def build_report() -> None:
        return None

    report = Pipeline("report").add_task(build_report())
    scheduled = PipelineEntry(
        report,
        schedule=Schedule(report, interval=3600),
        params={"day": "2026-12-01", "limit": 10, "full": False, "tables": ["a", "b"]},
    )
    return [fanout, checked, gated, scheduled]


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[UI, str]]:
    gate = Gate()
    store = MemoryStore()
    app = ui_app(store, operator_pipelines(gate), poll_interval=0.1)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield UI(client, app[UI_KEY], store, gate), str(client.make_url("/"))


@pytest_asyncio.fixture
async def context(browser):
    opened = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield opened
    finally:
        await opened.close()


async def new_page(context, errors: list[str]):
    page = await context.new_page()
    page.set_default_timeout(test_ui_browser.TIMEOUT_MS)
    page.on("pageerror", lambda e: errors.append(str(e)))  # uncaught script errors
    return page


OVERFLOWING_LABELS = """
() => [...document.querySelectorAll('svg.dag g.node')].filter((g) => {
  const box = g.querySelector('rect').getBBox();
  return [...g.querySelectorAll('text')].some((t) => {
    const b = t.getBBox();
    return b.x + b.width > box.x + box.width - 2 || b.y + b.height > box.y + box.height + 1;
  });
}).map((g) => g.dataset.key)
"""


async def test_a_200_instance_mapped_run_reads_well(served, context) -> None:
    ui, base = served
    run_id = await ui.trigger("fanout")
    await ui.finish(run_id)
    errors: list[str] = []
    page = await new_page(context, errors)
    await page.goto(f"{base}runs/{run_id}")
    node = page.locator('svg.dag g.node[data-key="process_partition"]')
    assert "×200 (194 ok)" in await node.text_content()
    assert await page.evaluate(OVERFLOWING_LABELS) == []  # labels stay in their boxes
    labels = await page.locator("svg.timeline text.tl-label").all_text_contents()
    assert "merge_partitions" in labels  # top-level tasks survive the row cap
    assert "list_partitions" in labels
    more = await page.locator("svg.timeline text.tl-more").text_content()
    assert "more instances of process_partition" in more
    summary = await page.locator("dl.summary").inner_text()
    assert "6 failed" in summary  # the six instances, not the mapped task on top
    assert "7 failed" not in summary
    results = await page.locator("section:has(h2:text('Stored results'))").inner_text()
    assert "process_partition: 194 mapped instance results" in results
    await shot(page, "mapped-200-run")
    await page.goto(base)  # the runs list counts as the run page does
    counts = await page.locator(f'tr[data-run="{run_id}"] .counts').inner_text()
    assert "6 failed" in counts
    assert "196 success" in counts  # 194 instances, list_partitions and merge_partitions
    await page.goto(f"{base}pipelines")
    assert await page.evaluate(OVERFLOWING_LABELS) == []
    assert errors == []


async def test_long_errors_fold_and_reasons_are_not_errors(served, context) -> None:
    ui, base = served
    run_id = await ui.trigger("checked")
    await ui.finish(run_id)
    errors: list[str] = []
    page = await new_page(context, errors)
    await page.goto(f"{base}runs/{run_id}")
    cell = page.locator('table.tasks tr[data-key="check_manifest"] td.note')
    assert await cell.locator("details.long").count() == 1
    assert len(await cell.locator("summary").inner_text()) <= 200
    assert not await cell.locator("pre").is_visible()
    await cell.locator("summary").click()
    assert "row group mismatch" in await cell.locator("pre").inner_text()
    reason = page.locator('table.tasks tr[data-key="publish"] td.note')
    assert "reason" in (await reason.get_attribute("class") or "")
    red = await reason.evaluate("(e) => getComputedStyle(e).color")
    error_red = await cell.evaluate("(e) => getComputedStyle(e).color")
    assert red != error_red
    heads = await page.locator("details.error > summary").all_inner_texts()
    assert heads[1] == "check_manifest · attempt 2: same error as attempt 1"
    assert all(len(h) < 250 for h in heads)
    assert errors == []


async def _held_run_page(served, context, errors: list[str]):
    """A page on a run held RUNNING by the gate, its Cancel button shown."""
    ui, base = served
    run_id = await ui.trigger("gated")
    with anyio.fail_after(10):
        await ui.gate.entered.wait()
    page = await new_page(context, errors)
    await page.goto(f"{base}runs/{run_id}")
    assert await page.get_by_role("button", name="Cancel run").is_visible()
    return page


async def test_a_stopped_server_shows_a_notice_not_errors(served, context) -> None:
    ui, _ = served
    errors: list[str] = []
    page = await _held_run_page(served, context, errors)
    await ui.client.server.close()  # stopping the UI also cancels the runs it started
    notice = page.locator("#notice")
    await notice.wait_for(state="visible")
    assert "disconnected" in await notice.inner_text()
    assert not await page.get_by_role("button", name="Cancel run").is_visible()
    await shot(page, "server-stopped")
    assert errors == []  # no uncaught "Failed to fetch"


async def test_a_page_fetched_before_the_server_stopped_does_not_bring_back_its_buttons(
    served, context
) -> None:
    """A refresh in flight when the event stream drops lands after the notice: it is
    stale, so the notice stays and Cancel stays hidden until the stream is back."""
    ui, _ = served
    errors: list[str] = []
    page = await _held_run_page(served, context, errors)
    live = await page.get_attribute("#run", "data-live")
    assert live
    held, release = anyio.Event(), anyio.Event()

    async def hold(route) -> None:
        response = await route.fetch()  # the page as it was, with its Cancel button
        held.set()
        await release.wait()
        await route.fulfill(response=response)

    await page.route(f"**{live}", hold)
    with anyio.fail_after(15):
        await held.wait()  # the page's own refresh, every 5 s while the run runs
    await ui.client.server.close()
    notice = page.locator("#notice")
    await notice.wait_for(state="visible")
    release.set()
    await page.locator('#run[data-updates="1"]').wait_for(state="attached")  # it landed
    assert "disconnected" in await notice.inner_text()
    assert not await page.get_by_role("button", name="Cancel run").is_visible()
    assert errors == []


async def test_a_run_that_ended_while_its_page_could_not_fetch_it_shows_once_it_can(
    served, context
) -> None:
    """The stream says the run ended, then closes, and the run's final page cannot be
    fetched: with the stream and its tick over, the page keeps trying on its own, and
    shows the ended run, without the notice, once the fetch goes through."""
    ui, _ = served
    errors: list[str] = []
    page = await _held_run_page(served, context, errors)
    live = await page.get_attribute("#run", "data-live")
    assert live
    down = True
    refused = [0]
    one_more = anyio.Event()

    async def unreachable(route) -> None:
        if down:
            refused[0] += 1
            one_more.set()
            await route.abort("connectionrefused")
        else:
            await route.continue_()

    await page.route(f"**{live}", unreachable)
    ui.gate.opened.set()
    await page.locator('#run[data-ended="1"]').wait_for(state="attached")
    # The fetch that the end queued may have been refused already; either way, one more
    # is refused from here on (the end's own, or a retry) before the server comes back.
    seen = refused[0]
    while refused[0] == seen:
        one_more = anyio.Event()
        with anyio.fail_after(15):
            await one_more.wait()
    notice = page.locator("#notice")
    # The refusal is counted as it is sent; the page says so once it has it.
    await page.locator("#notice", has_text="disconnected").wait_for()
    down = False
    await page.locator('#run-live[data-status="SUCCESS"]').wait_for(timeout=15_000)
    await notice.wait_for(state="hidden")
    assert errors == []


async def test_a_runs_list_opened_while_idle_shows_new_runs(served, context) -> None:
    ui, base = served
    errors: list[str] = []
    page = await new_page(context, errors)
    await page.goto(base)
    assert "no runs match" in await page.locator("#runs-list").inner_text()
    run_id = await ui.trigger("checked")
    await ui.finish(run_id)
    await page.locator(f'tr[data-run="{run_id}"]').wait_for(timeout=30_000)
    assert errors == []


async def test_a_refused_trigger_goes_back_to_the_form_with_the_text(served, context) -> None:
    _ui, base = served
    errors: list[str] = []
    page = await new_page(context, errors)
    await page.goto(f"{base}pipelines")
    section = page.locator('section[data-pipeline="gated"]')
    await section.locator("textarea").fill('{"day": 2026-12-01}')
    await section.get_by_role("button", name="Trigger gated").click()
    await page.wait_for_url("**/pipelines?refused=gated*")
    section = page.locator('section[data-pipeline="gated"]')
    assert "gated was not triggered" in await section.locator(".error-box").inner_text()
    assert await section.locator("textarea").input_value() == '{"day": 2026-12-01}'
    other = page.locator('section[data-pipeline="fanout"] textarea')
    assert await other.input_value() == "{}"
    assert errors == []


async def test_a_failed_run_offers_resume_and_no_cancel(served, context) -> None:
    ui, _base = served
    run_id = await ui.trigger("checked")
    with anyio.fail_after(10):
        while (await ui.store.get_run(run_id)).status is RunStatus.RUNNING:
            await anyio.sleep(0.01)
    data = await (await ui.client.get(f"/api/runs/{run_id}")).json()
    assert data["run"]["status"] == "FAILED"
    assert data["cancellable"] is False
    assert data["resumable"] is True
    await ui.finish(run_id)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("dark-mode", {"color_scheme": "dark", "viewport": {"width": 1280, "height": 900}}),
        ("narrow-390", {"viewport": {"width": 390, "height": 844}, "is_mobile": True}),
    ],
)
async def test_dark_mode_and_a_phone_screen(served, browser, name: str, options: dict) -> None:
    ui, base = served
    run_id = await ui.trigger("fanout")
    await ui.finish(run_id)
    context = await browser.new_context(**options)
    try:
        errors: list[str] = []
        page = await new_page(context, errors)
        pages = (
            (f"runs/{run_id}", "run"),
            ("", "runs"),
            ("pipelines", "pipelines"),
            (f"runs/{run_id}/task?key=process_partition", "task"),
        )
        for path, label in pages:
            await page.goto(f"{base}{path}")
            if name == "dark-mode":
                background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert background == "rgb(15, 23, 42)"
            else:
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, (label, width)  # only the scroll boxes scroll
            await shot(page, f"{name}-{label}")
        assert errors == []
    finally:
        await context.close()


async def test_task_pages_from_the_graph_with_instances_filtered_by_state(served, context) -> None:
    ui, base = served
    run_id = await ui.trigger("fanout")
    await ui.finish(run_id)
    errors: list[str] = []
    page = await new_page(context, errors)
    await page.goto(f"{base}runs/{run_id}")
    await page.locator('svg.dag g.node[data-key="process_partition"]').click()
    await page.wait_for_url(f"**/runs/{run_id}/task?key=process_partition")
    assert "Mapped instances (200)" in await page.locator("h2").all_inner_texts()
    await page.get_by_role("link", name="failed (6)").click()
    await page.wait_for_url("**/task?key=process_partition&state=FAILED")
    rows = page.locator("table.instances tr")
    assert await rows.count() == 6
    assert set(await rows.locator(".badge").all_inner_texts()) == {"FAILED"}
    await rows.first.get_by_role("link").click()
    await page.wait_for_url("**/task?key=process_partition*3*")
    attempt = page.locator("section.attempt[data-attempt='1']")
    assert "ValueError: partition 3 is corrupt" in await attempt.inner_text()
    await shot(page, "task-page")
    assert errors == []


async def test_running_times_tick_and_runs_show_params_and_pipeline_links(served, context) -> None:
    ui, base = served
    run_id = await ui.trigger("gated", {"day": "2026-12-01", "api_key": "k-123456"})
    with anyio.fail_after(10):
        await ui.gate.entered.wait()
    errors: list[str] = []
    page = await new_page(context, errors)
    try:
        await page.goto(base)
        row = page.locator(f'tr[data-run="{run_id}"]')
        assert (await row.locator(".elapsed").inner_text()).startswith("running ")
        assert '"day": "2026-12-01"' in await row.locator("td.params").inner_text()
        assert "k-123456" not in await row.inner_text()
        assert "just now" in await row.inner_text()
        await page.goto(f"{base}runs/{run_id}")
        elapsed = page.locator('table.tasks tr[data-key="hold"] .elapsed')
        first = await elapsed.inner_text()
        assert first.startswith("running ")
        await page.wait_for_function(
            "(t) => document.querySelector('table.tasks tr[data-key=hold] .elapsed')"
            ".textContent !== t",
            arg=first,
            timeout=2500,  # the script ticks every second; the live refresh is 5 s apart
        )
        await page.goto(base)
        await page.get_by_role("link", name="gated", exact=True).first.click()
        await page.wait_for_url("**/?pipeline=gated")
    finally:
        ui.gate.opened.set()
        await ui.finish(run_id)
    assert errors == []


async def test_an_interrupted_run_is_coloured_apart_and_timed_to_its_last_heartbeat(
    browser, tmp_path
) -> None:
    import time

    from dremioframe_async.orchestration import (
        RunFinished,
        RunStarted,
        TaskState,
        TaskStateChanged,
    )
    from dremioframe_async.store import SQLiteStore

    # Both runs ran about 3 s; "gone" recorded nothing after its task started, then its
    # process died (its heartbeat, written as it recorded, is never renewed).
    t0 = time.time() - 3
    async with SQLiteStore(tmp_path / "r.sqlite", heartbeat=0.1, dead_after=0.3) as store:
        await store.record(
            [
                RunStarted("stopped", "etl", t0, {}, ("x",)),
                TaskStateChanged("stopped", "etl", "x", TaskState.RUNNING, t0 + 0.01, 1),
                TaskStateChanged("stopped", "etl", "x", TaskState.CANCELLED, t0 + 3, 1),
                RunFinished("stopped", "etl", RunStatus.CANCELLED, t0 + 3, t0),
                RunStarted("gone", "etl", t0, {}, ("x",)),
                TaskStateChanged("gone", "etl", "x", TaskState.RUNNING, t0 + 0.01, 1),
            ]
        )
        with anyio.fail_after(10):
            while (await store.get_run("gone")).status is not RunStatus.INTERRUPTED:
                await anyio.sleep(0.05)
        app = ui_app(store)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            base = str(client.make_url("/"))
            context = await browser.new_context()
            try:
                errors: list[str] = []
                page = await new_page(context, errors)
                await page.goto(base)
                colour = "(e) => getComputedStyle(e).backgroundColor"
                gone = page.locator('tr[data-run="gone"] .badge')
                stopped = page.locator('tr[data-run="stopped"] .badge')
                assert await gone.inner_text() == "INTERRUPTED"
                assert await gone.evaluate(colour) != await stopped.evaluate(colour)
                fill = "(e) => getComputedStyle(e).fill"
                bars = {}
                for run_id in ("gone", "stopped"):
                    await page.goto(f"{base}runs/{run_id}")
                    summary = await page.locator("dl.summary").inner_text()
                    assert re.search(r"≥ 3\.\d\ds" if run_id == "gone" else r"3\.\d\ds", summary)
                    bar = page.locator("svg.timeline rect.bar")
                    width = float(await bar.get_attribute("width") or 0)
                    assert width > 600, (run_id, width)  # about 3 s of a 3 s chart
                    bars[run_id] = await bar.evaluate(fill)
                    if run_id == "gone":
                        assert "s-INTERRUPTED" in (await bar.get_attribute("class") or "")
                        node = page.locator('svg.dag g.node[data-key="x"]')
                        assert await node.get_attribute("data-state") == "INTERRUPTED"
                        reason = page.locator('tr[data-key="x"] td.note')
                        assert "interrupted" in await reason.inner_text()
                        await shot(page, "interrupted-run")
                assert bars["gone"] != bars["stopped"]  # not the colour of a cancel
                assert errors == []
            finally:
                await context.close()
