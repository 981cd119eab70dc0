"""What runs on a worker process: unpickle the call, run it, pickle the outcome.

This module is pickled by value with the task (cloudpickle), so workers need
only dask, cloudpickle and what the task itself imports, not dremioframe_async.
It must import nothing from this package.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import cloudpickle

__all__ = ["Context", "run_payload"]


class Context(Mapping[str, Any]):
    """A task's ``context`` on a worker: what it could read on the driver, copied.

    The upstream results the task may read and the run's parameters, keyed as on
    the driver (a result wins over a parameter of the same name); ``run_id`` and
    ``params`` as attributes. Looking up by Task object needs the driver.
    """

    def __init__(self, run_id: str, params: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        self.run_id = run_id
        self.params = dict(params)
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Context run_id={self.run_id} keys={list(self._values)}>"

    @property
    def resources(self) -> Mapping[str, Any]:
        """None here: a run's resources live in the process that runs the pipeline."""
        return _NO_RESOURCES


_ON_DRIVER = (
    "the run's resources live in the process that runs the pipeline, not on a worker: "
    "declare the resource (@task(resources=({name!r},))) and the task runs there"
)


class _NoResources(Mapping[str, Any]):
    """``context.resources`` on a worker: empty, and every lookup says why."""

    def __getitem__(self, name: str) -> Any:
        raise KeyError(_ON_DRIVER.format(name=name))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(_ON_DRIVER.format(name=name))

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_RESOURCES = _NoResources()


def run_payload(payload: bytes) -> tuple[Any, ...]:
    """Run the pickled ``(fn, args, kwargs)``; return ``("ok", pickled result)``.

    The result is pickled here so that the driver knows its exact size and an
    unpicklable result is reported as such: ``("unpicklable", type name, reason)``.
    An exception from the function propagates with its traceback, unless it cannot
    be pickled back (distributed would reduce it to a bare ``Exception``):
    ``("raised", type name, message, reason, traceback text)``.
    """
    fn, args, kwargs = pickle.loads(payload)
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        reason = _cannot_travel(exc)
        if reason is None:
            raise
        text = "".join(traceback.format_exception(exc))
        return ("raised", _type_name(type(exc)), str(exc), reason, text)
    try:
        return ("ok", cloudpickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        return ("unpicklable", type(result).__qualname__, f"{type(exc).__name__}: {exc}")


def _cannot_travel(exc: BaseException) -> str | None:
    """Why ``exc`` cannot make the round trip through pickle (None: it can)."""
    try:
        pickle.loads(cloudpickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as problem:
        return f"{type(problem).__name__}: {problem}"
    return None


def _type_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
