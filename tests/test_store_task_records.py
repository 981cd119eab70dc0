"""Task records: a store that is a run's only reader gets task changes as plain tuples.

With no listener, the runner hands a ``DirectRecorder`` (every built-in store)
a ``TaskRecord`` tuple instead of each ``TaskStateChanged``; with a listener, or
for a recorder that does not take them, everything is an event as before. The
history a store keeps must be the same either way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import _store_fixtures
import anyio
import pytest

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import (
    Event,
    PriorRun,
    Record,
    RunStarted,
    TaskState,
    TaskStateChanged,
    _run_core,
)
from dremioframe_async.store import MemoryStore, RunStore

store_factory = _store_fixtures.store_factory
store = _store_fixtures.store


def mixed_pipeline() -> Pipeline:
    """Success with a result and a state write, a retry, a failure, a skipped task."""
    calls = {"flaky": 0}

    @task(name="root")
    async def root(context: Any = None) -> dict[str, int]:
        context.state["cursor"] = 3
        return {"rows": 2}

    @task(name="flaky", retries=1, retry_delay=0)
    async def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] % 2:
            raise ValueError("first attempt fails")
        return "ok"

    @task(name="broken")
    def broken() -> None:
        raise RuntimeError("always fails")

    @task(name="after_broken")
    async def after_broken() -> None:
        return None

    top = root()
    top >> flaky()
    top >> broken() >> after_broken()
    return Pipeline("mixed").add_task(top)


async def history(store: RunStore, run_id: str) -> list[tuple[Any, ...]]:
    """What the store keeps of a run's tasks, without times."""
    rows = []
    for t in sorted(await store.get_tasks(run_id), key=lambda t: t.key):
        attempts = tuple(
            (a.number, a.state, a.error_type, a.error_message, a.retry_delay) for a in t.attempts
        )
        rows.append(
            (
                t.key,
                t.state,
                t.started is not None,
                t.finished is not None,
                attempts,
                t.reason,
                t.upstream,
                t.result,
                t.result_stored,
                t.result_type,
                t.result_note,
            )
        )
    return rows


@pytest.mark.asyncio
async def test_a_run_with_or_without_a_listener_leaves_the_same_history(store: RunStore) -> None:
    pipeline = mixed_pipeline()
    heard: list[Event] = []
    listened = await pipeline.run(store=store, on_event=heard.append)
    quiet = await pipeline.run(store=store)  # last: the state entry must be its write
    assert quiet.status == listened.status == "FAILED"
    assert quiet.history_error is None
    assert listened.history_error is None
    quiet_rows = await history(store, quiet.run_id)
    assert quiet_rows == await history(store, listened.run_id)
    assert {row[0]: row[1] for row in quiet_rows} == {
        "root": TaskState.SUCCESS,
        "flaky": TaskState.SUCCESS,
        "broken": TaskState.FAILED,
        "after_broken": TaskState.UPSTREAM_FAILED,
    }
    assert [a[:2] for a in {r[0]: r[4] for r in quiet_rows}["flaky"]] == [
        (1, TaskState.FAILED),
        (2, TaskState.SUCCESS),
    ]
    assert await store.get_state("mixed", "cursor") == 3
    entries = {e.key: (e.run_id, e.task) for e in await store.state_entries("mixed")}
    assert entries["cursor"] == (quiet.run_id, "root")
    # The listener heard every change as an event.
    changes = [e for e in heard if isinstance(e, TaskStateChanged)]
    assert {e.key for e in changes} == {"root", "flaky", "broken", "after_broken"}


class Spying(MemoryStore):
    """A MemoryStore that keeps what it was handed (and says it takes task records)."""

    takes_task_records = True

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Record]] = []

    async def record(self, events: Sequence[Record]) -> None:
        self.batches.append(list(events))
        await super().record(events)


class Inspecting(MemoryStore):
    """A user's subclass written for events: its ``record`` reads their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    async def record(self, events: Sequence[Record]) -> None:
        self.keys.extend(e.key for e in events if isinstance(e, TaskStateChanged))
        await super().record(events)


@pytest.mark.asyncio
async def test_a_subclass_overriding_record_gets_events_unless_it_says_otherwise() -> None:
    inspecting = Inspecting()
    result = await mixed_pipeline().run(store=inspecting)
    assert result.status == "FAILED"
    assert set(inspecting.keys) == {"root", "flaky", "broken", "after_broken"}


@pytest.mark.asyncio
async def test_a_store_alone_gets_task_records_and_with_a_listener_events() -> None:
    pipeline = mixed_pipeline()
    alone = Spying()
    result = await pipeline.run(store=alone)
    handed = [r for batch in alone.batches for r in batch]
    assert isinstance(handed[0], RunStarted)
    assert not any(isinstance(r, TaskStateChanged) for r in handed)
    records = [r for r in handed if isinstance(r, tuple)]
    assert {(r[0], r[1]) for r in records} == {
        (result.run_id, key) for key in ("root", "flaky", "broken", "after_broken")
    }
    listened = Spying()
    await pipeline.run(store=listened, on_event=lambda event: None)
    handed = [r for batch in listened.batches for r in batch]
    assert not any(isinstance(r, tuple) for r in handed)
    changes = [r for r in handed if isinstance(r, TaskStateChanged)]
    # The same final states; a first start is a record only while the task still runs.
    running = TaskState.RUNNING
    assert sorted((r[1], r[2]) for r in records if r[2] is not running) == sorted(
        (e.key, e.state) for e in changes if e.state is not running
    )
    assert all(r[11] is not None for r in records if r[1] != "after_broken")


class EventsOnly:
    """A recorder of its own that knows nothing of task records."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def record(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    async def load_prior_run(self, run_id: str) -> PriorRun:
        raise LookupError(run_id)


@pytest.mark.asyncio
async def test_a_recorder_that_does_not_take_task_records_gets_events() -> None:
    recorder = EventsOnly()
    result = await mixed_pipeline().run(store=recorder)
    assert result.status == "FAILED"
    assert all(not isinstance(e, tuple) for e in recorder.events)
    assert sum(isinstance(e, TaskStateChanged) for e in recorder.events) >= 4


@pytest.mark.asyncio
async def test_a_running_task_is_on_record_while_it_runs(store: RunStore) -> None:
    release = anyio.Event()
    run_ids: list[str] = []

    @task(name="slow")
    async def slow(context: Any = None) -> str:
        run_ids.append(context.run_id)
        await release.wait()
        return "done"

    pipeline = Pipeline("slow_one").add_task(slow())

    async def watch() -> None:
        with anyio.fail_after(10):
            while True:
                if run_ids:
                    tasks = await store.get_tasks(run_ids[0])
                    if [(t.key, t.state) for t in tasks] == [("slow", TaskState.RUNNING)]:
                        assert tasks[0].started is not None
                        break
                await anyio.sleep(0.01)  # polling the store, not ordering anything
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        result = await pipeline.run(store=store)
    assert result.status == "SUCCESS"
    (info,) = await store.get_tasks(result.run_id)
    assert info.state == TaskState.SUCCESS
    assert info.started is not None
    assert info.finished is not None
    assert info.started <= info.finished


@pytest.mark.asyncio
async def test_a_task_that_starts_with_nothing_else_to_record_is_on_record(
    store: RunStore,
) -> None:
    # The second run's task starts when another run frees the pool they share: at
    # that moment its run has nothing else to record, and its start must still be.
    pool = anyio.CapacityLimiter(1)
    first_running, release_first, release_second = anyio.Event(), anyio.Event(), anyio.Event()
    second_ids: list[str] = []

    @task(name="holder", pool="shared")
    async def holder() -> None:
        first_running.set()
        await release_first.wait()

    @task(name="waiter", pool="shared")
    async def waiter(context: Any = None) -> None:
        await release_second.wait()

    first = Pipeline("holds", pools={"shared": pool}).add_task(holder())
    second = Pipeline("waits", pools={"shared": pool}).add_task(waiter())

    async def states(run_id: str) -> list[TaskState] | None:
        try:
            return [t.state for t in await store.get_tasks(run_id)]
        except LookupError:
            return None

    async def run_second() -> None:
        result = await second.run(store=store, run_id="second-run")
        second_ids.append(result.run_id)

    async def watch() -> None:
        await first_running.wait()
        tg.start_soon(run_second)
        with anyio.fail_after(10):
            while await states("second-run") is None:
                await anyio.sleep(0.01)  # polling the store until the run is on record
            await anyio.wait_all_tasks_blocked()  # its task waits for the pool
            assert await states("second-run") == [TaskState.PENDING]
            release_first.set()
            while await states("second-run") != [TaskState.RUNNING]:
                await anyio.sleep(0.01)  # polling the store, not ordering anything
        release_second.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        assert (await first.run(store=store)).status == "SUCCESS"
    assert second_ids == ["second-run"]


class Signalling(Spying):
    """Sets ``seen`` once a batch holds the SUCCESS record of task ``key``."""

    takes_task_records = True

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.seen = anyio.Event()

    async def record(self, events: Sequence[Record]) -> None:
        await super().record(events)
        if any(isinstance(r, tuple) and r[1:3] == (self.key, TaskState.SUCCESS) for r in events):
            self.seen.set()


def starts_recorded(store: Spying, key: str) -> list[Record]:
    return [
        r
        for batch in store.batches
        for r in batch
        if isinstance(r, tuple) and r[1] == key and r[2] is TaskState.RUNNING
    ]


def outlived(store: Signalling) -> Pipeline:
    """``long`` runs until ``quick``'s end has been recorded, so across a batch."""

    @task(name="quick")
    async def quick() -> None:
        return None

    @task(name="long")
    async def long() -> str:
        await store.seen.wait()
        return "done"

    return Pipeline("outlived").add_task(quick()).add_task(long())


async def run_outlived(monkeypatch: pytest.MonkeyPatch, grace: float) -> tuple[Signalling, str]:
    """Run ``outlived`` with ``START_GRACE`` at ``grace``: the store, and the run's id."""
    monkeypatch.setattr(_run_core, "START_GRACE", grace)
    spy = Signalling("quick")
    result = await outlived(spy).run(store=spy)
    assert result.status == "SUCCESS"
    return spy, result.run_id


@pytest.mark.asyncio
async def test_a_task_that_ends_within_the_grace_has_its_start_only_on_its_final_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A grace longer than this test: "long" runs across a batch, and ends within it.
    spy, run_id = await run_outlived(monkeypatch, 60.0)
    assert starts_recorded(spy, "long") == []
    (final,) = [r for b in spy.batches for r in b if isinstance(r, tuple) and r[1] == "long"]
    assert final[2] is TaskState.SUCCESS
    assert final[11] is not None  # its start travels on it
    (row,) = [t for t in await spy.get_tasks(run_id) if t.key == "long"]
    assert row.started is not None
    assert row.finished is not None
    assert row.started <= row.finished


@pytest.mark.asyncio
async def test_a_task_running_past_the_grace_has_its_start_recorded_before_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy, _ = await run_outlived(monkeypatch, 0.0)
    (start,) = starts_recorded(spy, "long")
    at = [i for i, b in enumerate(spy.batches) for r in b if r is start]
    end = [
        i
        for i, b in enumerate(spy.batches)
        for r in b
        if isinstance(r, tuple) and r[1:3] == ("long", TaskState.SUCCESS)
    ]
    assert at[0] < end[0]


class Watching(Spying):
    """Sets ``seen[key]`` once a batch holds the start of task ``key``."""

    takes_task_records = True

    def __init__(self, *keys: str) -> None:
        super().__init__()
        self.seen = {key: anyio.Event() for key in keys}

    async def record(self, events: Sequence[Record]) -> None:
        await super().record(events)
        for r in events:
            if isinstance(r, tuple) and r[2] is TaskState.RUNNING and r[1] in self.seen:
                self.seen[r[1]].set()


@pytest.mark.asyncio
async def test_a_start_still_young_when_an_older_one_is_due_is_recorded_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "first" is due after the grace; "second" starts half a grace later, so it is
    # still young then, and nothing but its own start is left to record.
    grace = 1.0
    monkeypatch.setattr(_run_core, "START_GRACE", grace)
    spy = Watching("first", "second")

    @task(name="first")
    async def first() -> None:
        await spy.seen["second"].wait()

    @task(name="gap")
    async def gap() -> None:
        await anyio.sleep(grace / 2)  # the time between the two starts under test

    @task(name="second")
    async def second() -> None:
        await spy.seen["second"].wait()

    pipeline = Pipeline("staggered").add_task(first())
    pipeline.add_task(gap() >> second())
    with anyio.fail_after(10):
        result = await pipeline.run(store=spy)
    assert result.status == "SUCCESS"
    assert spy.seen["first"].is_set()
    assert len(starts_recorded(spy, "second")) == 1


@pytest.mark.asyncio
async def test_a_retry_within_the_grace_keeps_the_first_start(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first attempt fails at once; the second runs across a batch and ends, all
    # within the grace: the start is never recorded on its own, and the row still
    # holds the first attempt's start, not the second's.
    monkeypatch.setattr(_run_core, "START_GRACE", 60.0)
    recorded = anyio.Event()
    attempts: list[float] = []

    @task(name="flaky", retries=1, retry_delay=0)
    async def flaky() -> str:
        attempts.append(time.time())
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        await recorded.wait()
        return "ok"

    @task(name="quick")
    async def quick() -> None:
        return None

    pipeline = Pipeline("retried").add_task(flaky()).add_task(quick())
    async with anyio.create_task_group() as tg:

        async def release() -> None:
            with anyio.fail_after(10):
                while not await _quick_done(store):
                    await anyio.sleep(0.01)  # polling the store, not ordering anything
            recorded.set()

        tg.start_soon(release)
        result = await pipeline.run(store=store)
    assert result.status == "SUCCESS"
    (row,) = [t for t in await store.get_tasks(result.run_id) if t.key == "flaky"]
    assert row.state == TaskState.SUCCESS
    assert len(attempts) == 2
    assert row.started is not None
    assert row.started <= attempts[0]  # marked running before its body ran
    assert [a.number for a in row.attempts] == [1, 2]


@pytest.mark.asyncio
async def test_a_task_waiting_to_retry_within_the_grace_is_on_record_as_running(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its first attempt fails at once, so its start has not reached the store by
    # the grace; while it waits to retry, its row must not read PENDING.
    monkeypatch.setattr(_run_core, "START_GRACE", 60.0)
    seen: list[tuple[Any, ...]] = []
    failed = anyio.Event()

    @task(name="flaky", retries=1, retry_delay=1.0)
    async def flaky(context: Any = None) -> str:
        if not failed.is_set():
            failed.set()
            raise ValueError("first attempt fails")
        return "ok"

    async def watch() -> None:
        await failed.wait()
        with anyio.fail_after(10):
            while True:
                runs = await store.list_runs(pipeline="waits_to_retry", limit=1)
                tasks = await store.get_tasks(runs[0].run_id) if runs else []
                if tasks and [a.state for a in tasks[0].attempts] == [TaskState.FAILED]:
                    seen.append((tasks[0].state, tasks[0].started))
                    return
                await anyio.sleep(0.01)  # polling the store, not ordering anything

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        result = await Pipeline("waits_to_retry").add_task(flaky()).run(store=store)
    assert result.status == "SUCCESS"
    ((state, started),) = seen
    assert state == TaskState.RUNNING
    assert started is not None


async def _quick_done(store: RunStore) -> bool:
    runs = await store.list_runs(pipeline="retried", limit=1)
    if not runs:
        return False
    tasks = await store.get_tasks(runs[0].run_id)
    return any(t.key == "quick" and t.state == TaskState.SUCCESS for t in tasks)


def reverse_finishing(n: int) -> Pipeline:
    """A mapped task whose instances all start, then finish last index first."""
    finished = [anyio.Event() for _ in range(n)]

    @task(name="item")
    async def item(i: int) -> int:
        if i + 1 < n:
            await finished[i + 1].wait()
        finished[i].set()
        return i

    return Pipeline("reverse-finishing", max_concurrency=n).add_task(item.expand(i=list(range(n))))


@pytest.mark.asyncio
async def test_mapped_instances_read_back_by_index_with_or_without_a_listener(
    store: RunStore,
) -> None:
    """Without a listener a quick instance's start travels on its final record, so
    the store first hears of the instances in finish order; they still read back
    by index, as they do with events (start order)."""
    n = 12
    expected = ["item", *(f"item[{i}]" for i in range(n))]
    quiet = await reverse_finishing(n).run(store=store)
    listened = await reverse_finishing(n).run(store=store, on_event=lambda event: None)
    for result in (quiet, listened):
        result.raise_for_status()
        assert [t.key for t in await store.get_tasks(result.run_id)] == expected


@pytest.mark.asyncio
async def test_many_alike_task_rows_keep_each_their_own_key_and_times(store: RunStore) -> None:
    """Rows that differ only in key and times (SQLite binds the rest once per group),
    among rows that differ in more, as new rows and then as updates of written ones."""
    run_id, base = "alike", 1_700_000_000.0
    keys = ["root", *(f"leaf_{i}" for i in range(40)), "sink"]
    ups: dict[str, tuple[str, ...]] = dict.fromkeys(keys[1:-1], ("root",))
    ups |= {"root": (), "sink": tuple(keys[1:-1])}
    started = {k: base + i * 0.37 for i, k in enumerate(keys)}
    finished = {k: started[k] + 0.5 + i * 0.011 for i, k in enumerate(keys)}
    outcome = dict.fromkeys(keys, (TaskState.SUCCESS, None, ""))
    outcome["leaf_7"] = (TaskState.SUCCESS, {"rows": 7}, "")
    outcome["leaf_9"] = (TaskState.SKIPPED, None, "skipped by a branch")
    outcome["sink"] = (TaskState.SUCCESS, "done", "")

    def record(key: str, state: TaskState, at: float, result: Any, reason: str) -> Record:
        return (run_id, key, state, at, 1, None, result, reason, ups[key], None, "p", None)

    start = RunStarted(run_id, "p", base, {}, tuple(keys), None, None)
    # First batch: half the tasks start (new rows); second: every task ends, the
    # first half as updates of written rows, the rest as new rows.
    first = [record(k, TaskState.RUNNING, started[k], None, "") for k in keys[:21]]
    second = [record(k, s, finished[k], r, why) for k, (s, r, why) in outcome.items()]
    second[21:] = [
        (*rec[:11], started[rec[1]]) for rec in second[21:]
    ]  # a start that travels on the final record
    await store.record([start, *first])
    await store.record(second)
    tasks = {t.key: t for t in await store.get_tasks(run_id)}
    assert set(tasks) == set(keys)
    for k in keys:
        t, (state, result, reason) = tasks[k], outcome[k]
        assert (t.state, t.started, t.finished) == (state, started[k], finished[k]), k
        assert (t.reason, t.upstream, t.result) == (reason, ups[k], result), k


@pytest.mark.asyncio
async def test_a_batch_recorded_again_leaves_the_same_rows(store: RunStore) -> None:
    """A batch retried after its write landed (its reply lost): rows already written
    in a final state, which the store no longer tracks as written, are merged again."""
    run_id, at = "again", 1_700_000_000.0
    keys = [f"t{i}" for i in range(20)]
    start = RunStarted(run_id, "p", at, {}, tuple(keys), None, None)
    ends: list[Record] = [
        (run_id, k, TaskState.SUCCESS, at + i + 1, 1, None, i, "", (), None, "p", at + i)
        for i, k in enumerate(keys)
    ]
    await store.record([start])
    await store.record(ends)
    await store.record(ends)
    tasks = await store.get_tasks(run_id)
    assert sorted((t.key, t.state, t.started, t.finished, t.result) for t in tasks) == sorted(
        (k, TaskState.SUCCESS, at + i, at + i + 1, i) for i, k in enumerate(keys)
    )


@pytest.mark.asyncio
async def test_tasks_read_back_in_the_order_first_heard_of_as_in_memory(store: RunStore) -> None:
    """Mapped tasks are ordered by their first instance heard of: runs of alike rows
    (SQLite writes those together) must not move ahead of rows heard of before them."""
    run_id, at = "order", 1_700_000_000.0

    def ended(key: str, state: TaskState, error: BaseException | None = None) -> Record:
        return (run_id, key, state, at + 1, 1, error, None, "", (), None, "p", at)

    records: list[Record] = [RunStarted(run_id, "p", at, {}, ("a", "b", "c"), None, None)]
    records.append(ended("a[0]", TaskState.FAILED, RuntimeError("first")))
    records += [ended(f"b[{j}]", TaskState.SUCCESS) for j in range(9)]
    records.append(ended("c[0]", TaskState.SKIPPED))
    records += [ended(f"a[{j}]", TaskState.SUCCESS) for j in range(1, 10)]
    memory = MemoryStore()
    for recorder in (memory, store):
        await recorder.record(records)
    expected = [t.key for t in await memory.get_tasks(run_id)]
    assert expected[:5] == ["a", "b", "c", "a[0]", "a[1]"]  # a's block first: heard of first
    assert [t.key for t in await store.get_tasks(run_id)] == expected
