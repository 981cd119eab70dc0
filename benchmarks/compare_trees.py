"""Before/after: the engine's warm engine/raw-anyio ratios for two source trees, in one run.

Each measurement is a child process that imports the package from one tree
(``PYTHONPATH``), reuses one Pipeline per shape, and prints the median ratio of
engine to raw anyio over 7 alternating repetitions (engine_overhead.py's shapes
and code). Children alternate between the trees, in a rotating order, so load
from elsewhere weighs on both alike; each figure is the median over ``--rounds``.

Run: ``.venv/bin/python benchmarks/compare_trees.py BEFORE_DIR AFTER_DIR``, where
each directory holds a ``dremioframe_async`` package (``git archive main | tar -x
-C /tmp/before`` gives one for main).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPES = (("fan-out", 10_000), ("chain", 1_000), ("sleep", 1_000))

CHILD = """
import statistics, sys
import anyio
sys.path.insert(0, sys.argv[3])
import engine_overhead as eo
shape = eo.Shape(sys.argv[1], int(sys.argv[2]))
pipeline = eo.build_pipeline(shape)
anyio.run(eo._timed_run, pipeline)  # validates the graph and warms up
engine, raw = [], []
for _ in range(7):
    engine.append(anyio.run(eo._timed_run, pipeline))
    raw.append(anyio.run(eo._timed_once, eo.raw_anyio_once, shape))
print(statistics.median(engine) / statistics.median(raw))
"""


def ratio(tree: Path, shape: str, n: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    argv = [sys.executable, "-c", CHILD, shape, str(n), str(HERE)]
    out = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    found: dict[tuple[str, str], list[float]] = {(t, s): [] for t in trees for s, _ in SHAPES}
    for r in range(args.rounds):
        for shape, n in SHAPES:
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for name in order:
                found[name, shape].append(ratio(trees[name], shape, n))
    print(f"engine/raw-anyio, warm, median of {args.rounds} child processes per tree")
    for shape, _ in SHAPES:
        before = statistics.median(found["before", shape])
        after = statistics.median(found["after", shape])
        change = after / before
        print(f"{shape:<8} before {before:.3f}  after {after:.3f}  after/before {change:.2f}")


if __name__ == "__main__":
    main()
