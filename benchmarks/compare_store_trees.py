"""Before/after: what each store adds to a run, for two source trees, in one run.

Each measurement is a child process that imports the package from one tree
(``PYTHONPATH``) and runs store_overhead.py's shape on one warm Pipeline: every
store and no store, rounds interleaved, and prints each store's median time over
the no-store median, each store's time a run, and its wait after the last leaf (its
tail).
Children alternate between the trees, in a rotating order,
so load from elsewhere weighs on both alike; each figure is the median over
``--rounds`` children, with their range.

Run: ``.venv/bin/python benchmarks/compare_store_trees.py BEFORE_DIR AFTER_DIR
[--shape fan-out|sleep] [--rounds 6]``, where each directory holds a
``dremioframe_async`` package (``git worktree add /tmp/before <rev>`` gives one).
PostgreSQL as in store_overhead.py (``DREMIOFRAME_ASYNC_BENCH_PG``); without it
the PostgresStore column is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPES = {"fan-out": (10_000, 0.0, 7), "sleep": (1_000, 0.02, 15)}  # tasks, sleep, rounds

CHILD = """
import json, sys, tempfile
from pathlib import Path
import anyio
sys.path.insert(0, sys.argv[4])
import dremioframe_async
assert dremioframe_async.__file__.startswith(sys.argv[5]), dremioframe_async.__file__
import store_overhead as so
from dremioframe_async.store import MemoryStore, SQLiteStore

async def main(width, sleep, repeat):
    pipeline = so.fan_out(width, sleep)
    await pipeline.run()  # warm up
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteStore(Path(tmp) / "bench.sqlite")
        configs = [("none", None, False), ("MemoryStore", MemoryStore(), False),
                   ("SQLiteStore", sqlite, False)]
        pg, schema = await so.pg_store()
        if pg is not None:
            configs.append(("PostgresStore", pg, False))
        try:
            for store in (sqlite, pg):
                if store is not None:
                    await store.list_runs(limit=1)
            if hasattr(sqlite, "start_writer"):  # a tree with SQLite's writer process
                await sqlite.start_writer()
            medians = await so.measure(pipeline, configs, repeat)
        finally:
            await sqlite.aclose()
            if pg is not None:
                await pg.aclose()
                await so.drop(schema)
    base = medians[0][0]
    names = [name for name, _, _ in configs]
    ratios = {n: m[0] / base for n, m in zip(names, medians)}
    tails = {n: m[2] * 1e3 for n, m in zip(names, medians)}
    ms = {n: m[0] * 1e3 for n, m in zip(names, medians)}
    print(json.dumps({"ratio": ratios, "tail": tails, "ms": ms}))

anyio.run(main, int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))
"""


def ratios(tree: Path, width: int, sleep: float, repeat: int) -> dict[str, dict[str, float]]:
    """``{"ratio": {store: over no store}, "tail": {store: ms after the last leaf},
    "ms": {store: ms a run}}``, each a median of the child's rounds."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [sys.executable, "-c", CHILD, str(width), str(sleep), str(repeat), str(HERE), str(tree)]
    out = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True, check=True)
    found: dict[str, dict[str, float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="fan-out")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for tree in trees.values():
        if not (tree / "dremioframe_async" / "__init__.py").is_file():
            parser.error(f"{tree} holds no dremioframe_async package")
    width, sleep, repeat = SHAPES[args.shape]
    found: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    tails: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            child = ratios(trees[name], width, sleep, repeat)
            for store, ratio in child["ratio"].items():
                found[name].setdefault(store, []).append(ratio)
            for store, tail in child["tail"].items():
                tails[name].setdefault(store, []).append(tail)
            for store, ms in child["ms"].items():
                times[name].setdefault(store, []).append(ms)
    print(
        f"{args.shape}: each store's time over no store, median (range) of "
        f"{args.rounds} child processes per tree, {repeat} rounds each"
    )
    stores = [s for s in found["before"] if s != "none" and s in found["after"]]
    for store in stores:
        cells = []
        for name in trees:
            values = found[name][store]
            cells.append(
                f"{name} {statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"
            )
        print(f"{store:<14} " + "  ".join(cells))
    for title, figures in (
        ("a run, ms", times),
        ("the wait from the last leaf's end to run()'s return, ms", tails),
    ):
        print(f"{title}, median of the children:")
        for store in ["none", *stores]:
            cells = [f"{name} {statistics.median(figures[name][store]):.1f}" for name in trees]
            print(f"{store:<14} " + "  ".join(cells))


if __name__ == "__main__":
    main()
