"""bench.sweep over plain async callables: statistics, the knee, JSON and the SVG chart."""

from __future__ import annotations

import json
import math
import time
import xml.etree.ElementTree as ET
from typing import Any

import anyio
import pyarrow as pa
import pytest

import dremioframe_async.bench as bench
from dremioframe_async.bench import (
    Latency,
    Machine,
    Outcome,
    Progress,
    Step,
    Sweep,
    dump_sweeps,
    find_knee,
    load_sweeps,
    sweep,
    sweep_chart,
    through_engine,
)
from dremioframe_async.bench._svg import bar_chart
from dremioframe_async.bench._sweep import MIN_DRAIN

pytestmark = pytest.mark.anyio

SVG = "{http://www.w3.org/2000/svg}"


def test_public_names() -> None:
    assert set(bench.__all__) >= {"sweep", "Sweep", "Step", "Outcome", "find_knee"}
    assert callable(bench.rest_work)
    assert callable(bench.flight_work)
    with pytest.raises(AttributeError):
        bench.no_such_name  # noqa: B018


async def test_each_step_is_bounded_by_its_concurrency_and_measures_it() -> None:
    in_flight = peak = 0

    async def work() -> Outcome:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await anyio.sleep(0.01)  # the workload itself, not ordering
        finally:
            in_flight -= 1
        return Outcome(rows=10, bytes=1_000_000, phases={"execute": 0.01})

    result = await sweep(work, concurrency=[1, 4], queries=24, label="sleepy")
    one, four = result.steps
    assert peak == 4
    assert (one.peak_concurrency, four.peak_concurrency) == (1, 4)
    assert one.queries == four.queries == 24
    assert 0.5 < one.measured_concurrency <= 1.0
    assert 2.0 < four.measured_concurrency <= 4.0
    assert four.rows == 240
    assert four.bytes == 24_000_000
    assert four.rows_per_s == pytest.approx(240 / four.seconds)
    assert four.mb_per_s == pytest.approx(24 / four.seconds)
    assert four.phases["execute"].p50 == pytest.approx(0.01)
    assert one.latency.p50 >= 0.01
    assert not one.flagged
    assert result.machine.cpu_count >= 1
    assert len(result.machine.load_average) == 3


async def test_duration_mode_stops_starting_calls_at_the_deadline() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.005)

    result = await sweep(work, concurrency=[2], duration=0.2, warmup=0.05)
    (step,) = result.steps
    assert step.queries + 0 < calls  # the warm-up's calls are not counted
    assert 0.2 <= step.seconds < 5.0
    assert result.warmup == 0.05
    assert result.duration == 0.2
    assert result.queries is None


async def test_errors_are_counted_by_type_and_flag_their_step() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        if 11 <= calls <= 13:
            raise KeyError("boom")
        if calls == 14:
            raise TimeoutError
        await anyio.sleep(0)

    result = await sweep(work, concurrency=[1, 1, 1], queries=10)
    first, second, third = result.steps
    assert second.errors == {"KeyError": 3, "TimeoutError": 1}
    assert second.flagged
    assert second.error_count == 4
    assert second.queries == 6
    assert not first.flagged
    assert not third.flagged
    assert first.errors == {}
    assert third.queries == 10


async def test_through_the_engine_results_and_errors_keep_their_type() -> None:
    calls = 0

    async def work() -> Outcome:
        nonlocal calls
        calls += 1
        if calls in (2, 5):
            raise LookupError("no such table")
        return Outcome(rows=3, phases={"execute": 0.001})

    result = await sweep(through_engine(work), concurrency=[1, 2], queries=4)
    first, second = result.steps
    assert first.errors == {"LookupError": 1}
    assert second.errors == {"LookupError": 1}
    assert first.rows == 9
    assert set(first.phases) == {"execute"}


async def test_a_table_result_reports_rows_and_bytes() -> None:
    table = pa.table({"x": list(range(100))})

    async def work() -> pa.Table:
        return table

    result = await sweep(work, concurrency=[1], queries=3)
    assert result.steps[0].rows == 300
    assert result.steps[0].bytes == 3 * table.nbytes


async def test_progress_reports_each_step_end() -> None:
    seen: list[Progress] = []

    async def work() -> None:
        await anyio.sleep(0)

    await sweep(
        work, concurrency=[1, 2], queries=5, warmup=0.01, label="p", on_progress=seen.append
    )
    ends = [p for p in seen if p.done]
    assert [(p.concurrency, p.warmup, p.queries) for p in ends if not p.warmup] == [
        (1, False, 5),
        (2, False, 5),
    ]
    assert any(p.warmup for p in ends)


async def test_cancelling_a_sweep_propagates() -> None:
    started = anyio.Event()

    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    start = time.monotonic()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: sweep(work, concurrency=[4], duration=60.0))
            await started.wait()
            scope.cancel()
    assert scope.cancelled_caught
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": [], "queries": 1}, "concurrency"),
        ({"concurrency": [0], "queries": 1}, "concurrency"),
        ({"concurrency": [1]}, "exactly one"),
        ({"concurrency": [1], "queries": 1, "duration": 1.0}, "exactly one"),
        ({"concurrency": [1], "duration": 0.0}, "duration"),
        ({"concurrency": [1], "queries": 0}, "queries"),
        ({"concurrency": [1], "queries": 1, "warmup": -1.0}, "warmup"),
        ({"concurrency": [True], "queries": 1}, "concurrency"),
        ({"concurrency": [1.5], "queries": 1}, "concurrency"),
        ({"concurrency": [1], "queries": 1.5}, "queries"),
        ({"concurrency": [1], "queries": True}, "queries"),
        ({"concurrency": [1], "duration": math.inf}, "duration"),
        ({"concurrency": [1], "duration": math.nan}, "duration"),
        ({"concurrency": [1], "queries": 1, "warmup": math.inf}, "warmup"),
    ],
    ids=[
        "empty",
        "zero",
        "neither",
        "both",
        "zero-duration",
        "zero-queries",
        "neg-warmup",
        "bool-concurrency",
        "fractional-concurrency",
        "fractional-queries",
        "bool-queries",
        "endless-duration",
        "nan-duration",
        "endless-warmup",
    ],
)
async def test_bad_arguments_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    async def work() -> None:
        return None

    with pytest.raises(ValueError, match=message):
        await sweep(work, **kwargs)


# -- steps end on time -----------------------------------------------------------------------


async def test_a_step_ends_on_time_and_counts_calls_still_running_as_timeouts() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls > 4:  # the first four end at once, then every call hangs
            await anyio.sleep_forever()

    started = time.monotonic()
    result = await sweep(work, concurrency=[3], duration=0.3, warmup=0.2)
    elapsed = time.monotonic() - started
    # the warm-up and the step, each cut MIN_DRAIN after its end (the calls were quick)
    bound = 0.5 + 2 * MIN_DRAIN + 1.0
    assert elapsed < bound, f"the sweep took {elapsed:.1f} s for 0.5 s of steps"
    (step,) = result.steps
    assert step.errors == {"StepTimeout": 3}  # three callers, each cut in a hung call
    assert step.queries == 0  # the warm-up's four calls are not measured
    assert step.seconds == pytest.approx(0.3 + MIN_DRAIN, abs=0.1)
    assert step.flagged


async def test_slow_calls_in_flight_at_the_end_may_finish() -> None:
    """A call in flight at the step's end gets twice the slowest call's time to finish."""

    async def work() -> None:
        await anyio.sleep(0.5)  # the workload itself: longer than the step's tenth

    # Round two starts at 0.5 s (0.3 s before the end, room for a stall) and ends at
    # 1.0 s: clearly after the step's end, well inside the drain (cut at 1.8 s).
    result = await sweep(work, concurrency=[2], duration=0.8)
    (step,) = result.steps
    assert step.errors == {}
    assert step.queries == 4  # two rounds of two: the second ends after the step's end


async def test_calls_that_end_on_time_are_measured_and_the_cut_ones_are_not() -> None:
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1
        if calls > 5:
            await anyio.sleep_forever()

    result = await sweep(work, concurrency=[2], duration=0.2)
    (step,) = result.steps
    assert step.queries == 5
    assert step.errors == {"StepTimeout": 2}
    assert step.peak_concurrency == 2


async def test_work_that_blocks_the_event_loop_is_reported_as_such() -> None:
    async def work() -> None:
        time.sleep(MIN_DRAIN + 0.5)  # blocking code in an async function: it never yields

    result = await sweep(work, concurrency=[1], duration=0.1)
    (step,) = result.steps
    assert step.errors == {"NotYielding": 1}
    assert step.queries == 0


async def test_a_failing_progress_callback_keeps_the_figures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def work() -> None:
        await anyio.sleep(0)

    def on_progress(progress: Progress) -> None:
        raise RuntimeError("the terminal went away")

    result = await sweep(
        work, concurrency=[1, 2], queries=5, on_progress=on_progress, progress_interval=0.01
    )
    assert [step.queries for step in result.steps] == [5, 5]
    assert "the terminal went away" in caplog.text


@pytest.mark.parametrize("anyio_backend", ["trio"])  # asyncio's loop re-raises it bare itself
async def test_a_keyboard_interrupt_in_the_work_comes_out_as_itself() -> None:
    async def work() -> None:
        await anyio.sleep(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        await sweep(work, concurrency=[2], queries=4)
    assert type(caught.value) is KeyboardInterrupt


# -- the knee ---------------------------------------------------------------------------------


def _step(c: int, qps: float, p95: float | int, errors: dict[str, int] | None = None) -> Step:
    p95 = float(p95)
    lat = Latency(p95 / 2, p95, p95, p95)
    return Step(c, 10, 1.0, float(qps), 0.0, 0.0, lat, {}, errors or {}, float(c), c)


@pytest.mark.parametrize(
    ("curve", "knee"),
    [
        ([(1, 10, 50), (4, 38, 55), (16, 70, 90), (64, 72, 400)], 16),  # flattens
        ([(1, 10, 50), (4, 38, 55), (16, 70, 120), (64, 140, 130)], 4),  # p95 > 2x at 16
        ([(1, 10, 50), (4, 10.9, 50), (16, 40, 60)], 1),  # +9% does not count
        ([(1, 10, 50), (4, 11, 50)], 4),  # +10% does
        ([(1, 10, 50)], 1),
    ],
    ids=["flattens", "latency-explodes", "walk-stops", "ten-percent", "single-step"],
)
def test_knee(curve: list[tuple[int, float, float]], knee: int) -> None:
    steps = [_step(*point) for point in curve]
    found = find_knee(steps)
    assert found is not None
    assert found.concurrency == knee


def test_knee_never_lands_on_a_failing_step() -> None:
    steps = [_step(1, 10, 50), _step(4, 40, 50, {"X": 1}), _step(16, 80, 60)]
    assert find_knee(steps) == steps[0]
    assert find_knee([_step(1, 10, 50, {"X": 1})]) is None
    assert find_knee([]) is None


# -- JSON and SVG -----------------------------------------------------------------------------


def _sweep(label: str) -> Sweep:
    machine = Machine(2, (1.0, 0.5, 0.25), "3.11.7", "Linux")
    steps = (
        _step(1, 10, 0.05),
        _step(4, 38, 0.06, {"DremioJobFailed": 2}),
        Step(16, 0, 1.0, 0.0, 0.0, 0.0, Latency.of([]), {}, {"X": 5}, 16.0, 16),
    )
    return Sweep(label, steps, machine, machine, warmup=1.0, duration=5.0)


def test_json_round_trips_into_the_dataclasses() -> None:
    sweeps = [_sweep("rest"), _sweep("flight")]
    text = dump_sweeps(sweeps)
    back = load_sweeps(text)
    assert all(isinstance(s, Sweep) for s in back)
    assert all(isinstance(step, Step) for s in back for step in s.steps)
    assert back[0].steps[:2] == sweeps[0].steps[:2]
    assert math.isnan(back[0].steps[2].latency.p95)  # no successes: null in JSON, NaN back
    assert dump_sweeps(back) == text
    raw = json.loads(text)
    assert [step["flagged"] for step in raw[0]["steps"]] == [False, True, True]
    assert raw[0]["knee"] == 1
    assert back[0].machine == sweeps[0].machine


@pytest.mark.parametrize(
    "text",
    ['{"format": 1}', '[{"format": "other"}]', '[{"format": "dremioframe_async.bench/1"}]'],
    ids=["not-a-list", "wrong-format", "missing-fields"],
)
def test_bad_json_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="sweep"):
        load_sweeps(text)


def test_chart_is_valid_svg_with_both_series_per_sweep() -> None:
    sweeps = [_sweep("rest <&>"), _sweep("flight")]
    root = ET.fromstring(sweep_chart(sweeps, title="a & b"))
    assert root.tag == f"{SVG}svg"
    series = {g.get("data-series") for g in root.iter(f"{SVG}g") if "series" in g.get("class", "")}
    assert series == {"rest <&> throughput", "rest <&> p95", "flight throughput", "flight p95"}
    lines = [g for g in root.iter(f"{SVG}g") if g.get("data-series") == "flight throughput"]
    points = lines[0].find(f"{SVG}polyline").get("points").split()  # type: ignore[union-attr]
    assert len(points) == 3
    p95 = [g for g in root.iter(f"{SVG}g") if g.get("data-series") == "flight p95"]
    # the all-failed step has no latency to draw
    assert len(p95[0].find(f"{SVG}polyline").get("points").split()) == 2  # type: ignore[union-attr]
    assert len([c for c in root.iter(f"{SVG}circle") if c.get("class") == "knee"]) == 2
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "errors"]) == 4


def test_bar_chart_is_valid_svg() -> None:
    root = ET.fromstring(bar_chart([("fan-out", [("engine", 2.0), ("gather", 1.0)])], "us", "t"))
    bars = [g.get("data-label") for g in root.iter(f"{SVG}g") if g.get("class") == "bar"]
    assert bars == ["fan-out engine", "fan-out gather"]
