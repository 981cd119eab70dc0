"""The UI against an attacker: session-bound CSRF tokens, origin checks, bounded and
throttled password checks, sessions, proxies. (The browser versions of the CSRF
attacks are in test_ui_browser_attacks.py.)"""

from __future__ import annotations

import base64
import re
import threading

import _ui_fixtures
import anyio
import pytest
import pytest_asyncio
from _ui_fixtures import UI
from aiohttp import ClientSession

from dremioframe_async.store import MemoryStore, RunQuery
from dremioframe_async.ui import BasicAuth, BearerAuth, hash_password, ui_app
from dremioframe_async.ui import _security as security

gate = _ui_fixtures.gate
ui = _ui_fixtures.ui
TOKEN = "t0ken-for-the-ui-tests"
PASSWORD_HASH = hash_password("correct horse")
pytestmark = pytest.mark.asyncio


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def runs_recorded(ui: UI) -> int:
    return (await ui.store.query_runs(RunQuery())).total


@pytest_asyncio.fixture
async def bearer_ui(gate):
    async with _ui_fixtures.open_ui(MemoryStore(), gate, auth=BearerAuth(TOKEN)) as opened:
        yield opened


@pytest_asyncio.fixture
async def basic_ui(gate):
    auth = BasicAuth("ops", PASSWORD_HASH)
    async with _ui_fixtures.open_ui(MemoryStore(), gate, auth=auth) as opened:
        yield opened


@pytest_asyncio.fixture
async def both_ui(gate):
    auth = [BearerAuth(TOKEN), BasicAuth("ops", PASSWORD_HASH)]
    async with _ui_fixtures.open_ui(MemoryStore(), gate, auth=auth) as opened:
        yield opened


def toss(ui: UI, token: str) -> None:
    """Replace the client's CSRF cookie, as a page on another port of the host can."""
    jar = ui.client.session.cookie_jar
    jar.clear(lambda cookie: cookie.key == "dfa_csrf")
    jar.update_cookies({"dfa_csrf": token}, response_url=ui.client.make_url("/"))
    assert [c.value for c in jar if c.key == "dfa_csrf"] == [token]


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def sign_in(ui: UI) -> str:
    """Sign the test client in on /login; returns the CSRF token of its next page."""
    client = ui.client
    token = form_token(await (await client.get("/login")).text())
    ok = await client.post(
        "/login", data={"csrf_token": token, "token": TOKEN}, allow_redirects=False
    )
    assert ok.status == 303
    return form_token(await (await client.get("/pipelines")).text())


# ---------------------------------------------------------------- CSRF


async def test_a_tossed_anonymous_token_does_not_work_for_a_session(bearer_ui: UI) -> None:
    """Cookie tossing, with a plain HTTP client: the attacker gets a valid token from
    GET /login, puts it in the victim's cookie (cookies are not port-scoped) and in
    the form. The token is bound to no session, so the victim's session refuses it."""
    await sign_in(bearer_ui)
    async with ClientSession() as attacker:
        login = await attacker.get(bearer_ui.client.make_url("/login"))
        tossed = login.cookies["dfa_csrf"].value
        assert tossed == form_token(await login.text())
    client = bearer_ui.client
    toss(bearer_ui, tossed)
    for path, kw in (
        ("/pipelines/hello/trigger", {"data": {"csrf_token": tossed, "params": "{}"}}),
        ("/api/pipelines/hello/runs", {"json": {}, "headers": {"X-CSRF-Token": tossed}}),
    ):
        response = await client.post(path, allow_redirects=False, **kw)
        assert response.status == 403, path
    assert await runs_recorded(bearer_ui) == 0


async def test_a_token_of_another_basic_user_does_not_work(gate) -> None:
    auth = [BasicAuth("ops", PASSWORD_HASH), BasicAuth("dev", hash_password("other pw"))]
    async with _ui_fixtures.open_ui(MemoryStore(), gate, auth=auth) as opened:
        client = opened.client
        dev = {"Authorization": basic("dev", "other pw")}
        dev_token = (await (await client.get("/api/csrf", headers=dev)).json())["csrf_token"]
        ops = {"Authorization": basic("ops", "correct horse"), "X-CSRF-Token": dev_token}
        toss(opened, dev_token)
        response = await client.post("/api/pipelines/hello/runs", json={}, headers=ops)
        assert response.status == 403
        assert await runs_recorded(opened) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port of the same host
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["other-host", "null", "other-port", "same-site", "cross-site"],
)
async def test_a_cross_origin_post_with_a_valid_token_pair_is_refused(
    ui: UI, headers: dict[str, str]
) -> None:
    token = await ui.csrf()
    for path, kw in (
        ("/api/pipelines/hello/runs", {"json": {}}),
        ("/pipelines/hello/trigger", {"data": {"params": "{}", "csrf_token": token}}),
    ):
        response = await ui.client.post(
            path, headers={"X-CSRF-Token": token, **headers}, allow_redirects=False, **kw
        )
        assert response.status == 403, path
        assert "cross-origin" in (await response.json())["error"]
    assert await runs_recorded(ui) == 0
    own = str(ui.client.make_url("/")).rstrip("/")
    response = await ui.client.post(
        "/api/pipelines/hello/runs", json={}, headers={"X-CSRF-Token": token, "Origin": own}
    )
    assert response.status == 202
    await ui.finish((await response.json())["run_id"])


# ---------------------------------------------------------------- password checks


async def test_repeated_failures_get_429_with_retry_after(basic_ui: UI) -> None:
    client = basic_ui.client
    good = {"Authorization": basic("ops", "correct horse")}
    assert (await client.get("/api/runs", headers=good)).status == 200  # remembered now
    statuses = []
    for i in range(security.FREE_FAILURES + 2):
        bad = {"Authorization": basic("ops", f"guess {i}")}
        response = await client.get("/api/runs", headers=bad)
        statuses.append(response.status)
        if response.status == 429:
            assert int(response.headers["Retry-After"]) >= 1
    assert statuses[: security.FREE_FAILURES] == [401] * security.FREE_FAILURES
    assert statuses[-1] == 429
    # a browser that already proved its password keeps working from the same address
    assert (await client.get("/api/runs", headers=good)).status == 200
    # wrong bearer tokens count too
    async with _ui_fixtures.open_ui(MemoryStore(), basic_ui.gate, auth=BearerAuth(TOKEN)) as b:
        codes = [
            (await b.client.get("/api/runs", headers={"Authorization": "Bearer x" * 3})).status
            for _ in range(security.FREE_FAILURES + 1)
        ]
        assert codes[-1] == 429


async def test_unknown_users_cost_one_hash_check_like_known_ones(
    basic_ui: UI, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = security._verify

    def counting(password: str, hashed: str) -> bool:
        checked.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(security, "_verify", counting)
    for user in ("ops", "nobody"):
        response = await basic_ui.client.get(
            "/api/runs", headers={"Authorization": basic(user, "wrong")}
        )
        assert response.status == 401
    assert len(checked) == 2


async def test_hash_checks_run_at_most_a_few_at_once(
    basic_ui: UI, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock, running, peak = threading.Lock(), [0], [0]
    real = security._verify

    def tracked(password: str, hashed: str) -> bool:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real(password, hashed)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(security, "_verify", tracked)

    async def attempt(i: int) -> None:
        headers = {"Authorization": basic("ops", f"wrong {i}")}
        await basic_ui.client.get("/api/runs", headers=headers)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(attempt, i)
    assert 1 <= peak[0] <= security.HASH_CHECKS


async def test_hashes_too_costly_to_check_are_refused_at_start() -> None:
    _, _, _, _, salt, key = PASSWORD_HASH.split("$")
    for n, r, p in ((2**20, 8, 1), (1000, 8, 1), (2**14, 0, 1)):
        with pytest.raises(ValueError, match="out of bounds"):
            BasicAuth("ops", f"scrypt${n}${r}${p}${salt}${key}")


# ---------------------------------------------------------------- sessions


async def test_logout_ends_the_session(bearer_ui: UI) -> None:
    client = bearer_ui.client
    token = await sign_in(bearer_ui)
    page = await client.get("/", headers={"Accept": "text/html"})
    assert "Sign out" in await page.text()
    out = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status == 303
    after = await client.get("/api/runs")
    assert after.status == 401


async def test_sessions_last_as_long_as_configured(gate) -> None:
    store = MemoryStore()
    # Long enough that the first GET after signing in lands inside the session.
    async with _ui_fixtures.open_ui(
        store, gate, auth=BearerAuth(TOKEN), session_seconds=3.0
    ) as short:
        client = short.client
        token = form_token(await (await client.get("/login")).text())
        data = {"csrf_token": token, "token": TOKEN}
        signed = await client.post("/login", data=data, allow_redirects=False)
        assert signed.status == 303
        assert (await client.get("/api/runs")).status == 200
        with anyio.fail_after(10):  # the 3 s session, and room for a loaded machine
            while (await short.client.get("/api/runs")).status == 200:
                await anyio.sleep(0.05)
        assert (await short.client.get("/api/runs")).status == 401
    with pytest.raises(ValueError, match="session_seconds"):
        ui_app(store, session_seconds=0)


async def test_with_bearer_and_basic_browsers_get_the_sign_in_page(both_ui: UI) -> None:
    client = both_ui.client
    redirect = await client.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert redirect.status == 303
    assert redirect.headers["Location"] == "/login"
    form = await (await client.get("/login")).text()
    assert 'name="token"' in form
    assert 'name="password"' in form
    token = form_token(form)
    wrong = await client.post(
        "/login",
        data={"csrf_token": token, "user": "ops", "password": "nope"},
        allow_redirects=False,
    )
    assert wrong.headers["Location"] == "/login?failed=1"
    ok = await client.post(
        "/login",
        data={"csrf_token": token, "user": "ops", "password": "correct horse"},
        allow_redirects=False,
    )
    assert ok.status == 303
    assert (await client.get("/api/runs")).status == 200
    # API clients still use either credential directly
    client.session.cookie_jar.clear()
    for header in (f"Bearer {TOKEN}", basic("ops", "correct horse")):
        assert (await client.get("/api/runs", headers={"Authorization": header})).status == 200


# ---------------------------------------------------------------- proxies


@pytest.mark.parametrize(
    "header",
    [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Forwarded-Host", "ui.example.com"),
        ("X-Real-IP", "203.0.113.9"),
    ],
)
async def test_without_auth_a_proxied_request_is_refused(ui: UI, header: tuple[str, str]) -> None:
    response = await ui.client.get("/api/runs", headers=dict([header]))
    assert response.status == 403
    assert "proxy" in (await response.json())["error"]
    assert (await ui.client.get("/api/runs")).status == 200


# ---------------------------------------------------------------- oversized requests


async def test_oversized_requests_get_the_uis_headers_and_no_echo(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from dremioframe_async.ui import serve

    urls: list[str] = []
    ready = anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async def raw(request: bytes) -> bytes:
        port = int(urls[0].rsplit(":", 1)[1].rstrip("/"))
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(request)
            data = b""
            with anyio.fail_after(10):
                try:
                    while chunk := await stream.receive():
                        data += chunk
                except anyio.EndOfStream:
                    pass
        return data

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(ui_app(MemoryStore()), "127.0.0.1", 0, on_ready=on_ready))
        with anyio.fail_after(10):
            await ready.wait()
        marker = "ECHOED-" + "x" * 9000
        answer = await raw(f"GET /{marker} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        normal = await raw(
            b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        tg.cancel_scope.cancel()
    head, _, body = answer.decode(errors="replace").partition("\r\n\r\n")
    assert re.match(r"HTTP/1\.[01] 400 ", head), head
    assert "X-Frame-Options: DENY" in head
    assert "Content-Security-Policy:" in head
    assert "Server: dremioframe_async" in head
    assert "aiohttp" not in head
    assert "ECHOED" not in body
    assert "Server: dremioframe_async" in normal.decode()
    assert "aiohttp" not in normal.decode().partition("\r\n\r\n")[0]
    assert not [r for r in caplog.records if r.exc_info]


# ---------------------------------------------------------------- stale buttons


async def test_a_second_resume_from_another_tab_is_refused_on_the_page(ui: UI) -> None:
    run_id = await ui.trigger("flaky")
    await ui.finish(run_id)
    page = await (await ui.client.get(f"/runs/{run_id}")).text()
    token = form_token(page)
    assert "Resume" in page
    assert "Cancel run" not in page  # it FAILED: nothing left to cancel
    ui.gate.fail_flaky = False
    first = await ui.client.post(
        f"/runs/{run_id}/resume", data={"csrf_token": token}, allow_redirects=False
    )
    assert first.status == 303
    second = await ui.client.post(
        f"/runs/{run_id}/resume", data={"csrf_token": token}, allow_redirects=False
    )
    assert second.status == 409
    text = await second.text()
    assert "<h1>Refused</h1>" in text
    assert "resum" in text
    await ui.finish(first.headers["Location"].rsplit("/", 1)[1])


async def test_over_https_the_cookies_are_host_only_secure_cookies() -> None:
    import ssl

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from dremioframe_async.ui._app import _guard

    app = ui_app(MemoryStore(), auth=BearerAuth(TOKEN))
    app.freeze()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="in")

    headers = {"Host": "ui.example", "Authorization": f"Bearer {TOKEN}"}
    for context, name in ((ssl.create_default_context(), "__Host-dfa_csrf"), (None, "dfa_csrf")):
        request = make_mocked_request("GET", "/", headers=headers, app=app, sslcontext=context)
        response = await _guard(request, handler)
        assert list(response.cookies) == [name]
        morsel = response.cookies[name]
        assert morsel["path"] == "/"
        assert not morsel["domain"]
        assert bool(morsel["secure"]) is (context is not None)


async def test_a_task_page_of_a_script_like_key_is_escaped(ui: UI) -> None:
    from _ui_fixtures import EVIL, EVIL_ERROR

    run_id = await ui.trigger("evil")
    await ui.finish(run_id)
    run_page = await (await ui.client.get(f"/runs/{run_id}")).text()
    href = re.search(r'<a href="([^"]*/task\?key=[^"]*)">&lt;script', run_page)
    assert href is not None
    response = await ui.client.get(href.group(1).replace("&#x27;", "'").replace("&amp;", "&"))
    assert response.status == 200
    page = await response.text()
    assert EVIL not in page
    assert EVIL_ERROR not in page
    assert "&lt;script&gt;" in page
