"""Ctrl-C at the command line (``_interrupts.interruptible``), in a real child process.

The first signal cancels the work, the second stops its cleanup, a third exits
at once; a signal that comes while the process winds down never kills it raw
(exit -2) or prints a traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from _processes import running

_CHILD = textwrap.dedent(
    """
    import sys, anyio
    from dremioframe_async._interrupts import interruptible

    async def work(stop_cleanup):
        print("ready", flush=True)
        try:
            await anyio.sleep_forever()
        finally:
            if sys.argv[1] == "stuck":  # a cleanup that ignores cancellation and stop_cleanup
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(120)

    code = anyio.run(interruptible, work)
    print("ended", code, flush=True)
    sys.stdin.readline()  # the parent interrupts us again here, then lets us go
    print("exiting", flush=True)
    sys.exit(code)
    """
)


def _child(mode: str) -> list[str]:
    return [sys.executable, "-c", _CHILD, mode]


def _read_until(stream: object, text: str) -> None:
    assert hasattr(stream, "readline")
    while text not in (line := stream.readline()):
        assert line, f"the child ended before printing {text!r}"


def test_a_signal_while_the_process_winds_down_does_not_kill_it() -> None:
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with running(_child("plain"), text=True, **pipes) as proc:
        _read_until(proc.stdout, "ready")
        proc.send_signal(signal.SIGINT)
        _read_until(proc.stdout, "ended 130")  # the work is over; the process is not
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate("\n", timeout=30)
        assert proc.returncode == 130, err
        assert "exiting" in out
        assert "Traceback" not in err


def test_a_third_signal_exits_at_once_when_the_cleanup_does_not_stop() -> None:
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with running(_child("stuck"), text=True, **pipes) as proc:
        _read_until(proc.stdout, "ready")
        proc.send_signal(signal.SIGINT)
        _read_until(proc.stderr, "interrupted: cancelling")
        proc.send_signal(signal.SIGINT)
        _read_until(proc.stderr, "interrupted again")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)  # the stuck cleanup would take 120 s
        assert proc.returncode == 130, err
        assert "exiting now" in err


_STALLED_IMPORT = textwrap.dedent(
    """
    import importlib.abc, sys

    class Stall(importlib.abc.MetaPathFinder):
        # Holds the package's import half-way, as a slow disk would, until the parent
        # has sent its Ctrl-C.
        def find_spec(self, name, path, target=None):
            if name == "dremioframe_async.orchestration":
                print("importing", flush=True)
                sys.stdin.readline()
            return None

    sys.meta_path.insert(0, Stall())
    sys.argv[1:] = ["runs"]
    from _dremioframe_async_cli import main  # what the console script runs
    sys.exit(main())
    """
)


def test_ctrl_c_while_the_package_imports_is_one_line_not_a_traceback() -> None:
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with running([sys.executable, "-c", _STALLED_IMPORT], text=True, **pipes) as proc:
        _read_until(proc.stdout, "importing")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate("\n", timeout=30)
    assert proc.returncode == 130, err
    assert err == "dremioframe-async runs: error: interrupted\n"


def test_the_console_script_is_the_guarded_launcher() -> None:
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="dremioframe-async")
    assert script.value == "_dremioframe_async_cli:main"
