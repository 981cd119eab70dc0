"""Does running large pipelines back to back keep the host's cyclic collector healthy?

In one process, for ``--seconds``: a 20,000-task no-op fan-out and a fan-out of
5,000 mapped instances, run back to back, with 300 garbage cycles (1 KiB each)
made by the "application" before each pair, and a probe of the loop's lag (how
late a 5 ms sleep wakes). Two rows, each from a fresh process:

* ``frozen``: the engine as it is (a run of 1,000+ tasks makes its nodes frozen,
  see ``docs/architecture.md``, step 2);
* ``plain``: the same with that turned off (its threshold set out of reach).

Per row: the pairs run, the collector's collections per generation and its
longest full collection, the loop's lag p99 and max, how many of the garbage
cycles and of the mapped instances are still alive at the end (a leak shows
here), and the peak RSS.

    python benchmarks/gc_churn.py               # 5 s per row
    python benchmarks/gc_churn.py --seconds 10
    python benchmarks/gc_churn.py --quick       # 1 s per row, smaller runs: CI smoke
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from typing import Any

import anyio
from embedded_latency import fan_out  # the same shape: root -> N no-op tasks -> sink

from dremioframe_async.orchestration import Pipeline, _gc, task
from dremioframe_async.orchestration._node import ChildNode

CYCLES_PER_PAIR = 300


class Garbage:
    """A cycle of about 1 KiB, as an application makes them."""

    def __init__(self) -> None:
        self.me = self
        self.pad = bytearray(1024)


def mapped(instances: int) -> Pipeline:
    @task
    async def parts() -> list[int]:
        return list(range(instances))

    @task
    async def extract(part: int) -> int:
        return part

    return Pipeline("churn_mapped").add_task(extract.expand(part=parts()))


async def churn(seconds: float, width: int, instances: int) -> dict[str, Any]:
    started: dict[int, float] = {}
    collections = [0, 0, 0]
    longest_full = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            started[generation] = time.perf_counter()
            collections[generation] += 1
        elif generation == 2:
            longest_full[0] = max(longest_full[0], time.perf_counter() - started[2])

    pipelines = (fan_out(width), mapped(instances))
    for pipeline in pipelines:
        pipeline.plan(())
    gc.collect()
    gc.callbacks.append(watch)
    lags: list[float] = []
    refs: list[weakref.ref[Garbage]] = []
    pairs = 0
    done = anyio.Event()

    async def probe() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await anyio.sleep(0.005)
            lags.append((time.perf_counter() - start - 0.005) * 1e3)

    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(CYCLES_PER_PAIR):
                refs.append(weakref.ref(Garbage()))
            for pipeline in pipelines:
                result = await pipeline.run()
                assert result.status == "SUCCESS", result.status
                del result
            pairs += 1
        done.set()
    gc.callbacks.remove(watch)
    lags.sort()
    return {
        "pairs": pairs,
        "collections": collections,
        "longest_full_ms": longest_full[0] * 1e3,
        "lag_p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
        "lag_max_ms": lags[-1],
        "cycles_alive": sum(1 for r in refs if r() is not None),
        "cycles_made": len(refs),
        "instances_alive": sum(1 for o in gc.get_objects() if type(o) is ChildNode),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(mode: str, seconds: float, width: int, instances: int) -> None:
    if mode == "plain":
        _gc.FREEZE_MIN = sys.maxsize  # nothing is large enough to be made frozen
    print(json.dumps(anyio.run(churn, seconds, width, instances)))


def run_child(mode: str, seconds: float, width: int, instances: int) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", mode, str(seconds), str(width), str(instances)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed with exit code {out.returncode}:\n{out.stderr}")
    figures: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return figures


def report(rows: dict[str, dict[str, Any]], seconds: float, width: int, instances: int) -> None:
    print(
        f"{seconds:g} s of back-to-back pairs: a {width:,}-task fan-out and a fan-out of "
        f"{instances:,} mapped instances, {CYCLES_PER_PAIR} garbage cycles made before each"
    )
    print(
        f"{'nodes':<7} {'pairs':>6} {'gen 0/1/2 collections':>22} {'longest full ms':>16} "
        f"{'lag p99 ms':>11} {'lag max ms':>11} {'cycles alive':>13} {'instances alive':>16} "
        f"{'peak MiB':>9}"
    )
    for mode, r in rows.items():
        gens = "/".join(str(c) for c in r["collections"])
        print(
            f"{mode:<7} {r['pairs']:>6} {gens:>22} {r['longest_full_ms']:>16.1f} "
            f"{r['lag_p99_ms']:>11.1f} {r['lag_max_ms']:>11.1f} "
            f"{r['cycles_alive']:>7}/{r['cycles_made']:<5} {r['instances_alive']:>16} "
            f"{r['peak_mib']:>9.0f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        child(args[1], float(args[2]), int(args[3]), int(args[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per row (default 5)")
    parser.add_argument("--quick", action="store_true", help="1 s per row, smaller runs")
    opts = parser.parse_args(args)
    seconds, width, instances = (1.0, 5_000, 2_000) if opts.quick else (opts.seconds, 20_000, 5_000)
    rows = {mode: run_child(mode, seconds, width, instances) for mode in ("frozen", "plain")}
    report(rows, seconds, width, instances)


if __name__ == "__main__":
    main()
