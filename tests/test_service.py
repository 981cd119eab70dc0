"""Many processes, one store: real ``serve``, ``schedule``, ``run`` and ``cancel`` processes.

Each test starts real processes on one store (a fresh PostgreSQL database, or
a SQLite file), reads the store from the test process, and ends every process
in a ``finally`` (the ``procs`` fixture).
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
from _service_procs import (
    FINAL,
    PIPELINES,
    Procs,
    all_runs,
    eventually,
    overlap,
    params_arg,
    terminate_backends,
)

from dremioframe_async.store import RunInfo, RunStatus, RunStore, open_store

pytestmark = pytest.mark.asyncio

FIRES = 60


async def _fired(store: RunStore, fires: int) -> list[RunInfo] | None:
    runs = await all_runs(store, "ticker")
    done = [r for r in runs if r.status in FINAL]
    return runs if len({r.scheduled_for for r in done}) > fires else None


def _assert_each_fire_once(runs: list[RunInfo], what: str) -> None:
    counts = Counter(r.scheduled_for for r in runs)
    twice = {t: n for t, n in counts.items() if n != 1}
    assert not twice, f"{what}: fire times run more than once: {twice}"
    times = sorted(t for t in counts if t is not None)
    assert None not in counts, f"{what}: a scheduled run without its fire time"
    gaps = [b for a, b in itertools.pairwise(times) if b - a != 1.0]
    assert not gaps, f"{what}: fire times without a run before {gaps}"
    succeeded = [r for r in runs if r.status is RunStatus.SUCCESS]
    assert len(succeeded) >= FIRES, f"{what}: only {len(succeeded)} runs succeeded"


@pytest.mark.timeout(240)
async def test_every_fire_runs_exactly_once_across_processes(
    procs: Procs, fresh_pg, tmp_path: Path
) -> None:
    # Three serve processes on PostgreSQL, two on SQLite, three `schedule` processes on
    # PostgreSQL: all at once, each on its own store, for more than 60 fire times.
    serve_pg, schedule_pg = await fresh_pg(), await fresh_pg()
    serve_sqlite = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    target = f"{PIPELINES}:every_second"
    setups = {
        "3 serve on PostgreSQL": (serve_pg, 3, ["serve", target, "--port", "0"]),
        "2 serve on SQLite": (serve_sqlite, 2, ["serve", target, "--port", "0"]),
        "3 schedule on PostgreSQL": (
            schedule_pg,
            3,
            ["schedule", f"{PIPELINES}:ticker", "--interval", "1"],
        ),
    }
    started = [
        (args[0], procs.start(*args, "--store", url))
        for url, n, args in setups.values()
        for _ in range(n)
    ]
    stores = {what: open_store(url) for what, (url, _, _) in setups.items()}
    try:
        for what, store in stores.items():
            await eventually(lambda s=store: _fired(s, FIRES), 150, f"{FIRES} fires ({what})")
        for command, proc in started:  # a service stops with 0; a schedule is interrupted
            expected = 0 if command == "serve" else 130
            assert procs.terminate(proc) == expected, procs.output(proc)
        for what, store in stores.items():
            _assert_each_fire_once(await all_runs(store, "ticker"), what)
            assert not [r for r in await all_runs(store) if r.status is RunStatus.RUNNING]
    finally:
        for store in stores.values():
            await store.aclose()


@pytest.mark.timeout(180)
async def test_triggers_run_once_each_within_max_active_runs(
    procs: Procs, fresh_pg, tmp_path: Path
) -> None:
    url = await fresh_pg()
    servers = [procs.start("serve", f"{PIPELINES}:limited", "--port", "0", "--store", url)]
    servers.append(procs.start("serve", f"{PIPELINES}:limited", "--port", "0", "--store", url))
    store = open_store(url)
    try:
        for server in servers:  # both take part only once both listen
            await eventually(lambda s=server: _said(procs, s, "serving "), 60, "serving")
        queued = [await store.enqueue("limited", {"sleep": 0.05}) for _ in range(200)]

        async def finished() -> list[RunInfo] | None:
            runs = await all_runs(store, "limited")
            return runs if len([r for r in runs if r.status in FINAL]) == 200 else None

        runs = await eventually(finished, 150, "200 queued runs to end")
        assert {r.run_id for r in runs} == set(queued)
        assert {r.status for r in runs} == {RunStatus.SUCCESS}
        steps = (tmp_path / "service.log").read_text().split("\n")
        ran = Counter(line.split()[1] for line in steps if line.startswith("step "))
        assert set(ran) == set(queued)
        assert set(ran.values()) == {1}  # each ran exactly once
        pids = {line.split()[2] for line in steps if line.startswith("step ")}
        assert pids == {str(p.pid) for p in servers}  # both processes took runs
        assert overlap(runs) <= 2, "max_active_runs=2 was exceeded"
    finally:
        await store.aclose()


@pytest.mark.timeout(120)
async def test_a_killed_owner_is_interrupted_by_its_heartbeat_and_resumed_once(
    procs: Procs, fresh_pg, tmp_path: Path
) -> None:
    heartbeat, dead_after = 0.5, 3.0
    url = f"{await fresh_pg()}?heartbeat={heartbeat}&dead_after={dead_after}"
    target = f"{PIPELINES}:held"
    # The owner runs as another host: the store can only judge it by its heartbeat.
    owner = procs.start("serve", target, "--port", "0", "--store", url, host="elsewhere")
    store = open_store(url)
    release = tmp_path / "release"
    try:
        run_id = await store.enqueue("held", {"release": str(release)})

        async def running() -> RunInfo | None:
            run = await store.get_run(run_id)
            return run if run.status is RunStatus.RUNNING and run.counts.get("RUNNING") else None

        assert (await eventually(running, 30, "the run to start")).owner.startswith("elsewhere:")
        others = [procs.start("serve", target, "--port", "0", "--store", url) for _ in range(2)]
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        killed = time.monotonic()

        async def interrupted() -> RunInfo | None:
            run = await store.get_run(run_id)
            return run if run.status is RunStatus.INTERRUPTED else None

        await eventually(interrupted, 30, "the killed owner's run to be INTERRUPTED")
        took = time.monotonic() - killed
        # dead_after plus a sweep's beat, with room for a loaded machine's scheduling.
        assert took <= dead_after + 3.0, f"INTERRUPTED after {took:.2f} s"
        release.touch()

        async def resumed() -> list[RunInfo] | None:
            runs = [r for r in await all_runs(store, "held") if r.resumed_from == run_id]
            return runs if runs and all(r.status in FINAL for r in runs) else None

        runs = await eventually(resumed, 60, "the interrupted run to be resumed")
        assert [r.status for r in runs] == [RunStatus.SUCCESS]
        assert (await store.get_run(run_id)).resumed_by == runs[0].run_id
        # Both serving processes looked again meanwhile: still one resume.
        await anyio.sleep(5)  # two scans of each process (every 2 s), not an ordering
        assert len([r for r in await all_runs(store, "held") if r.resumed_from == run_id]) == 1
        for proc in others:
            assert procs.terminate(proc) == 0, procs.output(proc)
    finally:
        await store.aclose()


@pytest.mark.timeout(120)
async def test_terminated_connections_never_make_a_live_run_look_dead(
    procs: Procs, fresh_pg
) -> None:
    url = f"{await fresh_pg()}?heartbeat=0.5&dead_after=3"
    server = procs.start("serve", f"{PIPELINES}:chain", "--port", "0", "--store", url)
    store = open_store(url)
    seen: list[RunStatus] = []
    try:
        run_id = await store.enqueue("chain", {"each": 0.4})

        async def status() -> RunStatus | None:
            run = await store.get_run(run_id)
            seen.append(run.status)
            return run.status if run.status in FINAL else None

        final: list[RunStatus] = []

        async def watch() -> None:
            final.append(await eventually(status, 60, "the run to end"))

        await eventually(lambda: _running(store, run_id), 30, "the run to start")
        # Drop every connection of its database, again and again, while it runs.
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            for _ in range(6):
                assert await terminate_backends(url) >= 1
                await anyio.sleep(0.6)  # spacing between the outages, not an ordering
        assert final == [RunStatus.SUCCESS], seen
        assert RunStatus.INTERRUPTED not in seen
        tasks = await store.get_tasks(run_id)
        assert [t.state.value for t in tasks] == ["SUCCESS"] * 12
        assert procs.terminate(server) == 0, procs.output(server)
    finally:
        await store.aclose()


async def _running(store: RunStore, run_id: str) -> bool | None:
    run = await store.get_run(run_id)
    # Ended before it was seen running (INTERRUPTED: its heartbeat came late): say so at once.
    assert run.status not in FINAL, f"run {run_id} ended {run.status} before it was seen running"
    return True if run.status is RunStatus.RUNNING and run.counts.get("SUCCESS") else None


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
@pytest.mark.timeout(120)
async def test_cancel_from_another_process(
    procs: Procs, fresh_pg, tmp_path: Path, backend: str
) -> None:
    url = await fresh_pg() if backend == "postgres" else f"sqlite:///{tmp_path / 'r.sqlite'}"
    server = procs.start("serve", f"{PIPELINES}:held", "--port", "0", "--store", url)
    store = open_store(url)
    marks = {k: tmp_path / k for k in ("started", "cleanup_started", "cleanup_done", "release")}
    try:
        # A run whose task waits forever: one cancel ends it, and its cleanup runs.
        run_id = await store.enqueue("held", {k: str(v) for k, v in marks.items()})
        await eventually(lambda: _exists(marks["started"]), 30, "the task to start")
        asked = time.monotonic()
        assert (await store.request_cancel(run_id)).requests == 1
        await eventually(lambda: _status_is(store, run_id, RunStatus.CANCELLED), 10, "CANCELLED")
        assert time.monotonic() - asked <= 5.0  # room for a loaded machine's polling
        assert marks["cleanup_done"].exists()
        # A run whose cleanup takes a minute: the first cancel (the CLI) lets the cleanup
        # start, the second stops it.
        for mark in marks.values():
            mark.unlink(missing_ok=True)
        params = {k: str(v) for k, v in marks.items()} | {"cleanup_sleep": "60"}
        run_id = await store.enqueue("held", params)
        await eventually(lambda: _exists(marks["started"]), 30, "the task to start")
        first = procs.start("cancel", run_id[:12], "--store", url)
        assert first.wait(30) == 0, procs.output(first)
        assert "cancels it gracefully" in procs.output(first)
        await eventually(lambda: _exists(marks["cleanup_started"]), 10, "the cleanup to start")
        asked = time.monotonic()
        assert (await store.request_cancel(run_id)).requests == 2
        await eventually(lambda: _status_is(store, run_id, RunStatus.CANCELLED), 10, "CANCELLED")
        assert time.monotonic() - asked <= 5.0  # room for a loaded machine's polling
        assert not marks["cleanup_done"].exists()
        tasks = {t.key: t for t in await store.get_tasks(run_id)}
        assert "second cancellation" in tasks["cleanup"].reason
        ended = procs.start("cancel", run_id, "--store", url)
        assert ended.wait(30) == 1
        assert "already ended CANCELLED" in procs.output(ended)
        assert procs.terminate(server) == 0, procs.output(server)
    finally:
        await store.aclose()


async def _exists(path: Path) -> bool | None:
    return True if path.exists() else None


async def _status_is(store: RunStore, run_id: str, status: RunStatus) -> bool | None:
    return True if (await store.get_run(run_id)).status is status else None


@pytest.mark.timeout(120)
async def test_of_two_simultaneous_resumes_exactly_one_is_accepted(
    procs: Procs, fresh_pg, tmp_path: Path
) -> None:
    url = await fresh_pg()
    fail, release = tmp_path / "fail", tmp_path / "release"
    fail.touch()
    target = f"{PIPELINES}:held"
    first = procs.start("run", target, "--store", url, *params_arg(fail_if=fail, release=release))
    assert first.wait(60) == 1, procs.output(first)
    store = open_store(url)
    try:
        (failed,) = await all_runs(store, "held")
        fail.unlink()
        resumes = [procs.start("run", target, "--store", url, "--resume", failed.run_id)]
        resumes.append(procs.start("run", target, "--store", url, "--resume", failed.run_id))
        refused = await eventually(lambda: _exited(resumes), 60, "one resume to be refused")
        assert refused.returncode == 2, procs.output(refused)
        release.touch()
        (accepted,) = [p for p in resumes if p is not refused]
        assert accepted.wait(60) == 0, procs.output(accepted)
        runs = [r for r in await all_runs(store, "held") if r.resumed_from == failed.run_id]
        assert [r.status for r in runs] == [RunStatus.SUCCESS]
        assert f"run {runs[0].run_id} already resumes it" in procs.output(refused)
    finally:
        await store.aclose()


async def _exited(started: list[object]) -> object | None:
    done = [p for p in started if p.poll() is not None]  # type: ignore[attr-defined]
    return done[0] if done else None


@pytest.mark.timeout(120)
async def test_sigterm_drains_serve(procs: Procs, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    target = f"{PIPELINES}:held"
    store = open_store(url)
    marks = {k: tmp_path / k for k in ("started", "cleanup_done", "never")}
    try:
        # A run that finishes within the grace: it ends SUCCESS.
        server = procs.start("serve", target, "--port", "0", "--drain-grace", "30", "--store", url)
        release = tmp_path / "release"
        quick = await store.enqueue(
            "held", {"release": str(release), "started": str(marks["started"])}
        )
        await eventually(lambda: _exists(marks["started"]), 30, "the task to start")
        server.send_signal(signal.SIGTERM)
        await eventually(lambda: _said(procs, server, "interrupted"), 10, "the drain to begin")
        release.touch()
        assert server.wait(30) == 0, procs.output(server)
        assert (await store.get_run(quick)).status is RunStatus.SUCCESS
        # A run that outlives the grace: cancelled, its cleanup still runs.
        marks["started"].unlink()
        server = procs.start("serve", target, "--port", "0", "--drain-grace", "1", "--store", url)
        params = {k: str(v) for k, v in marks.items()} | {"release": str(marks["never"])}
        slow = await store.enqueue("held", params)
        await eventually(lambda: _exists(marks["started"]), 30, "the task to start")
        assert procs.terminate(server) == 0, procs.output(server)
        assert (await store.get_run(slow)).status is RunStatus.CANCELLED
        assert marks["cleanup_done"].exists()
        assert not [r for r in await all_runs(store) if r.status is RunStatus.RUNNING]
    finally:
        await store.aclose()


async def _said(started: Procs, proc: object, text: str) -> bool | None:
    return True if text in started.output(proc) else None  # type: ignore[arg-type]
