"""Store fixtures shared by the store, resume and CLI tests: one suite, three backends.

PostgreSQL: the server at ``DREMIOFRAME_ASYNC_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``); each test session creates a fresh
database there (the ``pg_url`` fixture) and drops it at the end, and each test
gets its own schema in it. Tests skip when nothing answers there, except under
``CI=true``, where an unreachable server is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
import pytest_asyncio

from dremioframe_async.store import MemoryStore, PostgresStore, RunStore, SQLiteStore

PG_SERVER = os.environ.get("DREMIOFRAME_ASYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_unreachable() -> str | None:
    try:
        import asyncpg

        with anyio.fail_after(5):
            conn = await asyncpg.connect(PG_SERVER)
        await conn.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_SERVER)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """Run async ``fn`` to completion from sync code, even under a running event loop.

    The session fixture is first requested from inside async fixtures, where
    ``anyio.run`` cannot start a second loop on the same thread.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, fn, *args).result()


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at its end.

    Skips when no server answers at ``DREMIOFRAME_ASYNC_TEST_PG``, except under
    ``CI=true``, where that is a failure. Keep pools small: other sessions share
    the server and its ``max_connections``.
    """
    reason = _blocking(_pg_unreachable)
    if reason is not None:
        message = (
            f"PostgreSQL not reachable at {PG_SERVER} ({reason}); start one there or set "
            "DREMIOFRAME_ASYNC_TEST_PG=postgresql://user@host:port/db to run these tests"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"dfa_test_{os.getpid()}_{secrets.token_hex(4)}"
    _blocking(_admin, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(PG_SERVER, name)
    finally:
        _blocking(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def drop_schema(url: str, schema: str) -> None:
    import asyncpg

    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


StoreFactory = Callable[[], RunStore]


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgres"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """A callable opening a fresh handle on one test's store (same data every time)."""
    opened: list[RunStore] = []
    schema = f"dfa_test_{secrets.token_hex(6)}"
    memory = MemoryStore()
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""

    def factory() -> RunStore:
        store: RunStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SQLiteStore(tmp_path / "runs.sqlite")
        else:
            store = PostgresStore(url, schema=schema, max_size=3)
        opened.append(store)
        return store

    try:
        yield factory
    finally:
        for store in opened:
            await store.aclose()
        if request.param == "postgres":
            await drop_schema(url, schema)


@pytest_asyncio.fixture
async def store(store_factory: StoreFactory) -> RunStore:
    """One store per backend (memory, sqlite, postgres)."""
    return store_factory()
