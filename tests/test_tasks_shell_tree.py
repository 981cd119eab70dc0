"""ShellTask on timeout or cancellation: processes that left the command's process group
(``setsid``, ``setpgid``) are found and killed too, even once orphaned (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from test_tasks_shell import run_one, wait_gone

from dremioframe_async import TaskState
from dremioframe_async.tasks import ShellTask

PY = sys.executable
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)"),
]

# The stray: a session (and process group) of its own, deaf to SIGTERM; it writes its pid.
STRAY = textwrap.dedent(
    """
    import os, signal, sys, time
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(sys.argv[1], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)
    """
)
# The command: starts the stray as its child ("linked"), or through a parent that exits
# at once so that the stray is orphaned and no longer its descendant ("orphaned").
COMMAND = textwrap.dedent(
    """
    import subprocess, sys, time
    stray = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
    if sys.argv[3] == "orphaned":
        code = "import subprocess, sys; subprocess.Popen(sys.argv[1:])"
        subprocess.run([sys.executable, "-c", code, *stray], check=True)
    else:
        subprocess.Popen(stray)
    time.sleep(600)
    """
)


async def stray_pid(pid_file: Path) -> int:
    with anyio.fail_after(20):
        while not pid_file.exists() or not pid_file.read_text():
            await anyio.sleep(0.02)  # polling a file the stray writes; not ordering by time
    return int(pid_file.read_text())


def command(pid_file: Path, how: str, **options: object) -> ShellTask:
    return ShellTask("cmd", [PY, "-c", COMMAND, STRAY, str(pid_file), how], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["linked", "orphaned"])
async def test_a_timeout_kills_a_process_that_left_the_group(tmp_path: Path, how: str) -> None:
    pid_file = tmp_path / "stray"
    try:
        with anyio.fail_after(30):
            # Long enough for a traced interpreter chain to start and write the stray's pid.
            result = await run_one(command(pid_file, how, timeout=6.0, kill_grace=0.2))
        assert result.states["cmd"] is TaskState.FAILED
        pid = await stray_pid(pid_file)
        assert await wait_gone(pid), f"the {how} stray {pid} outlived the task's timeout"
    finally:
        _kill_stray(pid_file)


@pytest.mark.parametrize("how", ["linked", "orphaned"])
async def test_cancellation_kills_a_process_that_left_the_group(tmp_path: Path, how: str) -> None:
    pid_file = tmp_path / "stray"
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_one, command(pid_file, how, kill_grace=0.2))
                pid = await stray_pid(pid_file)
                assert os.getpgid(pid) == pid  # it left the command's process group
                tg.cancel_scope.cancel()
        assert await wait_gone(pid), f"the {how} stray {pid} outlived the cancelled task"
    finally:
        _kill_stray(pid_file)


def _kill_stray(pid_file: Path) -> None:
    """However the test ends, the stray it started does not outlive it."""
    if pid_file.exists() and pid_file.read_text():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


async def test_a_stray_holding_the_output_open_is_killed_on_timeout(tmp_path: Path) -> None:
    """The command exits at once, but a process it moved to a session of its own keeps
    stdout open, so the task waits for the output's end until its timeout."""
    pid_file = tmp_path / "stray"
    code = textwrap.dedent(
        """
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", *sys.argv[1:]])
        while not os.path.exists(sys.argv[2]):  # the stray has left the group: exit now
            time.sleep(0.01)
        """
    )
    # The timeout leaves a traced interpreter chain time to start and write the pid.
    t = ShellTask("cmd", [PY, "-c", code, STRAY, str(pid_file)], timeout=6.0, kill_grace=0.2)
    try:
        with anyio.fail_after(30):
            result = await run_one(t)
        assert result.states["cmd"] is TaskState.FAILED
        pid = await stray_pid(pid_file)
        assert await wait_gone(pid), f"the stray {pid} outlived the task's timeout"
    finally:
        _kill_stray(pid_file)
