"""DbtTask before dbt runs: a missing dbt says how to install it, a relative
``DBT_EXECUTABLE`` is found from the caller's directory. No dbt needed: a stand-in
script plays dbt where one must run."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from dremioframe_async import Pipeline, TaskState
from dremioframe_async.tasks import DbtMissing, DbtResult, DbtTask

ROOT = Path(__file__).resolve().parent.parent

# Writes a run_results.json with one successful model, as dbt would, and says where it ran.
FAKE_DBT = textwrap.dedent(
    f"""\
    #!{sys.executable}
    import json, os, pathlib, sys
    project = pathlib.Path(sys.argv[sys.argv.index("--project-dir") + 1])
    (project / "target").mkdir(exist_ok=True)
    result = {{"unique_id": "model.p.m", "status": "success", "execution_time": 0.1}}
    (project / "target" / "run_results.json").write_text(json.dumps({{"results": [result]}}))
    print("ran in", os.getcwd())
    """
)


def _run(task: DbtTask) -> tuple[TaskState, object]:
    async def go() -> tuple[TaskState, object]:
        result = await Pipeline("p").add_task(task).run()
        run = result.tasks[task.name]
        return run.state, run.error if run.error is not None else result[task.name]

    return anyio.run(go)


@pytest.mark.parametrize("given", ["no-such-dbt-here", "/no/such/dir/dbt"], ids=["name", "path"])
def test_a_missing_dbt_says_so_and_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    state, error = _run(DbtTask("d", project_dir=tmp_path, dbt_executable=given))
    assert state is TaskState.FAILED
    assert isinstance(error, DbtMissing)
    assert given in str(error)
    assert "pip install" in str(error)
    assert "DBT_EXECUTABLE" in str(error)


def test_a_relative_dbt_executable_is_found_from_the_callers_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "caller" / "venv" / "bin"
    tools.mkdir(parents=True)
    fake = tools / "dbt"
    fake.write_text(FAKE_DBT)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(tmp_path / "caller")
    monkeypatch.setenv("DBT_EXECUTABLE", os.path.join("venv", "bin", "dbt"))
    state, result = _run(DbtTask("d", project_dir=project))
    assert state is TaskState.SUCCESS, result
    assert isinstance(result, DbtResult)
    assert result.output.argv[0] == str(fake)
    assert [n.name for n in result.nodes] == ["m"]


def test_the_dbt_example_without_dbt_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "DBT_EXECUTABLE": str(tmp_path / "dbt")}
    proc = subprocess.run(
        [sys.executable, "examples/13_dbt.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "DbtMissing" in proc.stdout + proc.stderr
    assert "pip install" in proc.stdout + proc.stderr
