"""Fan-out and fan-in, static (one task per table) and dynamic (expand at run time)."""

from __future__ import annotations

import anyio

from dremioframe_async import Pipeline, task


@task
async def list_tables() -> list[str]:
    return [f"sales_{region}" for region in ("eu", "us", "apac", "latam")]


@task(pool="warehouse")
async def extract(table: str) -> int:
    await anyio.sleep(0.02)  # these overlap: four extractions take ~0.02 s, not 0.08 s
    return len(table)


@task
async def combine(counts: list[int]) -> int:
    return sum(counts)


async def main() -> None:
    # Static fan-out: one task per known table; same-named tasks get keys extract, extract_2...
    static = [extract(t) for t in ("customers", "orders")]
    static_total = combine(static)

    # Dynamic fan-out: one instance per element of list_tables()'s result, at run time.
    dynamic_total = combine(extract.expand(table=list_tables()))

    pipeline = Pipeline("fan", max_concurrency=16, pools={"warehouse": 4})
    pipeline.add_task(static_total).add_task(dynamic_total)
    result = await pipeline.run()
    result.raise_for_status()
    print("static:", result["combine"], "dynamic:", result["combine_2"])
    print("per table:", result["extract_3"])


if __name__ == "__main__":
    anyio.run(main)
