"""A module-level pipeline whose tasks share one Dremio client per run, run by the command line.

    export DREMIO_URL=http://localhost:9047 DREMIO_PAT=...   # or DREMIO_USERNAME/DREMIO_PASSWORD
    dremioframe-async run examples/16_dremio_resource.py:pipeline --param folder=sales

The pipeline is built at import time, where no event loop runs, so it declares
how to make its client (``DremioClient``, configured from the environment)
rather than an open one. Each run opens one client when its first task needs
it, shares it between all of its tasks (one login with username/password), and
closes it when the run ends, also on failure or Ctrl-C.

Without a Dremio at hand, ``python examples/16_dremio_resource.py`` starts an
embedded FakeDremio (``pip install 'dremioframe_async[testing]'``) and runs the
command above against it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio

from dremioframe_async import Pipeline, RunContext, task
from dremioframe_async.dremio import RETRYABLE_ERRORS, DremioClient, split_path
from dremioframe_async.tasks import DremioSqlTask, quote_path


@task(resources=("dremio",))
async def list_tables(context: RunContext, dremio: DremioClient) -> list[list[str]]:
    folder = str(context.params.get("folder", "sales"))
    entity = await dremio.catalog_by_path(split_path(folder))
    children = entity.get("children") or []
    return [list(c["path"]) for c in children if c.get("type") == "DATASET"]


@task(resources=("dremio",), retries=2, retry_delay=0.5, retry_on=RETRYABLE_ERRORS)
async def row_count(table: list[str], dremio: DremioClient) -> dict[str, Any]:
    counted = await dremio.query(f"SELECT COUNT(*) AS n FROM {quote_path(table)}")
    return {"table": ".".join(table), "rows": int(counted.column(0)[0].as_py())}


@task
def report(counts: list[dict[str, Any]]) -> str:
    for item in sorted(counts, key=lambda c: c["table"]):
        print(f"{item['table']:<24} {item['rows']:>8,} rows")
    summary = f"{len(counts)} tables, {sum(c['rows'] for c in counts):,} rows"
    print(summary)
    return summary


# A ready-made Dremio task without client= uses the run's "dremio" resource too.
reachable = DremioSqlTask("reachable", "SELECT 1 AS ok")
tables = list_tables()
reachable >> tables
pipeline = Pipeline(
    "dremio_row_counts", max_concurrency=16, resources={"dremio": DremioClient}
).add_task(report(row_count.expand(table=tables)))


async def _against_fake_dremio() -> int:
    from dremioframe_async.testing import FakeDremio, sample_table

    async with FakeDremio() as fake:
        for name, rows in (("orders", 1200), ("customers", 300), ("returns", 45)):
            fake.add_table(f"sales.{name}", sample_table(rows))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DREMIO_")}
        env |= {
            "DREMIO_URL": fake.url,
            "DREMIO_USERNAME": fake.username,
            "DREMIO_PASSWORD": fake.password,
        }
        command = [sys.executable, "-m", "dremioframe_async", "run", f"{__file__}:pipeline"]
        done = await anyio.run_process(
            [*command, "--store", "memory://"], env=env, check=False, stdout=None, stderr=None
        )
        logins = len(fake.requests_to("/apiv2/login", "POST"))
        print(f"FakeDremio saw {logins} login(s) in the whole run")
        return done.returncode


if __name__ == "__main__":
    sys.exit(anyio.run(_against_fake_dremio))
