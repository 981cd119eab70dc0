"""A pipeline whose one task passes its timeout, for the console-script tests."""

from __future__ import annotations

import anyio

from dremioframe_async import Pipeline, task


@task(timeout=0.2)
async def slow() -> None:
    await anyio.sleep_forever()


pipeline = Pipeline("timeouts").add_task(slow())
