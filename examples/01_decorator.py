"""The @task decorator: coroutine functions run on the loop, plain functions in a thread."""

from __future__ import annotations

import anyio

from dremioframe_async import Pipeline, task


@task(name="extract_data")
async def extract() -> list[int]:
    await anyio.sleep(0.01)  # stands in for I/O
    return [1, 2, 3]


@task
def summarize(context=None) -> int:
    # A plain function: runs in a worker thread, so it may block without stalling the loop.
    return sum(context["extract_data"])


async def main() -> None:
    e, s = extract(), summarize()
    e.set_downstream(s)
    result = await Pipeline("decorator").add_task(e).run()
    result.raise_for_status()
    print("sum:", result["summarize"])


if __name__ == "__main__":
    anyio.run(main)
