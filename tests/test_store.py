"""The store suite, run against memory, SQLite and PostgreSQL with hand-built event streams."""

from __future__ import annotations

import _store_fixtures
import pytest
from _store_fixtures import StoreFactory

from dremioframe_async import Pipeline, task
from dremioframe_async.orchestration import (
    Event,
    RunFinished,
    RunStarted,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
)
from dremioframe_async.store import MemoryStore, RunNotFound, RunStatus, RunStore
from dremioframe_async.store._codec import storable_text

# The backend-parametrized fixtures (memory, sqlite, postgres).
store_factory = _store_fixtures.store_factory
store = _store_fixtures.store
T0 = 1_700_000_000.0


def _boom() -> ValueError:
    try:
        raise ValueError("bad row 7")
    except ValueError as exc:
        return exc


def state(run_id: str, key: str, st: TaskState, t: float, attempt: int = 0, **kw) -> Event:
    return TaskStateChanged(run_id, "etl", key, st, T0 + t, attempt, upstream=("a",), **kw)


def sample_run(run_id: str = "r1", pipeline: str = "etl", start: float = 0.0) -> list[Event]:
    """a succeeds; b fails once then succeeds with a tuple (not storable); c fails; d skipped."""
    error = _boom()
    return [
        RunStarted(run_id, pipeline, T0 + start, {"day": "2024-01-01"}, ("a", "b", "c", "d")),
        state(run_id, "a", TaskState.RUNNING, start + 1, 1),
        state(run_id, "a", TaskState.SUCCESS, start + 2, 1, result={"rows": [1, 2]}),
        state(run_id, "b", TaskState.RUNNING, start + 3, 1),
        TaskRetrying(run_id, "etl", "b", 1, error, 0.5, T0 + start + 4),
        state(run_id, "b", TaskState.RUNNING, start + 5, 2),
        state(run_id, "b", TaskState.SUCCESS, start + 6, 2, result=(1, 2)),
        state(run_id, "c", TaskState.RUNNING, start + 7, 1),
        state(run_id, "c", TaskState.FAILED, start + 8, 1, error=error),
        state(run_id, "d", TaskState.UPSTREAM_FAILED, start + 9, reason="upstream c failed"),
        RunFinished(run_id, pipeline, "FAILED", T0 + start + 10, T0 + start),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("batch", [1, 3, 100], ids=["one-by-one", "batches-of-3", "one-batch"])
async def test_run_round_trip(store: RunStore, batch: int) -> None:
    events = sample_run()
    for i in range(0, len(events), batch):
        await store.record(events[i : i + batch])
    run = await store.get_run("r1")
    assert (run.pipeline, run.status, run.params) == (
        "etl",
        RunStatus.FAILED,
        {"day": "2024-01-01"},
    )
    assert (run.started, run.finished, run.duration) == (T0, T0 + 10, 10)
    assert run.counts == {"SUCCESS": 2, "FAILED": 1, "UPSTREAM_FAILED": 1}
    tasks = {t.key: t for t in await store.get_tasks("r1")}
    assert list(tasks) == ["a", "b", "c", "d"]
    assert (tasks["a"].result, tasks["a"].result_stored) == ({"rows": [1, 2]}, True)
    assert (tasks["a"].started, tasks["a"].finished) == (T0 + 1, T0 + 2)
    assert (tasks["b"].result_stored, tasks["b"].result_type) == (False, "tuple")
    assert "runs again on resume" in tasks["b"].result_note
    assert tasks["d"].reason == "upstream c failed"
    assert tasks["d"].attempts == ()
    assert tasks["a"].upstream == ("a",)


@pytest.mark.asyncio
async def test_attempts_keep_errors_and_retry_delays(store: RunStore) -> None:
    await store.record(sample_run())
    tasks = {t.key: t for t in await store.get_tasks("r1")}
    (only_a,) = tasks["a"].attempts  # rebuilt from the task row: a clean first attempt
    assert (only_a.number, only_a.state, only_a.started, only_a.finished) == (
        1,
        TaskState.SUCCESS,
        T0 + 1,
        T0 + 2,
    )
    first, second = tasks["b"].attempts
    assert (first.started, first.finished) == (T0 + 3, T0 + 4)
    assert (first.number, first.state, first.retry_delay) == (1, TaskState.FAILED, 0.5)
    assert (first.error_type, first.error_message) == ("ValueError", "bad row 7")
    assert "raise ValueError" in (first.error_traceback or "")
    assert (second.state, second.started, second.finished) == (TaskState.SUCCESS, T0 + 5, T0 + 6)
    assert second.error_type is None
    (only,) = tasks["c"].attempts
    assert (only.state, only.error_type) == (TaskState.FAILED, "ValueError")
    assert tasks["c"].state is TaskState.FAILED


@pytest.mark.asyncio
async def test_list_runs_newest_first_filtered_and_limited(store: RunStore) -> None:
    await store.record(sample_run("old", start=0))
    await store.record(sample_run("new", start=100))
    await store.record(sample_run("other", pipeline="other", start=50))
    assert [r.run_id for r in await store.list_runs()] == ["new", "other", "old"]
    assert [r.run_id for r in await store.list_runs(pipeline="etl")] == ["new", "old"]
    assert [r.run_id for r in await store.list_runs(limit=1)] == ["new"]
    assert len(await store.list_runs(limit=None)) == 3


@pytest.mark.asyncio
async def test_prior_run_holds_only_stored_successes(store: RunStore) -> None:
    await store.record(sample_run())
    prior = await store.load_prior_run("r1")
    assert (prior.run_id, prior.pipeline) == ("r1", "etl")
    assert prior.params == {"day": "2024-01-01"}
    assert prior.results == {"a": {"rows": [1, 2]}}


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["load_prior_run", "get_run", "get_tasks"])
async def test_unknown_run_is_a_lookup_error(store: RunStore, method: str) -> None:
    with pytest.raises(LookupError, match="nope") as info:
        await getattr(store, method)("nope")
    assert isinstance(info.value, RunNotFound)


@pytest.mark.asyncio
async def test_running_run_and_dynamic_task_keys(store: RunStore) -> None:
    await store.record(
        [RunStarted("r2", "etl", T0, {}, ("a",)), state("r2", "a", TaskState.RUNNING, 1, 1)]
    )
    await store.record([state("r2", "a[0]", TaskState.SUCCESS, 2, 1, result=None)])
    run = await store.get_run("r2")
    assert (run.status, run.finished, run.duration) == (RunStatus.RUNNING, None, None)
    tasks = await store.get_tasks("r2")
    assert [(t.key, t.state) for t in tasks] == [
        ("a", TaskState.RUNNING),
        ("a[0]", TaskState.SUCCESS),
    ]
    assert tasks[0].attempts[0].state is TaskState.RUNNING
    assert (await store.load_prior_run("r2")).results == {"a[0]": None}


@pytest.mark.asyncio
async def test_counts_count_a_mapped_task_as_its_instances(store: RunStore) -> None:
    events = [RunStarted("m", "etl", T0, {}, ("split", "part", "merge"))]
    events.append(state("m", "split", TaskState.SUCCESS, 1, 1, result=[1, 2, 3, 4]))
    events.append(state("m", "part", TaskState.FAILED, 3, 0))  # the mapped task itself
    for i, st in enumerate(
        [TaskState.SUCCESS, TaskState.FAILED, TaskState.FAILED, TaskState.SUCCESS]
    ):
        events.append(state("m", f"part[{i}]", st, 2, 1, result=None))
    events.append(state("m", "merge", TaskState.UPSTREAM_FAILED, 4, 0))
    events.append(RunFinished("m", "etl", "FAILED", T0 + 5, T0))
    await store.record(events)
    counts = {"SUCCESS": 3, "FAILED": 2, "UPSTREAM_FAILED": 1}  # not 3 failed: no "part"
    assert (await store.get_run("m")).counts == counts
    assert (await store.list_runs())[0].counts == counts
    assert len(await store.get_tasks("m")) == 7  # the mapped task is still listed


@pytest.mark.asyncio
async def test_a_runs_counts_follow_each_record(store: RunStore) -> None:
    """Counts read between records are those of what was recorded so far (a store that
    keeps counts between reads must not serve stale ones)."""
    events = sample_run("live")
    await store.record(events[:1])
    seen = [(await store.get_run("live")).counts]
    for event in events[1:]:
        await store.record([event])
        seen.append((await store.get_run("live")).counts)
        assert (await store.list_runs())[0].counts == seen[-1]
    assert seen[0] == {"PENDING": 4}
    assert seen[2] == {"PENDING": 3, "SUCCESS": 1}  # a ran and succeeded
    assert seen[-1] == {"SUCCESS": 2, "FAILED": 1, "UPSTREAM_FAILED": 1}


@pytest.mark.asyncio
async def test_a_memory_store_counts_an_unchanged_run_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A list of runs counts each run's tasks: 100,000 of them took about 60 ms of the
    loop, at every read of the runs or pipelines page. An unchanged run is counted once."""
    from dremioframe_async.store import _memory

    counted: list[object] = []
    pending_count = _memory.pending_count

    def noted(*args: object) -> int:
        counted.append(args)
        return pending_count(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_memory, "pending_count", noted)
    store = MemoryStore()
    events = sample_run("r1")
    await store.record(events[:-1])
    for _ in range(3):
        assert (await store.list_runs())[0].counts == {
            "SUCCESS": 2,
            "FAILED": 1,
            "UPSTREAM_FAILED": 1,
        }
    assert len(counted) == 1
    await store.record(events[-1:])
    await store.get_run("r1")
    assert (await store.get_run("r1")).status is RunStatus.FAILED
    assert len(counted) == 2


@pytest.mark.asyncio
async def test_a_reopened_store_sees_everything(store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.record(sample_run())
    await first.aclose()
    second = store_factory()
    assert [t.key for t in await second.get_tasks("r1")] == ["a", "b", "c", "d"]
    assert (await second.get_run("r1")).status is RunStatus.FAILED


@pytest.mark.asyncio
async def test_resumed_run_records_its_origin(store: RunStore) -> None:
    await store.record([RunStarted("r3", "etl", T0, {"n": 1}, ("a",), resumed_from="r1")])
    assert (await store.get_run("r3")).resumed_from == "r1"


@pytest.mark.asyncio
async def test_tasks_not_yet_seen_are_pending_in_plan_order(store: RunStore) -> None:
    await store.record(
        [
            RunStarted("r4", "etl", T0, {}, ("a", "b", "c")),
            state("r4", "c", TaskState.RUNNING, 1 / 3, 1),
            state("r4", "b[0]", TaskState.SUCCESS, 2, 1, result=None),
        ]
    )
    tasks = await store.get_tasks("r4")
    assert [(t.key, t.state) for t in tasks] == [
        ("a", TaskState.PENDING),
        ("b", TaskState.PENDING),
        ("c", TaskState.RUNNING),
        ("b[0]", TaskState.SUCCESS),
    ]
    assert (tasks[0].started, tasks[0].attempts, tasks[0].upstream) == (None, (), ())
    assert tasks[2].started == T0 + 1 / 3  # stored exactly, whatever the encoding
    assert (await store.get_run("r4")).counts == {"PENDING": 2, "RUNNING": 1, "SUCCESS": 1}
    assert (await store.list_runs())[0].counts["PENDING"] == 2


def _as_stored(store: RunStore, text: str) -> str:
    """What each store gives back for ``text`` (see the store package's _codec)."""
    return text if isinstance(store, MemoryStore) else storable_text(text)


BAD_TEXT = "nul\x00 and lone \udc80 surrogate, é kept"


def _bad_text_run(run_id: str) -> list[Event]:
    error = ValueError(BAD_TEXT)
    key = f"task {BAD_TEXT}"
    return [
        RunStarted(run_id, f"etl {BAD_TEXT}", T0, {"p": BAD_TEXT}, (key, "ok")),
        state(run_id, key, TaskState.RUNNING, 1, 1),
        state(run_id, key, TaskState.FAILED, 2, 1, error=error),
        state(run_id, "ok", TaskState.RUNNING, 1, 1),
        state(run_id, "ok", TaskState.SUCCESS, 2, 1, result=BAD_TEXT),
        state(run_id, "skip", TaskState.SKIPPED, 3, reason=BAD_TEXT),
        RunFinished(run_id, "etl", "FAILED", T0 + 4, T0),
    ]


@pytest.mark.asyncio
async def test_text_the_database_cannot_hold_is_stored_escaped(store: RunStore) -> None:
    # One batch holding NUL and an unpaired surrogate used to be dropped whole.
    await store.record(_bad_text_run("bad"))
    run = await store.get_run("bad")
    assert (run.status, run.pipeline) == (RunStatus.FAILED, _as_stored(store, f"etl {BAD_TEXT}"))
    assert run.params == {"p": BAD_TEXT}  # params are JSON: they round-trip exactly
    tasks = {t.key: t for t in await store.get_tasks("bad")}
    key = _as_stored(store, f"task {BAD_TEXT}")
    assert list(tasks) == [key, "ok", "skip"]
    assert tasks[key].state is TaskState.FAILED
    assert tasks[key].attempts[0].error_message == _as_stored(store, BAD_TEXT)
    assert _as_stored(store, BAD_TEXT) in (tasks[key].attempts[0].error_traceback or "")
    assert tasks["ok"].result == BAD_TEXT  # results are JSON: they round-trip exactly
    assert tasks["skip"].reason == _as_stored(store, BAD_TEXT)


@pytest.mark.asyncio
async def test_a_run_with_unstorable_text_is_recorded_whole(store: RunStore) -> None:
    @task(name="bad\x00name")
    async def bad() -> None:
        raise RuntimeError("surrogate \udcff in the message")

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> str:
        return "done"

    result = await Pipeline("bad text").add_task(bad() >> cleanup()).run(store=store)
    assert (result.status, result.history_error) == ("FAILED", None)
    run = await store.get_run(result.run_id)
    assert run.status is RunStatus.FAILED
    assert run.counts == {"FAILED": 1, "SUCCESS": 1}  # the escaped key matches the planned one
    tasks = {t.key: t for t in await store.get_tasks(result.run_id)}
    failed = tasks[_as_stored(store, "bad\x00name")]
    assert failed.attempts[0].error_message == _as_stored(store, "surrogate \udcff in the message")


@pytest.mark.asyncio
async def test_a_run_written_through_two_handles_is_merged(store_factory: StoreFactory) -> None:
    # Stores insert rows they have not written yet without an upsert; a row that
    # exists anyway (another handle wrote it) must fall back to the upsert.
    first, second = store_factory(), store_factory()
    events = sample_run()
    await first.record(events[:2])  # the run starts; a is RUNNING
    await second.record(events[2:])  # a's SUCCESS, and the rest, through another handle
    tasks = {t.key: t for t in await second.get_tasks("r1")}
    assert (tasks["a"].state, tasks["a"].started, tasks["a"].finished) == (
        TaskState.SUCCESS,
        T0 + 1,
        T0 + 2,
    )
    assert tasks["a"].result == {"rows": [1, 2]}
    assert (await second.get_run("r1")).counts == {"SUCCESS": 2, "FAILED": 1, "UPSTREAM_FAILED": 1}
