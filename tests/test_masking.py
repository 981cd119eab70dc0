"""The one masking rule (``dremioframe_async._masking``) and every place that applies it:
the UI's JSON, the CLI's ``show``, the store's error rows, task errors and captured output."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio
from aiohttp import web

from dremioframe_async import Pipeline, task
from dremioframe_async._masking import (
    MASK,
    is_secret_key,
    margin,
    mask_text,
    mask_value,
    tail_without_secrets,
)
from dremioframe_async.cli import main as cli_main
from dremioframe_async.store import open_store
from dremioframe_async.tasks import Credential, HttpTask, ShellTask, SlackAlertTask
from dremioframe_async.ui._model import run_json, task_json

SECRET_KEYS = [
    "pat",
    "token",
    "secret",
    "password",
    "pwd",
    "passwd",
    "key",
    "credential",
    "auth",
    "dremio_pat",
    "api_key",
    "apiKey",
    "API-KEY",
    "X-Api-Key",
    "Authorization",
    "x-auth-token",
    "AWS_SECRET_ACCESS_KEY",
    "db_password",
    "client_credentials",
    "privateKey",
    "sslpassword",
]
PLAIN_KEYS = [
    "author",
    "passenger_count",
    "keyboard",
    "monkey",
    "patch",
    "path",
    "tokenizer",
    "authority",
    "secretary",
    "day",
    "dsn",
    "url",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_are_recognised_by_whole_words(key: str) -> None:
    assert is_secret_key(key)
    assert mask_value({key: "v4lue"}) == {key: MASK}
    if key != "key":  # a bare key=value in free text is prose (see test below)
        assert mask_text(f"{key}=v4lue&day=3") == f"{key}={MASK}&day=3"
    assert mask_text(json.dumps({key: "v4lue", "day": 3})) == json.dumps({key: MASK, "day": 3})


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_ordinary_keys_are_left_alone(key: str) -> None:
    assert not is_secret_key(key)
    assert mask_value({key: "v4lue"}) == {key: "v4lue"}
    assert mask_text(f"{key}=v4lue") == f"{key}=v4lue"


URL_CASES = [
    # (text, what must go, what must stay)
    ("postgresql://etl:S3cret@db/warehouse", "S3cret", "postgresql://etl:***@db/warehouse"),
    ("dsn=postgresql://etl:S3cret@db/x?sslmode=require", "S3cret", "etl:***@db/x?sslmode"),
    ("failed to reach https://u:p%40ss@host:8443/api: refused", "p%40ss", "https://u:***@host"),
    ("see s3://AKIAX:wJalr%2FXUtnF@bucket/k", "wJalr", "s3://AKIAX:***@bucket/k"),
    ("ok https://host/path?token=abc123&page=2", "abc123", "token=***&page=2"),
    ("conn host=db user=etl password=S3cret dbname=x", "S3cret", "password=*** dbname=x"),
    ("Authorization: Bearer tok-5f2a9c81e7", "tok-5f2a9c81e7", "Authorization: ***"),
    ("request failed (authorization: Basic Zm9vOmJhcg==)", "Zm9vOmJhcg", "authorization: ***"),
    ("{'pat': 'dremio-pat-1234', 'day': 3}", "dremio-pat-1234", "'pat': '***', 'day': 3"),
]


@pytest.mark.parametrize(("text", "gone", "kept"), URL_CASES)
def test_url_passwords_and_secret_pairs_in_free_text(text: str, gone: str, kept: str) -> None:
    shown = mask_text(text)
    assert gone not in shown
    assert kept in shown


def test_prose_is_not_mistaken_for_secrets() -> None:
    for text in (
        "KeyError: 'region'",
        "ValueError: bad key 'x'",
        "author=Ada passenger_count=3",
        "http://user@host/path",
        "mailto:someone@example.com",
        "ratio: 3:1 @ noon",
        "--param takes key=value, got 'novalue'",
        "GET https://api.example.com:8443/users?email=ops@example.com failed",
    ):
        assert mask_text(text) == text


def test_known_secrets_in_every_form_they_travel_in() -> None:
    secret = "S3CR3T/+key=="
    for text in (
        f"raw {secret} end",
        "query api_x=S3CR3T%2F%2Bkey%3D%3D",  # quote(safe="")
        "query S3CR3T/%2Bkey%3D%3D",  # quote() keeps the slash
        "form S3CR3T%2F%2Bkey%3D%3D",
    ):
        assert "S3CR3T" not in mask_text(text, [secret]), text
    hook = "https://hooks.slack.com/services/T000/B000/XXSECRETHOOKXX"
    echoed = "404 Not Found: /services/T000/B000/XXSECRETHOOKXX"
    assert "XXSECRETHOOKXX" not in mask_text(echoed, [hook])
    # short values are too common to replace anywhere
    assert mask_text("a b c", ["b"]) == "a b c"


def test_nested_values_params_and_results() -> None:
    params = {
        "dremio_pat": "p4t",
        "pat": "p4t",
        "pwd": "pw",
        "dsn": "postgresql://etl:S3cret@db/x",
        "author": "Ada",
        "passenger_count": 3,
        "nested": [{"api_key": 1, "ok": {"AUTH": "x", "urls": ["http://a:b1234@h/"]}}],
    }
    assert mask_value(params) == {
        "dremio_pat": MASK,
        "pat": MASK,
        "pwd": MASK,
        "dsn": "postgresql://etl:***@db/x",
        "author": "Ada",
        "passenger_count": 3,
        "nested": [{"api_key": MASK, "ok": {"AUTH": MASK, "urls": ["http://a:***@h/"]}}],
    }


def test_a_cut_never_keeps_a_piece_of_a_secret() -> None:
    secret = "cred-0123456789abcdefghij"  # 25 characters
    for before in range(0, 40):
        text = "x" * before + secret + "tail\n"
        for limit in range(1, len(text) + 2):
            start = max(0, len(text) - limit - margin([secret]))
            cut = tail_without_secrets(text[start:], limit, [secret])
            assert len(cut) <= limit
            for n in range(4, len(secret) + 1):
                for i in range(len(secret) - n + 1):
                    assert secret[i : i + n] not in cut, (before, limit, cut)


# ---------------------------------------------------------------- where it is applied


def test_shell_output_cut_to_max_output_keeps_no_fragment_of_a_credential() -> None:
    secret = "tok-ABCDEFGHIJKLMNOPQRSTUV"  # 26 characters, as in the report
    code = "import os, sys; sys.stdout.write(os.environ['TOKEN'] + '\\n')"
    t = ShellTask("echo", [sys.executable, "-c", code], env={"TOKEN": Credential(secret)})
    t.max_output = 12
    result = anyio.run(lambda: Pipeline("p").add_task(t).run())
    out = result["echo"]
    assert out.stdout_truncated
    assert len(out.stdout.encode()) <= 12
    for n in range(4, len(secret) + 1):
        assert secret[-n:] not in out.stdout, out.stdout
    # and untruncated output is masked as a whole
    t2 = ShellTask("echo2", [sys.executable, "-c", code], env={"TOKEN": Credential(secret)})
    out2 = anyio.run(lambda: Pipeline("p").add_task(t2).run())["echo2"]
    assert out2.stdout == f"{MASK}\n"


def test_shell_output_masks_url_passwords_without_known_secrets() -> None:
    code = "print('connecting to postgresql://etl:S3cret@db/x')"
    t = ShellTask("echo", [sys.executable, "-c", code])
    out = anyio.run(lambda: Pipeline("p").add_task(t).run())["echo"]
    assert out.stdout == "connecting to postgresql://etl:***@db/x\n"


@pytest_asyncio.fixture
async def echo_server() -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/services/"):
            return web.Response(status=404, text=f"no such hook: {request.path}")
        return web.Response(status=400, text=f"bad request {request.path_qs}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_percent_encoded_params_echoed_by_a_server_are_masked(
    echo_server: str, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    t = HttpTask("call", f"{echo_server}/x", params={"api_key": "S3CR3T/+key=="})
    async with store:
        result = await Pipeline("p").add_task(t).run(store=store)
        error = str(result.tasks["call"].error)
        assert "bad request" in error
        assert "S3CR3T" not in error
        tasks = await store.get_tasks(result.run_id)
    stored = [a.error_message or "" for tk in tasks for a in tk.attempts]
    assert stored
    assert all("S3CR3T" not in s for s in stored)


@pytest.mark.asyncio
async def test_a_webhook_path_echoed_in_a_404_is_masked(echo_server: str) -> None:
    hook = f"{echo_server}/services/T000/B000/XXSECRETHOOKXX"
    t = SlackAlertTask("alert", webhook_url=Credential(hook), text="hi")
    result = await Pipeline("p").add_task(t).run()
    error = str(result.tasks["alert"].error)
    assert "no such hook" in error
    assert "XXSECRETHOOKXX" not in error


@task
def connect(dsn: str) -> None:
    raise ConnectionError(f"could not connect to {dsn} (password=S3cret)")


def test_store_rows_ui_json_and_cli_show_are_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    params: dict[str, Any] = {
        "dsn": "postgresql://etl:S3cret@db/x",
        "dremio_pat": "S3cret-pat",
        "pwd": "S3cret-pwd",
        "author": "Ada",
        "passenger_count": 3,
    }

    async def record() -> tuple[Any, Any]:
        async with open_store(url) as store:
            pipe = Pipeline("masking").add_task(connect(params["dsn"]))
            result = await pipe.run(store=store, context=params)
            return await store.get_run(result.run_id), await store.get_tasks(result.run_id)

    run, tasks = anyio.run(record)
    attempt = tasks[0].attempts[0]
    assert "S3cret" not in f"{attempt.error_message}{attempt.error_traceback}"
    assert "etl:***@db" in (attempt.error_message or "")
    shown = json.dumps([run_json(run), [task_json(t) for t in tasks]])
    assert "S3cret" not in shown
    assert '"author": "Ada"' in shown
    assert '"passenger_count": 3' in shown
    assert cli_main(["show", "--store", url, run.run_id]) == 0
    out = capsys.readouterr().out
    assert "S3cret" not in out
    assert '"author": "Ada"' in out
    assert "etl:***@db" in out


@pytest.mark.asyncio
async def test_an_error_body_cut_at_its_limit_keeps_no_fragment_of_a_secret() -> None:
    token = "tok-0123456789abcdefghijklmnop"

    async def handle(request: web.Request) -> web.Response:
        # the echoed token straddles the 500 characters an error keeps of a body
        return web.Response(status=400, text="x" * 488 + request.headers["X-Api-Key"] + "y" * 50)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        t = HttpTask("call", f"http://127.0.0.1:{port}/x", headers={"X-Api-Key": token})
        error = str((await Pipeline("p").add_task(t).run()).tasks["call"].error)
    finally:
        await runner.cleanup()
    assert "xxxx" in error
    for n in range(4, len(token) + 1):
        assert token[:n] not in error, error[-80:]


def test_the_cli_and_flight_settings_print_errors_masked() -> None:
    from dremioframe_async.dremio._flight_options import _redact
    from dremioframe_async.progress import describe

    shown = describe(ConnectionError("cannot reach postgresql://etl:S3cret@db/x?password=p4ss"))
    assert "S3cret" not in shown
    assert "p4ss" not in shown
    assert shown.startswith("ConnectionError: cannot reach postgresql://etl:***@db/x")
    assert _redact("grpc+tls://u:S3cret@h:443") == "grpc+tls://u:***@h:443"


@pytest.mark.asyncio
async def test_captured_log_lines_are_masked_before_they_are_stored() -> None:
    import logging

    from dremioframe_async.store import LogQuery, MemoryStore

    @task(name="chatty")
    async def chatty() -> None:
        log = logging.getLogger("tests.masking.chatty")
        log.setLevel(logging.INFO)
        log.info("connecting to postgresql://etl:S3cret@db/x with api_key=K3y-123456")
        log.info("author=Ada passenger_count=3")

    store = MemoryStore()
    result = await Pipeline("logs").add_task(chatty()).run(store=store)
    page = await store.get_logs(LogQuery(result.run_id, key="chatty"))
    text = "\n".join(x.message for x in page.lines)
    assert "postgresql://etl:***@db/x with api_key=***" in text
    assert "S3cret" not in text
    assert "K3y-123456" not in text
    assert "author=Ada passenger_count=3" in text
