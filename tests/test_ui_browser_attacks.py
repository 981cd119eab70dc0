"""CSRF attacks on the UI in a real Chromium, from a page on a second loopback port.

Cookies are not port-scoped: a page served by http://127.0.0.1:B may set a cookie
that the browser then sends to the UI on http://127.0.0.1:A, and the two are the
same *site*, so even ``SameSite=Strict`` cookies go along. The attacker's server
fetches a valid (anonymous) CSRF token from the UI's open ``/login``, plants it in
the victim's ``dfa_csrf`` cookie and auto-submits the trigger form with it.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from dataclasses import dataclass

import _ui_fixtures
import pytest
import pytest_asyncio
import test_ui_browser
from _ui_fixtures import UI, Gate
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async.store import MemoryStore, RunQuery
from dremioframe_async.ui import BearerAuth, ui_app
from dremioframe_async.ui._state import UI_KEY

gate = _ui_fixtures.gate
browser = test_ui_browser.browser
pytestmark = pytest.mark.asyncio
TOKEN = "t0ken-for-the-browser-attack"


@pytest_asyncio.fixture
async def victim_ui(gate: Gate) -> AsyncIterator[tuple[UI, str]]:
    store = MemoryStore()
    app = ui_app(store, _ui_fixtures.pipelines(gate), auth=BearerAuth(TOKEN))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield UI(client, app[UI_KEY], store, gate), str(client.make_url("/")).rstrip("/")


@dataclass
class Attacker:
    """The attacker's site: ``/evil`` plants ``token`` (or a fresh anonymous one from
    the UI's ``/login``) in the cookie and auto-submits the UI's trigger form."""

    ui_base: str
    url: str = ""
    token: str | None = None  # None: fetch an anonymous one from the UI's /login
    planted: str = ""

    async def evil(self, request: web.Request) -> web.Response:
        token = self.token
        if token is None:
            async with ClientSession() as session:
                login = await session.get(f"{self.ui_base}/login")
                token = login.cookies["dfa_csrf"].value
        self.planted = token
        action = html.escape(f"{self.ui_base}/pipelines/hello/trigger")
        page = (
            "<!doctype html><title>cute cats</title>"
            f'<form id="f" method="post" action="{action}">'
            f'<input type="hidden" name="csrf_token" value="{html.escape(token)}">'
            '<input type="hidden" name="params" value="{}"></form>'
            "<script>document.getElementById('f').submit()</script>"
        )
        response = web.Response(text=page, content_type="text/html")
        # Host-only cookie for 127.0.0.1: the browser sends it to every port of it.
        response.set_cookie("dfa_csrf", token, path="/", samesite="Lax")
        return response


@pytest_asyncio.fixture
async def attacker(victim_ui: tuple[UI, str]) -> AsyncIterator[Attacker]:
    _, base = victim_ui
    evil = Attacker(base)
    app = web.Application()
    app.router.add_get("/evil", evil.evil)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        evil.url = str(client.make_url("/evil"))
        assert evil.url.split(":")[2] != base.split(":")[2]  # another port, same host
        yield evil


async def _signed_in_page(browser: object, base: str) -> object:
    context = await browser.new_context()  # type: ignore[attr-defined]
    page = await context.new_page()
    page.set_default_timeout(test_ui_browser.TIMEOUT_MS)
    await page.goto(f"{base}/login")
    await page.fill('input[name="token"]', TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/")
    return page


async def _attack(page: object, attacker: Attacker, base: str) -> tuple[int, str]:
    trigger = f"{base}/pipelines/hello/trigger"
    async with page.expect_response(trigger) as answered:  # type: ignore[attr-defined]
        await page.goto(attacker.url)  # type: ignore[attr-defined]
    response = await answered.value
    if 300 <= response.status < 400:  # the attack worked: redirected to the new run
        return response.status, response.headers.get("location", "")
    return response.status, await response.text()


async def test_cookie_tossing_from_another_port_is_refused(
    browser, victim_ui: tuple[UI, str], attacker: Attacker
) -> None:
    ui, base = victim_ui
    page = await _signed_in_page(browser, base)
    try:
        status, body = await _attack(page, attacker, base)
        # the planted cookie did reach the UI: the browser replaced the UI's own one
        cookies = await page.context.cookies(base)
        assert [c["value"] for c in cookies if c["name"] == "dfa_csrf"] == [attacker.planted]
        await test_ui_browser.shot(page, "csrf-cookie-tossing-refused")
    finally:
        await page.context.close()
    assert status == 403, body
    assert (await ui.store.query_runs(RunQuery())).total == 0
    assert ui.gate.calls == {}


async def test_a_cross_origin_form_with_the_victims_own_token_pair_is_refused(
    browser, victim_ui: tuple[UI, str], attacker: Attacker
) -> None:
    """Even a token that is valid for the victim's session (say it leaked) fails
    from another origin: the browser's ``Origin`` header gives the page away."""
    ui, base = victim_ui
    page = await _signed_in_page(browser, base)
    try:
        content = await page.content()
        marker = 'name="csrf-token" content="'
        attacker.token = content.split(marker, 1)[1].split('"', 1)[0]
        status, body = await _attack(page, attacker, base)
    finally:
        await page.context.close()
    assert status == 403, body
    assert "cross-origin" in body
    assert (await ui.store.query_runs(RunQuery())).total == 0
