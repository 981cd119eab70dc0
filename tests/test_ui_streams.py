"""Event streams of runs owned by other processes: one store read per run for all of
its streams, and a cap on open streams (503 with Retry-After past it)."""

from __future__ import annotations

import _ui_fixtures
import anyio
import pytest
from _ui_fixtures import UI
from test_ui_api import T0, sse_events

from dremioframe_async.orchestration import RunFinished, RunStarted, TaskState, TaskStateChanged
from dremioframe_async.store import MemoryStore

gate = _ui_fixtures.gate
pytestmark = pytest.mark.asyncio
POLL = 0.05


class CountingStore(MemoryStore):
    """A store that counts how often a run is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_tasks(self, run_id: str):  # type: ignore[override]
        self.reads += 1
        return await super().get_tasks(run_id)


async def _external_run(store: MemoryStore, run_id: str) -> None:
    await store.record(
        [
            RunStarted(run_id, "elsewhere", T0, {}, ("x",)),
            TaskStateChanged(run_id, "elsewhere", "x", TaskState.RUNNING, T0 + 1, 1),
        ]
    )


async def test_many_streams_of_one_run_share_one_store_read_per_interval(gate) -> None:
    store = CountingStore()
    await _external_run(store, "ext")
    async with _ui_fixtures.open_ui(store, gate, poll_interval=POLL) as ui:
        streams = []
        for _ in range(40):
            response = await ui.client.get("/api/runs/ext/events")
            assert response.status == 200
            streams.append(response)
        for response in streams:
            await sse_events(response, count=1)
        store.reads = 0
        started = anyio.current_time()
        await anyio.sleep(20 * POLL)
        elapsed = anyio.current_time() - started
        reads = store.reads
        # One read per interval for the run (a little slack for timer jitter), where
        # one read per stream would be 40 times as many.
        assert 1 <= reads <= elapsed / POLL + 3, reads
        await store.record(
            [
                TaskStateChanged("ext", "elsewhere", "x", TaskState.SUCCESS, T0 + 2, 1),
                RunFinished("ext", "elsewhere", "SUCCESS", T0 + 3, T0),
            ]
        )
        for response in streams:
            rest = await sse_events(response, until="end")
            assert rest[-1] == ("end", {"status": "SUCCESS"})
            response.close()


async def test_streams_past_the_cap_get_503_with_retry_after(gate) -> None:
    store = MemoryStore()
    await _external_run(store, "ext")
    async with _ui_fixtures.open_ui(store, gate, poll_interval=POLL, max_streams=3) as ui:
        ui: UI
        opened = []
        for _ in range(3):
            response = await ui.client.get("/api/runs/ext/events")
            assert response.status == 200
            await sse_events(response, count=1)
            opened.append(response)
        refused = await ui.client.get("/api/runs/ext/events")
        assert refused.status == 503
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.headers["X-Frame-Options"] == "DENY"
        opened.pop().close()
        with anyio.fail_after(10):
            while ui.state.streams.open >= 3:
                await anyio.sleep(POLL)
        again = await ui.client.get("/api/runs/ext/events")
        assert again.status == 200
        again.close()
        for response in opened:
            response.close()


async def test_a_stream_that_goes_away_mid_read_leaves_the_others_reading(gate) -> None:
    store = MemoryStore()
    await _external_run(store, "ext")
    async with _ui_fixtures.open_ui(store, gate, poll_interval=POLL) as ui:
        first = await ui.client.get("/api/runs/ext/events")
        second = await ui.client.get("/api/runs/ext/events")
        await sse_events(first, count=1)
        await sse_events(second, count=1)
        first.close()
        await store.record([RunFinished("ext", "elsewhere", "SUCCESS", T0 + 3, T0)])
        rest = await sse_events(second, until="end")
        assert rest[-1] == ("end", {"status": "SUCCESS"})
        second.close()
