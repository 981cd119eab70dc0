"""Shell commands as tasks: an argv list run without a shell, output captured and capped."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..orchestration import RunContext, Task
from ._common import (
    Credential,
    CredentialValue,
    TaskLibraryError,
    resolve,
    with_default_retry,
)
from ._process import ProcessOutput, run_process_group

__all__ = ["ShellCommandFailed", "ShellTask"]

_TAIL_CHARS = 2000


class ShellCommandFailed(TaskLibraryError):
    """A command exited non-zero; carries its output, the message ends with the stderr tail."""

    def __init__(self, program: str, output: ProcessOutput, stderr: str) -> None:
        self.program, self.output, self.returncode = program, output, output.returncode
        tail = stderr[-_TAIL_CHARS:].strip()
        super().__init__(
            f"{program} exited with {output.returncode}" + (f": {tail}" if tail else "")
        )


def _check_argv(argv: Sequence[str] | str, shell: bool) -> list[str]:
    if shell:
        if not isinstance(argv, str):
            raise ValueError("with shell=True, argv is one command string")
        return ["/bin/sh", "-c", argv]
    if isinstance(argv, str | bytes):
        raise ValueError(
            "argv must be a list of arguments (no shell parses it); "
            "pass shell=True to run a command string through /bin/sh"
        )
    args = list(argv)
    if not args or not all(isinstance(a, str | os.PathLike) for a in args):
        raise ValueError(f"argv must be a non-empty list of strings, got {argv!r}")
    return [os.fspath(a) for a in args]


class ShellTask(Task):
    """Run a command (an argv list, no shell unless ``shell=True``) and return its output.

    The result is a :class:`ProcessOutput` holding the exit code and the last
    ``max_output`` bytes of stdout and stderr (read to the end, so a chatty
    command never blocks). With ``check=True`` a non-zero exit fails the task
    with the stderr tail. ``env`` is added to the current environment (values
    may be :class:`Credential`; they are masked in errors and output, raw or
    percent-encoded, before the output is cut, so no piece of one is kept); set
    ``inherit_env=False`` to pass only ``env``. On ``timeout`` or cancellation
    the command's whole process group gets SIGTERM, then SIGKILL after
    ``kill_grace`` seconds, and so do its processes that left the group (on
    Linux; see docs/tasks.md for what escapes). By default a non-zero exit and a timeout are retried
    (when ``retries`` is set); a program that cannot start is not.

    :raises ShellCommandFailed: non-zero exit with ``check=True``.
    :raises OSError: the program could not be started.
    :raises ValueError: bad ``argv`` (at construction).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str] | str,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, CredentialValue] | None = None,
        shell: bool = False,
        check: bool = True,
        inherit_env: bool = True,
        max_output: int = 1 << 20,
        kill_grace: float = 5.0,
        **options: Any,
    ) -> None:
        self.argv = _check_argv(argv, shell)
        if max_output < 1 or kill_grace < 0:
            raise ValueError("max_output must be positive and kill_grace non-negative")
        self.cwd, self.env, self.check = cwd, dict(env or {}), check
        self.inherit_env, self.max_output, self.kill_grace = inherit_env, max_output, kill_grace
        options = with_default_retry(options, (ShellCommandFailed, TimeoutError))
        super().__init__(name, self._execute, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.argv[0]} +{len(self.argv) - 1} args>"

    async def _execute(self, context: RunContext | None = None) -> ProcessOutput:
        extra = {k: resolve(v, context) or "" for k, v in self.env.items()}
        secrets = [extra[k] for k, v in self.env.items() if isinstance(v, Credential)]
        env = {**os.environ, **extra} if self.inherit_env else extra
        output = await run_process_group(
            self.argv,
            cwd=self.cwd,
            env=env,
            max_output=self.max_output,
            kill_grace=self.kill_grace,
            secrets=secrets,
        )
        if self.check and output.returncode != 0:
            raise ShellCommandFailed(self.argv[0], output, output.stderr)
        return output
