"""Who gets in, and which requests may change state: auth, sessions, CSRF, binding."""

from __future__ import annotations

import base64
import re

import _ui_fixtures
import anyio
import pytest
import pytest_asyncio
from _ui_fixtures import UI
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from dremioframe_async.store import MemoryStore, RunQuery
from dremioframe_async.ui import (
    BasicAuth,
    BearerAuth,
    UnsafeBind,
    auth_from_env,
    check_bind,
    hash_password,
    serve,
    ui_app,
)
from dremioframe_async.ui._app import _guard
from dremioframe_async.ui._security import Guard

gate = _ui_fixtures.gate
ui = _ui_fixtures.ui
TOKEN = "t0ken-for-the-ui-tests"
PASSWORD_HASH = hash_password("correct horse")


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


# ---------------------------------------------------------------- CSRF


@pytest.mark.parametrize(
    "how",
    ["no-token", "wrong-token", "unsigned-token", "token-without-cookie"],
)
@pytest.mark.asyncio
async def test_state_changing_requests_without_a_matching_csrf_token_are_refused(
    ui: UI, how: str
) -> None:
    good = await ui.csrf()
    headers = {
        "no-token": {},
        "wrong-token": {"X-CSRF-Token": Guard(()).new_csrf()},
        "unsigned-token": {"X-CSRF-Token": "abc.def"},
        "token-without-cookie": {"X-CSRF-Token": good},
    }[how]
    if how == "token-without-cookie":
        ui.client.session.cookie_jar.clear()
    for path in ("/api/pipelines/hello/runs", "/pipelines/hello/trigger"):
        response = await ui.client.post(path, json={}, headers=headers)
        assert response.status == 403, (how, path)
        assert "CSRF" in (await response.json())["error"]
    assert await runs_recorded(ui) == 0


@pytest.mark.asyncio
async def test_a_forged_cookie_and_token_pair_is_refused(ui: UI) -> None:
    forged = "attacker.chosen"
    ui.client.session.cookie_jar.update_cookies({"dfa_csrf": forged})
    response = await ui.client.post(
        "/api/pipelines/hello/runs", json={}, headers={"X-CSRF-Token": forged}
    )
    assert response.status == 403


@pytest.mark.asyncio
async def test_matching_csrf_token_is_accepted(ui: UI) -> None:
    run_id = await ui.trigger("hello")
    await ui.finish(run_id)
    assert await runs_recorded(ui) == 1


# ---------------------------------------------------------------- bearer


@pytest.mark.asyncio
async def test_bearer_token_guards_everything_but_login_and_static(bearer_ui: UI) -> None:
    client = bearer_ui.client
    for path in ("/api/runs", "/api/pipelines", "/"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"] == "Bearer"
    wrong = await client.get("/api/runs", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    right = await client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 200
    assert (await client.get("/static/ui.css")).status == 200
    assert (await client.get("/login")).status == 200


@pytest.mark.asyncio
async def test_api_clients_with_the_bearer_token_need_no_csrf_token(bearer_ui: UI) -> None:
    response = await bearer_ui.client.post(
        "/api/pipelines/hello/runs", json={}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 202
    await bearer_ui.finish((await response.json())["run_id"])


@pytest.mark.asyncio
async def test_browsers_sign_in_with_the_token_and_still_need_csrf(bearer_ui: UI) -> None:
    client = bearer_ui.client
    html = {"Accept": "text/html"}
    redirect = await client.get("/", headers=html, allow_redirects=False)
    assert redirect.status == 303
    assert redirect.headers["Location"] == "/login"
    form = await (await client.get("/login")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    wrong = await client.post(
        "/login", data={"csrf_token": token, "token": "bad"}, allow_redirects=False
    )
    assert wrong.headers["Location"] == "/login?failed=1"
    no_csrf = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert no_csrf.status == 403
    ok = await client.post(
        "/login", data={"csrf_token": token, "token": TOKEN}, allow_redirects=False
    )
    assert ok.status == 303
    page = await client.get("/", headers=html)
    assert page.status == 200
    assert TOKEN not in await page.text()
    refused = await client.post("/api/pipelines/hello/runs", json={})
    assert refused.status == 403
    # The token /login gave out is bound to no session: worthless once signed in.
    stale = await client.post("/api/pipelines/hello/runs", json={}, headers={"X-CSRF-Token": token})
    assert stale.status == 403
    page_token = re.search(r'name="csrf-token" content="([^"]+)"', await page.text()).group(1)
    accepted = await client.post(
        "/api/pipelines/hello/runs", json={}, headers={"X-CSRF-Token": page_token}
    )
    assert accepted.status == 202
    await bearer_ui.finish((await accepted.json())["run_id"])


# ---------------------------------------------------------------- basic


@pytest.mark.asyncio
async def test_basic_auth_checks_the_password_hash(basic_ui: UI) -> None:
    client = basic_ui.client
    missing = await client.get("/", headers={"Accept": "text/html"})
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    for header in (basic("ops", "wrong"), basic("other", "correct horse"), "Basic !!!"):
        assert (await client.get("/api/runs", headers={"Authorization": header})).status == 401
    good = {"Authorization": basic("ops", "correct horse")}
    page = await client.get("/pipelines", headers=good)
    assert page.status == 200
    assert PASSWORD_HASH not in await page.text()
    # The browser sends basic credentials by itself, so a POST still needs the CSRF token.
    refused = await client.post("/api/pipelines/hello/runs", json={}, headers=good)
    assert refused.status == 403
    token = (await (await client.get("/api/csrf", headers=good)).json())["csrf_token"]
    accepted = await client.post(
        "/api/pipelines/hello/runs", json={}, headers={**good, "X-CSRF-Token": token}
    )
    assert accepted.status == 202
    await basic_ui.finish((await accepted.json())["run_id"])


def test_password_hashes_are_salted_and_checked() -> None:
    assert hash_password("x") != hash_password("x")
    with pytest.raises(ValueError, match="hash_password"):
        BasicAuth("ops", "plain-text-password")
    with pytest.raises(ValueError, match="16 characters"):
        BearerAuth("short")
    assert TOKEN not in repr(BearerAuth(TOKEN))
    assert PASSWORD_HASH not in repr(BasicAuth("ops", PASSWORD_HASH))


def test_auth_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DREMIOFRAME_ASYNC_UI_TOKEN", raising=False)
    monkeypatch.delenv("DREMIOFRAME_ASYNC_UI_USER", raising=False)
    monkeypatch.delenv("DREMIOFRAME_ASYNC_UI_PASSWORD_HASH", raising=False)
    assert auth_from_env() == ()
    monkeypatch.setenv("DREMIOFRAME_ASYNC_UI_TOKEN", TOKEN)
    monkeypatch.setenv("DREMIOFRAME_ASYNC_UI_USER", "ops")
    with pytest.raises(ValueError, match="PASSWORD_HASH"):
        auth_from_env()
    monkeypatch.setenv("DREMIOFRAME_ASYNC_UI_PASSWORD_HASH", PASSWORD_HASH)
    assert auth_from_env() == (BearerAuth(TOKEN), BasicAuth("ops", PASSWORD_HASH))


# ---------------------------------------------------------------- binding


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_binding_beyond_loopback_needs_auth(host: str) -> None:
    with pytest.raises(UnsafeBind, match="without auth"):
        check_bind(host, ())
    check_bind(host, (BearerAuth(TOKEN),))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_auth(host: str) -> None:
    check_bind(host, ())


@pytest.mark.asyncio
async def test_serve_refuses_before_listening_and_serves_on_loopback() -> None:
    app = ui_app(MemoryStore())
    with pytest.raises(UnsafeBind):
        await serve(app, "0.0.0.0", 0)
    host_app = web.Application()
    host_app.add_subapp("/pipelines/", ui_app(MemoryStore()))
    with pytest.raises(UnsafeBind):
        await serve(host_app, "0.0.0.0", 0)
    urls: list[str] = []
    async with anyio.create_task_group() as tg:
        ready = anyio.Event()

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        tg.start_soon(lambda: serve(ui_app(MemoryStore()), "127.0.0.1", 0, on_ready=on_ready))
        with anyio.fail_after(10):
            await ready.wait()
        tg.cancel_scope.cancel()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", urls[0])


@pytest.mark.asyncio
async def test_without_auth_only_loopback_clients_are_answered() -> None:
    app = ui_app(MemoryStore())
    app.freeze()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="in")

    for peer, status in ((("10.1.2.3", 5000), 403), (("127.0.0.1", 5000), 200)):
        transport = _Transport(peer)
        request = make_mocked_request(
            "GET", "/api/runs", headers={"Host": "127.0.0.1"}, app=app, transport=transport
        )
        response = await _guard(request, handler)
        assert response.status == status, peer


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("host", "status"),
    [("evil.example:8080", 403), ("localhost:8080", 200), ("[::1]:8080", 200), ("127.0.0.1", 200)],
    ids=["rebound-name", "localhost", "ipv6", "ip"],
)
async def test_without_auth_a_non_loopback_host_header_is_refused(
    ui: UI, host: str, status: int
) -> None:
    response = await ui.client.get("/api/runs", headers={"Host": host})
    assert response.status == status


class _Transport:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return False
