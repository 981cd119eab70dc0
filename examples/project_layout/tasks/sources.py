"""Tasks that read from source systems."""

from __future__ import annotations

import anyio

from dremioframe_async import task


@task(retries=2, retry_delay=0.05, pool="source")
async def extract(table: str) -> dict[str, object]:
    await anyio.sleep(0.01)  # stands in for a query
    return {"table": table, "rows": len(table) * 100}
