"""Engine overhead: a Pipeline run against the raw anyio floor and asyncio.gather.

Three DAG shapes, each run by three implementations in this one process:

- ``fan-out``: a root, N no-op coroutine tasks, a sink (root -> each -> sink);
- ``chain``: N no-op tasks, each waiting for the one before;
- ``sleep``: a root, N tasks that each ``await anyio.sleep(0.02)``, a sink; the
  engine runs it with ``max_concurrency=N`` (a limit that never binds but is paid).

Implementations:

- ``engine``: ``await pipeline.run()``. Pipeline and tasks are built once,
  outside the timed region, and reused, as an application would; the first
  run (which also validates the graph) is reported on its own row.
- ``raw-anyio``: the floor for one coroutine per task. One task group, one
  ``anyio.Event`` per task, every task a coroutine spawned up front that awaits
  its upstream Events, runs the body, then sets its own Event. No engine. (The
  engine can beat it: it runs tasks that never wait back to back on a few
  runner coroutines instead of spawning one anyio task each.)
- ``gather``: bare asyncio under ``asyncio.run``. Fan-out and sleep:
  ``await root(); await asyncio.gather(*middle); await sink()``. Chain: N
  coroutines gathered together, each awaiting the ``asyncio.Event`` of the one
  before, running the body and setting its own Event.

Every figure is the median of ``--reps`` repetitions. Each repetition runs in
its own event loop (``anyio.run`` or ``asyncio.run``) and is timed with
``time.perf_counter`` inside it, so loop start-up is not counted;
``gc.collect()`` runs before each and the collector stays enabled while
timing. The implementations take turns, repetition by repetition, so load from
elsewhere on a shared machine weighs on all of them alike. The engine and the
floor also run on trio.

Cold rows (``--cold`` for those alone): build + validate + first run, each in
a fresh interpreter (median of 3, ``--quick`` 1), for the engine, raw anyio
and aiodag (the ``bench`` extra; its rows are left out when it is missing),
on the three shapes and a 100,000-task fan-out (not with ``--quick``). Each
child times the whole thing inside its event loop and reports its resident
high-water mark (VmHWM) over its resident size at start.

``--memory N`` runs an N-task fan-out through a Pipeline and prints its peak
RSS (``ru_maxrss``, against the resident size at start) and the tracemalloc
peak of a run. The default mode runs it first, in a fresh child process: a
child's ``ru_maxrss`` starts at its parent's resident size, which is still
small then. ``--profile SHAPE`` prints a cProfile (or pyinstrument) breakdown
of reused engine runs.

Run: ``.venv/bin/python benchmarks/engine_overhead.py [--quick] [--reps N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import io
import math
import pstats
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from dremioframe_async.bench.shapes import (  # shared with `dremioframe-async bench engine`
    SLEEP,
    Shape,
    aiodag_available,
    aiodag_once,
    build_pipeline,
    gather_once,
    raw_anyio_once,
)
from dremioframe_async.orchestration import Pipeline, RunResult


@dataclass(frozen=True, slots=True)
class Sizes:
    fanout: int
    chain: int
    sleepers: int
    big_fanout: int
    reps: int


DEFAULT = Sizes(fanout=10_000, chain=1_000, sleepers=1_000, big_fanout=100_000, reps=5)
QUICK = Sizes(fanout=1_000, chain=200, sleepers=200, big_fanout=10_000, reps=3)


@dataclass(slots=True)
class Row:
    shape: Shape
    impl: str
    backend: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


async def _timed_run(pipeline: Pipeline) -> float:
    gc.collect()
    start = time.perf_counter()
    result = await pipeline.run()
    elapsed = time.perf_counter() - start
    _check(result)
    return elapsed


def _check(result: RunResult) -> None:
    if result.status != "SUCCESS":
        raise SystemExit(f"benchmark run of {result.pipeline!r} ended {result.status}")


def validation_ms(shape: Shape, tries: int = 3) -> float:
    """What ``Pipeline.plan()`` (collect, key, cycle check) costs on its own; best of ``tries``."""
    head = build_pipeline(shape).plan().tasks[0]
    best = math.inf
    for _ in range(tries):
        fresh = Pipeline(shape.name).add_task(head)  # a new Pipeline has no cached plan
        gc.collect()
        start = time.perf_counter()
        fresh.plan()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


async def _timed_once(once: Callable[[Shape], Awaitable[None]], shape: Shape) -> float:
    gc.collect()
    start = time.perf_counter()
    await once(shape)
    return time.perf_counter() - start


# -- running everything ----------------------------------------------------------

BACKENDS = ("asyncio", "trio")
Measure = Callable[[], float]


def shapes(sizes: Sizes) -> list[Shape]:
    return [
        Shape("fan-out", sizes.fanout),
        Shape("chain", sizes.chain),
        Shape("sleep", sizes.sleepers),
    ]


def _first_runs(shape: Shape) -> tuple[dict[str, Pipeline], list[Row]]:
    """One pipeline per backend, and its first (graph-validating) run.

    Both are built before either runs: building any task anywhere invalidates
    every pipeline's cached plan, which would make a later "reused" run validate.
    """
    pipelines = {b: build_pipeline(shape) for b in BACKENDS}
    firsts = [
        Row(shape, "engine 1st run", b, [anyio.run(_timed_run, pipelines[b], backend=b)])
        for b in BACKENDS
    ]
    return pipelines, firsts


def _gather_rep(shape: Shape) -> float:
    return asyncio.run(_timed_once(gather_once, shape))


def _contenders(shape: Shape, pipelines: dict[str, Pipeline]) -> list[tuple[Row, Measure]]:
    """Each timed implementation: its row and a function that times one repetition."""
    out: list[tuple[Row, Measure]] = []
    for b in BACKENDS:
        engine = functools.partial(anyio.run, _timed_run, pipelines[b], backend=b)
        raw = functools.partial(anyio.run, _timed_once, raw_anyio_once, shape, backend=b)
        out += [(Row(shape, "engine", b), engine), (Row(shape, "raw-anyio", b), raw)]
    out.append((Row(shape, "gather", "asyncio"), functools.partial(_gather_rep, shape)))
    return out


def measure_shape(shape: Shape, reps: int) -> list[Row]:
    """All implementations of one shape, interleaved round-robin, rotating the order.

    On a shared machine the load drifts; interleaving puts that drift into every
    implementation alike, so the ratios stay meaningful.
    """
    pipelines, rows = _first_runs(shape)
    contenders = _contenders(shape, pipelines)
    for _, measure in contenders:
        measure()  # warm-up
    for r in range(reps):
        k = r % len(contenders)
        for row, measure in contenders[k:] + contenders[:k]:
            row.times.append(measure())
    return [row for row, _ in contenders] + rows


def measure_all(sizes: Sizes, reps: int) -> list[Row]:
    return [row for shape in shapes(sizes) for row in measure_shape(shape, reps)]


# -- the table -------------------------------------------------------------------


HEADER = (
    f"{'shape':<8} {'tasks':>6} {'implementation':<15} {'backend':<8} {'wall ms':>9} "
    f"{'min-max ms':>15} {'us/task*':>9} {'x raw-anyio':>12} {'x gather':>9}"
)


def _find(rows: list[Row], shape: Shape, impl: str, backend: str) -> Row | None:
    for row in rows:
        if row.shape == shape and row.impl == impl and row.backend == backend:
            return row
    return None


def _ratio(row: Row, base: Row | None) -> str:
    if base is None or row.impl in ("raw-anyio", "gather"):
        return "-"
    return f"{row.median / base.median:.2f}x"


def format_row(row: Row, rows: list[Row]) -> str:
    per_task = (row.median - row.shape.floor_s) / row.shape.tasks * 1e6
    spread = f"{min(row.times) * 1e3:.1f}-{max(row.times) * 1e3:.1f}"
    raw = _find(rows, row.shape, "raw-anyio", row.backend)
    gat = _find(rows, row.shape, "gather", "asyncio") if row.backend == "asyncio" else None
    return (
        f"{row.shape.name:<8} {row.shape.tasks:>6} {row.impl:<15} {row.backend:<8} "
        f"{row.median * 1e3:>9.1f} {spread:>15} {per_task:>9.2f} "
        f"{_ratio(row, raw):>12} {_ratio(row, gat):>9}"
    )


def ratio_lines(rows: list[Row]) -> list[str]:
    lines = []
    for label, impl, backend in (
        ("engine/raw-anyio", "raw-anyio", "asyncio"),
        ("engine/gather", "gather", "asyncio"),
        ("engine/raw-anyio", "raw-anyio", "trio"),
    ):
        parts = []
        for row in rows:
            base = _find(rows, row.shape, impl, "asyncio" if impl == "gather" else backend)
            if row.impl == "engine" and row.backend == backend and base is not None:
                parts.append(f"{row.shape.name} {row.median / base.median:.2f}x")
        lines.append(f"ratio {label} ({backend}): " + ", ".join(parts))
    return lines


def print_table(rows: list[Row], sizes: Sizes, reps: int) -> None:
    order = {"engine": 0, "engine 1st run": 1, "raw-anyio": 2, "gather": 3}
    rows_sorted = sorted(
        rows, key=lambda r: (r.backend != "asyncio", shapes(sizes).index(r.shape), order[r.impl])
    )
    print(f"median of {reps} repetitions (1st run: one run)")
    print(HEADER)
    print("-" * len(HEADER))
    for row in rows_sorted:
        print(format_row(row, rows))
    print(
        f"* us/task = (median wall - the {SLEEP * 1e3:.0f} ms sleep on the sleep shape's path)"
        " / tasks, root and sink included"
    )
    for shape in shapes(sizes):
        ms = validation_ms(shape)
        print(f"graph validation (Pipeline.plan(), best of 3) for {shape.name}: {ms:.1f} ms")
    for line in ratio_lines(rows):
        print(line)


# -- memory of a big fan-out -------------------------------------------------------


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_now_mib() -> float:
    """Current resident size; ru_maxrss is not a baseline, a child inherits its parent's."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except OSError:  # not Linux: the high-water mark is the best available
        return _maxrss_mib()
    return pages * resource.getpagesize() / 2**20


def measure_memory(n: int) -> None:
    """Build and run an n-task fan-out; print its RSS high-water mark and tracemalloc peak."""
    shape = Shape("fan-out", n)
    rss0 = _rss_now_mib()
    start = time.perf_counter()
    pipeline = build_pipeline(shape)
    pipeline.plan()
    built_s, rss_built = time.perf_counter() - start, _maxrss_mib()
    gc.collect()
    resident_built = _rss_now_mib()
    run_s = anyio.run(_timed_run, pipeline)
    rss_run = _maxrss_mib()
    tracemalloc.start()
    anyio.run(_timed_run, pipeline)  # what the run itself allocates, over the built graph
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{n}-task fan-out through Pipeline: SUCCESS, built+validated in {built_s:.2f} s, "
        f"run in {run_s:.2f} s ({run_s / shape.tasks * 1e6:.1f} us/task)"
    )
    print(
        f"peak RSS (ru_maxrss): {rss_run:.0f} MiB, +{rss_run - rss0:.0f} MiB over the "
        f"{rss0:.0f} MiB resident at start ({(rss_run - rss0) * 2**20 / shape.tasks:.0f} B/task); "
        f"+{rss_built - rss0:.0f} MiB was reached while building the graph "
        f"(+{resident_built - rss0:.0f} MiB still resident once built), "
        f"+{rss_run - rss_built:.0f} MiB more during the first run"
    )
    print(
        f"tracemalloc peak of a second run, over the built graph: {peak / 2**20:.1f} MiB "
        f"({peak / shape.tasks:.0f} B/task)"
    )


def memory_in_child(n: int) -> str:
    """Run :func:`measure_memory` in a fresh interpreter; return what it printed.

    Call it before the timings grow this process: the child's ru_maxrss starts
    at this process's resident size.
    """
    out = subprocess.run(
        [sys.executable, __file__, "--memory", str(n)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"memory benchmark failed with exit code {out.returncode}")
    return out.stdout


# -- cold start: build + validate + first run, each in a fresh process -----------------

COLD_IMPLS = ("engine", "raw-anyio", "aiodag")


async def _cold_engine(shape: Shape) -> float:
    gc.collect()
    start = time.perf_counter()
    pipeline = build_pipeline(shape)  # building and validating are the cold path's own cost
    result = await pipeline.run()
    elapsed = time.perf_counter() - start
    _check(result)
    return elapsed


def _vm_hwm_mib() -> float:
    """Resident high-water mark; unlike ru_maxrss it starts anew at exec."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return _maxrss_mib()  # not Linux: the inherited high-water mark is all there is


def cold_child(impl: str, shape_name: str, n: int) -> None:
    """In a fresh interpreter: time one cold build + run; print seconds and RSS growth."""
    shape = Shape(shape_name, n)
    rss0 = _rss_now_mib()
    if impl == "engine":
        seconds = anyio.run(_cold_engine, shape)
    elif impl == "raw-anyio":
        seconds = anyio.run(_timed_once, raw_anyio_once, shape)
    else:
        seconds = asyncio.run(_timed_once(aiodag_once, shape))
    print(f"{seconds:.6f} {_vm_hwm_mib() - rss0:.1f}")


@dataclass(slots=True)
class ColdRow:
    shape: Shape
    impl: str
    times: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


def _cold_once(impl: str, shape: Shape) -> tuple[float, float]:
    argv = [sys.executable, __file__, "--cold-child", impl, shape.name, str(shape.n)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"cold {impl} {shape.name} failed with exit code {out.returncode}")
    seconds, rss = out.stdout.split()
    return float(seconds), float(rss)


def measure_cold(sizes: Sizes, reps: int, *, big: bool = True) -> list[ColdRow]:
    """Every cold implementation of every shape, ``reps`` fresh processes each, interleaved."""
    impls = [i for i in COLD_IMPLS if i != "aiodag" or aiodag_available()]
    cold_shapes = [*shapes(sizes), *([Shape("fan-out", sizes.big_fanout)] if big else [])]
    rows = [ColdRow(s, i) for s in cold_shapes for i in impls]
    for r in range(reps):
        for shape in cold_shapes:
            mine = [row for row in rows if row.shape == shape]
            k = r % len(mine)
            for row in mine[k:] + mine[:k]:
                seconds, rss = _cold_once(row.impl, shape)
                row.times.append(seconds)
                row.rss.append(rss)
    return rows


def print_cold(rows: list[ColdRow], reps: int) -> None:
    print(f"\ncold: build + validate + first run, a fresh process each, median of {reps}")
    print(
        f"{'shape':<8} {'tasks':>6} {'implementation':<15} {'wall ms':>9} {'us/task':>8} "
        f"{'+RSS MiB':>9} {'x raw-anyio':>12} {'x aiodag':>9}"
    )
    by = {(row.shape, row.impl): statistics.median(row.times) for row in rows}
    for row in rows:
        med = by[row.shape, row.impl]
        ratios = [
            f"{med / by[row.shape, base]:.2f}x"
            if (row.shape, base) in by and base != row.impl
            else "-"
            for base in ("raw-anyio", "aiodag")
        ]
        print(
            f"{row.shape.name:<8} {row.shape.tasks:>6} {row.impl:<15} {med * 1e3:>9.1f} "
            f"{med / row.shape.tasks * 1e6:>8.2f} {statistics.median(row.rss):>9.0f} "
            f"{ratios[0]:>12} {ratios[1]:>9}"
        )
    if not any(row.impl == "aiodag" for row in rows):
        print("(aiodag not installed: pip install -e '.[bench]' adds its rows)")


# -- profiling -----------------------------------------------------------------------


async def _profiled_runs(
    pipeline: Pipeline, runs: int, start: Callable[[], object], stop: Callable[[], object]
) -> None:
    await pipeline.run()  # validate and warm up outside the profile
    start()
    for _ in range(runs):
        _check(await pipeline.run())
    stop()


def profile(shape: Shape, runs: int, tool: str) -> None:
    """Print where engine time goes for ``runs`` reused runs of ``shape``."""
    pipeline = build_pipeline(shape)
    if tool == "pyinstrument":
        from pyinstrument import Profiler  # optional: pip install pyinstrument

        prof = Profiler(async_mode="disabled", interval=0.0002)
        anyio.run(_profiled_runs, pipeline, runs, prof.start, prof.stop)
        print(prof.output_text(unicode=False, color=False, show_all=False))
        return
    cprof = cProfile.Profile()
    anyio.run(_profiled_runs, pipeline, runs, cprof.enable, cprof.disable)
    _print_cprofile(cprof, shape.tasks * runs)


def _print_cprofile(cprof: cProfile.Profile, task_runs: int, top: int = 25) -> None:
    stats = pstats.Stats(cprof, stream=io.StringIO())
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    total = sum(v[2] for _, v in entries)
    print(
        f"cProfile: {total * 1e6 / task_runs:.2f} us of own time per task "
        "(profiler overhead included); top functions by own time:"
    )
    print(f"{'us/task':>8} {'share':>6} {'calls/task':>10}  function")
    for (path, line, name), (_, ncalls, tottime, _, _) in entries[:top]:
        where = f"{path.rsplit('/', 1)[-1]}:{line}({name})" if line else name
        if path == "<string>":  # generated code: pstats keeps one of the entries sharing this key
            where += " [one dataclass-generated __init__]"
        print(
            f"{tottime * 1e6 / task_runs:>8.3f} {tottime / total:>6.1%} "
            f"{ncalls / task_runs:>10.2f}  {where}"
        )


# -- entry point -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer reps (CI)")
    parser.add_argument("--reps", type=int, help="repetitions per figure (default 5, quick 3)")
    parser.add_argument("--memory", type=int, metavar="N", help="only the N-task memory run")
    parser.add_argument("--profile", choices=["fan-out", "chain"], help="only profile a shape")
    parser.add_argument("--profiler", choices=["cprofile", "pyinstrument"], default="cprofile")
    parser.add_argument("--cold", action="store_true", help="only the cold (fresh process) rows")
    parser.add_argument(
        "--cold-child", nargs=3, metavar=("IMPL", "SHAPE", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    reps = args.reps or sizes.reps
    if args.cold_child:
        impl, shape_name, n = args.cold_child
        cold_child(impl, shape_name, int(n))
    elif args.cold:
        cold_reps = args.reps or (1 if args.quick else 3)
        print_cold(measure_cold(sizes, cold_reps), cold_reps)
    elif args.memory:
        measure_memory(args.memory)
    elif args.profile:
        size = sizes.fanout if args.profile == "fan-out" else sizes.chain
        profile(Shape(args.profile, size), reps, args.profiler)
    else:
        start = time.perf_counter()
        memory = memory_in_child(sizes.big_fanout)
        cold_reps = 1 if args.quick else min(reps, 3)
        cold = measure_cold(sizes, cold_reps, big=not args.quick)
        print_table(measure_all(sizes, reps), sizes, reps)
        print(memory, end="")
        print_cold(cold, cold_reps)
        print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
