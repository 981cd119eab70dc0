"""PostgreSQL specifics: a schema recorded by an older version is migrated and still reads."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import _store_fixtures
import pytest
import pytest_asyncio
from test_store import sample_run

from dremioframe_async.store import PostgresStore
from dremioframe_async.store._postgres import SCHEMA_VERSION
from dremioframe_async.store._sql import migration


@pytest_asyncio.fixture
async def schema() -> AsyncIterator[str]:
    await _store_fixtures.require_pg()
    name = f"dfa_test_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        await _store_fixtures.drop_schema(name)


async def _make_version_2(schema: str) -> None:
    """A schema at version 2, holding a run written the old way (PENDING rows)."""
    import asyncpg

    p = f'"{schema}".'
    conn = await asyncpg.connect(_store_fixtures.PG_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            f"CREATE TABLE {p}schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for statement in (*migration(1, "postgres", p), *migration(2, "postgres", p)):
            await conn.execute(statement)
        await conn.execute(f"INSERT INTO {p}schema_migrations (version) VALUES (1), (2)")
        await conn.execute(
            f"INSERT INTO {p}runs (run_id, pipeline, status, started) "
            "VALUES ('old', 'p', 'FAILED', 1)"
        )
        await conn.execute(
            f"INSERT INTO {p}tasks (run_id, key, state) "
            "VALUES ('old', 'a', 'SUCCESS'), ('old', 'b', 'PENDING')"
        )
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_a_version_2_schema_with_pending_rows_is_migrated(schema: str) -> None:
    await _make_version_2(schema)
    async with PostgresStore(_store_fixtures.PG_URL, schema=schema) as store:
        assert (await store.get_run("old")).counts == {"SUCCESS": 1, "PENDING": 1}
        tasks = await store.get_tasks("old")
        assert [(t.key, t.state) for t in tasks] == [("a", "SUCCESS"), ("b", "PENDING")]
        await store.record(sample_run("new"))
        assert [t.key for t in await store.get_tasks("new")] == ["a", "b", "c", "d"]
        pool = await store._ensure()
        versions = await pool.fetch(f'SELECT version FROM "{schema}".schema_migrations')
    assert sorted(v for (v,) in versions) == list(range(1, SCHEMA_VERSION + 1))
