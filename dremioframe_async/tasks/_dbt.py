"""dbt as a task: the CLI in a subprocess (cancellable), ``run_results.json`` as the result.

dbt runs in its own process group through the same runner as ShellTask, so a
timeout or cancellation stops dbt and every adapter process it started. dbt
need not be installed beside this package: ``dbt_executable=`` (or the run
context's ``dbt_executable``, or ``$DBT_EXECUTABLE``) may point into another
virtualenv. Usage statistics are off unless the environment turns them on.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ..orchestration import RunContext, Task
from ._common import Credential, CredentialValue, TaskLibraryError, redact, resolve, setting
from ._process import ProcessOutput, run_process_group

__all__ = ["DbtError", "DbtMissing", "DbtNodeResult", "DbtResult", "DbtTask"]

_FAILED = frozenset({"error", "fail", "runtime error"})
_MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class DbtNodeResult:
    """One model, test, seed or snapshot from ``run_results.json``."""

    unique_id: str
    name: str
    status: str
    execution_time: float
    message: str | None
    failures: int | None

    @property
    def failed(self) -> bool:
        return self.status in _FAILED


@dataclass(frozen=True, slots=True)
class DbtResult:
    """A finished dbt command: exit code, every node's status and timing, the log tail."""

    command: str
    returncode: int
    nodes: tuple[DbtNodeResult, ...]
    elapsed: float | None
    output: ProcessOutput

    @property
    def success(self) -> bool:
        return self.returncode == 0 and not self.failed

    @property
    def failed(self) -> tuple[DbtNodeResult, ...]:
        return tuple(n for n in self.nodes if n.failed)


class DbtError(TaskLibraryError):
    """dbt failed; the message names the failed nodes, ``result`` has everything."""

    def __init__(self, task: str, result: DbtResult) -> None:
        self.task, self.result = task, result
        failed = result.failed
        if failed:
            names = ", ".join(n.name for n in failed)
            details = "; ".join(
                f"{n.name}: {(n.message or n.status)[:_MESSAGE_CHARS]}" for n in failed
            )
            text = f"dbt {result.command} {task!r}: {len(failed)} failed ({names}): {details}"
        else:
            tail = (result.output.stdout + result.output.stderr).strip()[-1500:]
            text = f"dbt {result.command} {task!r} exited with {result.returncode}: {tail}"
        super().__init__(text)


_INSTALL = (
    "install it with pip install 'dbt-core<1.12' dbt-duckdb (or your warehouse's adapter), "
    "here or in a virtualenv of its own, and point DBT_EXECUTABLE (or dbt_executable=) "
    "at that dbt"
)


class DbtMissing(TaskLibraryError):
    """The dbt executable was not found; the message says how to install or point to it."""

    def __init__(self, task: str, executable: str, where: str) -> None:
        self.task, self.executable = task, executable
        super().__init__(f"dbt {task!r}: no dbt executable {executable!r} {where}; {_INSTALL}")


def _node(raw: Mapping[str, Any]) -> DbtNodeResult:
    unique_id = str(raw.get("unique_id", ""))
    return DbtNodeResult(
        unique_id,
        unique_id.rsplit(".", 1)[-1],
        str(raw.get("status", "")),
        float(raw.get("execution_time") or 0.0),
        raw.get("message"),
        raw.get("failures"),
    )


def _read_results(path: Path) -> tuple[tuple[DbtNodeResult, ...], float | None]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return (), None
    return tuple(_node(r) for r in data.get("results", [])), data.get("elapsed_time")


def _default_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def _find_executable(task: str, given: str | None) -> str:
    """The dbt to start: a path is taken from the caller's working directory (dbt itself
    runs in the project's), a bare name is looked up on ``PATH``.

    :raises DbtMissing: when there is no such program.
    """
    name = given or _default_executable()
    if os.sep in name or (os.altsep is not None and os.altsep in name):
        path = Path(name).absolute()
        if not path.is_file():
            raise DbtMissing(task, name, f"(no such file: {path})")
        return str(path)
    found = shutil.which(name)
    if found is None:
        where = "on PATH" if given else f"beside {sys.executable} or on PATH"
        raise DbtMissing(task, name, where)
    return found


class DbtTask(Task):
    """Run a dbt command (``run``, ``build``, ``test``, ``seed`` ...) in a subprocess.

    Returns a :class:`DbtResult` built from ``target/run_results.json``: every
    node with its status and timing. A failed node (or a non-zero exit) fails
    the task with the failed names in the message. ``vars`` go as JSON;
    ``env`` values (may be :class:`Credential` s, e.g. a warehouse password that
    the profile reads with ``env_var()``) are masked in the output. dbt failures
    are not retried by default (a model's SQL error stays an error); pass
    ``retry_on=DbtError`` to retry them.

    :raises DbtError: a node failed or dbt exited non-zero.
    :raises DbtMissing: there is no dbt executable (the message says how to install one).
        A relative ``dbt_executable`` (or ``$DBT_EXECUTABLE``) is taken from the
        caller's working directory, not from the project folder dbt runs in.
    :raises OSError: the dbt executable could not be started.
    """

    def __init__(
        self,
        name: str,
        command: str = "run",
        *,
        project_dir: str | os.PathLike[str],
        profiles_dir: str | os.PathLike[str] | None = None,
        select: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        vars: Mapping[str, Any] | None = None,
        target: str | None = None,
        full_refresh: bool = False,
        threads: int | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, CredentialValue] | None = None,
        target_path: str | os.PathLike[str] = "target",
        dbt_executable: str | None = None,
        max_output: int = 1 << 20,
        kill_grace: float = 10.0,
        **options: Any,
    ) -> None:
        if not command or command.startswith("-") or " " in command:
            raise ValueError(
                f"command is one dbt subcommand like 'run' or 'build', got {command!r}"
            )
        self.command, self.project_dir = command, Path(project_dir)
        self.profiles_dir = Path(profiles_dir) if profiles_dir is not None else None
        self.select, self.exclude, self.vars, self.target = select, exclude, vars, target
        self.full_refresh, self.threads = full_refresh, threads
        self.extra_args = list(args)
        self.env = dict(env or {})
        self.results_path = self.project_dir / target_path / "run_results.json"
        self.dbt_executable, self.max_output, self.kill_grace = (
            dbt_executable,
            max_output,
            kill_grace,
        )
        options.setdefault("retry_on", ())
        super().__init__(name, self._execute, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} dbt {self.command} {self.project_dir}>"

    def argv(self, executable: str) -> list[str]:
        """The command line (without secrets: those travel in the environment)."""
        argv = [executable, self.command, "--project-dir", str(self.project_dir)]
        if self.profiles_dir is not None:
            argv += ["--profiles-dir", str(self.profiles_dir)]
        for flag, value in (("--select", self.select), ("--exclude", self.exclude)):
            if value:
                argv += [flag, *([value] if isinstance(value, str) else value)]
        if self.vars:
            argv += ["--vars", json.dumps(dict(self.vars))]
        if self.target:
            argv += ["--target", self.target]
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        if self.full_refresh:
            argv.append("--full-refresh")
        return argv + self.extra_args

    async def _execute(self, context: RunContext | None = None) -> DbtResult:
        given = setting(self.dbt_executable, context, "dbt_executable", "DBT_EXECUTABLE")
        executable = _find_executable(self.name, given)
        extra = {k: resolve(v, context) or "" for k, v in self.env.items()}
        secrets = [extra[k] for k, v in self.env.items() if isinstance(v, Credential)]
        env = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "False", **os.environ, **extra}
        # A stale file from an earlier run must never pass for this run's results.
        await anyio.Path(self.results_path).unlink(missing_ok=True)
        output = await run_process_group(
            self.argv(executable),
            cwd=self.project_dir,
            env=env,
            max_output=self.max_output,
            kill_grace=self.kill_grace,
            secrets=secrets,
        )
        nodes, elapsed = await anyio.to_thread.run_sync(_read_results, self.results_path)
        if secrets:
            nodes = tuple(_masked_node(n, secrets) for n in nodes)
        result = DbtResult(self.command, output.returncode, nodes, elapsed, output)
        if not result.success:
            raise DbtError(self.name, result)
        return result


def _masked_node(node: DbtNodeResult, secrets: list[str]) -> DbtNodeResult:
    message = redact(node.message, secrets) if node.message else node.message
    return DbtNodeResult(
        node.unique_id, node.name, node.status, node.execution_time, message, node.failures
    )
