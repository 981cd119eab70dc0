"""Test support: :class:`FakeDremio`, a real HTTP server speaking Dremio's REST API.

Its pytest plugin (``dremioframe_async.testing.pytest_plugin``, registered
through the ``pytest11`` entry point) provides the ``fake_dremio`` and
``dremio_client`` fixtures. DuckDB is needed: ``pip install 'dremioframe_async[testing]'``.
"""

from __future__ import annotations

from ._flight import FakeFlightServer, FlightCall
from ._model import CannedResponse, RecordedRequest
from ._samples import sample_table
from ._server import FakeDremio
from ._sql import duckdb_missing

__all__ = [
    "CannedResponse",
    "FakeDremio",
    "FakeFlightServer",
    "FlightCall",
    "RecordedRequest",
    "duckdb_missing",
    "sample_table",
]
