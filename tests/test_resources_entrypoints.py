"""Every way a run starts opens and closes its resources the same way.

The command line (run, Ctrl-C, schedule) runs the real console script in a
subprocess on a module-level pipeline whose resource logs to a file; the web
UI triggers, cancels and resumes runs in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from _processes import running
from _resource_pipeline import logged
from _ui_fixtures import UI, Gate
from aiohttp.test_utils import TestClient, TestServer
from test_cli import COMMAND

from dremioframe_async import Pipeline, TaskState, task
from dremioframe_async.store import MemoryStore, RunStatus
from dremioframe_async.testing import FakeDremio, sample_table
from dremioframe_async.ui import ui_app
from dremioframe_async.ui._state import UI_KEY

HERE = Path(__file__).parent
PIPE = f"{HERE / '_resource_pipeline.py'}:pipeline"
DREMIO_EXAMPLE = f"{HERE.parent / 'examples' / '16_dremio_resource.py'}:pipeline"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "w").mkdir()
    return tmp_path / "w"


@pytest.fixture
def env(tmp_path: Path, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{tmp_path / 'runs.sqlite'}",
        "RESOURCE_DIR": str(workdir),
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=50, check=False
    )


def test_cli_run_opens_and_closes_once(env: dict[str, str], workdir: Path) -> None:
    (workdir / "release").touch()
    done = cli(env, "run", PIPE)
    assert done.returncode == 0, done.stderr
    assert logged(workdir) == ["open", "hold", "cleanup closed=False", "close"]


def _wait_for(proc: subprocess.Popen[str], marker: Path) -> None:
    deadline = time.monotonic() + 30
    while not marker.exists():  # bounded wait for the subprocess to get there
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _start(env: dict[str, str]) -> AbstractContextManager[subprocess.Popen[str]]:
    return running(
        [*COMMAND, "run", PIPE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_cli_ctrl_c_closes_after_the_cleanup(env: dict[str, str], workdir: Path) -> None:
    with _start(env) as proc:
        _wait_for(proc, workdir / "hold.started")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert logged(workdir) == ["open", "cleanup closed=False", "close"]


def test_cli_second_ctrl_c_stops_the_cleanup_and_still_closes(
    env: dict[str, str], workdir: Path
) -> None:
    (workdir / "hold_cleanup").touch()
    with _start(env) as proc:
        _wait_for(proc, workdir / "hold.started")
        proc.send_signal(signal.SIGINT)
        _wait_for(proc, workdir / "cleanup.started")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert logged(workdir) == ["open", "close"]


def test_cli_schedule_opens_fresh_resources_per_run(env: dict[str, str], workdir: Path) -> None:
    (workdir / "release").touch()
    done = cli(env, "schedule", PIPE, "--interval", "0.01", "--max-runs", "2")
    assert done.returncode == 0, done.stderr
    one_run = ["open", "hold", "cleanup closed=False", "close"]
    assert logged(workdir) == one_run * 2


@pytest.mark.asyncio
async def test_the_dremio_example_through_the_cli_logs_in_once() -> None:
    async with FakeDremio() as fake:
        for name, rows in (("orders", 1200), ("customers", 300), ("returns", 45)):
            fake.add_table(f"shop.{name}", sample_table(rows))
        fake.add_table("elsewhere.ignored", sample_table(5))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DREMIO_")}
        env |= {
            "DREMIO_URL": fake.url,
            "DREMIO_USERNAME": fake.username,
            "DREMIO_PASSWORD": fake.password,
        }
        args = ["run", DREMIO_EXAMPLE, "--param", "folder=shop", "--store", "memory://"]
        done = await anyio.run_process([*COMMAND, *args], env=env, check=False)
        out, err = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == 0, err
        assert "3 tables, 1,545 rows" in out
        assert "shop.orders                 1,200 rows" in out
        assert len(fake.requests_to("/apiv2/login", "POST")) == 1
        assert len(fake.requests_to("/sql", "POST")) == 4  # reachable + one count per table


class Counted:
    """An in-process resource factory counting opens and closes."""

    def __init__(self) -> None:
        self.opens = 0
        self.closes = 0

    async def __aenter__(self) -> Counted:
        self.opens += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closes += 1

    def __call__(self) -> Counted:
        return self


@asynccontextmanager
async def _open_ui(pipelines: list[Pipeline]) -> AsyncIterator[UI]:
    store = MemoryStore()
    app = ui_app(store, pipelines, poll_interval=0.05)
    async with TestClient(TestServer(app)) as client:
        yield UI(client, app[UI_KEY], store, Gate())


@pytest.mark.asyncio
async def test_ui_triggered_cancelled_and_resumed_runs_open_and_close() -> None:
    resource = Counted()
    entered, fail = anyio.Event(), [True]

    @task(resources=("res",))
    async def work(res: Counted) -> int:
        entered.set()
        await anyio.sleep_forever()
        return res.opens  # pragma: no cover - cancelled

    @task(resources=("res",))
    async def flaky(res: Counted) -> int:
        if fail[0]:
            raise RuntimeError("not yet")
        return res.opens

    held = Pipeline("held", resources={"res": resource}).add_task(work())
    flaky_pipeline = Pipeline("flaky_res", resources={"res": resource}).add_task(flaky())
    async with _open_ui([held, flaky_pipeline]) as ui:
        run_id = await ui.trigger("held")
        with anyio.fail_after(10):
            await entered.wait()
        response = await ui.post(f"/api/runs/{run_id}/cancel", {})
        assert response.status in (200, 202), await response.text()
        await ui.finish(run_id)
        assert (await ui.store.get_run(run_id)).status is RunStatus.CANCELLED
        assert (resource.opens, resource.closes) == (1, 1)

        failed = await ui.trigger("flaky_res")
        await ui.finish(failed)
        assert (resource.opens, resource.closes) == (2, 2)
        fail[0] = False
        response = await ui.post(f"/api/runs/{failed}/resume", {})
        assert response.status in (200, 202), await response.text()
        resumed: dict[str, Any] = await response.json()
        await ui.finish(resumed["run_id"])
        tasks = {t.key: t for t in await ui.store.get_tasks(resumed["run_id"])}
        assert tasks["flaky"].state is TaskState.SUCCESS
        assert tasks["flaky"].result == 3  # the resumed run opened its own
        assert (resource.opens, resource.closes) == (3, 3)
