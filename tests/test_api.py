"""The public surface is pinned: names may be added on purpose, never lost by accident."""

from __future__ import annotations

import dremioframe_async
import dremioframe_async.orchestration as orchestration
from dremioframe_async import DremioFrameError


def test_top_level_all_is_pinned() -> None:
    assert sorted(dremioframe_async.__all__) == sorted(
        [
            "CycleError",
            "DremioFrameError",
            "Event",
            "Pipeline",
            "PipelineDefinitionError",
            "PipelineFailed",
            "RunContext",
            "RunFinished",
            "RunResult",
            "RunStarted",
            "Task",
            "TaskDefinitionError",
            "TaskRetrying",
            "TaskState",
            "TaskStateChanged",
            "TriggerRule",
            "task",
        ]
    )
    for name in dremioframe_async.__all__:
        assert getattr(dremioframe_async, name) is not None


def test_seed_compatible_path_gives_the_same_objects() -> None:
    for name in ("task", "Task", "Pipeline", "TaskState", "TriggerRule", "RunResult"):
        assert getattr(orchestration, name) is getattr(dremioframe_async, name)


def test_every_engine_error_derives_from_the_root() -> None:
    errors = [
        orchestration.CycleError,
        orchestration.PipelineDefinitionError,
        orchestration.PipelineFailed,
        orchestration.TaskDefinitionError,
        orchestration.ExpandError,
    ]
    for err in errors:
        assert issubclass(err, DremioFrameError)
    assert issubclass(orchestration.CycleError, ValueError)


def test_every_event_type_is_a_frozen_slotted_value() -> None:
    """Listeners and stores keep events: each type in the Event union must be immutable."""
    import dataclasses
    import typing

    kinds = typing.get_args(orchestration.Event)
    assert set(kinds) == {
        orchestration.RunStarted,
        orchestration.TaskStateChanged,
        orchestration.TaskRetrying,
        orchestration.RunFinished,
        orchestration.TaskLogged,
    }
    for kind in kinds:
        assert dataclasses.is_dataclass(kind)
        assert kind.__dataclass_params__.frozen, kind  # type: ignore[attr-defined]
        assert "__slots__" in vars(kind), kind


def test_package_and_pytest_plugin_import_without_the_testing_extra() -> None:
    import subprocess
    import sys

    # duckdb blocked as if the `testing` extra were not installed: the pytest
    # plugin loads in every session of every user, so it must still import.
    code = (
        "import sys; sys.modules['duckdb'] = None\n"
        "import dremioframe_async, dremioframe_async.dremio, dremioframe_async.store\n"
        "import dremioframe_async.testing.pytest_plugin\n"
        "from dremioframe_async.testing._sql import _duckdb\n"
        "try:\n"
        "    _duckdb()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'dremioframe_async[testing]'" in proc.stdout


def test_package_imports_and_runs_without_opentelemetry() -> None:
    """The ``otel`` extra is optional: blocked, the package imports and a run is not traced."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import anyio, dremioframe_async\n"
        "from dremioframe_async import Pipeline, task, _telemetry\n"
        "assert _telemetry.trace is None and _telemetry.current_tracer() is None\n"
        "@task\n"
        "async def one(): return 1\n"
        "r = anyio.run(Pipeline('p').add_task(one()).run)\n"
        "print(r.status)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "SUCCESS"


def test_other_packages_use_only_public_engine_names() -> None:
    """The store, CLI, UI and tasks import what orchestration exports, never its private modules."""
    import ast
    from pathlib import Path

    package = Path(dremioframe_async.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if "orchestration" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and "orchestration._" in node.module
            ):
                offenders.append(f"{path.relative_to(package)}: {node.module}")
    assert offenders == []


def test_one_run_status_for_engine_store_and_cli() -> None:
    import dremioframe_async.store as store

    assert store.RunStatus is orchestration.RunStatus
    finished = orchestration.RunFinished("r", "p", orchestration.RunStatus.SUCCESS, 1.0, 0.5)
    assert finished.status == "SUCCESS"  # a StrEnum: plain strings still compare equal
