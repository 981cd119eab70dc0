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


def test_events_are_frozen() -> None:
    import dataclasses

    import pytest

    event = orchestration.RunFinished("r", "p", "SUCCESS", 1.0, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = "FAILED"  # type: ignore[misc]


def test_fast_constructor_builds_the_same_frozen_event() -> None:
    import dataclasses

    import pytest

    from dremioframe_async.orchestration._events import fast_constructor

    args = ("r", "p", "k", orchestration.TaskState.SUCCESS, 1.0, 2, None, 5, "why", ("a",))
    fast = fast_constructor(orchestration.TaskStateChanged)(*args)
    assert fast == orchestration.TaskStateChanged(*args)
    assert type(fast) is orchestration.TaskStateChanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        fast_constructor(orchestration.TaskStateChanged)(*args[:-1])


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
