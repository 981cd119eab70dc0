"""ShellTask: argv without a shell, capped output, and no process left after a timeout."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from dremioframe_async import Pipeline, TaskState
from dremioframe_async.tasks import Credential, ProcessOutput, ShellCommandFailed, ShellTask

PY = sys.executable


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # reaped before or while it was read
        return True
    return state in ("Z", "X")


async def wait_gone(*pids: int) -> bool:
    """Whether every pid is gone within 5 s (SIGKILL is delivered asynchronously)."""
    with anyio.move_on_after(5):
        while not all(gone(p) for p in pids):
            await anyio.sleep(0.01)
        return True
    return False


def group_members(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


async def run_one(t: ShellTask, **run: object):
    return await Pipeline("p").add_task(t).run(**run)


@pytest.mark.anyio
async def test_argv_with_a_shell_metacharacter_stays_one_argument(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("still here")
    arg = f"x; rm -rf {victim}"
    t = ShellTask("echo", [PY, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", arg])
    result = await run_one(t)
    result.raise_for_status()
    out = result["echo"]
    assert isinstance(out, ProcessOutput)
    assert out.stdout.strip() == f'["{arg}"]'
    assert victim.read_text() == "still here"


@pytest.mark.anyio
async def test_shell_true_runs_a_command_string(tmp_path: Path) -> None:
    t = ShellTask("sh", "echo $((1 + 2)) && echo err >&2", shell=True, cwd=tmp_path)
    out = (await run_one(t))["sh"]
    assert (out.stdout, out.stderr, out.returncode) == ("3\n", "err\n", 0)


TREE = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    with open(sys.argv[1], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)
    """
)


@pytest.mark.anyio
async def test_timeout_kills_a_tree_that_ignores_sigterm(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    # The timeout leaves a traced interpreter and its child time to start and write pids.
    t = ShellTask("tree", [PY, "-c", TREE, str(pids_file)], timeout=6.0, kill_grace=0.3)
    with anyio.fail_after(30):
        result = await run_one(t)
    assert result.states["tree"] is TaskState.FAILED
    assert isinstance(result.tasks["tree"].error, TimeoutError)
    leader, child = map(int, pids_file.read_text().split())
    assert await wait_gone(leader, child)
    assert group_members(leader) == []


@pytest.mark.anyio
async def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    t = ShellTask("tree", [PY, "-c", TREE, str(pids_file)], kill_grace=0.3)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_one, t)
            while not pids_file.exists() or len(pids_file.read_text().split()) < 2:
                await anyio.sleep(0.02)  # polling a file the child writes; not ordering by time
            tg.cancel_scope.cancel()
    leader, child = map(int, pids_file.read_text().split())
    assert await wait_gone(leader, child)


@pytest.mark.anyio
async def test_background_children_do_not_outlive_a_finished_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    t = ShellTask("bg", f"sleep 600 & echo $! > {pid_file}", shell=True)
    with anyio.fail_after(30):
        (await run_one(t)).raise_for_status()
    assert await wait_gone(int(pid_file.read_text()))


@pytest.mark.anyio
async def test_stdout_cap_holds_and_the_end_is_kept() -> None:
    code = "import sys; sys.stdout.write('a' * 5_000_000 + 'THE END'); sys.stdout.flush()"
    t = ShellTask("chatty", [PY, "-c", code], max_output=64 * 1024)
    with anyio.fail_after(30):
        out = (await run_one(t))["chatty"]
    assert len(out.stdout.encode()) == 64 * 1024
    assert out.stdout.endswith("THE END")
    assert out.stdout_truncated
    assert not out.stderr_truncated


@pytest.mark.anyio
async def test_non_zero_exit_fails_with_the_stderr_tail() -> None:
    code = (
        "import sys; print('noise\\n' * 2000, file=sys.stderr); "
        "print('boom: bad input', file=sys.stderr); sys.exit(3)"
    )
    result = await run_one(ShellTask("fail", [PY, "-c", code], retries=1))
    error = result.tasks["fail"].error
    assert isinstance(error, ShellCommandFailed)
    assert error.returncode == 3
    assert str(error).endswith("boom: bad input")
    assert len(str(error)) < 2200
    assert result.tasks["fail"].attempts == 2  # a non-zero exit is retried by default


@pytest.mark.anyio
async def test_check_false_returns_the_exit_code() -> None:
    out = (await run_one(ShellTask("f", [PY, "-c", "raise SystemExit(4)"], check=False)))["f"]
    assert out.returncode == 4


@pytest.mark.anyio
async def test_a_missing_program_is_not_retried() -> None:
    result = await run_one(ShellTask("nope", ["/no/such/program"], retries=3))
    assert isinstance(result.tasks["nope"].error, OSError)
    assert result.tasks["nope"].attempts == 1


@pytest.mark.anyio
async def test_env_secrets_are_passed_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DF_TEST_INHERITED", "yes")
    code = "import os; print(os.environ['TOKEN'], os.environ.get('DF_TEST_INHERITED')); exit(1)"
    t = ShellTask(
        "env", [PY, "-c", code], env={"TOKEN": Credential.from_context("tok")}, check=False
    )
    out = (await run_one(t, context={"tok": "s3cr3t-value"}))["env"]
    assert out.stdout.strip() == "*** yes"
    t = ShellTask("env2", [PY, "-c", "import os; print(len(os.environ))"], inherit_env=False)
    assert int((await run_one(t))["env2"].stdout) < 5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="shell=True"):
        ShellTask("x", "ls -l")
    with pytest.raises(ValueError, match="one command string"):
        ShellTask("x", ["ls"], shell=True)
    with pytest.raises(ValueError, match="non-empty"):
        ShellTask("x", [])
    with pytest.raises(ValueError, match="max_output"):
        ShellTask("x", ["ls"], max_output=0)
    assert "s3cr" not in repr(ShellTask("x", ["tool", "--password", "s3cr"]))
