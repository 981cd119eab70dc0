"""A timed-out attempt names the limit it passed, in results, the run table and ``show``."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import anyio
import pytest
from test_cli import cli_run, latest_run_id

from dremioframe_async import Pipeline, TaskState, task
from dremioframe_async.orchestration import AttemptTimeout

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent


async def test_an_async_attempt_names_its_timeout() -> None:
    @task(timeout=0.05, retries=1)
    async def stuck() -> None:
        await anyio.sleep_forever()

    result = await Pipeline("p").add_task(stuck()).run()
    error = result.errors["stuck"]
    assert isinstance(error, TimeoutError)  # still caught as one
    assert str(error) == "attempt exceeded timeout=0.05 s"
    assert result.states["stuck"] is TaskState.FAILED


async def test_a_thread_attempt_names_its_timeout() -> None:
    release = threading.Event()

    @task(timeout=0.05)
    def stuck() -> None:
        release.wait(10)

    try:
        result = await Pipeline("p").add_task(stuck()).run()
    finally:
        release.set()
    assert isinstance(result.errors["stuck"], TimeoutError)
    assert str(result.errors["stuck"]) == "attempt exceeded timeout=0.05 s"


async def test_an_attempt_cut_by_the_deadline_names_the_deadline() -> None:
    @task(timeout=10, deadline=0.05)
    async def stuck() -> None:
        await anyio.sleep_forever()

    result = await Pipeline("p").add_task(stuck()).run()
    assert str(result.errors["stuck"]) == "attempt exceeded the task's deadline=0.05 s"


async def test_a_timeout_raised_by_the_task_itself_is_left_as_it_is() -> None:
    @task(timeout=10)
    async def own() -> None:
        raise TimeoutError("the API gave up")

    result = await Pipeline("p").add_task(own()).run()
    assert type(result.errors["own"]) is TimeoutError
    assert str(result.errors["own"]) == "the API gave up"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the console script, in a subprocess
async def test_the_run_table_and_show_name_the_limit(tmp_path: Path) -> None:
    env = {**os.environ, "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{tmp_path / 'runs.sqlite'}"}
    ran = await anyio.to_thread.run_sync(
        cli_run, env, "run", f"{HERE / '_timeout_pipeline.py'}:pipeline"
    )
    assert ran.returncode == 1, ran.stderr
    assert "attempt exceeded timeout=0.2 s" in ran.stdout
    shown = await anyio.to_thread.run_sync(cli_run, env, "show", latest_run_id(env))
    # the store keeps the error's qualified type name
    assert "slow attempt 1: dremioframe_async.orchestration." in shown.stdout
    assert "AttemptTimeout: attempt exceeded timeout=0.2 s" in shown.stdout


def test_the_error_survives_pickling() -> None:
    error = AttemptTimeout("timeout=5.0 s")
    back = pickle.loads(pickle.dumps(error))
    assert (type(back), str(back), back.limit) == (AttemptTimeout, str(error), "timeout=5.0 s")
