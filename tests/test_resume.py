"""Resuming runs from each store, including after the owning process was SIGKILLed."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from pathlib import Path

import _store_fixtures
import anyio
import pytest
from _crash_pipeline import build, ran
from _store_fixtures import drop_schema

from dremioframe_async import Pipeline, TaskState, task
from dremioframe_async.orchestration import ResumeRefused
from dremioframe_async.store import RunStatus, RunStore, SQLiteStore, open_store
from dremioframe_async.store._sql import INTERRUPTED_REASON

store_factory = _store_fixtures.store_factory
store = _store_fixtures.store
HERE = Path(__file__).parent


@pytest.mark.asyncio
async def test_resume_reruns_only_what_did_not_succeed(store: RunStore, tmp_path: Path) -> None:
    (tmp_path / "release").touch()
    (tmp_path / "fail_b").touch()
    pipeline = build(tmp_path)
    first = await pipeline.run({"day": 1}, store=store)
    assert (first.status, first.states["b"], first.states["d"]) == (
        "FAILED",
        TaskState.FAILED,
        TaskState.UPSTREAM_FAILED,
    )
    (tmp_path / "fail_b").unlink()
    second = await pipeline.run(resume=first.run_id, store=store)
    assert second.status == "SUCCESS"
    assert ran(tmp_path) == ["a", "b", "c", "d"]  # a ran once, in the first run
    assert second["d"] == 30
    run = await store.get_run(second.run_id)
    assert (run.resumed_from, run.params, run.status) == (first.run_id, {"day": 1}, "SUCCESS")
    reasons = {t.key: t.reason for t in await store.get_tasks(second.run_id)}
    assert first.run_id in reasons["a"]


@pytest.mark.asyncio
async def test_results_that_cannot_be_stored_run_again(store: RunStore) -> None:
    calls: list[str] = []

    @task(name="make")
    async def make() -> tuple[int, int]:
        calls.append("make")
        return (1, 2)  # a JSON round trip would turn it into a list

    @task(name="use")
    async def use(context: object) -> int:
        calls.append("use")
        if len(calls) < 3:
            raise RuntimeError("first time fails")
        return 3

    pipeline = Pipeline("tuples").add_task(make() >> use())
    first = await pipeline.run(store=store)
    assert first.status == "FAILED"
    assert (await store.load_prior_run(first.run_id)).results == {}
    second = await pipeline.run(resume=first.run_id, store=store)
    assert (second.status, calls) == ("SUCCESS", ["make", "use", "make", "use"])


@pytest.mark.asyncio
async def test_resume_of_an_unknown_run_is_a_lookup_error(store: RunStore, tmp_path: Path) -> None:
    with pytest.raises(LookupError):
        await build(tmp_path).run(resume="no-such-run", store=store)


async def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(30):
        while not path.exists():
            assert proc.poll() is None, proc.communicate()
            await anyio.sleep(0.02)


async def _wait_for_status(store: RunStore, want: set[str], done: set[str]) -> str:
    """Poll until the store holds one run whose tasks in ``done`` are SUCCESS."""
    with anyio.fail_after(30):
        while True:
            runs = await store.list_runs()
            if runs and runs[0].status in want:
                states = {t.key: t.state for t in await store.get_tasks(runs[0].run_id)}
                if all(states.get(k) == TaskState.SUCCESS for k in done):
                    return runs[0].run_id
            await anyio.sleep(0.02)


async def _wait_for_second_attempt_of_c(store: RunStore) -> str:
    """Poll until the newest run shows a, b done and c RUNNING its second attempt."""
    with anyio.fail_after(30):
        while True:
            runs = await store.list_runs()
            if runs and runs[0].status == "RUNNING":
                tasks = {t.key: t for t in await store.get_tasks(runs[0].run_id)}
                done = all(tasks[k].state == TaskState.SUCCESS for k in ("a", "b"))
                c = tasks["c"]
                if done and [a.state for a in c.attempts] == ["FAILED", "RUNNING"]:
                    return runs[0].run_id
            await anyio.sleep(0.02)


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_sigkilled_run_is_interrupted_and_resumes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    schema = f"dfa_test_{secrets.token_hex(6)}"
    pg_url = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    if backend == "postgres":
        url = f"{pg_url}?schema={schema}"
    else:
        url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    (tmp_path / "fail_c_once").touch()
    child = [sys.executable, str(HERE / "_crash_pipeline.py"), str(tmp_path), url]
    proc = subprocess.Popen(child, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        await _wait_for(tmp_path / "c.started", proc)
        watcher = open_store(url)
        try:
            run_id = await _wait_for_second_attempt_of_c(watcher)
            # Its owner is alive: resuming now would run c a second time, concurrently.
            with pytest.raises(ResumeRefused, match="still running"):
                await build(tmp_path).run(resume=run_id, store=watcher)
        finally:
            await watcher.aclose()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    try:
        await _reopen_and_resume(url, run_id, tmp_path)
    finally:
        if backend == "postgres":
            await drop_schema(pg_url, schema)


async def _reopen_and_resume(url: str, run_id: str, tmp_path: Path) -> None:
    store = open_store(url)
    try:
        # The server notices the dead client's socket asynchronously, so poll (bounded).
        assert await _wait_for_status(store, {"INTERRUPTED"}, {"a", "b"}) == run_id
        assert (await store.get_run(run_id)).status is RunStatus.INTERRUPTED
        tasks = {t.key: t for t in await store.get_tasks(run_id)}
        # Nothing of an interrupted run still shows RUNNING: not c, not its attempt.
        assert [t.key for t in tasks.values() if t.state is TaskState.RUNNING] == []
        running = [t.key for t in tasks.values() for a in t.attempts if a.state == "RUNNING"]
        assert running == []
        c = tasks["c"]
        assert (c.state, c.reason) == (TaskState.CANCELLED, INTERRUPTED_REASON)
        assert [a.state for a in c.attempts] == [TaskState.FAILED, TaskState.CANCELLED]
        assert c.attempts[1].finished is not None
        assert tasks["d"].state is TaskState.PENDING
        (tmp_path / "release").touch()
        result = await build(tmp_path).run(resume=run_id, store=store)
        assert (result.status, result["d"]) == ("SUCCESS", 30)
        assert ran(tmp_path) == ["a", "b", "c", "d"]  # a and b did not run again
        assert (await store.get_run(result.run_id)).resumed_from == run_id
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_two_stores_writing_one_sqlite_file(tmp_path: Path) -> None:
    stores = [SQLiteStore(tmp_path / "shared.sqlite") for _ in range(2)]

    @task(name="t")
    async def t(i: int) -> int:
        return i

    async def runs(s: SQLiteStore) -> None:
        for _ in range(5):
            p = Pipeline("shared")
            for i in range(20):
                p.add_task(t(i))
            await p.run(store=s)

    async with anyio.create_task_group() as tg:
        for s in stores:
            tg.start_soon(runs, s)
    listed = await stores[0].list_runs(limit=None)
    assert len(listed) == 10
    assert {r.counts["SUCCESS"] for r in listed} == {20}
    for s in stores:
        await s.aclose()


@pytest.mark.asyncio
async def test_resume_with_other_params_is_refused_unless_allowed(
    store: RunStore, tmp_path: Path
) -> None:
    (tmp_path / "release").touch()
    (tmp_path / "fail_b").touch()
    pipeline = build(tmp_path)
    first = await pipeline.run({"day": "2030-01-01", "n": 1}, store=store)
    assert first.status == "FAILED"
    (tmp_path / "fail_b").unlink()
    changed = r"other params \(day was '2030-01-01', now '2030-01-02'\)"
    with pytest.raises(ResumeRefused, match=changed) as info:
        await pipeline.run({"day": "2030-01-02", "n": 1}, resume=first.run_id, store=store)
    assert "resume_params_changed=True" in str(info.value)
    assert ran(tmp_path) == ["a"]  # nothing ran
    # The same params (given again, or not given) are not a change.
    same = await pipeline.run({"day": "2030-01-01", "n": 1}, resume=first.run_id, store=store)
    assert same.status == "SUCCESS"
    # A run is resumed once: the run that resumed it succeeded, so another resume is refused.
    with pytest.raises(ResumeRefused, match=f"run {same.run_id} already resumes it"):
        await pipeline.run(resume=first.run_id, store=store)
    (tmp_path / "fail_b").touch()
    first = await pipeline.run({"day": "2030-01-01", "n": 1}, store=store)
    assert first.status == "FAILED"
    (tmp_path / "fail_b").unlink()
    changed = await pipeline.run(
        {"day": "2030-01-02"}, resume=first.run_id, store=store, resume_params_changed=True
    )
    assert changed.status == "SUCCESS"
    reasons = {t.key: t.reason for t in await store.get_tasks(changed.run_id)}
    # Only a's result was reused (the first run stored it); the record says so, and why.
    assert reasons["a"] == (f"resumed from run {first.run_id}, computed with other params (day, n)")
    assert "resumed" not in reasons["b"]
    assert (await store.get_run(changed.run_id)).params == {"day": "2030-01-02"}


@pytest.mark.asyncio
async def test_resuming_a_run_that_is_still_running_here_is_refused(store: RunStore) -> None:
    started, release = anyio.Event(), anyio.Event()

    @task(name="slow")
    async def slow() -> int:
        started.set()
        await release.wait()
        return 1

    pipeline = Pipeline("live").add_task(slow())
    run_id = "live-run"

    async def first() -> None:
        result = await pipeline.run(store=store, run_id=run_id)
        assert result.status == "SUCCESS"

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await started.wait()
        with pytest.raises(ResumeRefused, match="still running"):
            await pipeline.run(resume=run_id, store=store)
        release.set()
    again = await pipeline.run(resume=run_id, store=store)  # ended: now it may
    assert again.states["slow"] is TaskState.SUCCESS
    assert again.tasks["slow"].reason == f"resumed from run {run_id}"


@pytest.mark.asyncio
async def test_a_runs_start_is_on_record_before_its_first_task(store_factory) -> None:
    store, reader = store_factory(), store_factory()  # reader: a second handle on the data
    await reader.list_runs()  # opened beforehand, so that its read is quick
    seen: list[object] = []

    @task(name="look")
    async def look(context: object) -> None:
        seen.append(await reader.get_run(context.run_id))  # type: ignore[attr-defined]

    result = await Pipeline("durable").add_task(look()).run(store=store)
    assert result.status == "SUCCESS", result.errors
    (run,) = seen
    assert (run.pipeline, run.status) == ("durable", RunStatus.RUNNING)  # type: ignore[attr-defined]
