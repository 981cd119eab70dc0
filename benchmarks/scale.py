"""How the engine scales: build and run a no-op fan-out of 10^4, 10^5 and 10^6 tasks.

Each figure comes from a fresh interpreter (so no run pays for another's heap):
build the tasks (root -> N no-op ``async def`` tasks -> sink, as a user would
write them), validate the graph and run it once, with no store and with a
SQLite store in a scratch directory. Per row: wall seconds (build + run), µs per
task, the process's peak resident size (``VmHWM``) and its growth over the size
at the child's start. Then the ratios the targets are stated in:

* 10^6 without a store: <= 8 s and <= 600 MiB peak RSS;
* 10^6 with SQLite: <= 1.6x the no-store time and <= 1 GiB peak RSS;
* time per task at 10^6 within 1.3x of that at 10^4 (linear).

``--keep none`` builds the pipelines with ``keep_results="none"``; ``--freeze``
calls ``gc.freeze()`` between building and running (what an application that
builds a large graph once can do: the graph then leaves the GC's full collections).

    python benchmarks/scale.py                 # 10^4, 10^5, 10^6; about a minute on 2 cores
    python benchmarks/scale.py --sizes 10000 100000
    python benchmarks/scale.py --quick         # 10^3 and 10^4, a few seconds: CI smoke
    python benchmarks/scale.py --where 100000  # where the memory goes (tracemalloc, GC)

``--where N`` builds the fan-out in this process and prints the bytes held per
task after building (by allocating file:line, from ``tracemalloc``), after the
run, the ``sys.getsizeof`` of one Task and one run Node, and the number of
cyclic-GC collections (per generation) and the time they took during the run.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from dremioframe_async.orchestration import Pipeline, RunResult, Task

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
TARGET_S, TARGET_MIB = 8.0, 600.0  # 10^6 without a store
STORE_RATIO, STORE_MIB = 1.6, 1024.0  # 10^6 with SQLite
LINEAR = 1.3  # µs/task at the largest size over that at the smallest


async def noop() -> None:
    return


KEEP = os.environ.get("SCALE_KEEP_RESULTS", "all")  # Pipeline(keep_results=...), set by --keep
FREEZE = os.environ.get("SCALE_GC_FREEZE") == "1"  # set by --freeze


def build(n: int) -> Pipeline:
    """root -> n no-op tasks -> sink, written the way a user would."""
    root, sink = Task("root", noop), Task("sink", noop)
    for i in range(n):
        mid = Task(f"t{i}", noop)
        root >> mid
        mid >> sink
    if KEEP == "all":  # the default (and a build that predates keep_results can run it)
        return Pipeline("scale").add_task(root)
    return Pipeline("scale", keep_results=KEEP).add_task(root)  # type: ignore[arg-type]


def _status_mib(field_name: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")  # not Linux


async def _build_and_run(n: int, store_dir: str | None) -> tuple[float, RunResult]:
    store = None
    if store_dir is not None:
        from dremioframe_async.store import SQLiteStore

        store = SQLiteStore(Path(store_dir) / "scale.sqlite")
    start = time.perf_counter()
    pipeline = build(n)
    if FREEZE:
        pipeline.plan(())
        gc.freeze()  # the built graph leaves the cyclic GC's full collections
    result = await pipeline.run(store=store)
    elapsed = time.perf_counter() - start
    if result.status != "SUCCESS" or result.history_error is not None:
        raise SystemExit(f"run ended {result.status}: {result.history_error}")
    if store is not None:
        await store.aclose()
    return elapsed, result


def child(n: int, with_store: bool) -> None:
    """In a fresh interpreter: one cold build + run; print seconds, peak and growth (MiB)."""
    rss0 = _status_mib("VmRSS")
    if with_store:
        with tempfile.TemporaryDirectory() as tmp:
            seconds, _ = anyio.run(_build_and_run, n, tmp)
    else:
        seconds, _ = anyio.run(_build_and_run, n, None)
    hwm = _status_mib("VmHWM")
    print(f"{seconds:.6f} {hwm:.1f} {hwm - rss0:.1f}")


@dataclass(frozen=True, slots=True)
class Row:
    n: int
    store: bool
    seconds: float
    peak_mib: float
    growth_mib: float

    @property
    def us_per_task(self) -> float:
        return self.seconds / (self.n + 2) * 1e6


def run_child(n: int, with_store: bool, reps: int) -> Row:
    samples = []
    for _ in range(reps):
        argv = [sys.executable, __file__, "--child", str(n), "sqlite" if with_store else "none"]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"child n={n} store={with_store} exited {out.returncode}")
        seconds, peak, growth = map(float, out.stdout.split())
        samples.append((seconds, peak, growth))
    seconds = statistics.median(s for s, _, _ in samples)
    peak = max(p for _, p, _ in samples)
    growth = max(g for _, _, g in samples)
    return Row(n, with_store, seconds, peak, growth)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(rows: list[Row]) -> None:
    print(f"{'tasks':>10} {'store':>7} {'seconds':>9} {'µs/task':>8} {'peak MiB':>9} {'+MiB':>8}")
    for r in rows:
        store = "sqlite" if r.store else "none"
        print(
            f"{r.n:>10,} {store:>7} {r.seconds:>9.3f} {r.us_per_task:>8.2f} "
            f"{r.peak_mib:>9.0f} {r.growth_mib:>8.0f}"
        )
    by = {(r.n, r.store): r for r in rows}
    sizes = sorted({r.n for r in rows})
    small, big = sizes[0], sizes[-1]
    bare, stored = by[(big, False)], by.get((big, True))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (2 cores shared: read ratios)")
    if big != SIZES[-1]:
        print(f"(the targets are stated at {SIZES[-1]:,} tasks; the verdicts below are at {big:,})")
    print(
        f"{big:,} no store: {bare.seconds:.2f} s (target <= {TARGET_S:g} s: "
        f"{_verdict(bare.seconds <= TARGET_S)}), peak {bare.peak_mib:.0f} MiB "
        f"(<= {TARGET_MIB:g}: {_verdict(bare.peak_mib <= TARGET_MIB)})"
    )
    if stored is not None:
        ratio = stored.seconds / bare.seconds
        print(
            f"{big:,} sqlite / no store: {ratio:.2f}x (target <= {STORE_RATIO:g}x: "
            f"{_verdict(ratio <= STORE_RATIO)}), peak {stored.peak_mib:.0f} MiB "
            f"(<= {STORE_MIB:g}: {_verdict(stored.peak_mib <= STORE_MIB)})"
        )
    if big != small:
        lin = bare.us_per_task / by[(small, False)].us_per_task
        print(
            f"µs/task at {big:,} over {small:,}: {lin:.2f}x (target <= {LINEAR:g}x: "
            f"{_verdict(lin <= LINEAR)})"
        )


# -- where the memory and the time go ----------------------------------------------


def where(n: int, top: int = 12) -> None:
    """Bytes per task after building and after running, by allocation site; GC activity."""
    gc.collect()
    tracemalloc.start()
    pipeline = build(n)
    plan = pipeline.plan(())  # as run() asks for it: no resources declared
    built = tracemalloc.take_snapshot()
    print(f"after building {n:,} tasks and planning:")
    _print_top(built, n, top)
    result = anyio.run(pipeline.run)
    ran = tracemalloc.take_snapshot()
    tracemalloc.stop()
    print("\nheld after the run (its RunResult alive), over what building held:")
    _print_top(ran, n, top, base=built)
    del result
    some = plan.tasks[1]
    print(f"\nsys.getsizeof: Task {sys.getsizeof(some)} B", end="")
    if hasattr(some, "__dict__"):
        print(f" + __dict__ {sys.getsizeof(some.__dict__)} B", end="")
    print(
        f", its edges {sys.getsizeof(some._upstream)} + {sys.getsizeof(some._downstream)} B"
        f", kwargs {sys.getsizeof(some.kwargs)} B (shared: {some.kwargs is plan.tasks[2].kwargs})"
    )
    _gc_during_run(pipeline)


def _gc_during_run(pipeline: Pipeline) -> None:
    """Time one untraced run and the cyclic collections during it."""
    gc.collect()
    pauses: list[float] = []
    counts = [0, 0, 0]
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        else:
            pauses.append(time.perf_counter() - started.pop())
            counts[info["generation"]] += 1

    gc.callbacks.append(on_gc)
    try:
        start = time.perf_counter()
        anyio.run(pipeline.run)
        elapsed = time.perf_counter() - start
    finally:
        gc.callbacks.remove(on_gc)
    longest = max(pauses, default=0.0) * 1e3
    print(
        f"run (untraced, second): {elapsed:.2f} s; cyclic GC during it: {counts} collections "
        f"(gen 0/1/2), {sum(pauses) * 1e3:.0f} ms ({sum(pauses) / elapsed:.0%} of the run), "
        f"longest {longest:.1f} ms"
    )


def _print_top(
    snap: tracemalloc.Snapshot, n: int, top: int, base: tracemalloc.Snapshot | None = None
) -> None:
    stats = snap.compare_to(base, "lineno") if base is not None else snap.statistics("lineno")
    total = sum(getattr(s, "size_diff", s.size) for s in stats)
    print(f"  total {total / n:,.0f} B per task")
    for s in stats[:top]:
        size = getattr(s, "size_diff", s.size)
        frame = s.traceback[0]
        name = "/".join(Path(frame.filename).parts[-2:])
        print(f"  {size / n:>8,.1f} B/task  {name}:{frame.lineno}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--quick", action="store_true", help="10^3 and 10^4: a smoke test")
    parser.add_argument("--reps", type=int, default=1, help="fresh processes per row (median)")
    parser.add_argument("--no-store", action="store_true", help="skip the SQLite rows")
    parser.add_argument(
        "--keep", choices=("all", "leaves", "none"), default="all", help="keep_results"
    )
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() after building")
    parser.add_argument("--where", type=int, metavar="N", help="where memory and GC time go")
    parser.add_argument("--child", nargs=2, metavar=("N", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ["SCALE_KEEP_RESULTS"] = args.keep  # read by the children too
    os.environ["SCALE_GC_FREEZE"] = "1" if args.freeze else "0"
    global KEEP
    KEEP = args.keep
    if args.child:
        child(int(args.child[0]), args.child[1] == "sqlite")
        return
    if args.where:
        where(args.where)
        return
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    rows = []
    for n in sizes:
        for with_store in (False,) if args.no_store else (False, True):
            rows.append(run_child(n, with_store, args.reps))
            print(f"  ... {n:,} {'sqlite' if with_store else 'none'}: {rows[-1].seconds:.2f} s")
    report(rows)


if __name__ == "__main__":
    main()
