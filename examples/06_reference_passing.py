"""Pass small references (paths, table names) between tasks, not data."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

from dremioframe_async import Pipeline, task


@task
async def export(context=None) -> str:
    path = anyio.Path(context["workdir"]) / f"export_{context.run_id[:8]}.csv"
    await path.write_text("id,amount\n1,10\n2,20\n")
    return str(path)  # a reference, not the rows


@task
async def count_rows(context=None) -> int:
    text = await anyio.Path(context["export"]).read_text()
    return len(text.splitlines()) - 1


async def main() -> None:
    e, c = export(), count_rows()
    e >> c
    with tempfile.TemporaryDirectory() as workdir:
        result = await Pipeline("refs").add_task(e).run(context={"workdir": workdir})
        print(Path(result["export"]).name, "has", result["count_rows"], "rows")


if __name__ == "__main__":
    anyio.run(main)
