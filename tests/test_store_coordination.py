"""The coordination rules of every store (memory, SQLite, PostgreSQL), in one process.

The multi-process behaviour is in ``test_service.py``; here each rule is pinned
on each backend: the run queue and ``max_active_runs``, fire claims, cancel
requests, resume claims, final statuses, liveness settings and heartbeats.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import _store_fixtures
import anyio
import pytest

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import (
    ResumeRefused,
    RunFinished,
    RunStarted,
    TaskState,
    TaskStateChanged,
)
from dremioframe_async.schedule import Schedule, ScheduleError, schedule_pipeline
from dremioframe_async.store import (
    RunStatus,
    RunStore,
    SQLiteStore,
    StoreConfigError,
    StoreURLError,
    open_store,
)

store_factory = _store_fixtures.store_factory
store = _store_fixtures.store


@pytest.mark.asyncio
async def test_the_queue_hands_each_run_to_one_claimer_oldest_first(store: RunStore) -> None:
    first = await store.enqueue("etl", {"day": 1})
    second = await store.enqueue("etl", {"day": 2})
    other = await store.enqueue("other")
    assert (await store.get_run(first)).status is RunStatus.QUEUED
    claimed = await store.claim_next({"etl": None})
    assert claimed is not None
    assert (claimed.run_id, claimed.params) == (first, {"day": 1})
    assert (await store.get_run(first)).status is RunStatus.RUNNING
    again = await store.claim_next({"etl": None})
    assert again is not None
    assert again.run_id == second
    assert await store.claim_next({"etl": None}) is None  # "other" is not served here
    assert (await store.get_run(other)).status is RunStatus.QUEUED


@pytest.mark.asyncio
async def test_max_active_runs_holds_back_queued_runs(store: RunStore) -> None:
    ids = [await store.enqueue("etl") for _ in range(3)]
    assert await store.claim_next({"etl": 2}) is not None
    assert await store.claim_next({"etl": 2}) is not None
    assert await store.claim_next({"etl": 2}) is None  # two RUNNING already
    await store.record([RunFinished(ids[0], "etl", RunStatus.SUCCESS, 2.0, 1.0)])
    third = await store.claim_next({"etl": 2})
    assert third is not None
    assert third.run_id == ids[2]


@pytest.mark.asyncio
async def test_a_run_can_be_claimed_by_its_id(store: RunStore) -> None:
    older = await store.enqueue("etl")
    mine = await store.enqueue("etl")
    claimed = await store.claim_next({"etl": None}, run_id=mine)
    assert claimed is not None
    assert claimed.run_id == mine
    assert (await store.get_run(older)).status is RunStatus.QUEUED


@pytest.mark.asyncio
async def test_a_fire_is_claimed_once(store: RunStore) -> None:
    won = await store.claim_fire("etl", 1_800_000_000.0, {"slot": 1})
    assert won is not None
    assert await store.claim_fire("etl", 1_800_000_000.0, {"slot": 1}) is None
    assert await store.claim_fire("other", 1_800_000_000.0) is not None  # per pipeline
    run = await store.get_run(won)
    assert (run.status, run.scheduled_for, run.params) == (
        RunStatus.QUEUED,
        1_800_000_000.0,
        {"slot": 1},
    )


@pytest.mark.asyncio
async def test_cancel_requests(store: RunStore) -> None:
    queued = await store.enqueue("etl")
    outcome = await store.request_cancel(queued)
    assert (outcome.status, outcome.requests) == (RunStatus.CANCELLED, 0)
    assert "before it started" in outcome.message
    assert await store.claim_next({"etl": None}) is None  # a cancelled queued run never starts
    running = await store.enqueue("etl")
    await store.claim_next({"etl": None})
    assert (await store.request_cancel(running)).requests == 1
    second = await store.request_cancel(running)
    assert (second.requests, "second cancel") == (2, second.message[:13])
    assert (await store.get_run(running)).cancel_requests == 2
    await store.record([RunFinished(running, "etl", RunStatus.CANCELLED, 2.0, 1.0)])
    ended = await store.request_cancel(running)
    assert ended.status is RunStatus.CANCELLED
    assert "already ended" in ended.message
    with pytest.raises(LookupError):
        await store.request_cancel("nope")


@pytest.mark.asyncio
async def test_a_final_status_is_never_overwritten(store: RunStore) -> None:
    # A cancelled run whose tasks report afterwards (Dagster's classic) stays CANCELLED.
    await store.record([RunStarted("r", "etl", 1.0, {}, ("a",))])
    await store.record([RunFinished("r", "etl", RunStatus.CANCELLED, 2.0, 1.0)])
    await store.record([RunFinished("r", "etl", RunStatus.SUCCESS, 3.0, 1.0)])
    await store.record([RunStarted("r", "etl", 1.0, {}, ("a",))])
    assert (await store.get_run("r")).status is RunStatus.CANCELLED


@pytest.mark.asyncio
async def test_a_run_is_resumed_once_and_the_refusal_names_the_winner(store: RunStore) -> None:
    failed = await store.claim_fire("etl", 1_800_000_000.0)
    assert failed is not None
    await store.claim_next({"etl": None}, run_id=failed)
    await store.record([RunFinished(failed, "etl", RunStatus.FAILED, 2.0, 1.0)])
    await store.claim_resume(failed, "winner")
    with pytest.raises(ResumeRefused, match="run winner already resumes it"):
        await store.claim_resume(failed, "loser")
    winner = await store.get_run("winner")
    assert (winner.status, winner.resumed_from) == (RunStatus.RUNNING, failed)
    assert winner.scheduled_for == 1_800_000_000.0  # the fire time survives the resume
    assert (await store.get_run(failed)).resumed_by == "winner"
    # A resume that failed in turn lets the run be resumed again.
    await store.record([RunFinished("winner", "etl", RunStatus.FAILED, 3.0, 1.0)])
    await store.claim_resume(failed, "third")


@pytest.mark.asyncio
async def test_pipeline_resume_refuses_a_second_resume_of_one_run(store: RunStore) -> None:
    started, release = anyio.Event(), anyio.Event()
    failing = [True]

    @task(name="step")
    async def step() -> int:
        if failing[0]:
            raise RuntimeError("first time")
        started.set()
        await release.wait()
        return 1

    pipeline = Pipeline("resumable").add_task(step())
    first = await pipeline.run(store=store)
    failing[0] = False
    refusals: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: pipeline.run(store=store, resume=first.run_id))
        await started.wait()
        try:
            await pipeline.run(store=store, resume=first.run_id)
        except ResumeRefused as exc:
            refusals.append(str(exc))
        release.set()
    (winner,) = [r for r in await store.list_runs() if r.resumed_from == first.run_id]
    assert refusals == [
        f"cannot resume run {first.run_id}: run {winner.run_id} already resumes it "
        f"(queued, running or succeeded); resume {winner.run_id} instead if it fails"
    ]


@pytest.mark.asyncio
async def test_pipeline_enqueue(store: RunStore) -> None:
    run_id = await Pipeline("etl").enqueue(store, {"day": "2026-12-01"})
    run = await store.get_run(run_id)
    assert (run.pipeline, run.status, run.params) == ("etl", "QUEUED", {"day": "2026-12-01"})


@pytest.mark.asyncio
async def test_a_run_cancelled_from_the_store_returns_a_cancelled_result(store: RunStore) -> None:
    started, cleaned = anyio.Event(), []

    @task(name="wait")
    async def wait() -> None:
        started.set()
        await anyio.sleep_forever()

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> None:
        cleaned.append(True)

    pipeline = Pipeline("cancellable").add_task(wait() >> cleanup())
    results: list[Any] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:

            async def go() -> None:
                results.append(await pipeline.run(store=store, run_id="me"))

            tg.start_soon(go)
            await started.wait()
            await store.request_cancel("me")
    (result,) = results
    assert result.status == "CANCELLED"
    assert cleaned == [True]
    assert (await store.get_run("me")).status is RunStatus.CANCELLED


@pytest.mark.asyncio
async def test_schedules_share_fires_through_the_store(store: RunStore) -> None:
    runs: list[str] = []

    @task(name="tick")
    async def tick(context: Any) -> None:
        runs.append(context.run_id)

    pipeline = Pipeline("ticks").add_task(tick())

    class Clock:
        t = 1_800_000_000.5

        def now(self) -> float:
            return self.t

        async def sleep_until(self, deadline: float) -> None:
            self.t = max(self.t, deadline)
            await anyio.lowlevel.checkpoint()

    # Two schedulers of one pipeline on one store, in step: every fire runs once.
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(
                lambda: schedule_pipeline(
                    pipeline, interval=1, store=store, clock=Clock(), max_runs=5, overlap="allow"
                )
            )
    recorded = await store.list_runs(pipeline="ticks")
    fires = sorted(r.scheduled_for or 0 for r in recorded)
    assert fires == [1_800_000_001.0 + k for k in range(5)]
    assert len(runs) == 5
    # Each scheduled run carries its data interval: from the previous fire to its own.
    iso = {t: datetime.fromtimestamp(t).astimezone().isoformat() for t in [*fires, fires[0] - 1]}
    assert sorted(r.interval or () for r in recorded) == [(iso[t - 1], iso[t]) for t in fires]


def test_schedule_objects_validate() -> None:
    pipeline = Pipeline("p")
    assert Schedule(pipeline, interval=60).describe() == "every 60 s"
    assert list(zip(range(2), Schedule(pipeline, interval=60).fire_times(125.0), strict=False))
    with pytest.raises(ScheduleError, match="exactly one"):
        Schedule(pipeline)
    with pytest.raises(ScheduleError, match="Pipeline"):
        Schedule("p", interval=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "problem"),
    [("heartbeat=x", "number of seconds"), ("heartbeat=5&dead_after=6", "at least twice")],
)
def test_liveness_settings_in_a_store_url(tmp_path: Path, query: str, problem: str) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite'}?heartbeat=1&dead_after=4")
    assert isinstance(store, SQLiteStore)
    assert store.dead_after == 4
    with pytest.raises((StoreURLError, StoreConfigError), match=problem):
        open_store(f"sqlite:///{tmp_path / 'r.sqlite'}?{query}")


@pytest.mark.asyncio
async def test_a_stale_heartbeat_interrupts_the_run(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "r.sqlite", heartbeat=0.1, dead_after=0.3) as store:
        await store.record([RunStarted("r", "etl", 1.0, {}, ("a",))])
        assert (await store.get_run("r")).status is RunStatus.RUNNING  # fresh heartbeat

        async def interrupted() -> bool:
            return (await store.get_run("r")).status is RunStatus.INTERRUPTED

        with anyio.fail_after(5):
            while not await interrupted():
                await anyio.sleep(0.05)


@pytest.mark.asyncio
async def test_an_attended_run_keeps_its_heartbeat(tmp_path: Path) -> None:
    # A wide margin between beats and dead_after: a scheduling stall must not look dead.
    async with SQLiteStore(tmp_path / "r.sqlite", heartbeat=0.2, dead_after=2.0) as store:
        await store.record([RunStarted("r", "etl", 1.0, {}, ("a",))])
        async with store.attend("r", lambda n: None):
            began = (await store.get_run("r")).status
            until = anyio.current_time() + 1.5 * store.dead_after
            while anyio.current_time() < until:  # well past dead_after, seen at several points
                await anyio.sleep(0.1)
                assert (await store.get_run("r")).status is RunStatus.RUNNING
        assert began is RunStatus.RUNNING


@pytest.mark.asyncio
async def test_an_owner_found_interrupted_is_fenced_off(tmp_path: Path) -> None:
    # Judged dead (a stale heartbeat) while it was only frozen: when it wakes, its run is
    # cancelled by its own attendance, and its end never turns INTERRUPTED back.
    started = anyio.Event()

    @task(name="slow")
    async def slow() -> None:
        started.set()
        await anyio.sleep_forever()

    pipeline = Pipeline("fenced").add_task(slow())
    async with SQLiteStore(tmp_path / "r.sqlite", heartbeat=0.1, dead_after=0.3) as store:
        results: list[Any] = []
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:

                async def go() -> None:
                    results.append(await pipeline.run(store=store, run_id="frozen"))

                tg.start_soon(go)
                await started.wait()
                # What another process's sweep does when the heartbeat went stale.
                await store._call(
                    lambda conn: conn.execute(
                        "UPDATE runs SET status = 'INTERRUPTED' WHERE run_id = 'frozen'"
                    )
                )
        assert results[0].status == "CANCELLED"  # fenced off by its own attendance
        assert (await store.get_run("frozen")).status is RunStatus.INTERRUPTED


@pytest.mark.asyncio
async def test_a_queued_resume_waits_for_max_active_runs_and_is_claimed_once(
    store: RunStore,
) -> None:
    failed = await store.enqueue("etl", {"day": 1})
    await store.claim_next({"etl": 1}, run_id=failed)
    await store.record([RunFinished(failed, "etl", RunStatus.FAILED, 2.0, 1.0)])
    busy = await store.enqueue("etl")
    await store.claim_next({"etl": 1}, run_id=busy)  # the pipeline's one slot is taken
    resume = await store.enqueue_resume(failed)
    with pytest.raises(ResumeRefused, match=f"run {resume} already resumes it"):
        await store.enqueue_resume(failed)  # a second tab's resume
    queued = await store.get_run(resume)
    assert (queued.status, queued.resumed_from, queued.params) == (
        RunStatus.QUEUED,
        failed,
        {"day": 1},
    )
    assert await store.claim_next({"etl": 1}) is None  # held back by max_active_runs
    await store.record([RunFinished(busy, "etl", RunStatus.SUCCESS, 3.0, 1.0)])
    claimed = await store.claim_next({"etl": 1})
    assert claimed is not None
    assert (claimed.run_id, claimed.resumed_from) == (resume, failed)
    await store.claim_resume(failed, resume)  # what run(resume=) then does: let through


async def _set_owner(store: Any, owner: str, heartbeat: float) -> None:
    """What a dead owner leaves in the database: its id and its last heartbeat."""
    if isinstance(store, SQLiteStore):
        sql = "UPDATE runs SET owner = ?, heartbeat = ?"
        await store._call(lambda conn: conn.execute(sql, (owner, heartbeat)))
        return
    async with store._connection() as conn:
        await conn.execute(
            f"UPDATE {store._prefix}runs SET owner = $1, heartbeat = $2", owner, heartbeat
        )


@pytest.mark.asyncio
@pytest.mark.parametrize("store_factory", ["sqlite", "postgres"], indirect=True)
async def test_an_interrupted_run_ends_at_its_last_heartbeat(store: RunStore) -> None:
    # A task that ran for a while records nothing meanwhile; its process's heartbeats
    # are the last sign of life, so the run and the task end there, not at the start.
    # (A memory store lives and dies with its one process: it marks nothing.)
    import socket

    now = time.time()
    await store.record(
        [
            RunStarted("gone", "etl", now - 10, {}, ("a",)),
            TaskStateChanged("gone", "etl", "a", TaskState.RUNNING, now - 9.9, 1),
        ]
    )
    await _set_owner(store, f"{socket.gethostname()}:999999999:x", now - 2)  # no such pid
    run = await store.get_run("gone")
    assert run.status is RunStatus.INTERRUPTED
    assert run.finished == pytest.approx(now - 2, abs=1e-3)
    (task_a,) = await store.get_tasks("gone")
    assert (task_a.state, task_a.interrupted) == (TaskState.CANCELLED, True)
    assert task_a.finished == pytest.approx(now - 2, abs=1e-3)
    assert task_a.attempts[-1].finished == pytest.approx(now - 2, abs=1e-3)


def test_a_closed_store_records_again_in_another_event_loop(tmp_path: Path) -> None:
    """The heartbeat's events were made in the first loop and kept: a run in a second
    ``anyio.run`` failed at its first tick ("bound to a different event loop")."""
    store = SQLiteStore(tmp_path / "r.sqlite", heartbeat=0.05, cancel_poll=0.05)

    @task(name="wait")
    async def wait() -> int:
        await anyio.sleep(0.2)  # a few ticks of the heartbeat
        return 1

    async def one_run() -> str:
        try:
            result = await Pipeline("loops").add_task(wait()).run(store=store)
            assert result.history_error is None
            return result.status
        finally:
            await store.aclose()

    assert [anyio.run(one_run), anyio.run(one_run)] == ["SUCCESS", "SUCCESS"]
