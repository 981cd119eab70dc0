"""Probing serve, trigger, cancel and the run queue as a careless user or an attacker would.

Each test is a defect found by probing (or a guard against one): bad input on the
command line, signals at odd moments, processes killed mid-run, stores that do
not exist. Real processes on real stores; every process is ended in a
``finally`` (the ``procs`` fixture); ordering is by polling the store with a
deadline, never by fixed sleeps.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from _store_fixtures import drop_schema

from dremioframe_async.store import PostgresStore, RunStatus, RunStore, SQLiteStore

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    """A SQLite or PostgreSQL store (its own schema), closed and dropped afterwards."""
    if request.param == "sqlite":
        store: RunStore = SQLiteStore(tmp_path / "runs.sqlite")
        try:
            yield store
        finally:
            await store.aclose()
        return
    url = request.getfixturevalue("pg_url")
    schema = f"dfa_probe_{secrets.token_hex(5)}"
    store = PostgresStore(url, schema=schema, max_size=3)
    try:
        yield store
    finally:
        await store.aclose()
        await drop_schema(url, schema)


# ---------------------------------------------------------------- the run queue


async def test_a_full_pipeline_queue_does_not_hide_other_pipelines_runs(
    shared_store: RunStore,
) -> None:
    # 70 queued runs of a pipeline at its max_active_runs, then one run of another
    # pipeline: a claimer serving both must take the other one. (The claim looked
    # at the oldest 64 queued runs only, all of the full pipeline, and took none.)
    store = shared_store
    first = await store.enqueue("busy")
    assert (await store.claim_next({"busy": 1})) is not None
    for _ in range(70):
        await store.enqueue("busy")
    other = await store.enqueue("other")
    claimed = await store.claim_next({"busy": 1, "other": None})
    assert claimed is not None, "the run of 'other' stayed queued behind 'busy'"
    assert claimed.run_id == other
    assert (await store.get_run(other)).status is RunStatus.RUNNING
    assert (await store.get_run(first)).status is RunStatus.RUNNING
    # And the full pipeline still gets nothing until a run of it ends.
    assert (await store.claim_next({"busy": 1})) is None
