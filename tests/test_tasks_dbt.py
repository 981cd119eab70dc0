"""DbtTask with a tiny dbt project on dbt-duckdb: a passing model, a failing one, cancellation.

dbt's pins clash with the dev tools', so it lives in its own virtualenv:
``python3 -m venv .venv-dbt && .venv-dbt/bin/pip install 'dbt-core>=1.8,<1.12' dbt-duckdb``
(CI does this), or point ``DREMIOFRAME_ASYNC_TEST_DBT`` at a dbt executable.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import anyio
import pytest

from dremioframe_async import Pipeline, TaskState
from dremioframe_async.tasks import Credential, DbtError, DbtResult, DbtTask

ROOT = Path(__file__).resolve().parent.parent
DBT = os.environ.get("DREMIOFRAME_ASYNC_TEST_DBT") or str(ROOT / ".venv-dbt" / "bin" / "dbt")
HINT = (
    "needs dbt with dbt-duckdb: python3 -m venv .venv-dbt && "
    ".venv-dbt/bin/pip install 'dbt-core>=1.8,<1.12' dbt-duckdb "
    "(or set DREMIOFRAME_ASYNC_TEST_DBT to a dbt executable)"
)

if not Path(DBT).exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"dbt missing at {DBT}: {HINT}", pytrace=False)
    pytest.skip(HINT, allow_module_level=True)

# dbt starts slowly (seconds) on a busy machine: these tests get more than the default.
pytestmark = [pytest.mark.timeout(240), pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text(
        textwrap.dedent(
            """
            name: tiny
            version: "1.0"
            config-version: 2
            profile: tiny
            model-paths: ["models"]
            """
        )
    )
    (tmp_path / "profiles.yml").write_text(
        textwrap.dedent(
            """
            tiny:
              target: dev
              outputs:
                dev:
                  type: duckdb
                  path: "{{ env_var('TINY_DB_PATH') }}"
                  threads: 1
            """
        )
    )
    models = tmp_path / "models"
    (models / "good.sql").write_text("select {{ var('answer', 1) }} as id\n")
    (models / "bad.sql").write_text("select * from no_such_table\n")
    # A table, not a view (dbt-duckdb's default), so the query really runs: for hours.
    (models / "slow.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select sum(hash(range)) as n from range(1000000000000)\n"
    )
    return tmp_path


def task(project: Path, name: str = "dbt", **kwargs) -> DbtTask:
    kwargs.setdefault("env", {"TINY_DB_PATH": str(project / "tiny.duckdb")})
    return DbtTask(name, project_dir=project, profiles_dir=project, dbt_executable=DBT, **kwargs)


async def test_a_passing_and_a_failing_model(project: Path) -> None:
    result = await Pipeline("p").add_task(task(project, exclude="slow")).run()
    assert result.states["dbt"] is TaskState.FAILED
    error = result.tasks["dbt"].error
    assert isinstance(error, DbtError)
    assert "1 failed (bad)" in str(error)
    assert "no_such_table" in str(error)
    statuses = {n.name: n.status for n in error.result.nodes}
    assert statuses == {"good": "success", "bad": "error"}
    assert error.result.returncode == 1


async def test_selected_models_succeed_with_vars(project: Path) -> None:
    secret = "duck-secret-4411"
    env = {"TINY_DB_PATH": str(project / "tiny.duckdb"), "UNUSED_PASSWORD": Credential(secret)}
    t = task(project, select="good", vars={"answer": 42}, env=env)
    result = await Pipeline("p").add_task(t).run()
    result.raise_for_status()
    out = result["dbt"]
    assert isinstance(out, DbtResult)
    assert out.success
    (node,) = out.nodes
    assert (node.unique_id, node.status) == ("model.tiny.good", "success")
    assert node.execution_time > 0
    assert "--vars" in t.argv("dbt")
    assert secret not in repr(t)


async def test_cancellation_stops_dbt(project: Path) -> None:
    marker = str(project)
    log = project / "logs" / "dbt.log"

    def dbt_processes() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                except (FileNotFoundError, ProcessLookupError):
                    continue
                if marker in cmdline and state not in ("Z", "X"):
                    found.append(int(entry.name))
        return found

    ended = anyio.Event()

    async def run() -> None:
        try:
            await Pipeline("p").add_task(task(project, select="slow", kill_grace=2)).run()
        finally:
            ended.set()

    with anyio.fail_after(200):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            # dbt logs the model's start once the slow query is running
            while not (log.exists() and "slow" in log.read_text(errors="replace")):
                assert not ended.is_set(), "dbt ended before it could be cancelled"
                await anyio.sleep(0.1)  # polling dbt's own log, not ordering by time
            assert dbt_processes()
            tg.cancel_scope.cancel()
        with anyio.move_on_after(10):
            while dbt_processes():
                await anyio.sleep(0.05)
    assert dbt_processes() == []


def test_bad_command() -> None:
    with pytest.raises(ValueError, match="subcommand"):
        DbtTask("d", "run --full-refresh", project_dir=".")


def test_the_example_runs() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "examples/13_dbt.py"],
        cwd=ROOT,
        env={**os.environ, "DBT_EXECUTABLE": DBT},
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "broken: error" in proc.stdout
    assert "daily_sales: success" in proc.stdout
