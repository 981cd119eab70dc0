"""DremioQueryTask over Arrow Flight, and the pytest plugin's Flight fixtures."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dremioframe_async import Pipeline
from dremioframe_async.demo import run_demo
from dremioframe_async.dremio import DremioClient, DremioConfigError
from dremioframe_async.tasks import DremioQueryTask
from dremioframe_async.testing import FakeDremio, sample_table


@pytest.mark.asyncio
async def test_query_task_uses_flight_when_the_client_has_it(
    fake_dremio_flight: FakeDremio, dremio_flight_client: DremioClient, tmp_path: Path
) -> None:
    fake_dremio_flight.add_table("lake.sales", sample_table(2_000))
    table_task = DremioQueryTask("table", "SELECT * FROM lake.sales ORDER BY id")
    file_task = DremioQueryTask(
        "file", "SELECT * FROM lake.sales ORDER BY id", output_path=tmp_path / "sales.parquet"
    )
    # Lent to the run as its "dremio" resource; the fixture closes it.
    lent = {"dremio": lambda: contextlib.nullcontext(dremio_flight_client)}
    result = await Pipeline("p", resources=lent).add_task(table_task).add_task(file_task).run()
    result.raise_for_status()
    assert result["table"].equals(sample_table(2_000))
    assert pq.read_table(result["file"]).equals(sample_table(2_000))
    assert fake_dremio_flight.requests_to("/sql") == []
    do_gets = [c for c in fake_dremio_flight.flight.calls if c.method == "do_get"]
    assert [c.rows for c in do_gets] == [2_000, 2_000]


@pytest.mark.asyncio
async def test_via_rest_overrides_flight(
    fake_dremio_flight: FakeDremio, dremio_flight_client: DremioClient
) -> None:
    fake_dremio_flight.add_table("lake.sales", sample_table(700))
    query = DremioQueryTask(
        "q", "SELECT * FROM lake.sales ORDER BY id", client=dremio_flight_client, via="rest"
    )
    result = await Pipeline("p").add_task(query).run()
    result.raise_for_status()
    assert result["q"].equals(sample_table(700))
    assert fake_dremio_flight.flight.calls == []
    assert len(fake_dremio_flight.requests_to("/sql", "POST")) == 1


@pytest.mark.asyncio
async def test_the_flight_fixtures_share_tables_and_credentials(
    fake_dremio_flight: FakeDremio, dremio_flight_client: DremioClient
) -> None:
    assert dremio_flight_client.flight_url == fake_dremio_flight.flight_url
    fake_dremio_flight.add_table("shop.n", sample_table(3))
    over_flight = await dremio_flight_client.query("SELECT id FROM shop.n ORDER BY id")
    over_rest = await dremio_flight_client.query("SELECT id FROM shop.n ORDER BY id", via="rest")
    assert over_flight.equals(over_rest)


@pytest.mark.asyncio
async def test_flight_needs_flight_true(fake_dremio: FakeDremio) -> None:
    with pytest.raises(RuntimeError, match="flight=True"):
        _ = fake_dremio.flight_url


@pytest.mark.parametrize(
    ("argv", "path", "banner"),
    [
        pytest.param([], "flight", "over Arrow Flight", id="default-flight"),
        pytest.param(["--via", "rest"], "rest", "over REST", id="via-rest"),
    ],
)
def test_the_demo_uses_flight_by_default_and_says_so(
    tmp_path: Path, argv: list[str], path: str, banner: str
) -> None:
    code = "import sys; from dremioframe_async.demo import main; sys.exit(main(sys.argv[1:]))"
    args = ["--tables", "3", "--rows", "3000", "--out", str(tmp_path / "out"), *argv]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=50, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        rf"SUCCESS: 3,000 rows in [\d.]+s \([\d,]+ rows/s\) via {path}$", proc.stdout, re.M
    )
    assert banner in proc.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["orders_apac.parquet", "orders_eu.parquet", "orders_us.parquet"]
    assert sum(pq.read_metadata(tmp_path / "out" / f).num_rows for f in files) == 3_000


@pytest.mark.asyncio
async def test_the_demo_via_flight_without_an_endpoint_fails_once_and_early(
    fake_dremio: FakeDremio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DREMIO_FLIGHT_URL", raising=False)
    fake_dremio.add_table("lake.raw.a", sample_table(10))
    with pytest.raises(DremioConfigError, match="flight-url"):
        await run_demo(url=fake_dremio.url, pat=fake_dremio.token, folder="lake.raw", via="flight")
    assert fake_dremio.requests == []  # nothing was sent
