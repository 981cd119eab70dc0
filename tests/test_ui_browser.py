"""The UI in a real browser: Playwright driving the system's Chromium (never a downloaded one).

Needs ``chromium`` (Debian: ``apt-get install -y chromium``) and the ``playwright``
package (the ``test`` extra). Skips when either is missing, except under
``CI=true``, where that is a failure. Screenshots go to ``test-artifacts/ui/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import _ui_fixtures
import anyio
import pytest
import pytest_asyncio
from _ui_fixtures import UI, Gate
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async.store import MemoryStore, RunStatus
from dremioframe_async.ui import ui_app
from dremioframe_async.ui._state import UI_KEY

gate = _ui_fixtures.gate
pytestmark = pytest.mark.asyncio
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ui"
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
TIMEOUT_MS = 15_000


def chromium_path() -> str | None:
    """The real Chromium binary (Debian's /usr/bin/chromium is a shell wrapper)."""
    for name in CANDIDATES:
        found = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    message = (
        f"{reason}; install it to run the browser tests: apt-get install -y chromium "
        "and pip install playwright (never `playwright install`)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[object]:
    executable = chromium_path()
    if executable is None:
        _unavailable("chromium is not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def served(gate: Gate) -> AsyncIterator[tuple[UI, str]]:
    store = MemoryStore()
    app = ui_app(store, _ui_fixtures.pipelines(gate), poll_interval=0.1)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield UI(client, app[UI_KEY], store, gate), str(client.make_url("/"))


@pytest_asyncio.fixture
async def page(browser):
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    opened = await context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield opened
        assert errors == []  # no CSP violation, no script error
    finally:
        await context.close()


async def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_runs_page_and_run_graph(served, page) -> None:
    ui, base = served
    run_id = await ui.trigger("hello", {"n": 1})
    await ui.finish(run_id)
    await page.goto(base)
    row = page.locator(f'tr[data-run="{run_id}"]')
    await row.wait_for()
    assert "SUCCESS" in await row.inner_text()
    await shot(page, "runs")
    await row.locator("a").first.click()
    await page.wait_for_url(f"**/runs/{run_id}")
    node = page.locator('svg.dag g.node[data-key="b"]')
    await node.wait_for()
    assert await node.get_attribute("data-state") == "SUCCESS"
    assert await page.locator("svg.dag path.edge").count() == 1
    assert await page.locator("svg.timeline rect.bar").count() == 2
    await shot(page, "run-detail")


async def test_live_run_changes_state_without_a_reload(served, page) -> None:
    ui, base = served
    run_id = await ui.trigger("gated")
    with anyio.fail_after(10):
        await ui.gate.entered.wait()
    await page.goto(f"{base}runs/{run_id}")
    hold = page.locator('svg.dag g.node[data-key="hold"]')
    assert await hold.get_attribute("data-state") == "RUNNING"
    await page.evaluate("window.notReloaded = true")
    ui.gate.opened.set()
    await page.locator('svg.dag g.node[data-key="hold"][data-state="SUCCESS"]').wait_for()
    await page.locator('#run-live[data-status="SUCCESS"]').wait_for()
    assert await page.evaluate("window.notReloaded") is True
    assert int(await page.locator("#run").get_attribute("data-updates")) >= 1
    await shot(page, "live-finished")


async def test_trigger_from_the_form_then_cancel(served, page) -> None:
    ui, base = served
    await page.goto(f"{base}pipelines")
    section = page.locator('section[data-pipeline="gated"]')
    await section.locator("textarea").fill('{"day": "2026-12-01"}')
    await shot(page, "pipelines")
    await section.get_by_role("button", name="Trigger gated").click()
    await page.wait_for_url("**/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    run = await ui.store.get_run(run_id)
    assert dict(run.params) == {"day": "2026-12-01"}
    with anyio.fail_after(10):
        await ui.gate.entered.wait()
    asked: list[str] = []

    async def confirm(dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.once("dialog", confirm)
    await page.get_by_role("button", name="Cancel run").click()
    await page.locator('#run-live[data-status="CANCELLED"]').wait_for()
    await page.locator('svg.dag g.node[data-key="hold"][data-state="CANCELLED"]').wait_for()
    await shot(page, "cancelled")
    assert asked == [f"Cancel run {run_id[:12]} of gated?"]
    await ui.finish(run_id)
    assert (await ui.store.get_run(run_id)).status is RunStatus.CANCELLED
