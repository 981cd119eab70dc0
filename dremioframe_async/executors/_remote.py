"""What runs on a worker process: unpickle the call, run it, pickle the outcome.

This module is pickled by value with the task (cloudpickle), so workers need
only dask, cloudpickle and what the task itself imports, not dremioframe_async.
It must import nothing from this package.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

__all__ = ["run_payload"]


def run_payload(payload: bytes) -> tuple[Any, ...]:
    """Run the pickled ``(fn, args, kwargs)``; return ``("ok", pickled result)``.

    The result is pickled here so that the driver knows its exact size and an
    unpicklable result is reported as such: ``("unpicklable", type name, reason)``.
    An exception from the function propagates with its traceback.
    """
    fn, args, kwargs = pickle.loads(payload)
    result = fn(*args, **kwargs)
    try:
        return ("ok", cloudpickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        return ("unpicklable", type(result).__qualname__, f"{type(exc).__name__}: {exc}")
