"""Store fixtures shared by the store, resume and CLI tests: one suite, three backends.

PostgreSQL: ``DREMIOFRAME_ASYNC_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets its own schema,
dropped afterwards. Tests skip when nothing answers there, except under
``CI=true``, where an unreachable server is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

from dremioframe_async.store import MemoryStore, PostgresStore, RunStore, SQLiteStore

PG_URL = os.environ.get("DREMIOFRAME_ASYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_pg_error: list[str] = []


async def pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can."""
    if _pg_error:
        return _pg_error[0] or None
    try:
        import asyncpg

        with anyio.fail_after(5):
            conn = await asyncpg.connect(PG_URL)
        await conn.close()
        _pg_error.append("")
    except Exception as exc:
        _pg_error.append(f"{type(exc).__name__}: {exc}")
    return _pg_error[0] or None


async def require_pg() -> None:
    """Skip (fail under CI=true) when PostgreSQL is unreachable."""
    reason = await pg_unreachable()
    if reason is None:
        return
    message = (
        f"PostgreSQL not reachable at {PG_URL} ({reason}); start one there or set "
        "DREMIOFRAME_ASYNC_TEST_PG=postgresql://user@host:port/db to run these tests"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def drop_schema(schema: str) -> None:
    import asyncpg

    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        conn = await asyncpg.connect(PG_URL)
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
    if request.param == "postgres":
        await require_pg()

    def factory() -> RunStore:
        store: RunStore
        if request.param == "memory":
            store = memory
        elif request.param == "sqlite":
            store = SQLiteStore(tmp_path / "runs.sqlite")
        else:
            store = PostgresStore(PG_URL, schema=schema)
        opened.append(store)
        return store

    try:
        yield factory
    finally:
        for store in opened:
            await store.aclose()
        if request.param == "postgres":
            await drop_schema(schema)


@pytest_asyncio.fixture
async def store(store_factory: StoreFactory) -> RunStore:
    """One store per backend (memory, sqlite, postgres)."""
    return store_factory()
