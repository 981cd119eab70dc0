"""pytest plugin: FakeDremio and DremioClient fixtures (needs pytest-asyncio).

Registered through the ``pytest11`` entry point, so installing
``dremioframe_async[testing]`` makes the fixtures available::

    @pytest.mark.asyncio
    async def test_sales(fake_dremio, dremio_client):
        fake_dremio.add_table("shop.sales", pa.table({"n": [1, 2]}))
        table = await dremio_client.query("SELECT * FROM shop.sales")

``fake_dremio_flight`` is a FakeDremio that also serves Arrow Flight, and
``dremio_flight_client`` a client connected to both (its queries go over
Flight by default; ``via="rest"`` picks REST).

Imports of FakeDremio (DuckDB) happen when a fixture is used, so merely having
the package installed never breaks a test session.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from ..dremio import DremioClient
    from ._server import FakeDremio

__all__ = ["dremio_client", "dremio_flight_client", "fake_dremio", "fake_dremio_flight"]

F = TypeVar("F", bound=Callable[..., Any])


def _async_fixture(fn: F) -> F:
    try:
        pytest_asyncio = importlib.import_module("pytest_asyncio")
    except ImportError:  # pragma: no cover - without pytest-asyncio the fixtures explain why

        def unavailable() -> None:
            pytest.fail(f"the {fn.__name__} fixture needs pytest-asyncio installed")

        return pytest.fixture(name=fn.__name__)(unavailable)  # type: ignore[return-value]
    fixture: F = pytest_asyncio.fixture(fn)
    return fixture


@_async_fixture
async def fake_dremio() -> AsyncIterator[FakeDremio]:
    """A started FakeDremio on 127.0.0.1 (random port), stopped after the test."""
    from ._server import FakeDremio

    async with FakeDremio() as fake:
        yield fake


@_async_fixture
async def dremio_client(fake_dremio: FakeDremio) -> AsyncIterator[DremioClient]:
    """An open DremioClient connected to ``fake_dremio`` with its token, fast retries."""
    from ..dremio import DremioClient, RetryPolicy

    retry = RetryPolicy(attempts=4, max_time=10.0, backoff=0.01, max_backoff=0.2)
    async with DremioClient(fake_dremio.url, token=fake_dremio.token, retry=retry) as client:
        yield client


@_async_fixture
async def fake_dremio_flight() -> AsyncIterator[FakeDremio]:
    """A started FakeDremio serving REST and Arrow Flight (``flight_url``), stopped after."""
    from ._server import FakeDremio

    async with FakeDremio(flight=True) as fake:
        yield fake


@_async_fixture
async def dremio_flight_client(fake_dremio_flight: FakeDremio) -> AsyncIterator[DremioClient]:
    """An open DremioClient to ``fake_dremio_flight``: REST and Flight, fast retries."""
    from ..dremio import DremioClient, RetryPolicy

    retry = RetryPolicy(attempts=4, max_time=10.0, backoff=0.01, max_backoff=0.2)
    async with DremioClient(
        fake_dremio_flight.url,
        token=fake_dremio_flight.token,
        flight_url=fake_dremio_flight.flight_url,
        retry=retry,
    ) as client:
        yield client
