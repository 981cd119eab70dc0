"""Probing serve, trigger, cancel and the run queue as a careless user or an attacker would.

Each test is a defect found by probing (or a guard against one): bad input on the
command line, signals at odd moments, processes killed mid-run, stores that do
not exist. Real processes on real stores; every process is ended in a
``finally`` (the ``procs`` fixture); ordering is by polling the store with a
deadline, never by fixed sleeps.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio
from _service_procs import (
    PIPELINES,
    Procs,
    all_runs,
    eventually,
    overlap,
    terminate_backends,
)
from _store_fixtures import PG_SERVER, _admin, drop_schema, with_database

from dremioframe_async.store import (
    PostgresStore,
    RunInfo,
    RunStatus,
    RunStore,
    SQLiteStore,
    open_store,
)


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    """A SQLite or PostgreSQL store (its own schema), closed and dropped afterwards."""
    if request.param == "sqlite":
        store: RunStore = SQLiteStore(tmp_path / "runs.sqlite")
        try:
            yield store
        finally:
            await store.aclose()
        return
    url = request.getfixturevalue("pg_url")
    schema = f"dfa_probe_{secrets.token_hex(5)}"
    store = PostgresStore(url, schema=schema, max_size=3)
    try:
        yield store
    finally:
        await store.aclose()
        await drop_schema(url, schema)


# ---------------------------------------------------------------- the run queue


@pytest.mark.asyncio
async def test_a_full_pipeline_queue_does_not_hide_other_pipelines_runs(
    shared_store: RunStore,
) -> None:
    # 70 queued runs of a pipeline at its max_active_runs, then one run of another
    # pipeline: a claimer serving both must take the other one. (The claim looked
    # at the oldest 64 queued runs only, all of the full pipeline, and took none.)
    store = shared_store
    first = await store.enqueue("busy")
    assert (await store.claim_next({"busy": 1})) is not None
    for _ in range(70):
        await store.enqueue("busy")
    other = await store.enqueue("other")
    claimed = await store.claim_next({"busy": 1, "other": None})
    assert claimed is not None, "the run of 'other' stayed queued behind 'busy'"
    assert claimed.run_id == other
    assert (await store.get_run(other)).status is RunStatus.RUNNING
    assert (await store.get_run(first)).status is RunStatus.RUNNING
    # And the full pipeline still gets nothing until a run of it ends.
    assert (await store.claim_next({"busy": 1})) is None


# ---------------------------------------------------------------- a database outage


async def _outage(url: str, allow: bool) -> None:
    database = url.rsplit("/", 1)[1].split("?")[0]
    await _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}')
    if not allow:
        await terminate_backends(url)


async def _new_success(store: RunStore, after: float) -> RunInfo | None:
    runs = await all_runs(store, "ticker")
    return next((r for r in runs if r.status is RunStatus.SUCCESS and r.started > after), None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["serve", f"{PIPELINES}:every_second", "--port", "0"], id="serve"),
        pytest.param(["schedule", f"{PIPELINES}:ticker", "--interval", "1"], id="schedule"),
    ],
)
@pytest.mark.asyncio
async def test_a_short_database_outage_at_a_fire_does_not_end_the_scheduler(
    procs: Procs, fresh_pg: Callable[[], Awaitable[str]], command: list[str]
) -> None:
    # The database refuses connections for a while, across at least one fire time.
    # The scheduler must live through it and go on firing once it is back (it ended
    # with "unhandled errors in a TaskGroup": the fire's claim raised StoreUnavailable).
    url = await fresh_pg()
    proc = procs.start(*command, "--store", url)
    store = open_store(url)
    try:
        await eventually(lambda: _new_success(store, 0.0), 60, "a first scheduled run")
        await store.aclose()
        await _outage(url, allow=False)
        try:
            await eventually(
                lambda: _said(procs, proc, "store unavailable"), 30, "the scheduler to notice"
            )
        finally:
            await _outage(url, allow=True)
        back = time.time()
        await eventually(lambda: _new_success(store, back), 30, "a run after the outage")
        assert proc.poll() is None, procs.output(proc)
    finally:
        await store.aclose()


async def _said(procs: Procs, proc: subprocess.Popen[bytes], text: str) -> bool | None:
    if proc.poll() is not None:  # it died: fail now, with what it printed
        raise AssertionError(f"exited {proc.returncode}:\n{procs.output(proc)[-3000:]}")
    return True if text in procs.output(proc) else None


# ---------------------------------------------------------------- stopping serve


async def _exited_or_serving(procs: Procs, proc: subprocess.Popen[bytes]) -> str | None:
    if proc.poll() is not None:
        return "exited"
    return "serving" if "serving " in procs.output(proc) else None


@pytest.mark.parametrize("grace", ["nan", "-1"])
@pytest.mark.asyncio
async def test_a_drain_grace_that_is_no_duration_is_refused_at_start(
    procs: Procs, tmp_path: Path, grace: str
) -> None:
    # It was accepted, and `nan` failed only when SIGTERM came: "deadline must not be NaN".
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    proc = procs.start(
        "serve", f"{PIPELINES}:ticker", "--port", "0", "--drain-grace", grace, "--store", store
    )
    what = await eventually(lambda: _exited_or_serving(procs, proc), 60, "exit or serving")
    assert what == "exited", procs.output(proc)
    assert proc.returncode == 2
    assert "--drain-grace" in procs.output(proc)


@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_a_second_sigterm_ends_the_drain_grace_at_once(procs: Procs, tmp_path: Path) -> None:
    # The first SIGTERM drains (runs get --drain-grace to finish); the second must not
    # leave the operator waiting out the grace: it cancels the runs, cleanup stopped.
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    started, never = tmp_path / "started", tmp_path / "never"
    proc = procs.start(
        "serve", f"{PIPELINES}:held", "--port", "0", "--drain-grace", "600", "--store", url
    )
    await eventually(lambda: _exited_or_serving(procs, proc), 60, "serving")
    store = open_store(url)
    try:
        run_id = await store.enqueue("held", {"started": str(started), "release": str(never)})
        await eventually(lambda: _exists(started), 30, "the run to start")
        proc.send_signal(signal.SIGTERM)
        await eventually(lambda: _said(procs, proc, "interrupted:"), 30, "the first SIGTERM")
        proc.send_signal(signal.SIGTERM)
        code = await anyio.to_thread.run_sync(lambda: _wait(proc, 30))
        assert code == 0, procs.output(proc)
        assert (await store.get_run(run_id)).status is RunStatus.CANCELLED
    finally:
        await store.aclose()


async def _exists(path: Path) -> bool | None:
    return True if path.exists() else None


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


# ---------------------------------------------------------------- what serve loads

SHARED = """
from dremioframe_async import Pipeline, task

@task(name="t")
async def t() -> int:
    return 1

pipeline = Pipeline({name!r}).add_task(t())
"""
SCHEDULED = """
from {module} import pipeline
from dremioframe_async.schedule import Schedule

every_hour = Schedule(pipeline, interval=3600)
"""


@pytest.mark.asyncio
async def test_a_folder_whose_modules_import_each_others_pipelines_is_served(
    procs: Procs, tmp_path: Path
) -> None:
    # pipelines/a_daily.py schedules the pipeline of b_shared.py (imported before
    # serve reaches b_shared.py), e_weekly.py that of d_more.py (reached first, after
    # the folder is on sys.path). serve refused: "two different pipelines are named".
    folder = tmp_path / "pipelines"
    folder.mkdir()
    tag = secrets.token_hex(3)  # module names no other test process has imported
    files = {
        f"a_daily_{tag}": SCHEDULED.format(module=f"b_shared_{tag}"),
        f"b_shared_{tag}": SHARED.format(name="shared"),
        f"c_other_{tag}": SHARED.format(name="other"),
        f"d_more_{tag}": SHARED.format(name="more"),
        f"e_weekly_{tag}": SCHEDULED.format(module=f"d_more_{tag}"),
    }
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    proc = procs.start("serve", str(folder), "--port", "0", "--store", url)
    what = await eventually(lambda: _exited_or_serving(procs, proc), 60, "exit or serving")
    assert what == "serving", procs.output(proc)
    assert "serving more, other, shared at" in procs.output(proc)
    assert procs.output(proc).count("schedule: ") == 2


# ---------------------------------------------------------------- trigger and cancel


def _cli(*args: str | bytes, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dremioframe_async", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )


def test_trigger_refuses_a_store_file_that_does_not_exist(tmp_path: Path) -> None:
    # A typo in --store made a new file (and folders) holding a run nobody serves.
    typo = tmp_path / "typo" / "runs.sqlite"
    done = _cli("trigger", "ticker", "--store", f"sqlite:///{typo}")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "no such folder" in done.stderr
    assert not typo.parent.exists()
    typo.parent.mkdir()  # the folder exists, the file does not: still refused, not created
    done = _cli("trigger", "ticker", "--store", f"sqlite:///{typo}")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "no such file" in done.stderr
    assert not typo.exists()


def test_trigger_of_a_pipeline_the_store_never_ran_says_so(tmp_path: Path) -> None:
    # `trigger tikcer` queued a run that no process will ever take, and said nothing.
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    assert _cli("trigger", "ticker", "--store", url.replace("runs", "x")).returncode == 4
    first = anyio.run(_enqueue_and_finish, url, "ticker")
    done = _cli("trigger", "tikcer", "--store", url)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert len(run_id) == 32
    assert "no run of pipeline 'tikcer'" in done.stderr
    again = _cli("trigger", "ticker", "--store", url)  # a pipeline the store knows: no note
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert first != run_id


async def _enqueue_and_finish(url: str, pipeline: str) -> str:
    """A store file with one finished run of ``pipeline``, as a serve process leaves it."""
    store = open_store(url)
    try:
        run_id = await store.enqueue(pipeline)
        claimed = await store.claim_next({pipeline: None}, run_id=run_id)
        assert claimed is not None
        await store.request_cancel(run_id)
        return run_id
    finally:
        await store.aclose()


def test_trigger_of_an_undecodable_pipeline_name_blames_the_name(tmp_path: Path) -> None:
    # A Latin-1 terminal's byte: SQLite said "cannot queue these params", PostgreSQL
    # "StoreUnavailable: DataError" (exit 4), about a name, not the params or the store.
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    done = _cli("trigger", b"caf\xe9", "--store", url)
    assert done.returncode == 2, done.stderr
    assert "PIPELINE" in done.stderr
    assert "params" not in done.stderr


@pytest.mark.asyncio
async def test_serve_on_a_database_that_does_not_exist_exits_instead_of_serving(
    procs: Procs,
) -> None:
    # It printed "serving ..." and then logged two errors a second, forever.
    url = with_database(PG_SERVER, f"dfa_missing_{secrets.token_hex(4)}")
    proc = procs.start("serve", f"{PIPELINES}:ticker", "--port", "0", "--store", url)
    what = await eventually(lambda: _exited_or_serving(procs, proc), 60, "exit or serving")
    assert what == "exited", procs.output(proc)
    assert proc.returncode == 4
    assert "does not exist" in procs.output(proc)


# ---------------------------------------------------------------- SIGKILL mid-run


async def _status(store: RunStore, run_id: str, *wanted: RunStatus) -> RunInfo | None:
    run = await store.get_run(run_id)
    return run if run.status in wanted else None


async def _resumes(store: RunStore, run_id: str) -> list[RunInfo] | None:
    runs = [r for r in await all_runs(store, "held") if r.resumed_from == run_id]
    return runs or None


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_sigkill_of_the_owner_on_sqlite_is_seen_and_resumed_once(
    procs: Procs, tmp_path: Path
) -> None:
    # Two serve processes on one SQLite file; the owner of a run is SIGKILLed. The other
    # (and any reader) sees the run INTERRUPTED at once (same host: its process is
    # gone), and, the pipeline being resume_interrupted, exactly one resume follows.
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}?heartbeat=0.5&dead_after=3"
    started, release = tmp_path / "started", tmp_path / "release"
    serving = [
        procs.start("serve", f"{PIPELINES}:held", "--port", "0", "--store", url) for _ in range(2)
    ]
    for proc in serving:
        await eventually(lambda p=proc: _said(procs, p, "serving "), 60, "serving")
    store = open_store(url)
    try:
        run_id = await store.enqueue("held", {"started": str(started), "release": str(release)})
        await eventually(lambda: _exists(started), 30, "the run to start")
        owner_pid = int((await store.get_run(run_id)).owner.split(":")[1])
        (victim,) = [p for p in serving if p.pid == owner_pid]
        started.unlink()
        victim.kill()
        victim.wait(30)
        await eventually(lambda: _status(store, run_id, RunStatus.INTERRUPTED), 10, "INTERRUPTED")
        (resume,) = await eventually(lambda: _resumes(store, run_id), 30, "a resume")
        await eventually(lambda: _exists(started), 30, "the resume to start")
        release.touch()
        await eventually(lambda: _status(store, resume.run_id, RunStatus.SUCCESS), 30, "SUCCESS")
        assert (await store.get_run(run_id)).resumed_by == resume.run_id
        assert [r.run_id for r in await all_runs(store, "held")] == [resume.run_id, run_id]
        survivor = next(p for p in serving if p is not victim)
        assert survivor.poll() is None, procs.output(survivor)
    finally:
        await store.aclose()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_cancel_of_a_queued_an_ended_and_an_unknown_run(procs: Procs, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    store = open_store(url)
    try:
        first = tmp_path / "first"
        queued = await store.enqueue("held", {"started": str(first)})
        done = await anyio.to_thread.run_sync(lambda: _cli("cancel", queued[:8], "--store", url))
        assert done.returncode == 0, done.stderr
        assert f"run {queued} was cancelled before it started" in done.stdout
        assert (await store.get_run(queued)).status is RunStatus.CANCELLED
        # A serve process started afterwards never runs it: it takes the next run
        # (queued later, so behind the cancelled one in the queue) and only that.
        second = tmp_path / "second"
        later = await store.enqueue("held", {"started": str(second)})
        proc = procs.start("serve", f"{PIPELINES}:held", "--port", "0", "--store", url)
        await eventually(lambda: _status(store, later, RunStatus.SUCCESS), 60, "the later run")
        assert second.exists()
        assert not first.exists()
        assert (await store.get_run(queued)).status is RunStatus.CANCELLED
        ended = await anyio.to_thread.run_sync(lambda: _cli("cancel", later, "--store", url))
        assert ended.returncode == 1, ended.stderr
        assert f"run {later} already ended SUCCESS: nothing to cancel" in ended.stdout
        unknown = await anyio.to_thread.run_sync(lambda: _cli("cancel", "f" * 32, "--store", url))
        assert unknown.returncode == 2
        assert "no run" in unknown.stderr
        assert proc.poll() is None, procs.output(proc)
    finally:
        await store.aclose()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_run_asked_to_cancel_whose_owner_died_is_not_resumed(
    procs: Procs, tmp_path: Path
) -> None:
    # resume_interrupted brought back a run its user had cancelled: the owner died
    # (frozen, then killed) before acting on the request, the run was INTERRUPTED,
    # and another serve process resumed it, undoing the cancel.
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    store = open_store(url)
    victim = procs.start("serve", f"{PIPELINES}:held", "--port", "0", "--store", url)
    survivor = None
    try:
        await eventually(lambda: _said(procs, victim, "serving "), 60, "serving")
        marks = [tmp_path / "kept", tmp_path / "cancelled"]
        # `kept` is queued first, so the resume scan (newest first) meets `cancelled`
        # before it: once `kept` is resumed, `cancelled` has been looked at.
        never = str(tmp_path / "never")
        kept, cancelled = [
            await store.enqueue("held", {"started": str(m), "release": never}) for m in marks
        ]
        for mark in marks:
            await eventually(lambda m=mark: _exists(m), 30, f"{mark.name} to start")
        survivor = procs.start("serve", f"{PIPELINES}:held", "--port", "0", "--store", url)
        await eventually(lambda: _said(procs, survivor, "serving "), 60, "serving")
        victim.send_signal(signal.SIGSTOP)  # alive but deaf: the request stays unanswered
        asked = await anyio.to_thread.run_sync(lambda: _cli("cancel", cancelled, "--store", url))
        assert asked.returncode == 0, asked.stderr
        assert "cancel requested" in asked.stdout
        victim.kill()
        victim.wait(30)
        (resume,) = await eventually(lambda: _resumes(store, kept), 60, "the other run's resume")
        assert await _resumes(store, cancelled) is None
        run = await store.get_run(cancelled)
        assert run.status is RunStatus.INTERRUPTED
        assert run.resumed_by is None
        assert resume.resumed_from == kept
    finally:
        # The survivor's resume holds forever: a SIGTERM would wait out its drain.
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.kill()
        await store.aclose()


@pytest.mark.asyncio
async def test_two_modules_defining_one_pipeline_name_are_named_and_the_rest_served(
    procs: Procs, tmp_path: Path
) -> None:
    # serve refused everything with "two different pipelines are named 'dup'", naming
    # no module; one bad module must not stop the rest, and the message must say where.
    folder = tmp_path / "pipelines"
    folder.mkdir()
    tag = secrets.token_hex(3)
    (folder / f"a_{tag}.py").write_text(SHARED.format(name="dup"))
    (folder / f"b_{tag}.py").write_text(SHARED.format(name="dup"))
    (folder / f"c_{tag}.py").write_text(SHARED.format(name="fine"))
    (folder / f"d_{tag}.py").write_text(SCHEDULED.format(module=f"a_{tag}"))
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    proc = procs.start("serve", str(folder), "--port", "0", "--store", url)
    what = await eventually(lambda: _exited_or_serving(procs, proc), 60, "exit or serving")
    out = procs.output(proc)
    assert what == "serving", out
    assert "serving fine at" in out
    assert "schedule: " not in out  # the schedule of a 'dup' is not served either
    (line,) = [x for x in out.splitlines() if "'dup'" in x]
    assert f"a_{tag}.py" in line
    assert f"b_{tag}.py" in line


@pytest.mark.parametrize("query", ["dead_afer=10", "heartbeat="])
def test_a_sqlite_store_url_with_a_misspelt_or_empty_setting_is_refused(
    tmp_path: Path, query: str
) -> None:
    # `?dead_afer=10` was ignored in silence (the run judged dead after 30 s, not 10).
    path = tmp_path / "runs.sqlite"
    done = _cli("runs", "--store", f"sqlite:///{path}?{query}")
    assert done.returncode == 2, done.stdout
    assert query.split("=")[0] in done.stderr
    assert not path.exists()


@pytest.mark.asyncio
async def test_the_api_answers_a_trigger_with_nan_params_400_not_503(tmp_path: Path) -> None:
    # {"params": {"x": NaN}} was answered 503 ("service unavailable"), which clients
    # retry; it is the caller's error, and nothing was queued.
    from aiohttp.test_utils import TestClient, TestServer

    from dremioframe_async import Pipeline, task
    from dremioframe_async.ui import ui_app

    @task(name="t")
    async def t() -> int:
        return 1

    store = SQLiteStore(tmp_path / "runs.sqlite")
    client = TestClient(TestServer(ui_app(store, [Pipeline("p").add_task(t())])))
    await client.start_server()
    try:
        token = (await (await client.get("/api/csrf")).json())["csrf_token"]
        response = await client.post(
            "/api/pipelines/p/runs",
            data='{"params": {"x": NaN}}',
            headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
        )
        assert response.status == 400, await response.text()
        assert "NaN is not a JSON value" in (await response.json())["error"]
        assert await store.list_runs() == []
    finally:
        await client.close()
        await store.aclose()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_an_owner_frozen_past_dead_after_does_not_turn_its_run_back_to_success(
    procs: Procs, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}?heartbeat=0.5&dead_after=2"
    started, release, cleaned = (tmp_path / n for n in ("started", "release", "cleaned"))
    proc = procs.start("serve", f"{PIPELINES}:held", "--port", "0", "--store", url)
    store = open_store(url)
    try:
        await eventually(lambda: _said(procs, proc, "serving "), 60, "serving")
        params = {"started": str(started), "release": str(release), "cleanup_done": str(cleaned)}
        run_id = await store.enqueue("held", params)
        await eventually(lambda: _exists(started), 30, "the run to start")
        proc.send_signal(signal.SIGSTOP)
        try:
            await eventually(lambda: _status(store, run_id, RunStatus.INTERRUPTED), 30, "dead")
            release.touch()
        finally:
            proc.send_signal(signal.SIGCONT)
        await eventually(lambda: _exists(cleaned), 30, "the woken owner to finish the run")
        assert procs.terminate(proc) == 0  # drains: every run of it has ended and been recorded
        assert (await store.get_run(run_id)).status is RunStatus.INTERRUPTED
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_a_resume_does_not_exceed_max_active_runs(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from dremioframe_async import Pipeline, task
    from dremioframe_async.ui import ui_app

    release, fail = anyio.Event(), [True]

    @task(name="hold")
    async def hold() -> None:
        if fail[0]:
            raise RuntimeError("first run fails")
        await release.wait()

    pipeline = Pipeline("limited_one", max_active_runs=1).add_task(hold())
    store = SQLiteStore(tmp_path / "runs.sqlite")
    client = TestClient(TestServer(ui_app(store, [pipeline])))
    await client.start_server()
    try:
        token = (await (await client.get("/api/csrf")).json())["csrf_token"]
        headers = {"X-CSRF-Token": token}

        async def post(path: str) -> Any:
            response = await client.post(path, json={"params": {}}, headers=headers)
            assert response.status == 202, await response.text()
            return await response.json()

        failed = (await post("/api/pipelines/limited_one/runs"))["run_id"]
        await eventually(lambda: _status(store, failed, RunStatus.FAILED), 10, "FAILED")
        fail[0] = False
        running = (await post("/api/pipelines/limited_one/runs"))["run_id"]
        await eventually(lambda: _status(store, running, RunStatus.RUNNING), 10, "RUNNING")
        resumed = (await post(f"/api/runs/{failed}/resume"))["run_id"]
        try:
            now = [r.run_id for r in await all_runs(store) if r.status is RunStatus.RUNNING]
            assert now == [running], f"{resumed} runs beside {running}: max_active_runs=1"
        finally:
            release.set()
            await eventually(lambda: _status(store, resumed, RunStatus.SUCCESS), 10, "resumed")
    finally:
        await client.close()
        await store.aclose()


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_four_serve_processes_on_one_sqlite_file_run_300_triggers_once_each(
    procs: Procs, tmp_path: Path
) -> None:
    # SQLite across processes: one write lock for claims, heartbeats and every run's
    # recording. Each run must run exactly once and end SUCCESS, max_active_runs held.
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    servers = [
        procs.start("serve", f"{PIPELINES}:limited", "--port", "0", "--store", url)
        for _ in range(4)
    ]
    for proc in servers:
        await eventually(lambda p=proc: _said(procs, p, "serving "), 60, "serving")
    store = open_store(url)
    try:
        queued = [await store.enqueue("limited", {"sleep": 0}) for _ in range(300)]

        async def ended() -> list[RunInfo] | None:
            runs = await all_runs(store, "limited")
            done = [r for r in runs if r.status not in (RunStatus.QUEUED, RunStatus.RUNNING)]
            return runs if len(done) == len(queued) else None

        runs = await eventually(ended, 150, "300 runs to end")
        assert {r.status for r in runs} == {RunStatus.SUCCESS}
        steps = (tmp_path / "service.log").read_text().split("\n")
        ran = Counter(line.split()[1] for line in steps if line.startswith("step "))
        assert set(ran) == set(queued)
        assert set(ran.values()) == {1}
        assert overlap(runs) <= 2
        for proc in servers:
            assert proc.poll() is None, procs.output(proc)
            assert "locked" not in procs.output(proc)
    finally:
        await store.aclose()


class _CountingStore(PostgresStore):
    """A real PostgreSQL store counting its attendance's database ticks."""

    ticks = 0

    async def _beat(self, run_ids: Any) -> None:
        self.ticks += 1
        await super()._beat(run_ids)

    async def _poll(self, run_ids: Any) -> dict[str, int]:
        self.ticks += 1
        return await super()._poll(run_ids)


@pytest.mark.asyncio
async def test_triggers_do_not_make_every_process_poll_for_cancels(pg_url: str) -> None:
    # Each trigger's NOTIFY woke the attendance of every listening process, so each
    # serve process ran a heartbeat/cancel query per trigger; only a cancel request
    # for a run it attends should.
    schema = f"dfa_probe_{secrets.token_hex(5)}"
    owner = _CountingStore(pg_url, schema=schema, heartbeat=30, dead_after=60, cancel_poll=30)
    other = PostgresStore(pg_url, schema=schema, max_size=2)
    cancels: list[int] = []
    asked = anyio.Event()
    try:
        run_id = await owner.enqueue("p")
        assert await owner.claim_next({"p": None}) is not None

        def on_cancel(n: int) -> None:
            cancels.append(n)
            asked.set()

        async with owner.attend(run_id, on_cancel):
            await owner.wait_queued(0)  # listening from now on
            await anyio.wait_all_tasks_blocked()
            before = owner.ticks
            for _ in range(10):
                await other.enqueue("p")
            with anyio.fail_after(10):
                await owner.wait_queued(10)  # the triggers' NOTIFYs have arrived
            await anyio.wait_all_tasks_blocked()
            assert owner.ticks == before, "a trigger woke the cancel poll"
            await other.request_cancel(run_id)
            with anyio.fail_after(10):  # long before the 30 s poll: the NOTIFY woke it
                await asked.wait()
        assert cancels == [1]
    finally:
        await owner.aclose()
        await other.aclose()
        await drop_schema(pg_url, schema)


async def _running(store: RunStore, pipeline: str) -> RunInfo | None:
    runs = [r for r in await all_runs(store, pipeline) if r.status is RunStatus.RUNNING]
    return runs[0] if runs else None


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_second_remote_cancel_stops_only_that_runs_cleanup_in_schedule(
    procs: Procs, tmp_path: Path
) -> None:
    # `schedule` hands one stop_cleanup event to all its runs, and a second cancel of
    # one run from another process set it: every later run of that process then had
    # its cleanup skipped when stopped, Ctrl-C's first, graceful stop included.
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    names = ("started", "cleanup_started", "cleanup_done", "release")
    marks = {k: tmp_path / k for k in names}
    params = [f"--param={k}={v}" for k, v in marks.items()] + ["--param=cleanup_sleep=3"]
    proc = procs.start("schedule", f"{PIPELINES}:held", "--interval", "1", *params, "--store", url)
    store = open_store(url)
    try:
        await eventually(lambda: _exists(marks["started"]), 60, "the first run")
        first = await eventually(lambda: _running(store, "held"), 10, "the first run RUNNING")
        assert (await store.request_cancel(first.run_id)).requests == 1
        await eventually(lambda: _exists(marks["cleanup_started"]), 10, "its cleanup")
        assert (await store.request_cancel(first.run_id)).requests == 2
        await eventually(lambda: _status(store, first.run_id, RunStatus.CANCELLED), 10, "ended")
        assert not marks["cleanup_done"].exists()  # the second cancel stopped that cleanup
        marks["started"].unlink()
        await eventually(lambda: _exists(marks["started"]), 30, "the next fire's run")
        proc.send_signal(signal.SIGTERM)  # one, graceful: this run's cleanup must run
        assert await anyio.to_thread.run_sync(lambda: _wait(proc, 30)) is not None
        assert marks["cleanup_done"].exists(), procs.output(proc)[-2000:]
    finally:
        await store.aclose()


@pytest.mark.parametrize("interval", ["5", True, [1]])
def test_a_schedule_interval_that_is_not_a_number_is_a_schedule_error(interval: Any) -> None:
    # "5" raised a bare TypeError (outside the library's errors), True ran every second.
    from dremioframe_async import Pipeline, task
    from dremioframe_async.schedule import Schedule, ScheduleError

    @task(name="t")
    async def t() -> int:
        return 1

    pipeline = Pipeline("p").add_task(t())
    with pytest.raises(ScheduleError, match="interval"):
        Schedule(pipeline, interval=interval)


class _HeldClaims(SQLiteStore):
    """A real SQLite store whose first successful claim is held before it returns.

    The run is RUNNING in the file while its claimer has not started it yet: the
    moment a stop can come.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.claimed, self.gate = anyio.Event(), anyio.Event()

    async def claim_next(self, limits: Any, *, run_id: str | None = None) -> Any:
        got = await super().claim_next(limits, run_id=run_id)
        if got is not None and not self.gate.is_set():
            self.claimed.set()
            await self.gate.wait()
        return got


def _forever() -> Any:
    from dremioframe_async import Pipeline, task

    @task(name="forever")
    async def forever() -> None:
        await anyio.sleep_forever()

    return Pipeline("forever").add_task(forever())


@pytest.mark.asyncio  # the UI's launcher runs in aiohttp: asyncio only
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["drain", "stop"])
async def test_a_drain_or_stop_during_a_claim_leaves_no_run_running_unattended(
    how: str, tmp_path: Path
) -> None:
    # drain: it saw no run and returned while the launcher was claiming one; the claim
    # then started a run no drain would cancel (or, cut off by the stop, left it
    # RUNNING in the store with no one running it until dead_after).
    # stop (no drain): it cleared the launcher's task group while the claim was in
    # flight; the claim then failed on an assert and left its run RUNNING.
    store = _HeldClaims(tmp_path / "runs.sqlite")
    try:
        async with _held_claim_app(store, _forever()) as (client, launcher):
            run_id = await store.enqueue("forever")
            await store.claimed.wait()  # RUNNING in the store, not started here yet
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.close if how == "stop" else partial(launcher.drain, 0.0))
                await anyio.wait_all_tasks_blocked()  # it is waiting, or has returned
                store.gate.set()
            await anyio.wait_all_tasks_blocked()
            assert (await store.get_run(run_id)).status is RunStatus.CANCELLED
            assert launcher.running == []
    finally:
        await store.aclose()


class _SlowClaims(_HeldClaims):
    """A claim held as a SQLite claim in the store's thread is: a cancellation waits."""

    async def claim_next(self, limits: Any, *, run_id: str | None = None) -> Any:
        with anyio.CancelScope(shield=True):
            return await super().claim_next(limits, run_id=run_id)


@asynccontextmanager
async def _held_claim_app(store: _HeldClaims, pipeline: Any) -> AsyncIterator[Any]:
    """A UI application on ``store`` serving ``pipeline``: (its test client, its launcher)."""
    from aiohttp.test_utils import TestClient, TestServer

    from dremioframe_async.ui import ui_app
    from dremioframe_async.ui._app import run_launcher

    app = ui_app(store, [pipeline])
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, run_launcher(app)
    finally:
        await client.close()


@pytest.mark.asyncio  # the UI's launcher runs in aiohttp: asyncio only
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["stop", "drain"])
async def test_a_resume_stopped_before_it_recorded_anything_ends_cancelled(
    how: str, tmp_path: Path
) -> None:
    # A resume reads its prior run before it records anything: a stop or a drain that
    # landed there left it RUNNING with no one running it (holding a slot of its
    # pipeline, and its failed run refused another resume) until declared dead.
    from dremioframe_async import Pipeline, task

    failing = [True]

    @task(name="flaky")
    async def flaky() -> None:
        if failing[0]:
            raise RuntimeError("boom")
        await anyio.sleep_forever()

    pipeline = Pipeline("flaky").add_task(flaky())
    store = _HeldClaims(tmp_path / "runs.sqlite")
    try:
        failed = (await pipeline.run(store=store)).run_id
        failing[0] = False
        async with _held_claim_app(store, pipeline) as (client, launcher):
            resume = await store.enqueue_resume(failed)
            await store.claimed.wait()  # RUNNING in the store, not started here yet
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.close if how == "stop" else partial(launcher.drain, 0.0))
                await anyio.wait_all_tasks_blocked()  # the stop (or drain) is under way
                store.gate.set()
            await anyio.wait_all_tasks_blocked()
            assert (await store.get_run(resume)).status is RunStatus.CANCELLED
            assert launcher.running == []
    finally:
        await store.aclose()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["stop", "drain"])
async def test_a_claim_slower_than_the_stop_waits_for_ends_its_run(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim that returned after the stop stopped waiting for it (CLAIM_STOP_WAIT, 15 s:
    # a SQLite file locked by another process takes up to 30 s) raised an AssertionError
    # out of the application's stop, or, after a drain, started a run no one cancelled.
    # Either way the run stayed RUNNING.
    from dremioframe_async.ui import _launcher

    monkeypatch.setattr(_launcher, "CLAIM_STOP_WAIT", 0.0)  # the store is that slow
    store = _SlowClaims(tmp_path / "runs.sqlite")
    try:
        async with _held_claim_app(store, _forever()) as (client, launcher):
            run_id = await store.enqueue("forever")
            await store.claimed.wait()
            if how == "drain":
                await launcher.drain(0.0)  # returns without waiting for the claim
                store.gate.set()  # the claim returns: its run must not run on
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.close)  # gives up on the claim, then waits for it
                    await anyio.wait_all_tasks_blocked()
                    store.gate.set()  # the claim returns; the stop must not raise
            await anyio.wait_all_tasks_blocked()
            assert (await store.get_run(run_id)).status is RunStatus.CANCELLED
            assert launcher.running == []
    finally:
        await store.aclose()


class _HeldReads(SQLiteStore):
    """A real SQLite store whose ``get_run`` waits for ``gate`` once ``hold`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.hold = False
        self.reading, self.gate = anyio.Event(), anyio.Event()

    async def get_run(self, run_id: str) -> Any:
        if self.hold and not self.gate.is_set():
            self.reading.set()
            await self.gate.wait()
        return await super().get_run(run_id)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_stop_while_a_run_that_never_started_is_recorded_failed_waits_for_it(
    tmp_path: Path,
) -> None:
    # A claimed run that fails before it records anything (a task naming an executor
    # the run does not have) is recorded FAILED by the launcher; a stop that landed
    # while that read the store cut it off, and the run stayed RUNNING.
    from dremioframe_async import Pipeline, task

    @task(name="remote", executor="dask")
    async def remote() -> int:
        return 1

    store = _HeldReads(tmp_path / "runs.sqlite")
    try:
        async with _held_claim_app(store, Pipeline("p").add_task(remote())) as (client, _):
            store.hold = True
            run_id = await store.enqueue("p")  # as a trigger from another process
            await store.reading.wait()  # the launcher reads the run, to record it FAILED
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.close)
                await anyio.wait_all_tasks_blocked()  # the stop waits for that
                store.gate.set()
        assert (await store.get_run(run_id)).status is RunStatus.FAILED
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_serve_on_a_port_in_use_leaves_the_queue_alone(procs: Procs, tmp_path: Path) -> None:
    # The launcher started claiming when the application started, before the port was
    # bound: a serve that could not bind took a queued run, then died, leaving it
    # INTERRUPTED (and its error read "ExceptionGroup: unhandled errors in a TaskGroup").
    import socket

    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    store = open_store(url)
    taken = socket.socket()
    try:
        queued = [await store.enqueue("held", {"release": str(tmp_path / "never")})]
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = procs.start("serve", f"{PIPELINES}:held", "--port", port, "--store", url)
        code = await anyio.to_thread.run_sync(lambda: _wait(proc, 60))
        assert code == 1, procs.output(proc)
        assert "address already in use" in procs.output(proc)
        assert [(await store.get_run(r)).status for r in queued] == [RunStatus.QUEUED]
    finally:
        taken.close()
        await store.aclose()
