"""DbtTask: run a tiny dbt project on DuckDB; a failing model fails the task by name.

Needs dbt with the DuckDB adapter: `pip install 'dbt-core<1.12' dbt-duckdb`, in this
environment or another one (set DBT_EXECUTABLE to its dbt, e.g. .venv-dbt/bin/dbt, a
path taken from the directory you run this from). Without dbt it says so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

from dremioframe_async import Pipeline
from dremioframe_async.tasks import DbtError, DbtTask

PROJECT = """
name: shop
version: "1.0"
config-version: 2
profile: shop
"""
PROFILES = """
shop:
  target: dev
  outputs:
    dev: {type: duckdb, path: shop.duckdb, threads: 1}
"""


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "dbt_project.yml").write_text(PROJECT)
        (root / "profiles.yml").write_text(PROFILES)
        (root / "models").mkdir()
        (root / "models" / "daily_sales.sql").write_text("select 42 as total\n")
        (root / "models" / "broken.sql").write_text("select * from missing_source\n")
        build = DbtTask("dbt_run", "run", project_dir=root, profiles_dir=root, timeout=300)
        result = await Pipeline("dbt").add_task(build).run()
    error = result.tasks["dbt_run"].error
    print("dbt_run:", result.states["dbt_run"].value)
    if not isinstance(error, DbtError):  # dbt did not run: DbtMissing says how to install it
        print(f"  {type(error).__name__}: {error}")
        return
    for node in error.result.nodes:
        print(f"  {node.name}: {node.status} in {node.execution_time:.2f} s")


if __name__ == "__main__":
    anyio.run(main)
