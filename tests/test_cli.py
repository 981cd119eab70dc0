"""The real console script in a subprocess: exit codes, runs/show output, resume, SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from _crash_pipeline import ran

from dremioframe_async import cli

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


def cli_run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=50, check=False
    )


def latest_run_id(env: dict[str, str]) -> str:
    out = cli_run(env, "runs", "--limit", "1").stdout.splitlines()
    return out[2].split()[0]


def test_failed_run_show_and_resume(env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "w"
    (work / "release").touch()
    (work / "fail_b").touch()
    failed = cli_run(env, "run", PIPE, "--param", "day=3", "--param", "name=x")
    assert failed.returncode == 1, failed.stderr
    assert "RuntimeError: b was told to fail" in failed.stdout
    assert "failed b" in failed.stderr  # progress notes on a non-terminal
    run_id = latest_run_id(env)

    listing = cli_run(env, "runs", "--pipeline", "crashy")
    assert listing.returncode == 0
    assert run_id in listing.stdout
    assert "FAILED" in listing.stdout

    shown = cli_run(env, "show", run_id)
    assert shown.returncode == 0
    assert '{"day": 3, "name": "x"}' in shown.stdout
    assert "b attempt 1: RuntimeError: b was told to fail" in shown.stdout
    assert "Traceback (most recent call last)" in shown.stdout

    (work / "fail_b").unlink()
    resumed = cli_run(env, "run", PIPE, "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from run {run_id}" in resumed.stdout
    assert ran(work) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no_colon"], "expected module:pipeline"),
        (["run", "no_such_module_xyz:p"], "no module named"),
        (["run", f"{HERE / '_crash_pipeline.py'}:missing"], "has no attribute"),
        (["run", "os:sep"], "not a Pipeline"),
        (["run", PIPE, "--resume", "no-such-run"], "no run 'no-such-run'"),
        (["run", PIPE, "--param", "novalue"], "key=value"),
        (["run", PIPE, "--store", "mysql://x/y"], "cannot open a run store"),
        (["show", "no-such-run"], "no run 'no-such-run'"),
        (["schedule", PIPE, "--cron", "not a cron"], "invalid cron"),
        (["schedule", PIPE], "one of the arguments --cron --interval is required"),
        (["frobnicate"], "invalid choice"),
    ],
    ids=[
        "no-colon",
        "no-module",
        "no-attribute",
        "not-a-pipeline",
        "unknown-resume",
        "bad-param",
        "bad-store",
        "unknown-show",
        "bad-cron",
        "no-schedule",
        "no-command",
    ],
)
def test_usage_errors_exit_2(env: dict[str, str], args: list[str], message: str) -> None:
    done = cli_run(env, *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_graph_prints_mermaid(env: dict[str, str]) -> None:
    done = cli_run(env, "graph", PIPE)
    assert done.returncode == 0
    assert done.stdout.startswith("graph TD")
    assert "c --> d" in done.stdout


def test_schedule_runs_and_records(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "w" / "release").touch()
    done = cli_run(env, "schedule", PIPE, "--interval", "0.01", "--max-runs", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("SUCCESS in") == 2
    assert cli_run(env, "runs").stdout.count("SUCCESS") == 2


def test_sigint_cancels_and_records_cancelled(env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*COMMAND, "run", PIPE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    marker = tmp_path / "w" / "c.started"
    deadline = time.monotonic() + 30
    while not marker.exists():  # bounded wait for c to be running
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "recorded as CANCELLED" in err
    listing = cli_run(env, "runs")
    assert "CANCELLED" in listing.stdout
    shown = cli_run(env, "show", latest_run_id(env))
    assert "c     CANCELLED" in shown.stdout
    assert ran(tmp_path / "w") == ["a", "b"]


def test_demo_delegates_to_the_demo_module(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("dremioframe_async.demo")
    fake.main = lambda argv: seen.append(argv) or 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dremioframe_async.demo", fake)
    assert cli.main(["demo", "--fast", "x"]) == 3
    assert seen == [["--fast", "x"]]


def test_demo_missing_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "dremioframe_async.demo", None)  # import fails
    real = cli.importlib.import_module

    def fake_import(name: str) -> object:
        if name == "dremioframe_async.demo":
            raise ModuleNotFoundError(name=name)
        return real(name)

    monkeypatch.setattr(cli.importlib, "import_module", fake_import)
    assert cli.main(["demo"]) == 1
    assert "demo is not part of this installation" in capsys.readouterr().err
