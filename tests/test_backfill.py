"""Backfills: intervals, max-active, resume after Ctrl-C, --rerun-failed, the run's interval."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _store_fixtures
import anyio
import pytest

from dremioframe_async import Pipeline, task
from dremioframe_async.backfill import BackfillError, backfill, intervals, parse_duration
from dremioframe_async.orchestration import RunStatus
from dremioframe_async.store import MemoryStore, RunInfo, RunStore, SQLiteStore

store_factory = _store_fixtures.store_factory
store = _store_fixtures.store

UTC = dt.UTC
NOV1 = dt.datetime(2026, 11, 1, tzinfo=UTC)


def test_november_by_day_is_thirty_intervals_ending_at_the_end() -> None:
    found = intervals("2026-11-01", "2026-12-01", every="1d")
    assert len(found) == 30
    assert found[0].start == NOV1
    assert found[-1].end == dt.datetime(2026, 12, 1, tzinfo=UTC)
    assert all(a.end == b.start for a, b in itertools.pairwise(found))
    assert found[0].params() == {
        "interval_start": "2026-11-01T00:00:00+00:00",
        "interval_end": "2026-11-02T00:00:00+00:00",
    }


def test_partial_last_interval_cron_and_time_zones() -> None:
    found = intervals("2026-11-01T00:00", "2026-11-01T10:00", every="4h")
    assert [i.end.hour for i in found] == [4, 8, 10]
    paris = dt.timezone(dt.timedelta(hours=1))
    found = intervals(
        dt.datetime(2026, 11, 2, tzinfo=paris), "2026-11-04T00:00+01:00", cron="0 0 * * *"
    )
    assert [i.start.isoformat() for i in found] == [
        "2026-11-02T00:00:00+01:00",
        "2026-11-03T00:00:00+01:00",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": "1d", "cron": "0 0 * * *"}, "exactly one"),
        ({}, "exactly one"),
        ({"every": "1x"}, "duration"),
        ({"every": "0h"}, "positive"),
        ({"cron": "not cron"}, "cron"),
    ],
)
def test_bad_intervals(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BackfillError, match=message):
        intervals("2026-11-01", "2026-12-01", **kwargs)
    with pytest.raises(BackfillError, match="empty"):
        intervals("2026-12-01", "2026-11-01", every="1d")


def test_durations() -> None:
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert parse_duration("2w") == dt.timedelta(days=14)


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` (no fixed sleep orders anything: it is re-checked until true)."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.002)


class Gate:
    """Runs block in their task until the test releases them, counting how many run at once."""

    def __init__(self) -> None:
        self.active = self.peak = 0
        self.release = anyio.Event()
        self.seen: list[str] = []
        self.fail: set[str] = set()

    def pipeline(self) -> Pipeline:
        @task
        async def work(context: Any = None) -> str:
            start = context.params["interval_start"]
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.seen.append(start)
            release = self.release
            try:
                await release.wait()
            finally:
                self.active -= 1
            if start[:10] in self.fail:
                raise RuntimeError(f"{start} fails")
            return start

        return Pipeline("daily").add_task(work())

    def open(self) -> None:
        self.release.set()
        self.release = anyio.Event()


@pytest.mark.anyio
async def test_max_active_bounds_the_runs_at_once() -> None:
    gate, s = Gate(), MemoryStore()
    p = gate.pipeline()
    result: list[Any] = []

    async def go() -> None:
        result.append(
            await backfill(
                p, start="2026-11-01", end="2026-12-01", every="1d", store=s, max_active=4
            )
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        # 30 runs, 4 at a time: each release lets the next four (the last time two) start.
        for started, active in [*((n, 4) for n in range(4, 29, 4)), (30, 2)]:
            await until(lambda n=started, a=active: len(gate.seen) == n and gate.active == a)
            gate.open()
    assert gate.peak == 4
    assert gate.seen == sorted(gate.seen)  # oldest first
    (done,) = result
    assert len(done.runs) == 30
    assert done.status is RunStatus.SUCCESS


@pytest.mark.anyio
async def test_cancelled_halfway_then_resumed_runs_only_what_is_missing() -> None:
    gate, s = Gate(), MemoryStore()
    p = gate.pipeline()
    run = functools.partial(
        backfill, p, start="2026-11-01", end="2026-12-01", every="1d", store=s, max_active=4
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        for started in (4, 8, 12):
            await until(lambda n=started: len(gate.seen) == n and gate.active == 4)
            if started < 12:
                gate.open()
        tg.cancel_scope.cancel()  # Ctrl-C: 8 done, 4 running, 18 not started
    runs = await s.list_runs(pipeline="daily", limit=None)
    assert sorted(r.status.value for r in runs) == ["CANCELLED"] * 4 + ["SUCCESS"] * 8
    gate.seen.clear()
    gate.release.set()  # from now on nothing waits
    resumed = await run()
    assert len(resumed.runs) == 22
    assert len(resumed.skipped) == 8
    assert sorted(gate.seen) == [
        i.start.isoformat() for i in intervals("2026-11-09", "2026-12-01", every="1d")
    ]
    again = await run()
    assert again.runs == ()
    assert len(again.skipped) == 30


@pytest.mark.anyio
async def test_rerun_failed_reruns_only_the_failed_intervals() -> None:
    gate, s = Gate(), MemoryStore()
    gate.release.set()
    gate.fail = {"2026-11-03", "2026-11-17"}
    p = gate.pipeline()
    run = functools.partial(
        backfill, p, start="2026-11-01", end="2026-12-01", every="1d", store=s, max_active=4
    )
    first = await run()
    assert [i.start.day for i in first.failed] == [3, 17]
    assert first.status is RunStatus.FAILED
    assert (await run()).runs == ()  # failed intervals are not retried unless asked
    gate.fail.clear()
    gate.seen.clear()
    second = await run(rerun="failed")
    assert [i.start.day for i, _ in second.runs] == [3, 17]
    assert second.status is RunStatus.SUCCESS
    everything = await run(rerun="all")
    assert len(everything.runs) == 30


@pytest.mark.asyncio
async def test_the_interval_and_backfill_are_recorded_on_the_run(store: RunStore) -> None:
    @task
    async def echo(context: Any = None) -> list[str]:
        return [context.params["interval_start"], context.params["interval_end"]]

    p = Pipeline("echo").add_task(echo())
    result = await backfill(p, start="2026-11-01", end="2026-11-03", every="1d", store=store)
    runs = sorted(await store.list_runs(pipeline="echo"), key=lambda r: r.started)
    assert [r.interval for r in runs] == [
        ("2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00"),
        ("2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00+00:00"),
    ]
    assert {r.backfill for r in runs} == {result.backfill_id}
    assert runs[0].params["interval_start"] == "2026-11-01T00:00:00+00:00"
    assert result.runs[0][1]["echo"] == list(runs[0].interval or ())


# -- the command line, in a real process ---------------------------------------------------------

HERE = Path(__file__).parent
PIPE = f"{HERE / '_backfill_pipeline.py'}:pipeline"
_SCRIPT = Path(sys.executable).with_name("dremioframe-async")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dremioframe_async"]
ARGS = ["--start", "2026-11-01", "--end", "2026-12-01", "--every", "1d", "--max-active", "4"]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def recorded(url: Path) -> list[RunInfo]:
    async with SQLiteStore(url) as s:
        return list(await s.list_runs(pipeline="daily", limit=None))


def max_overlap(runs: list[RunInfo]) -> int:
    edges = sorted(
        [(r.started, 1) for r in runs] + [(r.finished or time.time(), -1) for r in runs],
        key=lambda e: (e[0], e[1]),
    )
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.timeout(130)  # above cli()'s 120 s subprocess timeout
def test_cli_backfill_interrupted_then_resumed(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    db = tmp_path / "runs.sqlite"
    env = {**os.environ, "BACKFILL_DIR": str(work), "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{db}"}
    proc = subprocess.Popen(
        [*COMMAND, "backfill", PIPE, *ARGS], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        days = [f"2026-11-{d:02d}" for d in range(1, 31)]
        for name in days[:10]:
            (work / f"{name}.go").touch()
        deadline = time.monotonic() + 60
        # Days 1-10 finish; days 11-14 start and wait on their gates.
        while (
            len(list(work.glob("*.started"))) < 14
            or sum(r.status is RunStatus.SUCCESS for r in anyio.run(recorded, db)) < 10
        ):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the backfill did not get halfway"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "run the same command again to continue" in err
    first = anyio.run(recorded, db)
    assert sorted(r.status.value for r in first) == ["CANCELLED"] * 4 + ["SUCCESS"] * 10
    started_before = {p.stem for p in work.glob("*.started")}
    assert started_before == set(days[:14])  # max-active 4: nothing past day 14 started
    (work / "go-all").touch()
    resumed = cli(env, "backfill", PIPE, *ARGS)
    assert resumed.returncode == 0, resumed.stderr
    assert "20 interval(s) to run, 10 skipped" in resumed.stderr
    runs = anyio.run(recorded, db)
    succeeded = [r.interval for r in runs if r.status is RunStatus.SUCCESS]
    assert len(succeeded) == len(set(succeeded)) == 30  # each day once, none twice
    assert max_overlap(runs) <= 4
    listing = cli(env, "backfill", PIPE, *ARGS, "--list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count("SUCCESS") == 30


@pytest.mark.timeout(130)  # above cli()'s 120 s subprocess timeout
def test_cli_rerun_failed(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "go-all").touch()
    env = {
        **os.environ,
        "BACKFILL_DIR": str(work),
        "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{tmp_path / 'runs.sqlite'}",
        "BACKFILL_FAIL": "2026-11-05,2026-11-20",
    }
    first = cli(env, "backfill", PIPE, *ARGS)
    assert first.returncode == 1, first.stderr
    assert "2 failed" in first.stdout
    env["BACKFILL_FAIL"] = ""
    plain = cli(env, "backfill", PIPE, *ARGS)
    assert "0 interval(s) to run, 30 skipped" in plain.stderr
    again = cli(env, "backfill", PIPE, *ARGS, "--rerun-failed")
    assert again.returncode == 0, again.stderr
    assert "2 interval(s) to run, 28 skipped" in again.stderr
    assert again.stderr.count(" SUCCESS (run ") == 2
    assert "2026-11-05T00:00:00+00:00" in again.stderr
    assert "2026-11-20T00:00:00+00:00" in again.stderr


@pytest.mark.timeout(130)  # above cli()'s 120 s subprocess timeout
def test_cli_state_shows_the_pipeline_state(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"

    async def seed() -> None:
        async with SQLiteStore(db) as s:
            await s.set_state("nightly", "events.watermark", {"kind": "integer", "value": 42})
            await s.set_state("nightly", "note", "it's")

    anyio.run(seed)
    env = {**os.environ, "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{db}"}
    table = cli(env, "state", "nightly")
    assert table.returncode == 0, table.stderr
    assert "events.watermark" in table.stdout
    assert '"it\'s"' in table.stdout
    one = cli(env, "state", "nightly", "events.watermark")
    assert one.returncode == 0
    assert '"value": 42' in one.stdout
    missing = cli(env, "state", "nightly", "nope")
    assert missing.returncode == 1
    empty = cli(env, "state", "other")
    assert "no state recorded" in empty.stdout


@pytest.mark.asyncio
async def test_a_backfills_runs_are_listed_together(store: RunStore) -> None:
    from dremioframe_async.store import RunQuery

    @task
    async def noop() -> None:
        return None

    p = Pipeline("grouped").add_task(noop())
    first = await backfill(p, start="2026-11-01", end="2026-11-04", every="1d", store=store)
    other = await backfill(p, start="2026-10-01", end="2026-10-03", every="1d", store=store)
    await p.run(store=store)  # not part of any backfill
    page = await store.query_runs(RunQuery(backfill=first.backfill_id, limit=2))
    assert page.total == 3
    assert {r.backfill for r in page.runs} == {first.backfill_id}
    rest = await store.query_runs(RunQuery(backfill=first.backfill_id, before=page.older))
    assert len(rest.runs) == 1
    assert (await store.query_runs(RunQuery(backfill=other.backfill_id))).total == 2
    assert (await store.query_runs(RunQuery(pipeline="grouped"))).total == 6
