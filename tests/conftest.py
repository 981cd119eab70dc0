"""Shared test configuration.

Engine tests are marked ``pytest.mark.anyio`` and run once per backend through
the ``anyio_backend`` fixture below (asyncio and trio). Tests of the Dremio
layer, which is asyncio-only, use pytest-asyncio.
"""

from __future__ import annotations

import pytest
from _service_procs import fresh_pg as fresh_pg  # fresh PostgreSQL databases per test
from _service_procs import procs as procs  # real processes, all ended after the test
from _store_fixtures import pg_url as pg_url  # a fresh PostgreSQL database per session


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
