"""Pickling a task's call for another process, and saying exactly what cannot be pickled.

Functions defined in ``__main__`` (scripts, notebooks) are pickled by value by
cloudpickle already. Functions from the user's own modules (files outside the
interpreter's installed packages) are registered to be pickled by value too,
whole top-level package at once, so workers that cannot import those modules
(a remote cluster) still run them. Installed libraries are pickled by
reference: the workers need them installed.
"""

from __future__ import annotations

import functools
import inspect
import io
import pickle
import site
import sys
import sysconfig
import threading
import types
from collections import ChainMap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle

from ..orchestration import Task, TaskCall
from . import _remote
from ._errors import TaskPickleError

__all__ = ["dumps", "loads", "pack", "pack_resources", "register_by_value"]

_SEARCH_DEPTH = 4  # how far into containers and attributes the culprit search goes
_registered: set[str] = set()
_lock = threading.Lock()


@functools.cache
def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    return tuple(Path(r).resolve() for r in roots)


@functools.lru_cache(maxsize=1024)  # resolving paths costs more than pickling a small call
def _is_user_module(name: str) -> bool:
    top = name.partition(".")[0]
    if name == "__main__" or top in ("dremioframe_async", *sys.builtin_module_names):
        return False  # __main__: cloudpickle pickles it by value already
    file = getattr(sys.modules.get(name), "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return not any(path.is_relative_to(root) for root in _installed_roots())


def _module_of(fn: Callable[..., Any]) -> str | None:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__module__", None) or getattr(type(fn), "__module__", None)


def register_by_value(fn: Callable[..., Any]) -> None:
    """Have cloudpickle pickle ``fn``'s package by value if it is the user's own code."""
    name = _module_of(fn)
    if name is None or name in _registered or not _is_user_module(name):
        return
    top = name.partition(".")[0]
    with _lock:
        if top not in _registered and top in sys.modules:
            cloudpickle.register_pickle_by_value(sys.modules[top])
        _registered.update((name, top))


def _register_remote() -> None:
    # Workers need not have dremioframe_async installed: ship the worker side by value.
    with _lock:
        if _remote.__name__ not in _registered:
            cloudpickle.register_pickle_by_value(_remote)
            _registered.add(_remote.__name__)


def _code_reduce(code: types.CodeType) -> Any:
    # cloudpickle replaces the file name of code it pickles by value with
    # "<dynamic-code>"; keep the real one so tracebacks from workers name the
    # task's file and line, and show the source where the driver has it.
    rebuild, args = cloudpickle.cloudpickle._code_reduce(code)
    return rebuild, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)


def _task_reduce(task: Task) -> tuple[Any, ...]:
    # A task's action is often its own bound method (the Dremio tasks'), so the Task
    # travels with each attempt: it needs what the action reads, not the graph around
    # it. With its edges, one attempt of a 1,000-task fan-out pickled all 1,000 tasks
    # (219 KB, 16 ms); without them, one.
    # Task keeps its fields in slots (a subclass may add a __dict__): pickle both,
    # as a (dict, slots) state, which unpickling sets back.
    slots = {
        name: getattr(task, name)
        for cls in type(task).__mro__
        for name in cls.__dict__.get("__slots__", ())
        if name not in _NOT_SENT and hasattr(task, name)
    }
    slots.update(_upstream=(), _downstream=(), _alone=None)  # not the graph around it
    return (object.__new__, (type(task),), (getattr(task, "__dict__", None) or None, slots))


_NOT_SENT = frozenset({"__dict__", "__weakref__"})


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle is untyped
    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        {types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table
    )

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Task):
            return _task_reduce(obj)
        return super().reducer_override(obj)


def dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)


def pack(call: TaskCall, *, with_function: bool = True) -> bytes:
    """Pickle ``(fn, args, kwargs)`` of ``call`` (``fn`` as None without the function).

    :raises TaskPickleError: naming the task and the smallest part found that
        cannot be pickled (the function, an argument, or something inside one).
    """
    _register_remote()
    register_by_value(call.fn)
    try:
        return dumps((call.fn if with_function else None, call.args, dict(call.kwargs)))
    except Exception as exc:
        found = _find_culprit(call, with_function)
        where, culprit, reason = found or ("the call", call, exc)
        raise TaskPickleError(call.key, where, _type_name(culprit), _describe(reason)) from exc


def pack_resources(call: TaskCall) -> bytes:
    """Pickle ``(factories, inject)`` of the call's worker-scoped resources.

    :raises TaskPickleError: naming the resource whose factory cannot be pickled.
    """
    for factory in call.resources.values():
        register_by_value(factory)
    try:
        return dumps((dict(call.resources), call.inject))
    except Exception as exc:
        for name, factory in call.resources.items():
            where = f"the factory of worker-scoped resource {name!r}"
            found = _search(factory, where, _SEARCH_DEPTH)
            if found is not None:
                where, culprit, reason = found
                raise TaskPickleError(
                    call.key, where, _type_name(culprit), _describe(reason)
                ) from exc
        raise TaskPickleError(call.key, "its resources", "dict", _describe(exc)) from exc


def _type_name(value: object) -> str:
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _find_culprit(call: TaskCall, with_function: bool) -> tuple[str, object, BaseException] | None:
    for where, value in _parts(call):
        if value is call.fn and not with_function:
            continue
        found = _search(value, where, _SEARCH_DEPTH)
        if found is not None:
            return found
    return None


def _parts(call: TaskCall) -> Iterator[tuple[str, object]]:
    yield f"the function {getattr(call.fn, '__qualname__', repr(call.fn))}", call.fn
    names = _positional_names(call.fn, len(call.args))
    for name, value in zip(names, call.args, strict=True):
        yield f"argument {name}", value
    for name, value in call.kwargs.items():
        yield f"argument {name!r}", value


def _positional_names(fn: Callable[..., Any], count: int) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    named = [repr(p.name) for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [named[i] if i < len(named) else f"#{i + 1}" for i in range(count)]


def _search(value: object, where: str, depth: int) -> tuple[str, object, BaseException] | None:
    """The deepest part of ``value`` that fails to pickle, or None if it pickles."""
    try:
        dumps(value)
    except Exception as exc:
        if depth:
            for sub_where, child in _children(value, where):
                found = _search(child, sub_where, depth - 1)
                if found is not None:
                    return found
        return where, value, exc
    return None


def _children(value: object, where: str) -> Iterator[tuple[str, object]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{where}[{k!r}]", v
    elif isinstance(value, list | tuple | set | frozenset):
        for i, v in enumerate(value):
            yield f"{where}[{i}]", v
    elif inspect.isfunction(value):
        refs = inspect.getclosurevars(value)
        for kind, found in (("nonlocal", refs.nonlocals), ("global", refs.globals)):
            for name, v in found.items():
                if not inspect.ismodule(v):
                    yield f"{where}, through its {kind} {name!r}", v
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for name, v in vars(value).items():
            yield f"{where}.{name}", v
