"""The pytest plugin's fixtures, used as a user on pytest-asyncio would use them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dremioframe_async.dremio import DremioClient
from dremioframe_async.testing import FakeDremio


@pytest.mark.asyncio
async def test_fixtures_give_a_connected_client(
    fake_dremio: FakeDremio, dremio_client: DremioClient
) -> None:
    fake_dremio.add_table("shop.sales", pa.table({"n": [1, 2, 3]}))
    table = await dremio_client.query("SELECT SUM(n) AS total FROM shop.sales")
    assert table.to_pylist() == [{"total": 6}]
    assert dremio_client.config.root == fake_dremio.url


def test_plugin_is_registered_through_the_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("dremioframe_async")
