"""The real console script in a subprocess: exit codes, runs/show output, resume, SIGINT."""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import anyio
import pytest
from _crash_pipeline import ran
from _processes import running

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
    assert done.stderr.count("\n") == 1, done.stderr  # one line, naming the error's type
    assert re.search(r": error: [A-Z][A-Za-z]+: ", done.stderr), done.stderr


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


def test_schedule_says_when_it_fires_and_what_failed(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "w" / "release").touch()
    (tmp_path / "w" / "fail_b").touch()
    done = cli_run(env, "schedule", PIPE, "--interval", "0.01", "--max-runs", "1")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert re.fullmatch(r"scheduling \S+ every 0\.01 s over .+; next fire at \S+", first), first
    assert "FAILED in" in done.stdout
    assert re.search(r"^  b: \w+: ", done.stdout, re.MULTILINE), done.stdout  # the task and error


def test_sigint_cancels_and_records_cancelled(env: dict[str, str], tmp_path: Path) -> None:
    with running(
        [*COMMAND, "run", PIPE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
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


def _wait_for(proc: subprocess.Popen[str], marker: Path) -> None:
    deadline = time.monotonic() + 30
    while not marker.exists():  # bounded wait for the subprocess to get there
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{marker.name} never appeared"
        time.sleep(0.02)


CLEANUP_PIPE = f"{HERE / '_cleanup_pipeline.py'}:pipeline"


def test_sigint_runs_the_cleanup_and_prints_the_summary(
    env: dict[str, str], tmp_path: Path
) -> None:
    env["CLEANUP_DIR"] = str(tmp_path / "w")
    with running(
        [*COMMAND, "run", CLEANUP_PIPE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _wait_for(proc, tmp_path / "w" / "work.started")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert (tmp_path / "w" / "cleaned").exists()
        rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:] if line.strip()}
        assert rows == {"work": "CANCELLED", "cleanup": "SUCCESS"}, out
        assert "recorded as CANCELLED" in err
        shown = cli_run(env, "show", latest_run_id(env)).stdout
        assert "status    CANCELLED" in shown
        assert "cleanup  SUCCESS" in shown


def test_second_sigint_stops_the_cleanup(env: dict[str, str], tmp_path: Path) -> None:
    env["CLEANUP_DIR"] = str(tmp_path / "w")
    (tmp_path / "w" / "hang").touch()  # the cleanup blocks; its grace is an hour
    with running(
        [*COMMAND, "run", CLEANUP_PIPE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _wait_for(proc, tmp_path / "w" / "work.started")
        proc.send_signal(signal.SIGINT)
        _wait_for(proc, tmp_path / "w" / "cleanup.started")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "interrupted again" in err
        assert "cleanup  CANCELLED" in out
        assert "second cancellation" in out
        assert not (tmp_path / "w" / "cleaned").exists()


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
    real = importlib.import_module

    def fake_import(name: str) -> object:
        if name == "dremioframe_async.demo":
            raise ModuleNotFoundError(name=name)
        return real(name)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    assert cli.main(["demo"]) == 1
    assert "demo is not part of this installation" in capsys.readouterr().err


# ---------------------------------------------------------------- errors and messages

PIPES = f"{HERE / '_cli_pipelines.py'}"


def cli_in(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


@pytest.mark.parametrize("command", ["graph", "run"])
def test_definition_error_is_one_line_with_its_type(env: dict[str, str], command: str) -> None:
    done = cli_run(env, command, f"{PIPES}:cycle")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert f"dremioframe-async {command}: error: CycleError: " in done.stderr
    assert "a -> b -> a" in done.stderr or "b -> a -> b" in done.stderr
    full = cli_run(env, command, f"{PIPES}:cycle", "--traceback")
    assert full.returncode == 2
    assert "Traceback (most recent call last)" in full.stderr
    assert full.stderr.rstrip().splitlines()[-1].startswith(f"dremioframe-async {command}: error")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import no_such_dependency_xyz\n", "ModuleNotFoundError: No module named 'no_such_depend"),
        ("import os\nURL = os.environ['DREMIO_URL_XYZ']\n", "KeyError: 'DREMIO_URL_XYZ': the en"),
        ("raise RuntimeError('broken at import')\n", "RuntimeError: broken at import"),
        ("def broken(:\n", "SyntaxError: "),
    ],
    ids=["missing-dependency", "missing-env-var", "raises", "syntax"],
)
def test_user_import_errors_are_shown_as_such(
    env: dict[str, str], tmp_path: Path, source: str, expected: str
) -> None:
    (tmp_path / "my_etl.py").write_text(source, encoding="utf-8")
    for ref in ("my_etl:pipeline", f"{tmp_path / 'my_etl.py'}:pipeline"):
        done = cli_in(tmp_path, env, "run", ref)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert expected in done.stderr
        assert "raised while importing" in done.stderr


def test_only_a_pipeline_or_a_declared_factory_is_called(
    env: dict[str, str], tmp_path: Path
) -> None:
    aborted = cli_run(env, "graph", "os:abort")
    assert aborted.returncode == 2, aborted.stderr  # not -SIGABRT
    assert "not a Pipeline or a function returning one" in aborted.stderr
    env["CLI_MARKER"] = str(tmp_path / "called")
    unannotated = cli_run(env, "graph", f"{PIPES}:unannotated")
    assert unannotated.returncode == 2
    assert "annotate it `-> Pipeline`" in unannotated.stderr
    assert not (tmp_path / "called").exists()
    needs = cli_run(env, "graph", f"{PIPES}:needs_arguments")
    assert needs.returncode == 2
    assert "needs arguments (day)" in needs.stderr
    assert cli_run(env, "graph", f"{PIPES}:noisy").returncode == 0


_PIPELINE_SOURCE = """
from dremioframe_async import Pipeline, task

@task(name="use_stdlib")
async def use_stdlib() -> str:
    import json
    import colorsys
    return json.dumps(colorsys.rgb_to_hsv(0, 0, 0))

def pipeline() -> Pipeline:
    return Pipeline("shadow").add_task(use_stdlib())
"""


def test_a_py_path_never_shadows_an_installed_module(env: dict[str, str], tmp_path: Path) -> None:
    # A json.py holding the pipeline, and a colorsys.py beside it: neither replaces stdlib's.
    (tmp_path / "json.py").write_text(_PIPELINE_SOURCE, encoding="utf-8")
    (tmp_path / "colorsys.py").write_text("raise SystemExit('shadowed!')\n", encoding="utf-8")
    done = cli_in(tmp_path, env, "run", "json.py:pipeline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "use_stdlib  SUCCESS" in done.stdout


def test_version(env: dict[str, str]) -> None:
    done = cli_run(env, "--version")
    assert done.returncode == 0
    assert done.stdout.startswith("dremioframe-async ")
    assert done.stdout.split()[1][0].isdigit()


async def _record_runs(url: str, run_ids: list[str]) -> None:
    from _cli_pipelines import noisy

    from dremioframe_async.store import open_store

    store = open_store(url)
    try:
        for run_id in run_ids:
            await noisy().run(store=store, run_id=run_id)
    finally:
        await store.aclose()


def test_show_takes_a_unique_prefix(env: dict[str, str]) -> None:
    for _ in range(2):
        assert cli_run(env, "run", f"{PIPES}:noisy").returncode == 1
    run_id = latest_run_id(env)
    shown = cli_run(env, "show", run_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert f"run       {run_id}" in shown.stdout
    anyio.run(_record_runs, env["DREMIOFRAME_ASYNC_STORE"], ["feed0001", "feed0002"])
    ambiguous = cli_run(env, "show", "feed")
    assert ambiguous.returncode == 2
    assert "ambiguous: 2 runs match" in ambiguous.stderr
    empty = cli_run(env, "show", "")  # matches every id: refused, not "ambiguous" or shown
    assert empty.returncode == 2
    assert "RUN_ID is empty" in empty.stderr
    unknown = cli_run(env, "show", "zzz")
    assert unknown.returncode == 2
    assert "no run 'zzz'" in unknown.stderr


def test_messages_are_whole_escaped_and_wrapped(env: dict[str, str]) -> None:
    from _cli_pipelines import NOISY_MESSAGE

    escaped = NOISY_MESSAGE.replace("\x1b", "\\x1b").replace("\x07", "\\x07")
    ran = cli_run(env, "run", f"{PIPES}:noisy")
    assert ran.returncode == 1
    shown = cli_run(env, "show", latest_run_id(env))
    for out in (ran.stdout, ran.stderr, shown.stdout):
        assert "\x1b" not in out
        assert "\x07" not in out
    # Not a terminal and no $COLUMNS: whole lines.
    assert f"RuntimeError: {escaped}" in ran.stdout
    assert f"RuntimeError: {escaped}" in ran.stderr  # the progress note
    assert f"RuntimeError: {escaped}" in shown.stdout
    narrow = cli_run({**env, "COLUMNS": "70"}, "show", latest_run_id(env))
    table = narrow.stdout.split("\n\n")[1].splitlines()
    assert all(len(line) <= 70 for line in table), table
    flat = " ".join(" ".join(line.split()) for line in table[2:])
    assert " ".join(f"RuntimeError: {escaped}".split()) in flat  # wrapped, nothing cut


def test_each_command_lives_in_the_module_named_after_it() -> None:
    import pkgutil

    from dremioframe_async.cli import _main

    modules = {m.name for m in pkgutil.iter_modules(cli.__path__) if not m.name.startswith("_")}
    assert {c.__name__.rpartition(".")[2] for c in _main.COMMANDS} == modules
    registered = _main._parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in modules:
        assert registered[name].get_default("handler").__module__ == f"dremioframe_async.cli.{name}"


def test_a_param_that_is_not_standard_json_is_kept_as_text(
    env: dict[str, str], tmp_path: Path
) -> None:
    import json
    import sqlite3

    assert cli.parse_params(["a=NaN", "b=-Infinity", "c=1.5", "d=[1, 2]"]) == {
        "a": "NaN",
        "b": "-Infinity",
        "c": 1.5,
        "d": [1, 2],
    }
    (tmp_path / "w" / "release").touch()
    done = cli_run(env, "run", PIPE, "--param", "day=NaN", "--param", "n=Infinity")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        (stored,) = db.execute("SELECT params FROM runs").fetchone()

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON stored: {constant}")

    assert json.loads(stored, parse_constant=refuse) == {"day": "NaN", "n": "Infinity"}


def test_resume_takes_a_unique_prefix_of_the_run_id(env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "w"
    (work / "release").touch()
    (work / "fail_b").touch()
    assert cli_run(env, "run", PIPE).returncode == 1
    run_id = latest_run_id(env)
    (work / "fail_b").unlink()
    resumed = cli_run(env, "run", PIPE, "--resume", run_id[:8])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from run {run_id}" in resumed.stdout
    unknown = cli_run(env, "run", PIPE, "--resume", "zzzz")
    assert unknown.returncode == 2
    assert "no run 'zzzz'" in unknown.stderr


def test_runs_says_when_its_filter_matched_nothing(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "w" / "release").touch()
    assert cli_run(env, "run", PIPE).returncode == 0
    listed = cli_run(env, "runs", "--pipeline", "nope")
    assert listed.returncode == 0
    assert listed.stdout.strip() == "no runs of pipeline 'nope' (1 run of other pipelines)"


def test_a_multi_line_error_reads_as_one_line(env: dict[str, str], tmp_path: Path) -> None:
    module = tmp_path / "two_lines.py"
    module.write_text('raise ValueError("first line\\nsecond line")\n')
    done = cli_run(env, "graph", f"{module}:pipeline")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()  # still one line, its parts read as a sentence
    assert line.startswith(
        "dremioframe-async graph: error: PipelineImportError: ValueError: first line; second line"
    )
    assert " | " not in line
    cycle = cli_run(env, "graph", f"{PIPES}:cycle")
    assert "(1 problem): cycle: " in cycle.stderr, cycle.stderr
