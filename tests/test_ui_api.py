"""The UI through aiohttp's test client: pages, JSON API, live events, actions, escaping."""

from __future__ import annotations

import json
import re
from functools import partial
from urllib.parse import unquote

import _store_fixtures
import _ui_fixtures
import anyio
import pytest
from _ui_fixtures import EVIL, EVIL_ERROR, UI

from dremioframe_async.orchestration import RunFinished, RunStarted, TaskState, TaskStateChanged
from dremioframe_async.store import MemoryStore, RunQuery, RunStatus
from dremioframe_async.ui import run_listener

gate = _ui_fixtures.gate
ui = _ui_fixtures.ui
pytestmark = pytest.mark.asyncio
T0 = 1_700_000_000.0


async def sse_events(
    response, count: int | None = None, until: str | None = None
) -> list[tuple[str, dict]]:
    """Read server-sent events until ``count`` of them or an event named ``until``."""
    events: list[tuple[str, dict]] = []
    name, data = "", ""
    with anyio.fail_after(10):
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name:
                events.append((name, json.loads(data)))
                if (count is not None and len(events) >= count) or name == until:
                    return events
                name = data = ""
    return events


# ---------------------------------------------------------------- pages and escaping


async def test_run_page_escapes_a_script_task_name_and_html_error(ui: UI) -> None:
    run_id = await ui.trigger("evil")
    await ui.finish(run_id)
    page = await ui.client.get(f"/runs/{run_id}")
    html = await page.text()
    assert page.status == 200
    assert EVIL not in html
    assert EVIL_ERROR not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html or (
        "&lt;script&gt;alert('x')&lt;/script&gt;" in html
    )
    assert "&lt;img src=x onerror=" in html
    # The only script elements are the UI's own, loaded from its static route.
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/static/ui.js" defer></script>'.replace("</script>", "")
    ]
    # The JSON API returns the raw values (JSON, not HTML), as application/json.
    data = await (await ui.client.get(f"/api/runs/{run_id}")).json()
    assert data["tasks"][0]["key"] == EVIL
    assert data["tasks"][0]["attempts"][0]["error_message"] == EVIL_ERROR
    runs = await (await ui.client.get("/")).text()
    assert EVIL not in runs


async def test_run_page_shows_graph_timeline_tasks_and_masks_secrets(ui: UI) -> None:
    run_id = await ui.trigger("hello", {"n": 7, "api_token": "s3cr3t-value"})
    await ui.finish(run_id)
    html = await (await ui.client.get(f"/runs/{run_id}")).text()
    assert 'class="dag"' in html
    assert 'data-key="a"' in html
    assert 'class="node s-SUCCESS"' in html
    assert 'class="timeline"' in html
    assert html.count('<path class="edge"') == 1
    assert "s3cr3t-value" not in html
    assert "hunter2" not in html
    api = await (await ui.client.get(f"/api/runs/{run_id}")).text()
    assert "s3cr3t-value" not in api
    assert "hunter2" not in api
    assert json.loads(api)["run"]["params"]["n"] == 7


async def test_mapped_instances_are_grouped_under_their_task(ui: UI) -> None:
    run_id = await ui.trigger("mapped")
    await ui.finish(run_id)
    html = await (await ui.client.get(f"/runs/{run_id}")).text()
    assert "3 mapped instances of double" in html
    assert '>double</text><text class="note" x="' in html
    assert ">×3 (3 ok)</text>" in html
    # One graph node for the mapped task, none per instance.
    assert 'data-key="double"' in html
    assert 'class="node' in html
    assert html.count('<g class="node s-') == 2


async def test_pipelines_page_has_graph_schedule_and_a_csrf_protected_form(ui: UI) -> None:
    run_id = await ui.trigger("gated")
    ui.gate.opened.set()
    await ui.finish(run_id)
    html = await (await ui.client.get("/pipelines")).text()
    assert "cron */5 * * * *" in html
    assert ">double</text>" in html
    assert ">(mapped)</text>" in html
    assert 'data-pipeline="gated"' in html
    assert run_id[:12] in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token is not None
    assert ui.client.session.cookie_jar.filter_cookies(ui.client.make_url("/"))[
        "dfa_csrf"
    ].value == (token.group(1))


async def test_security_headers_everywhere(ui: UI) -> None:
    for path in ("/", "/pipelines", "/api/runs", "/static/ui.js", "/runs/nope", "/api/runs/nope"):
        response = await ui.client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp, path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path


# ---------------------------------------------------------------- pagination


async def test_runs_paginate_with_cursors_and_filters(ui: UI) -> None:
    events = []
    for i in range(7):
        pipeline = "hello" if i % 2 else "other"
        events += [
            RunStarted(f"r{i}", pipeline, T0 + i, {}, ()),
            RunFinished(f"r{i}", pipeline, "SUCCESS" if i < 5 else "FAILED", T0 + i + 1, T0 + i),
        ]
    await ui.store.record(events)
    first = await (await ui.client.get("/api/runs?limit=3")).json()
    assert [r["run_id"] for r in first["runs"]] == ["r6", "r5", "r4"]
    assert first["total"] == 7
    assert first["newer"] is None
    second = await (
        await ui.client.get("/api/runs", params={"limit": 3, "before": first["older"]})
    ).json()
    assert [r["run_id"] for r in second["runs"]] == ["r3", "r2", "r1"]
    back = await (
        await ui.client.get("/api/runs", params={"limit": 3, "after": second["newer"]})
    ).json()
    assert [r["run_id"] for r in back["runs"]] == ["r6", "r5", "r4"]
    failed = await (await ui.client.get("/api/runs?status=FAILED&pipeline=hello")).json()
    assert [r["run_id"] for r in failed["runs"]] == ["r5"]
    page = await (await ui.client.get("/?limit=3")).text()
    assert 'data-refresh="15"' in page  # nothing running: refreshed less often, not never
    assert "older →" in page
    assert "7 runs" in page
    assert "page 1 of 3" in page
    for expected in ("page 2 of 3", "page 3 of 3"):
        older = re.search(r'<a href="([^"]+)" rel="next">', page).group(1)
        page = await (await ui.client.get(older.replace("&amp;", "&"))).text()
        assert expected in page
    newer = re.search(r'<a href="([^"]+)" rel="prev">', page).group(1)
    page = await (await ui.client.get(newer.replace("&amp;", "&"))).text()
    assert "page 2 of 3" in page
    for bad in ("limit=0", "status=NOPE", "before=zzz", "after=1.5", "limit=x", "cursor=abc"):
        response = await ui.client.get(f"/api/runs?{bad}")
        assert response.status == 400, bad
        name = bad.partition("=")[0]
        assert name in (await response.json())["error"], bad  # it names the parameter


# ---------------------------------------------------------------- actions


async def test_trigger_runs_in_the_ui_loop_and_records_in_the_store(ui: UI) -> None:
    run_id = await ui.trigger("hello", {"n": 5})
    await ui.finish(run_id)
    run = await ui.store.get_run(run_id)
    assert (run.status, dict(run.params)) == (RunStatus.SUCCESS, {"n": 5})
    tasks = {t.key: t for t in await ui.store.get_tasks(run_id)}
    assert tasks["b"].result == 5
    unknown = await ui.post("/api/pipelines/nope/runs", {})
    assert unknown.status == 404
    bad = await ui.post("/api/pipelines/hello/runs", {"params": [1]})
    assert bad.status == 400
    # NaN is not JSON (a browser's JSON.parse refuses it): never stored, never served back.
    token = await ui.csrf()
    nan = await ui.client.post(
        "/api/pipelines/hello/runs",
        data='{"params": {"n": NaN}}',
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert nan.status == 400
    assert "NaN" in (await nan.json())["error"]


async def test_a_pipeline_that_cannot_start_is_refused_and_its_page_says_why(ui: UI) -> None:
    response = await ui.post("/api/pipelines/cyclic/runs", {})
    assert response.status == 409
    assert "could not start" in (await response.json())["error"]
    assert "cycle" in (await response.json())["error"]
    page = await ui.client.get("/pipelines")
    assert page.status == 200
    assert "the graph cannot run" in await page.text()
    listing = await (await ui.client.get("/api/pipelines")).json()
    cyclic = next(p for p in listing["pipelines"] if p["name"] == "cyclic")
    assert "cycle" in cyclic["graph_error"]
    assert await ui.store.query_runs(RunQuery()) is not None
    assert (await ui.store.query_runs(RunQuery())).total == 0


async def test_form_trigger_redirects_to_the_new_run(ui: UI) -> None:
    page = await (await ui.client.get("/pipelines")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = await ui.client.post(
        "/pipelines/hello/trigger",
        data={"csrf_token": token, "params": '{"n": 2}'},
        allow_redirects=False,
    )
    assert response.status == 303
    run_id = response.headers["Location"].rsplit("/", 1)[1]
    await ui.finish(run_id)
    assert dict((await ui.store.get_run(run_id)).params) == {"n": 2}
    bad = await ui.client.post(
        "/pipelines/hello/trigger",
        data={"csrf_token": token, "params": "{oops"},
        allow_redirects=False,
    )
    assert bad.status == 303  # post/redirect/get, back to the form
    assert bad.headers["Location"].startswith("/pipelines?refused=hello")
    assert bad.headers["Location"].endswith("#pipeline-hello")
    form = await (await ui.client.get(bad.headers["Location"])).text()
    assert "hello was not triggered: params must be a JSON object" in form
    assert ">{oops</textarea>" in form
    # A refused box holding a secret: the redirect (browser history, access logs) keeps none.
    leaky = await ui.client.post(
        "/pipelines/hello/trigger",
        data={
            "csrf_token": token,
            "params": '{"dremio_pat": "s3cr3t-pat", "dsn": "pg://u:pw9@h/db"',
        },
        allow_redirects=False,
    )
    assert leaky.status == 303
    location = unquote(leaky.headers["Location"])
    assert "refused=hello" in location
    assert "s3cr3t-pat" not in location
    assert "pw9" not in location


async def test_cancel_a_running_run(ui: UI) -> None:
    run_id = await ui.trigger("gated")
    with anyio.fail_after(10):
        await ui.gate.entered.wait()
    detail = await (await ui.client.get(f"/api/runs/{run_id}")).json()
    assert detail["cancellable"] is True
    assert detail["run"]["status"] == "RUNNING"
    html = await (await ui.client.get(f"/runs/{run_id}")).text()
    assert "Cancel run" in html
    assert 'data-refresh="5"' in await (await ui.client.get("/")).text()
    response = await ui.post(f"/api/runs/{run_id}/cancel")
    assert response.status == 202
    await ui.finish(run_id)
    run = await ui.store.get_run(run_id)
    assert run.status is RunStatus.CANCELLED
    states = {t.key: t.state for t in await ui.store.get_tasks(run_id)}
    assert states["hold"] is TaskState.CANCELLED
    again = await ui.post(f"/api/runs/{run_id}/cancel")
    assert again.status == 409


async def test_resume_a_failed_run_reruns_only_what_failed(ui: UI) -> None:
    failed = await ui.trigger("flaky")
    await ui.finish(failed)
    assert (await ui.store.get_run(failed)).status is RunStatus.FAILED
    assert ui.gate.calls["a"] == 1
    ui.gate.fail_flaky = False
    response = await ui.post(f"/api/runs/{failed}/resume")
    assert response.status == 202
    resumed = (await response.json())["run_id"]
    await ui.finish(resumed)
    run = await ui.store.get_run(resumed)
    assert (run.status, run.resumed_from) == (RunStatus.SUCCESS, failed)
    assert ui.gate.calls["a"] == 1  # its stored result was reused
    refused = await ui.post(f"/api/runs/{resumed}/resume")
    assert refused.status == 409
    missing = await ui.post("/api/runs/nope/resume")
    assert missing.status == 404


# ---------------------------------------------------------------- live updates


async def test_sse_stream_follows_a_live_run_to_its_end(ui: UI) -> None:
    run_id = await ui.trigger("gated")
    with anyio.fail_after(10):
        await ui.gate.entered.wait()
    response = await ui.client.get(f"/api/runs/{run_id}/events")
    assert response.headers["Content-Type"].startswith("text/event-stream")
    ((name, first),) = await sse_events(response, count=1)
    assert name == "run"
    assert first["run"]["status"] == "RUNNING"
    assert {t["key"]: t["state"] for t in first["tasks"]}["hold"] == "RUNNING"
    ui.gate.opened.set()
    rest = await sse_events(response, until="end")
    assert rest[-1] == ("end", {"status": "SUCCESS"})
    changed = {t["key"]: t["state"] for _, e in rest[:-1] for t in e["tasks"]}
    assert changed == {"hold": "SUCCESS", "after": "SUCCESS"}


async def test_sse_stream_polls_the_store_for_runs_of_other_processes(ui: UI) -> None:
    await ui.store.record(
        [
            RunStarted("ext", "elsewhere", T0, {}, ("x",)),
            TaskStateChanged("ext", "elsewhere", "x", TaskState.RUNNING, T0 + 1, 1),
        ]
    )
    response = await ui.client.get("/api/runs/ext/events")
    ((_, first),) = await sse_events(response, count=1)
    assert first["tasks"] == [
        {"key": "x", "state": "RUNNING", "attempts_made": 1, "started": T0 + 1, "finished": None}
    ]
    await ui.store.record(
        [
            TaskStateChanged("ext", "elsewhere", "x", TaskState.SUCCESS, T0 + 2, 1),
            RunFinished("ext", "elsewhere", "SUCCESS", T0 + 3, T0),
        ]
    )
    rest = await sse_events(response, until="end")
    assert rest[-1] == ("end", {"status": "SUCCESS"})
    assert any(t["state"] == "SUCCESS" for _, e in rest[:-1] for t in e["tasks"])


async def test_runs_wired_with_run_listener_stream_live_without_polling(gate) -> None:
    store = MemoryStore()
    async with _ui_fixtures.open_ui(store, gate, poll_interval=30) as ui:
        gated = ui.state.pipelines["gated"].pipeline
        listener = run_listener(ui.client.server.app)
        started = listener.expect("wired")
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(gated.run, store=store, on_event=listener, run_id="wired"))
            with anyio.fail_after(10):
                await started.wait()
            assert not ui.state.launcher.running_here("wired")
            response = await ui.client.get("/api/runs/wired/events")
            assert response.headers["X-Frame-Options"] == "DENY"
            ((_, first),) = await sse_events(response, count=1)
            assert {t["key"]: t["state"] for t in first["tasks"]}["hold"] == "RUNNING"
            ui.gate.opened.set()
            # With a 30 s poll, only the run's own events can end the stream this soon.
            rest = await sse_events(response, until="end")
            assert rest[-1] == ("end", {"status": "SUCCESS"})


async def test_sse_of_an_unknown_run_is_404(ui: UI) -> None:
    response = await ui.client.get("/api/runs/nope/events")
    assert response.status == 404


async def test_closing_the_app_ends_open_streams_promptly(gate) -> None:
    store = MemoryStore()
    await store.record([RunStarted("slow", "elsewhere", T0, {}, ("x",))])
    async with _ui_fixtures.open_ui(store, gate, poll_interval=30) as ui:
        response = await ui.client.get("/api/runs/slow/events")
        await sse_events(response, count=1)
        start = anyio.current_time()
        # The client stays connected: aiohttp's cleanup waits for the open handler
        # (up to its shutdown timeout) unless the stream ends on shutdown.
        await ui.client.server.close()
        assert anyio.current_time() - start < 5
        response.close()


async def test_api_pipelines_lists_graph_and_last_runs(ui: UI) -> None:
    run_id = await ui.trigger("hello")
    await ui.finish(run_id)
    data = await (await ui.client.get("/api/pipelines")).json()
    hello = next(p for p in data["pipelines"] if p["name"] == "hello")
    assert hello["tasks"] == [{"key": "a", "upstream": []}, {"key": "b", "upstream": ["a"]}]
    assert [r["run_id"] for r in hello["last_runs"]] == [run_id]
    assert (await ui.store.query_runs(RunQuery(pipeline="hello"))).total == 1


class _BrokenStore(MemoryStore):
    async def query_runs(self, query):
        raise RuntimeError("secret detail <b>from the database</b>")


async def test_an_internal_error_is_answered_with_headers_and_without_details(gate) -> None:
    async with _ui_fixtures.open_ui(_BrokenStore(), gate) as ui:
        response = await ui.client.get("/")
        assert response.status == 500
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert "secret detail" not in await response.text()


async def test_a_wide_mapped_run_lists_a_bounded_number_of_instances_and_errors(ui: UI) -> None:
    width = 260
    keys = ("fan",)
    events: list = [RunStarted("wide", "elsewhere", T0, {}, keys)]
    error = ValueError("instance failed")
    for i in range(width):
        key = f"fan[{i}]"
        events.append(TaskStateChanged("wide", "elsewhere", key, TaskState.RUNNING, T0 + 1, 1))
        events.append(
            TaskStateChanged("wide", "elsewhere", key, TaskState.FAILED, T0 + 2, 1, error=error)
        )
    events.append(TaskStateChanged("wide", "elsewhere", "fan", TaskState.FAILED, T0 + 3, 0))
    events.append(RunFinished("wide", "elsewhere", "FAILED", T0 + 4, T0))
    await ui.store.record(events)
    html = await (await ui.client.get("/runs/wide")).text()
    assert f"{width} mapped instances of fan" in html
    assert html.count('<tr class="instance"') == 200
    assert html.count('<details class="error">') == 200
    assert html.count(f"{width - 200} more not listed here") == 2
    api = await (await ui.client.get("/api/runs/wide")).json()
    assert len(api["tasks"]) == width + 1


store_factory = _store_fixtures.store_factory
store = _store_fixtures.store


async def test_actions_and_pages_on_every_store(store, gate) -> None:
    async with _ui_fixtures.open_ui(store, gate, poll_interval=0.05) as ui:
        held = await ui.trigger("gated")
        with anyio.fail_after(10):
            await ui.gate.entered.wait()
        assert (await ui.post(f"/api/runs/{held}/cancel")).status == 202
        await ui.finish(held)
        assert (await store.get_run(held)).status is RunStatus.CANCELLED
        failed = await ui.trigger("flaky")
        await ui.finish(failed)
        ui.gate.fail_flaky = False
        resumed = (await (await ui.post(f"/api/runs/{failed}/resume")).json())["run_id"]
        await ui.finish(resumed)
        assert (await store.get_run(resumed)).status is RunStatus.SUCCESS
        listing = await (await ui.client.get("/api/runs?limit=2")).json()
        assert [r["run_id"] for r in listing["runs"]] == [resumed, failed]
        assert listing["total"] == 3
        page = await ui.client.get(f"/runs/{held}")
        assert "CANCELLED" in await page.text()
        # A finished run's stream says so at once.
        response = await ui.client.get(f"/api/runs/{held}/events")
        events = await sse_events(response, until="end")
        assert events[-1] == ("end", {"status": "CANCELLED"})
