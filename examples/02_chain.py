"""A chain: extract -> transform -> load, with results passed as arguments."""

from __future__ import annotations

import anyio

from dremioframe_async import Pipeline, task


@task
async def extract(table: str) -> list[dict[str, int]]:
    return [{"id": i, "amount": i * 10} for i in range(5)]


@task
async def transform(rows: list[dict[str, int]]) -> list[dict[str, int]]:
    return [r for r in rows if r["amount"] >= 20]


@task
async def load(rows: list[dict[str, int]]) -> str:
    return f"loaded {len(rows)} rows"


async def main() -> None:
    final = load(transform(extract("sales")))  # data edges: each result feeds the next
    pipeline = Pipeline("chain").add_task(final)
    print(pipeline.visualize())
    result = await pipeline.run()
    print(result["load"])


if __name__ == "__main__":
    anyio.run(main)
