"""The operator views through aiohttp's test client: run filters, every pipeline of the
store, schedules the UI runs (next fire, pause across replicas), and the trigger form
built from default params."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import _ui_fixtures
import anyio
import pytest
from _ui_fixtures import UI, Gate
from aiohttp.test_utils import TestClient, TestServer

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import RunFinished, RunStarted
from dremioframe_async.schedule import Schedule
from dremioframe_async.store import MemoryStore, RunStore, SchedulePauses, SQLiteStore
from dremioframe_async.ui import PipelineEntry, ui_app
from dremioframe_async.ui._state import UI_KEY

gate = _ui_fixtures.gate
ui = _ui_fixtures.ui
pytestmark = pytest.mark.asyncio
DAY = datetime(2026, 3, 10, tzinfo=UTC).timestamp()


class SteppedClock:
    """Virtual time that moves only when the test steps it to the next fire."""

    def __init__(self, t: float) -> None:
        self.t = t
        self.sleeping_until: float | None = None
        self._changed = anyio.Event()

    def now(self) -> float:
        return self.t

    def _poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._changed.wait()

    async def sleep_until(self, deadline: float) -> None:
        self.sleeping_until = deadline
        self._poke()
        await self._until(lambda: self.t >= deadline)

    async def step(self) -> float:
        """Move to the fire the scheduler waits for; return it once the scheduler is done
        with it (it waits for the next one)."""
        with anyio.fail_after(10):
            await self._until(lambda: (self.sleeping_until or 0.0) > self.t)
            fire = self.t = self.sleeping_until or 0.0
            self._poke()
            await self._until(lambda: (self.sleeping_until or 0.0) > fire)
        return fire


def _links(html: str, rel: str) -> str:
    return re.search(rf'<a href="([^"]+)" rel="{rel}">', html).group(1).replace("&amp;", "&")


# ---------------------------------------------------------------- the runs list


async def test_runs_filter_by_pipeline_substring_and_start_date(ui: UI) -> None:
    events = []
    for i, name in enumerate(["etl_daily", "ETL_hourly", "load", "etl_daily"] * 2):
        start = DAY + i * 43_200  # every 12 h from 10 March 2026, 00:00 UTC
        events += [
            RunStarted(f"r{i}", name, start, {}, ()),
            RunFinished(f"r{i}", name, "SUCCESS", start + 1, start),
        ]
    await ui.store.record(events)

    async def ids(query: str) -> list[str]:
        data = await (await ui.client.get(f"/api/runs?{query}")).json()
        return [r["run_id"] for r in data["runs"]]

    assert await ids("pipeline_contains=etl") == ["r7", "r5", "r4", "r3", "r1", "r0"]
    assert await ids("since=2026-03-11&until=2026-03-12") == ["r5", "r4", "r3", "r2"]
    assert await ids("pipeline_contains=hourly&until=2026-03-10") == ["r1"]
    assert await ids(f"since={DAY + 43_200}&until=2026-03-11T00:00:00") == ["r1"]
    html = await (await ui.client.get("/?pipeline_contains=etl&since=2026-03-11&limit=2")).text()
    assert re.findall(r'data-run="(r\d)"', html) == ["r7", "r5"]
    assert 'name="pipeline_contains" value="etl"' in html  # the form shows the filter
    assert 'name="since" value="2026-03-11"' in html
    older = await (await ui.client.get(_links(html, "next"))).text()
    assert re.findall(r'data-run="(r\d)"', older) == ["r4", "r3"]  # the link kept the filters
    assert "page 2 of 2" in older
    bad = await ui.client.get("/api/runs?since=yesterday")
    assert bad.status == 400
    assert "since=" in (await bad.json())["error"]
    reversed_range = await ui.client.get("/?since=2026-03-12&until=2026-03-10")
    assert reversed_range.status == 400
    for query in ("until=nan", "since=-inf", "since=20260311"):
        assert (await ui.client.get(f"/api/runs?{query}")).status == 400, query


async def test_a_pipeline_link_filters_exactly_and_says_so(ui: UI) -> None:
    await ui.store.record(
        [
            RunStarted("a", "etl", DAY, {}, ()),
            RunStarted("b", "etl_more", DAY + 1, {}, ()),
        ]
    )
    html = await (await ui.client.get("/?pipeline=etl")).text()
    assert re.findall(r'data-run="(\w)"', html) == ["a"]
    assert "pipeline etl" in html
    assert '<input type="hidden" name="pipeline" value="etl">' in html  # kept by the form


# ---------------------------------------------------------------- pipelines


async def test_every_pipeline_in_the_store_is_listed(ui: UI) -> None:
    await ui.store.record(
        [
            RunStarted("x1", "nightly_export", DAY, {}, ()),
            RunFinished("x1", "nightly_export", "FAILED", DAY + 5, DAY),
            RunStarted("x2", "nightly_export", DAY + 10, {}, ()),
            RunFinished("x2", "nightly_export", "SUCCESS", DAY + 15, DAY + 10),
        ]
    )
    run_id = await ui.trigger("hello")
    await ui.finish(run_id)
    data = await (await ui.client.get("/api/pipelines")).json()
    by_name = {p["name"]: p for p in data["pipelines"]}
    assert by_name["nightly_export"]["served"] is False
    assert by_name["nightly_export"]["runs"] == {"FAILED": 1, "SUCCESS": 1}
    assert [r["run_id"] for r in by_name["nightly_export"]["last_runs"]] == ["x2", "x1"]
    assert "tasks" not in by_name["nightly_export"]  # its graph is not known here
    assert by_name["hello"]["served"] is True
    assert by_name["hello"]["runs"] == {"SUCCESS": 1}
    names = [p["name"] for p in data["pipelines"]]
    assert names.index("nightly_export") > names.index("mapped")  # served ones first
    html = await (await ui.client.get("/pipelines")).text()
    section = html.split('data-pipeline="nightly_export"')[1].split("</section>")[0]
    assert "not served by this UI" in section
    assert "2 runs" in section
    assert "Trigger" not in section


# ---------------------------------------------------------------- schedules and pauses


def _ticker(name: str = "ticks") -> Pipeline:
    @task(name="tick")
    async def tick() -> None:
        return None

    return Pipeline(name).add_task(tick())


@asynccontextmanager
async def _scheduling_ui(
    store: RunStore, pipeline: Pipeline
) -> AsyncIterator[tuple[UI, SteppedClock]]:
    """A UI running ``pipeline``'s 60 s schedule on a clock the test steps."""
    entry = PipelineEntry(pipeline, schedule=Schedule(pipeline, interval=60))
    app = ui_app(store, [entry], poll_interval=0.05)
    clock = SteppedClock(1_800_000_000.5)
    app[UI_KEY].launcher.clock = clock
    async with TestClient(TestServer(app)) as client:
        yield UI(client, app[UI_KEY], store, Gate()), clock


async def _fires(store: RunStore) -> list[float]:
    return sorted(r.scheduled_for or 0 for r in await store.list_runs(pipeline="ticks"))


async def test_the_pause_switch_holds_for_every_replica_on_the_store(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    pipeline = _ticker()
    async with (
        SQLiteStore(path) as store_a,
        SQLiteStore(path) as store_b,
        _scheduling_ui(store_a, pipeline) as (one, clock_a),
        _scheduling_ui(store_b, pipeline) as (two, clock_b),
    ):
        page = await (await one.client.get("/pipelines")).text()
        assert "every 60 s" in page
        assert "next fire" in page
        next_fire = datetime.fromtimestamp(1_800_000_060, UTC)
        assert f"{next_fire:%Y-%m-%d %H:%M:%S} UTC" in page
        assert "Pause schedule" in page
        first = await clock_a.step()
        assert await clock_b.step() == first  # both replicas saw the fire: one claimed it
        assert await _fires(store_a) == [first]
        answer = await one.post("/api/pipelines/ticks/pause", {"paused": True})
        assert (answer.status, await answer.json()) == (
            200,
            {"pipeline": "ticks", "paused": True, "changed": True},
        )
        page = await (await two.client.get("/pipelines")).text()  # the other replica
        assert "paused" in page
        assert "Resume schedule" in page
        paused = await clock_a.step()
        await clock_b.step()
        assert await _fires(store_b) == [first]  # neither replica queued the paused fire
        answer = await two.post("/api/pipelines/ticks/pause", {"paused": False})
        assert (await answer.json())["changed"] is True
        third = await clock_b.step()
        await clock_a.step()
        assert await _fires(store_a) == [first, third]
        assert third == paused + 60


async def test_the_pause_form_needs_the_csrf_token_and_the_same_origin() -> None:
    store = MemoryStore()
    async with _scheduling_ui(store, _ticker()) as (ui_, _clock):
        token = await ui_.csrf()
        refused = [
            await ui_.client.post("/pipelines/ticks/pause", data={"paused": "1"}),
            await ui_.client.post(
                "/pipelines/ticks/pause",
                data={"paused": "1", "csrf_token": token},
                headers={"Origin": "http://evil.example"},
            ),
            await ui_.client.post("/api/pipelines/ticks/pause", json={"paused": True}),
        ]
        assert [r.status for r in refused] == [403, 403, 403]
        assert await store.paused_schedules() == {}
        done = await ui_.client.post(
            "/pipelines/ticks/pause",
            data={"paused": "1", "csrf_token": token},
            allow_redirects=False,
        )
        assert done.status == 303
        assert done.headers["Location"].endswith("/pipelines#pipeline-ticks")
        assert list(await store.paused_schedules()) == ["ticks"]


async def test_only_a_schedule_the_ui_runs_can_be_paused(ui: UI) -> None:
    # "gated" has a schedule as text: run elsewhere, so not paused from here.
    for name in ("gated", "hello", "nope"):
        response = await ui.post(f"/api/pipelines/{name}/pause", {"paused": True})
        assert response.status == 404, name
    bad = await ui.post("/api/pipelines/gated/pause", {"paused": "yes"})
    assert bad.status == 400
    assert isinstance(ui.store, SchedulePauses)
    assert await ui.store.paused_schedules() == {}
    page = await (await ui.client.get("/pipelines")).text()
    section = page.split('data-pipeline="gated"')[1].split("</section>")[0]
    assert "cron */5 * * * *" in section
    assert "Pause schedule" not in section


# ---------------------------------------------------------------- the trigger form


def _echo(gate: Gate) -> PipelineEntry:
    @task(name="echo")
    async def echo(context=None):
        return dict(context.params)

    pipeline = Pipeline("echo").add_task(echo())
    defaults = {
        "day": "2026-12-01",
        "table": "sales",
        "limit": 10,
        "ratio": 0.5,
        "full": False,
        "tables": ["a", "b"],
        "api_key": "s3cret-value",
    }
    return PipelineEntry(pipeline, params=defaults)


async def test_the_trigger_form_is_built_from_declared_defaults(gate: Gate) -> None:
    store = MemoryStore()
    app = ui_app(store, [_echo(gate)])
    async with TestClient(TestServer(app)) as client:
        ui_ = UI(client, app[UI_KEY], store, gate)
        html = await (await client.get("/pipelines")).text()
        assert '<input name="p.date.day" value="2026-12-01" type="date">' in html
        fields = ("p.text.table", "p.int.limit", "p.float.ratio", "p.bool.full", "p.json.tables")
        for field in fields:
            assert f'name="{field}"' in html, field
        assert 'name="p.secret.api_key"' in html
        assert "s3cret-value" not in html  # a secret default never reaches the page
        token = await ui_.csrf()
        form = [
            ("csrf_token", token),
            ("p.date.day", "2026-12-24"),
            ("p.text.table", "orders"),
            ("p.int.limit", "25"),
            ("p.float.ratio", "0.75"),
            ("p.bool.full", "false"),
            ("p.bool.full", "true"),  # the checkbox after its hidden "false"
            ("p.json.tables", '["x"]'),
            ("p.secret.api_key", ""),  # left empty: left out
            ("params", '{"extra": 1, "limit": 30}'),  # the JSON box wins
        ]
        done = await client.post("/pipelines/echo/trigger", data=form, allow_redirects=False)
        assert done.status == 303
        run_id = done.headers["Location"].rsplit("/", 1)[1]
        await ui_.finish(run_id)
        run = await store.get_run(run_id)
        assert dict(run.params) == {
            "day": "2026-12-24",
            "table": "orders",
            "limit": 30,
            "ratio": 0.75,
            "full": True,
            "tables": ["x"],
            "extra": 1,
        }
        bad = [("csrf_token", token), ("p.int.limit", "ten"), ("params", "{}")]
        back = await client.post("/pipelines/echo/trigger", data=bad, allow_redirects=False)
        assert back.status == 303
        page = await (await client.get(back.headers["Location"])).text()
        assert "echo was not triggered: limit must be a whole number" in page
        assert 'name="p.int.limit" value="ten"' in page  # the form keeps what was typed
        assert len(await store.list_runs()) == 1


async def test_without_declared_params_the_latest_run_gives_the_fields(ui: UI) -> None:
    html = await (await ui.client.get("/pipelines")).text()
    hello = html.split('data-pipeline="hello"')[1].split("</section>")[0]
    assert 'name="p.' not in hello  # no declaration, no run yet: the JSON box only
    assert "Params (JSON object)" in hello
    run_id = await ui.trigger(
        "hello", {"n": 4, "interval_start": "2026-01-01T00:00:00+00:00", "password": "pw"}
    )
    await ui.finish(run_id)
    html = await (await ui.client.get("/pipelines")).text()
    hello = html.split('data-pipeline="hello"')[1].split("</section>")[0]
    assert 'name="p.int.n" value="4"' in hello
    assert "p.text.interval_start" not in hello  # set by a schedule or a backfill
    assert 'name="p.secret.password"' in hello
    assert 'value="pw"' not in hello
    data = await (await ui.client.get("/api/pipelines")).json()
    fields = next(p for p in data["pipelines"] if p["name"] == "hello")["params"]
    assert fields == [
        {"name": "n", "kind": "int", "default": 4},
        {"name": "password", "kind": "secret", "default": None},
    ]


async def test_serve_gives_its_schedules_to_the_ui_to_run_and_pause() -> None:
    import aiohttp

    from dremioframe_async.service import serve

    store = MemoryStore()
    pipeline = _ticker("hourly")
    urls: list[str] = []
    ready = anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: serve(
                    [pipeline, Schedule(pipeline, interval=3600)],
                    store,
                    port=0,
                    drain_grace=0,
                    on_ready=on_ready,
                )
            )
            await ready.wait()
            jar = aiohttp.CookieJar(unsafe=True)  # keeps the CSRF cookie of an IP host
            async with aiohttp.ClientSession(urls[0], cookie_jar=jar) as http:
                data = await (await http.get("api/pipelines")).json()
                (hourly,) = data["pipelines"]
                assert (hourly["schedule"], hourly["schedule_runs_here"]) == ("every 3600 s", True)
                assert hourly["next_fire"] % 3600 == 0
                token = (await (await http.get("api/csrf")).json())["csrf_token"]
                answer = await http.post(
                    "api/pipelines/hourly/pause",
                    json={"paused": True},
                    headers={"X-CSRF-Token": token},
                )
                assert answer.status == 200
            tg.cancel_scope.cancel()
    assert list(await store.paused_schedules()) == ["hourly"]


async def test_a_pipeline_entry_takes_a_list_of_schedules_and_refuses_what_is_not_one() -> None:
    pipeline = _ticker("listed")
    every, hourly = Schedule(pipeline, interval=60), Schedule(pipeline, interval=3600)
    entry = PipelineEntry(pipeline, schedule=[every, hourly])  # type: ignore[arg-type]
    assert entry.schedules == (every, hourly)
    assert entry.describe() == "every 60 s and every 3600 s"
    for wrong in (60, [every, "cron 0 * * * *"], {every}):
        with pytest.raises(TypeError, match="schedule must be"):
            PipelineEntry(pipeline, schedule=wrong)  # type: ignore[arg-type]
    other = Schedule(_ticker("other"), interval=60)
    with pytest.raises(TypeError, match="a schedule of 'other'"):
        PipelineEntry(pipeline, schedule=other)
