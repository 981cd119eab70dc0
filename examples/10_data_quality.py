"""DataQualityTask: checks from Python and from a YAML directory, run on (Fake)Dremio.

Against a real Dremio, pass ``client=DremioClient(url, token=...)`` or set DREMIO_URL and
DREMIO_PAT; here a FakeDremio on 127.0.0.1 serves a small table (needs the testing extra).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import anyio
import pyarrow as pa

from dremioframe_async import Pipeline
from dremioframe_async.dremio import DremioClient
from dremioframe_async.tasks import AcceptedValues, DataQualityTask, NotNull, RowCount, Unique
from dremioframe_async.testing import FakeDremio

CHECKS_YAML = """
tests:
  - name: orders
    table: shop.orders
    checks:
      - {type: expression, expression: "amount >= 0", name: non_negative_amounts}
      - {type: freshness, column: updated_at, max_age: 1d}
"""


async def main() -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    orders = pa.table(
        {
            "id": [1, 2, 2, 4],
            "status": ["NEW", "PAID", "PAID", "LOST"],
            "amount": [10.0, 5.0, 5.0, -3.0],
            "updated_at": [now] * 4,
        }
    )
    async with FakeDremio() as fake, DremioClient(fake.url, token=fake.token) as client:
        fake.add_table("shop.orders", orders)
        with tempfile.TemporaryDirectory() as checks_dir:
            Path(checks_dir, "orders.yaml").write_text(CHECKS_YAML)
            dq = DataQualityTask(
                "dq",
                client=client,
                checks=[
                    NotNull("shop.orders", "id"),
                    Unique("shop.orders", "id"),
                    AcceptedValues("shop.orders", "status", ["NEW", "PAID"]),
                    RowCount("shop.orders", min=1),
                ],
                directory=checks_dir,
                on_failure="warn",  # report and carry on; "fail" fails the task
            )
            result = await Pipeline("quality").add_task(dq).run()
    report = result["dq"]
    print(report.summary())
    for check in report.failed:
        print(f"  sample of {check.name}: {check.samples[0]}")


if __name__ == "__main__":
    anyio.run(main)
