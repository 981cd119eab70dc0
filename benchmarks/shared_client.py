"""One Dremio client per run against one client per task, on a fan-out, against FakeDremio.

    .venv/bin/python benchmarks/shared_client.py [--tasks 200] [--reps 5]

Both shapes run ``--tasks`` one-row queries at once with username/password
credentials from the environment, as a module-level pipeline would:

- **per task**: each task opens its own ``DremioClient`` (its own connection pool
  and its own login), which is what a Dremio task without ``client=`` did
  before the client became a run resource;
- **shared**: ``DremioQueryTask`` without ``client=``: one client per run, made
  from the environment, shared by every task.

Prints the median wall time of ``--reps`` runs of each, the logins FakeDremio
saw per run, and the shared/per-task ratio (measured in the same process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import anyio

from dremioframe_async import Pipeline, task
from dremioframe_async.dremio import DremioClient
from dremioframe_async.tasks import DremioQueryTask
from dremioframe_async.testing import FakeDremio


@task
async def own_client(i: int) -> Any:
    async with DremioClient(poll_interval=0.005) as client:
        return await client.query(f"SELECT {i} AS i")


def per_task(n: int) -> Pipeline:
    pipeline = Pipeline("per_task")
    for i in range(n):
        pipeline.add_task(own_client(i))
    return pipeline


def shared(n: int) -> Pipeline:
    pipeline = Pipeline("shared", resources={"dremio": lambda: DremioClient(poll_interval=0.005)})
    for i in range(n):
        pipeline.add_task(DremioQueryTask(f"q{i}", f"SELECT {i} AS i"))
    return pipeline


async def measure(fake: FakeDremio, pipeline: Pipeline, reps: int) -> tuple[float, float]:
    times, logins = [], []
    for _ in range(reps):
        before = len(fake.requests_to("/apiv2/login", "POST"))
        started = time.perf_counter()
        result = await pipeline.run()
        times.append(time.perf_counter() - started)
        assert result.status == "SUCCESS", result.errors
        logins.append(len(fake.requests_to("/apiv2/login", "POST")) - before)
    return statistics.median(times), statistics.median(logins)


async def main(tasks: int, reps: int) -> None:
    async with FakeDremio() as fake:
        os.environ.update(
            DREMIO_URL=fake.url, DREMIO_USERNAME=fake.username, DREMIO_PASSWORD=fake.password
        )
        os.environ.pop("DREMIO_PAT", None)
        rows = []
        for name, build in (("per task", per_task), ("shared", shared)):
            seconds, logins = await measure(fake, build(tasks), reps)
            rows.append((name, seconds, logins))
            ms = seconds * 1000
            print(f"{name:<9} {tasks} tasks: median {ms:8.1f} ms, {logins:g} logins/run")
        print(f"ratio shared/per task: {rows[1][1] / rows[0][1]:.2f}x wall time")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.tasks, args.reps)
