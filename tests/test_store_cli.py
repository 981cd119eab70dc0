"""The command line and the store: bad URLs, unusable stores, lost history, resume safety."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from _crash_pipeline import ran
from _store_fixtures import drop_schema

HERE = Path(__file__).parent
PIPE = f"{HERE / '_crash_pipeline.py'}:pipeline"
_SCRIPT = Path(sys.executable).with_name("dremioframe-async")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dremioframe_async"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "w").mkdir()
    return {
        **os.environ,
        "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{tmp_path / 'runs.sqlite'}",
        "CRASHY_DIR": str(tmp_path / "w"),
    }


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=50, check=False
    )


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("command", ["run", "runs"])
def test_a_malformed_store_url_is_a_usage_error(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    args = [PIPE] if command == "run" else []
    done = cli(env, command, *args, "--store", "sqlite:x.sqlite", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr)
    assert "did you mean sqlite:///x.sqlite" in line
    assert list(tmp_path.glob("sqlite*")) == []  # no file named after the URL
    assert ran(tmp_path / "w") == []


def test_a_three_slash_sqlite_url_is_relative_to_the_working_directory(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "w" / "release").touch()
    done = cli(env, "run", PIPE, "--store", "sqlite:///here.sqlite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "here.sqlite").is_file()
    listed = cli(env, "runs", "--store", "sqlite:///here.sqlite", cwd=tmp_path)
    assert "crashy" in listed.stdout, listed.stderr


@pytest.mark.parametrize("command", ["run", "runs"])
def test_a_store_in_a_missing_folder_is_an_error_naming_it(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    args = [PIPE] if command == "run" else []
    done = cli(env, command, *args, "--store", "sqlite:///nope/runs.sqlite", cwd=tmp_path)
    assert done.returncode == 4, done.stderr
    line = _one_line(done.stderr)
    assert "sqlite:///nope/runs.sqlite" in line  # the URL as given
    assert "nope" in line.split("sqlite:///nope/runs.sqlite", 1)[1]  # and the folder
    assert not (tmp_path / "nope").exists()
    assert ran(tmp_path / "w") == []


@pytest.mark.parametrize("command", ["run", "runs"])
def test_an_unreachable_store_is_one_line_and_exit_4(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    (tmp_path / "w" / "release").touch()
    args = [PIPE] if command == "run" else []
    url = "postgresql://postgres:hunter2@127.0.0.1:1/db"
    done = cli(env, command, *args, "--store", url)
    assert done.returncode == 4, done.stderr
    line = _one_line(done.stderr)
    assert "postgresql://postgres:***@127.0.0.1:1/db" in line
    assert "hunter2" not in done.stderr + done.stdout
    assert ran(tmp_path / "w") == []  # the run did not start


def test_a_missing_driver_is_one_line_with_the_install_hint(env: dict[str, str]) -> None:
    code = (
        "import sys; sys.modules['asyncpg'] = None\n"
        "from dremioframe_async.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "runs", "--store", "postgresql://u@127.0.0.1:1/db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert "pip install 'dremioframe_async[postgres]'" in _one_line(done.stderr)


_BREAKS = """
import os
import asyncpg
from dremioframe_async import Pipeline, task

@task(name="breaks_the_store")
async def breaks_the_store() -> int:
    conn = await asyncpg.connect(os.environ["BREAK_URL"])
    try:
        await conn.execute(f'ALTER TABLE "{os.environ["BREAK_SCHEMA"]}".tasks RENAME TO gone')
    finally:
        await conn.close()
    return 1

pipeline = Pipeline("breaks").add_task(breaks_the_store())
"""


def test_a_run_whose_history_is_lost_exits_3(
    env: dict[str, str], tmp_path: Path, pg_url: str
) -> None:
    schema = f"dfa_test_{secrets.token_hex(6)}"
    (tmp_path / "breaks.py").write_text(_BREAKS)
    env = {**env, "BREAK_URL": pg_url, "BREAK_SCHEMA": schema}
    try:
        done = cli(
            env, "run", f"{tmp_path / 'breaks.py'}:pipeline", "--store", f"{pg_url}?schema={schema}"
        )
    finally:
        anyio.run(drop_schema, pg_url, schema)
    assert done.returncode == 3, done.stderr
    assert "SUCCESS" in done.stdout  # the run itself succeeded...
    assert "could not be recorded" in done.stderr  # ...but says what was lost
    assert "Traceback" not in done.stderr


def test_a_schedule_whose_history_is_lost_exits_3(
    env: dict[str, str], tmp_path: Path, pg_url: str
) -> None:
    schema = f"dfa_test_{secrets.token_hex(6)}"
    (tmp_path / "breaks.py").write_text(_BREAKS)
    env = {**env, "BREAK_URL": pg_url, "BREAK_SCHEMA": schema}
    store = f"{pg_url}?schema={schema}"
    try:
        args = ("--interval", "0.2", "--max-runs", "1", "--store", store)
        done = cli(env, "schedule", f"{tmp_path / 'breaks.py'}:pipeline", *args)
    finally:
        anyio.run(drop_schema, pg_url, schema)
    assert done.returncode == 3, done.stderr
    assert "SUCCESS" in done.stdout
    assert "could not be recorded" in done.stderr
    assert "1 run(s) lost part of their history" in done.stderr


def test_the_exit_codes_are_documented(env: dict[str, str]) -> None:
    shown = cli(env, "--help").stdout
    assert "3 the run finished but its history could not be recorded" in " ".join(shown.split())


def test_resume_with_changed_params_needs_allow_param_change(
    env: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "w"
    (work / "release").touch()
    (work / "fail_b").touch()
    assert cli(env, "run", PIPE, "--param", "day=1").returncode == 1
    run_id = cli(env, "runs", "--limit", "1").stdout.splitlines()[2].split()[0]
    (work / "fail_b").unlink()
    refused = cli(env, "run", PIPE, "--resume", run_id, "--param", "day=2")
    assert refused.returncode == 2, refused.stderr
    assert "--allow-param-change" in _one_line(refused.stderr)
    assert ran(work) == ["a"]
    allowed = cli(env, "run", PIPE, "--resume", run_id, "--param", "day=2", "--allow-param-change")
    assert allowed.returncode == 0, allowed.stderr
    assert ran(work) == ["a", "b", "c", "d"]
