"""A run's data interval and backfill, as the UI's API and run page show them."""

from __future__ import annotations

import _ui_fixtures
import pytest
from _ui_fixtures import UI

gate = _ui_fixtures.gate
ui = _ui_fixtures.ui
pytestmark = pytest.mark.asyncio


async def test_a_backfill_run_shows_its_interval_and_backfill(ui: UI) -> None:
    params = {
        "interval_start": "2026-11-01T00:00:00+00:00",
        "interval_end": "2026-11-02T00:00:00+00:00",
        "backfill_id": "bf-<b>x</b>",
    }
    run_id = await ui.trigger("hello", params)
    await ui.finish(run_id)
    data = await (await ui.client.get(f"/api/runs/{run_id}")).json()
    run = data.get("run", data)
    assert run["interval"] == ["2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00"]
    assert run["backfill"] == "bf-<b>x</b>"
    html = await (await ui.client.get(f"/runs/{run_id}")).text()
    assert "2026-11-01T00:00:00+00:00 → 2026-11-02T00:00:00+00:00" in html
    assert "bf-&lt;b&gt;x&lt;/b&gt;" in html
    plain = await ui.trigger("hello")
    await ui.finish(plain)
    other = await (await ui.client.get(f"/api/runs/{plain}")).json()
    assert other.get("run", other)["interval"] is None


async def test_the_api_shows_a_pipelines_state_with_secrets_masked(ui: UI) -> None:
    await ui.store.set_state("hello", "events.watermark", {"kind": "integer", "value": 7})  # type: ignore[attr-defined]
    await ui.store.set_state("hello", "api_token", "s3cr3t")  # type: ignore[attr-defined]
    data = await (await ui.client.get("/api/pipelines/hello/state")).json()
    assert data["pipeline"] == "hello"
    by_key = {e["key"]: e for e in data["state"]}
    assert by_key["events.watermark"]["value"] == {"kind": "integer", "value": 7}
    assert by_key["api_token"]["value"] != "s3cr3t"
    assert (await (await ui.client.get("/api/pipelines/other/state")).json())["state"] == []


async def test_a_backfills_runs_are_one_group_in_the_ui(ui: UI) -> None:
    ids = []
    for day in (1, 2):
        params = {
            "interval_start": f"2026-11-0{day}T00:00:00+00:00",
            "interval_end": f"2026-11-0{day + 1}T00:00:00+00:00",
            "backfill_id": "bf-1",
        }
        ids.append(await ui.trigger("hello", params))
    ids.append(await ui.trigger("hello"))
    for run_id in ids:
        await ui.finish(run_id)
    data = await (await ui.client.get("/api/runs?backfill=bf-1")).json()
    assert sorted(r["run_id"] for r in data["runs"]) == sorted(ids[:2])
    html = await (await ui.client.get("/?backfill=bf-1")).text()
    assert "backfill bf-1" in html
    assert all(run_id[:12] in html for run_id in ids[:2])
    assert ids[2][:12] not in html
    page = await (await ui.client.get(f"/runs/{ids[0]}")).text()
    assert 'href="/?backfill=bf-1"' in page


async def test_the_pipelines_page_shows_the_state_masked_and_escaped(ui: UI) -> None:
    store = ui.store
    await store.set_state("hello", "events.watermark", "<b>2026-12-01</b>")  # type: ignore[attr-defined]
    await store.set_state("hello", "api_token", "s3cr3t")  # type: ignore[attr-defined]
    html = await (await ui.client.get("/pipelines")).text()
    assert "events.watermark" in html
    assert "&lt;b&gt;2026-12-01&lt;/b&gt;" in html
    assert "<b>2026-12-01</b>" not in html
    assert "s3cr3t" not in html
    assert "set by hand" in html
