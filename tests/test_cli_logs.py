"""``dremioframe-async logs`` and ``run --log-level/--log-format``: the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from test_cli import COMMAND, cli_run, latest_run_id

HERE = Path(__file__).parent
CHATTY = f"{HERE / '_logs_pipeline.py'}:pipeline"
SLOW = f"{HERE / '_logs_pipeline.py'}:slow_pipeline"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{tmp_path / 'runs.sqlite'}",
        "LOGS_DIR": str(tmp_path),
    }


def test_run_prints_task_lines_at_the_log_level(env: dict[str, str]) -> None:
    text = cli_run(env, "run", CHATTY, "--log-level", "info")
    assert text.returncode == 1
    lines = [ln for ln in text.stderr.splitlines() if ln.startswith("[")]
    assert "[talk] INFO dremioframe_async.task.talk: hello <b>there</b>" in lines
    assert "[talk] WARNING dremioframe_async.task.talk: careful now" in lines
    assert lines.count("[fails] ERROR dremioframe_async.task.fails: about to fail") == 2
    as_json = cli_run(env, "run", CHATTY, "--log-level", "WARNING", "--log-format", "json")
    objects = [json.loads(ln) for ln in as_json.stderr.splitlines() if ln.startswith("{")]
    assert sorted((o["task"], o["attempt"], o["level"], o["message"]) for o in objects) == [
        ("fails", 1, "ERROR", "about to fail"),
        ("fails", 2, "ERROR", "about to fail"),
        ("talk", 1, "WARNING", "careful now"),
    ]
    quiet = cli_run(env, "run", CHATTY)
    assert "about to fail" not in quiet.stderr  # no --log-level: no task lines
    # The run points to the UI (the store is the default one here: no --store to repeat).
    run_id = quiet.stdout.split("\nrun ", 1)[1].split()[0]
    assert "  dremioframe-async ui\n" in quiet.stdout
    assert f"http://127.0.0.1:8080/runs/{run_id}" in quiet.stdout
    elsewhere = cli_run(env, "run", CHATTY, "--store", env["DREMIOFRAME_ASYNC_STORE"] + "2")
    assert f"dremioframe-async ui --store {env['DREMIOFRAME_ASYNC_STORE']}2\n" in elsewhere.stdout


def test_logs_prints_a_runs_lines_by_task_and_attempt(env: dict[str, str]) -> None:
    assert cli_run(env, "run", CHATTY).returncode == 1
    run_id = latest_run_id(env)
    every = cli_run(env, "logs", run_id[:8])
    assert every.returncode == 0, every.stderr
    tags = [ln.split()[0] for ln in every.stdout.splitlines()]
    assert sorted(tags) == ["fails#1", "fails#2", "talk#1", "talk#1"]
    assert "hello <b>there</b>" in every.stdout
    one = cli_run(env, "logs", run_id, "fails", "--attempt", "2", "--format", "json")
    (line,) = [json.loads(ln) for ln in one.stdout.splitlines()]
    assert (line["task"], line["attempt"], line["message"]) == ("fails", 2, "about to fail")
    assert cli_run(env, "logs", run_id, "--attempt", "0").returncode == 2
    assert cli_run(env, "logs", "nope").returncode == 2


def test_logs_follow_prints_new_lines_until_the_run_ends(
    env: dict[str, str], tmp_path: Path
) -> None:
    runner = subprocess.Popen(
        [*COMMAND, "run", SLOW], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    follower = None
    try:
        run_id = _running_run(env)
        follower = subprocess.Popen(
            [*COMMAND, "logs", run_id, "--follow"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        first = follower.stdout.readline()  # blocks until the follower prints it
        assert "first line" in first
        (tmp_path / "release").touch()
        rest, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, err
        assert "second line" in rest
        assert runner.wait(timeout=30) == 0
    finally:
        for proc in (runner, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _running_run(env: dict[str, str]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded poll for the subprocess's run to be recorded
        listing = cli_run(env, "runs", "--limit", "1")
        rows = listing.stdout.splitlines()
        if listing.returncode == 0 and len(rows) > 2 and "RUNNING" in rows[2]:
            return rows[2].split()[0]
        time.sleep(0.2)
    raise AssertionError("the run never showed as RUNNING")
