"""Shared test configuration.

Engine tests are marked ``pytest.mark.anyio`` and run once per backend through
the ``anyio_backend`` fixture below (asyncio and trio). Tests of the Dremio
layer, which is asyncio-only, use pytest-asyncio.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import pytest
from _service_procs import fresh_pg as fresh_pg  # fresh PostgreSQL databases per test
from _service_procs import procs as procs  # real processes, all ended after the test
from _store_fixtures import pg_url as pg_url  # a fresh PostgreSQL database per session


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _metrics_as_they_were() -> Iterator[None]:
    """A test that turns the process's metrics on (every ``ui_app`` does) turns them off
    after it: a later test would otherwise meter its runs, and one that counts the
    engine's memory per task found the metrics' series of 20,000 task names in it."""
    from dremioframe_async import _metrics

    registry = _metrics.REGISTRY
    enabled, pipelines = registry.enabled, registry._pipelines
    # Pipeline names are labels up to a bound, the first seen: each test starts with none
    # seen, so what earlier tests ran does not decide what a test's runs are labelled.
    registry._pipelines = _metrics._FirstSeen(_metrics.OTHER_PIPELINES)
    try:
        yield
    finally:
        registry.enabled, registry._pipelines = enabled, pipelines


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


# A socket left open is reported when the collector frees it, which for one held in a
# reference cycle is at the next full collection: often many tests after the one that
# made it. So each socket remembers the test that made it (an accepted one too), and
# the report of an unclosed socket says which test that was (in its captured stderr).
_running = ["(no test)"]
_made_in: dict[int, str] = {}
_socket_init = socket.socket.__init__


def _remember_the_test(self: socket.socket, *args: object, **kwargs: object) -> None:
    _socket_init(self, *args, **kwargs)  # type: ignore[arg-type]
    _made_in[id(self)] = _running[0]


socket.socket.__init__ = _remember_the_test  # type: ignore[method-assign]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    _running[0] = item.nodeid


@pytest.hookimpl(trylast=True)
def pytest_configure() -> None:
    report = sys.unraisablehook

    def name_the_test(unraisable: sys.UnraisableHookArgs) -> None:
        found = unraisable.object
        if isinstance(found, socket.socket) and id(found) in _made_in:
            print(f"{found!r} was made during {_made_in[id(found)]}", file=sys.stderr)
        report(unraisable)

    sys.unraisablehook = name_the_test
