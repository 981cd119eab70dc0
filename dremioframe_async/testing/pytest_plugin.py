"""pytest plugin: ``fake_dremio`` and ``dremio_client`` fixtures (needs pytest-asyncio).

Registered through the ``pytest11`` entry point, so installing
``dremioframe_async[testing]`` makes the fixtures available::

    @pytest.mark.asyncio
    async def test_sales(fake_dremio, dremio_client):
        fake_dremio.add_table("shop.sales", pa.table({"n": [1, 2]}))
        table = await dremio_client.query("SELECT * FROM shop.sales")

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

__all__ = ["dremio_client", "fake_dremio"]

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
