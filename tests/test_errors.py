"""The one exception tree: every error class the package raises on purpose is in it."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import dremioframe_async
from dremioframe_async import errors
from dremioframe_async.errors import DremioFrameError
from dremioframe_async.schedule import ScheduleError, schedule_pipeline
from dremioframe_async.tasks import SensorTimeout, SqlArgumentError, quote_identifier

PACKAGE = Path(dremioframe_async.__file__).parent
# Raised inside FakeDremio's SQL engine and turned into a failed job there: it never
# reaches a caller of the library as itself.
NOT_RAISED_TO_CALLERS = {"InformationSchemaError"}
# Signals inside the Flight reader's worker thread, caught there: a caller sees the
# mapped DremioError (or nothing, for a read it abandoned).
NOT_RAISED_TO_CALLERS |= {"_Cancelled", "_Unavailable"}
# Where a part of the tree is drawn in full, beside errors.py's overview.
SUBTREES = {"dremio": "dremio/_errors.py"}
_OPTIONAL = ("dremioframe_async.testing", "dremioframe_async.executors")


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="dremioframe_async."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return names


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ImportError:
            if name.startswith(_OPTIONAL):
                continue  # an optional extra that is not installed here
            raise
        for attr, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == name
                and attr not in NOT_RAISED_TO_CALLERS
            ):
                found[f"{name}.{attr}"] = obj
    return found


def _tree_text(qualified: str) -> str:
    text = errors.__doc__ or ""
    for package, path in SUBTREES.items():
        if qualified.startswith(f"dremioframe_async.{package}."):
            text += (PACKAGE / path).read_text(encoding="utf-8")
    return text


def test_every_exception_class_derives_from_the_root_and_is_in_the_tree() -> None:
    classes = _exception_classes()
    assert len(classes) > 20  # the walk found the package's errors
    outside = [name for name, cls in classes.items() if not issubclass(cls, DremioFrameError)]
    assert outside == []
    undrawn = [name for name, cls in classes.items() if cls.__name__ not in _tree_text(name)]
    assert undrawn == []


def test_no_bare_builtin_error_is_raised_where_the_tree_applies() -> None:
    builtins = {"ValueError", "TypeError", "TimeoutError", "ImportError", "LookupError"}
    checked = ["schedule.py", "tasks/_sql.py", "tasks/_sensors.py", "tasks/_dremio.py"]
    for folder in ("orchestration", "cli"):
        checked += [str(p.relative_to(PACKAGE)) for p in (PACKAGE / folder).glob("*.py")]
    bare = []
    for rel in checked:
        tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                if isinstance(func, ast.Name) and func.id in builtins:
                    bare.append(f"{rel}:{node.lineno} {func.id}")
    assert bare == []


def test_errors_keep_the_builtin_type_users_may_catch() -> None:
    with pytest.raises(ValueError, match="cannot be empty") as caught:
        quote_identifier("")
    assert isinstance(caught.value, SqlArgumentError)
    assert issubclass(SensorTimeout, TimeoutError)
    assert issubclass(ScheduleError, ValueError)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_bad_schedule_raises_schedule_error() -> None:
    from dremioframe_async import Pipeline, task

    @task
    async def noop() -> None: ...

    with pytest.raises(ScheduleError, match="interval must be a positive"):
        await schedule_pipeline(Pipeline("p").add_task(noop()), interval=-1)
    with pytest.raises(ScheduleError, match="invalid cron expression"):
        await schedule_pipeline(Pipeline("p").add_task(noop()), cron="not a cron")
