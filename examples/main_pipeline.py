"""An example pipeline showing fan-out, retries, an alert and a cleanup task.

Run: python examples/main_pipeline.py
"""

from __future__ import annotations

import random
import time

import anyio

from dremioframe_async import Pipeline, TaskRetrying, TaskState, TaskStateChanged, task

TABLES = [f"table_{i:02d}" for i in range(24)]
rng = random.Random(7)
attempts: dict[str, int] = {}


@task
async def list_tables() -> list[str]:
    return TABLES


@task(retries=3, retry_delay=0.02, retry_backoff=2.0, pool="source", retry_on=ConnectionError)
async def extract(table: str) -> int:
    await anyio.sleep(rng.uniform(0.01, 0.05))  # stands in for a remote query
    attempts[table] = attempts.get(table, 0) + 1
    if int(table[-2:]) % 5 == 0 and attempts[table] == 1:  # every fifth table is flaky once
        raise ConnectionError(f"{table}: connection reset")
    return len(table) * 1000


@task
async def validate(counts: list[int]) -> int:
    if not all(counts):
        raise ValueError("an extract came back empty")
    return sum(counts)


@task(trigger_rule="one_failed")
async def alert() -> str:
    return "alert sent"


@task(trigger_rule="all_done")
async def cleanup() -> str:
    return "scratch space released"


def progress(event: object) -> None:
    if isinstance(event, TaskRetrying):
        print(f"  retry  {event.key:<14} attempt {event.attempt} failed: {event.error}")
    elif isinstance(event, TaskStateChanged) and event.state is not TaskState.RUNNING:
        print(f"  {event.state.value:<8} {event.key}")


async def main() -> None:
    counts = extract.expand(table=list_tables())
    total = validate(counts)
    total >> alert()
    total >> cleanup()
    pipeline = Pipeline("example", max_concurrency=16, pools={"source": 8})
    pipeline.add_task(total)
    started = time.perf_counter()
    result = await pipeline.run(on_event=progress)
    elapsed = time.perf_counter() - started
    retries = sum(t.attempts - 1 for t in result.tasks.values() if t.attempts > 1)
    print(
        f"\n{result.status}: {len(TABLES)} tables, {result.get('validate')} rows, "
        f"{retries} retries, {elapsed:.2f}s"
    )
    for key in ("validate", "alert", "cleanup"):
        print(f"  {key:<9} {result.states[key].value}")
    result.raise_for_status()


if __name__ == "__main__":
    anyio.run(main)
