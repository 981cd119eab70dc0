"""Shared test configuration.

Engine tests are marked ``pytest.mark.anyio`` and run once per backend through
the ``anyio_backend`` fixture below (asyncio and trio). Tests of the Dremio
layer, which is asyncio-only, use pytest-asyncio.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _service_procs import fresh_pg as fresh_pg  # fresh PostgreSQL databases per test
from _service_procs import procs as procs  # real processes, all ended after the test
from _store_fixtures import pg_url as pg_url  # a fresh PostgreSQL database per session


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True, scope="session")
def _default_store_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes to the user's own run store: the default one is this session's file.

    (The demo and the command line record runs in the default store.) A test that
    sets ``DREMIOFRAME_ASYNC_STORE`` itself still wins.
    """
    if "DREMIOFRAME_ASYNC_STORE" in os.environ:
        yield
        return
    path = tmp_path_factory.mktemp("default-store") / "runs.sqlite"
    os.environ["DREMIOFRAME_ASYNC_STORE"] = f"sqlite:///{path}"
    try:
        yield
    finally:
        del os.environ["DREMIOFRAME_ASYNC_STORE"]
