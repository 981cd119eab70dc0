"""What runs on a worker process: unpickle the call, run it, pickle the outcome.

This module is pickled by value with the task (cloudpickle), so workers need
only dask, cloudpickle and what the task itself imports, not dremioframe_async.
It must import nothing from this package. Being pickled by value, its globals
are fresh in every payload: what must outlive one task on a worker (the running
coroutines, the worker-scoped resources) is kept on the ``distributed.Worker``
object itself, in plain containers.

Coroutine tasks run on the worker's own event loop, where distributed awaits
coroutine functions (``Worker.execute``): no thread is taken per task, and the
worker-scoped resources (an aiohttp session, a Flight client) are bound to that
one loop, shared by every coroutine task of the worker. distributed does not
interrupt a running task when its future is cancelled, so each coroutine runs
in an asyncio task of its own, registered by attempt, that the driver cancels
with :func:`cancel_attempt` (through ``Client.run``) and waits for.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import pickle
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import cloudpickle

from ..errors import DremioFrameError

__all__ = ["Context", "cancel_attempt", "close_scope", "run_coroutine", "run_payload"]

STATE = "_dremioframe_async"  # the attribute of the Worker holding the state below
CLOSE_BOUND = 30.0  # seconds the worker-scoped resources of a run may take to close


class Context(Mapping[str, Any]):
    """A task's ``context`` on a worker: what it could read on the driver, copied.

    The upstream results the task may read and the run's parameters, keyed as on
    the driver (a result wins over a parameter of the same name); ``run_id`` and
    ``params`` as attributes. Looking up by Task object needs the driver.
    """

    def __init__(
        self,
        run_id: str,
        params: Mapping[str, Any],
        values: Mapping[str, Any],
        logger: str = "dremioframe_async.task",
    ) -> None:
        self.run_id = run_id
        self.params = dict(params)
        self._values = dict(values)
        self._logger = logger
        self._resources: Mapping[str, Any] | None = None

    def bind_resources(self, resources: Mapping[str, Any]) -> None:
        """Give the task the worker-scoped resources it declared (opened on this worker)."""
        self._resources = _Resources(resources)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Context run_id={self.run_id} keys={list(self._values)}>"

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The task's logger, as on the driver: its INFO lines are always in the task's log."""
        return _WorkerLog(logging.getLogger(self._logger), {"dremioframe_run_id": self.run_id})

    @property
    def resources(self) -> Mapping[str, Any]:
        """The worker-scoped resources the task declared; the run's others live on the driver."""
        return _NO_RESOURCES if self._resources is None else self._resources


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


class _Resources(Mapping[str, Any]):
    """``context.resources`` of a coroutine on a worker: its worker-scoped resources."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        raise KeyError(_ON_DRIVER.format(name=name))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class _WorkerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``context.log`` on a worker: a record its logger's level drops still reaches the
    task's capture (at INFO and above), and no other handler."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(level):
            super().log(level, msg, *args, **kwargs)
            return
        capture = _capture_of_this_thread()
        if capture is None or level < max(logging.INFO, capture.level):
            return
        exc_info = kwargs.get("exc_info")
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        record = logging.LogRecord(self.logger.name, level, "", 0, msg, args, exc_info or None)
        capture.handle(record)


def run_payload(
    payload: bytes, capture: tuple[int, int, int] | None = None, traceparent: str | None = None
) -> tuple[Any, ...]:
    """Run the pickled ``(fn, args, kwargs)``; return ``("ok", pickled result)``.

    The result is pickled here so that the driver knows its exact size and an
    unpicklable result is reported as such: ``("unpicklable", type name, reason)``.
    An exception from the function propagates with its traceback, unless it cannot
    be pickled back (distributed would reduce it to a bare ``Exception``):
    ``("raised", type name, message, reason, traceback text)``.

    With ``capture`` (``(max_lines, max_bytes, level)``), the log records this
    thread emits while the function runs are kept, bounded, and appended to the
    outcome as ``(lines, dropped)``; on an exception that travels they ride on it
    as its ``dremioframe_log_lines`` attribute.

    With ``traceparent`` (the attempt's span) and OpenTelemetry on the worker, the
    function runs in that trace context: spans it makes are the attempt's children.
    """
    fn, args, kwargs = pickle.loads(payload)
    token = _join_trace(traceparent) if traceparent else None
    try:
        return _run(fn, args, kwargs, capture)
    finally:
        if token is not None:
            from opentelemetry import context

            context.detach(token)


def _join_trace(traceparent: str) -> Any:
    try:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:  # no OpenTelemetry on the worker: nothing to join
        return None
    return context.attach(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))


def _run(fn: Any, args: Any, kwargs: Any, capture: tuple[int, int, int] | None) -> tuple[Any, ...]:
    handler = _ThreadLines(*capture) if capture is not None else None
    root = logging.getLogger()
    if handler is not None:
        root.addHandler(handler)
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        reason = _cannot_travel(exc)
        if reason is None:
            if handler is not None:
                exc.dremioframe_log_lines = handler.shipped()  # type: ignore[attr-defined]
            raise
        text = "".join(traceback.format_exception(exc))
        raised = ("raised", _type_name(type(exc)), str(exc), reason, text)
        return raised if handler is None else (*raised, handler.shipped())
    finally:
        if handler is not None:
            _detach(root, handler)
    outcome = _pickled(result)
    return outcome if handler is None else (*outcome, handler.shipped())


def _detach(root: logging.Logger, handler: logging.Handler) -> None:
    # Not root.removeHandler: it deletes in place from the list that another thread
    # (another task's) may be walking, and that walk then skips the handler that moved
    # into the removed one's place, another task's capture (CPython gh-79366). A copy
    # replaces the list, so a walk in progress finishes on the one it started with.
    with getattr(logging, "_lock", None) or threading.RLock():
        root.handlers = [h for h in root.handlers if h is not handler]


def _pickled(result: Any) -> tuple[Any, ...]:
    try:
        return ("ok", cloudpickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        return ("unpicklable", type(result).__qualname__, f"{type(exc).__name__}: {exc}")


def _capture_of_this_thread() -> logging.Handler | None:
    # Found on the root logger rather than kept in a global: this module travels by
    # value (cloudpickle), and a thread-local or a context variable cannot. Matched by
    # name: the call and its context arrive in separate pickles, each with its own
    # copy of this module's classes.
    me = threading.get_ident()
    for handler in logging.getLogger().handlers:
        kind = type(handler).__name__
        if kind == "_ThreadLines" and getattr(handler, "thread", None) == me:
            return handler
        if kind == "_TaskLines" and handler.mine():  # type: ignore[attr-defined]
            return handler
    return None


class _ThreadLines(logging.Handler):
    """Keeps the newest records of one thread (the task's) within the capture's bounds.

    Other threads of the worker run other tasks: their records are not ours.
    """

    def __init__(self, max_lines: int, max_bytes: int, level: int) -> None:
        super().__init__(level)
        self.thread = threading.get_ident()
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lines: deque[tuple[float, str, str, str]] = deque()
        self.bytes = 0
        self.dropped = 0
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.keep(record)

    def keep(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)[: self.max_bytes]
        except Exception:
            self.handleError(record)
            return
        self.lines.append((record.created, record.levelname, record.name, message))
        self.bytes += len(message)
        while len(self.lines) > self.max_lines or self.bytes > self.max_bytes:
            self.bytes -= len(self.lines.popleft()[3])
            self.dropped += 1

    def shipped(self) -> tuple[list[tuple[float, str, str, str]], int]:
        """The lines kept, oldest first, and how many were dropped before them."""
        return list(self.lines), self.dropped


class _TaskLines(_ThreadLines):
    """Keeps the records of one coroutine task (and of the tasks and threads it starts,
    which inherit its context) within the capture's bounds.

    The coroutines of a worker share its loop's thread, so a thread says nothing:
    a context variable of this handler's own, set in the task's context, does.
    """

    def __init__(self, max_lines: int, max_bytes: int, level: int) -> None:
        super().__init__(max_lines, max_bytes, level)
        self.var: contextvars.ContextVar[_TaskLines | None] = contextvars.ContextVar(
            "dremioframe_async_task_lines", default=None
        )

    def mine(self) -> bool:
        return self.var.get() is self

    def emit(self, record: logging.LogRecord) -> None:
        if self.mine():
            self.keep(record)


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


# -- coroutine tasks on the worker's event loop ----------------------------------------


def _state(worker: Any) -> dict[str, Any]:
    """This worker's running attempts and, per scope (a run's session), its resources."""
    state: dict[str, Any] | None = getattr(worker, STATE, None)
    if state is None:
        state = {"running": {}, "scopes": {}}
        setattr(worker, STATE, state)
    return state


def _scope(state: dict[str, Any], scope: str) -> dict[str, Any]:
    found: dict[str, Any] = state["scopes"].setdefault(scope, {"slots": {}, "cancelled": set()})
    return found


async def run_coroutine(
    payload: bytes,
    scoped: bytes,
    attempt: str,
    scope: str,
    traceparent: str | None = None,
    capture: tuple[int, int, int] | None = None,
) -> tuple[Any, ...]:
    """Run the pickled coroutine call on this worker's loop; outcomes as :func:`run_payload`'s.

    ``scoped`` is the pickled ``(factories, inject)`` of its worker-scoped
    resources. ``("cancelled",)`` when the driver cancelled it (:func:`cancel_attempt`).
    With ``capture``, the records of the coroutine (and of the tasks and threads it
    starts) are kept and shipped as :func:`run_payload` ships a function's.
    """
    handler = _TaskLines(*capture) if capture is not None else None
    root = logging.getLogger()
    if handler is not None:
        root.addHandler(handler)
    try:
        outcome = await _run_coroutine(payload, scoped, attempt, scope, traceparent, handler)
    except Exception as exc:
        if handler is not None:
            exc.dremioframe_log_lines = handler.shipped()  # type: ignore[attr-defined]
        raise
    finally:
        if handler is not None:
            _detach(root, handler)
    return outcome if handler is None else (*outcome, handler.shipped())


async def _run_coroutine(
    payload: bytes,
    scoped: bytes,
    attempt: str,
    scope: str,
    traceparent: str | None,
    handler: _TaskLines | None,
) -> tuple[Any, ...]:
    from distributed import get_worker  # on the worker: distributed is there

    state = _state(get_worker())
    resources = _scope(state, scope)
    if attempt in resources["cancelled"]:
        return ("cancelled",)  # cancelled before it got here: never starts
    fn, args, kwargs = pickle.loads(payload)
    factories, inject = pickle.loads(scoped)
    token = _join_trace(traceparent) if traceparent else None
    mark = handler.var.set(handler) if handler is not None else None
    try:  # the task copies the context as it is now: the trace and the capture go with it
        inner = asyncio.ensure_future(_call(fn, args, kwargs, factories, inject, resources))
    finally:
        if handler is not None and mark is not None:
            handler.var.reset(mark)
        if token is not None:
            from opentelemetry import context

            context.detach(token)
    state["running"][attempt] = inner
    try:
        result = await inner
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if inner.cancelled() and current is not None and not current.cancelling():
            return ("cancelled",)  # the driver's cancel_attempt, not the worker closing
        raise
    except _OpenFailed as exc:  # the driver raises ResourceError, as for a run resource
        return ("resource", exc.name, exc.detail)
    except Exception as exc:
        reason = _cannot_travel(exc)
        if reason is None:
            raise
        text = "".join(traceback.format_exception(exc))
        return ("raised", _type_name(type(exc)), str(exc), reason, text)
    finally:
        state["running"].pop(attempt, None)
        if not inner.done():
            inner.cancel()  # the worker is closing and cancelled this task: stop the coroutine
    return _pickled(result)


async def _call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    factories: Mapping[str, Callable[[], Any]],
    inject: tuple[str, ...],
    resources: dict[str, Any],
) -> Any:
    if factories:
        values = {}
        for name, factory in factories.items():
            try:
                values[name] = await _open(resources["slots"], name, factory)
            except Exception as exc:
                raise _OpenFailed(name, f"{type(exc).__name__}: {exc}") from exc
        kwargs.update({name: values[name] for name in inject})
        context = kwargs.get("context")
        if context is not None and hasattr(context, "bind_resources"):
            context.bind_resources(values)
    return await fn(*args, **kwargs)


class _OpenFailed(DremioFrameError):
    """A worker-scoped resource could not be opened (``detail`` says why)."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(name, detail)
        self.name = name
        self.detail = detail


async def _open(slots: dict[str, Any], name: str, factory: Callable[[], Any]) -> Any:
    """The worker's one instance of resource ``name`` in this scope, opened on first use."""
    slot = slots.get(name)
    if slot is None:
        loop = asyncio.get_running_loop()
        slot = slots[name] = {"ready": loop.create_future(), "close": asyncio.Event()}
        # A task of its own enters and exits the resource, whichever task asked first.
        slot["host"] = asyncio.ensure_future(_host(slot, factory))
    return await asyncio.shield(slot["ready"])


def _is_async_cm(value: object) -> bool:
    return hasattr(type(value), "__aenter__") and hasattr(type(value), "__aexit__")


async def _host(slot: dict[str, Any], factory: Callable[[], Any]) -> None:
    ready: asyncio.Future[Any] = slot["ready"]
    try:
        made = factory()
        if inspect.isawaitable(made) and not _is_async_cm(made):
            made = await made
        value = await type(made).__aenter__(made) if _is_async_cm(made) else made
    except Exception as exc:  # every task of this scope that asks gets it
        ready.set_exception(exc)
        return
    ready.set_result(value)
    if not _is_async_cm(made):
        return  # a plain object: nothing to close
    try:
        await slot["close"].wait()
    finally:
        await type(made).__aexit__(made, None, None, None)


async def cancel_attempt(attempt: str, scope: str, dask_worker: Any = None) -> bool:
    """Cancel the attempt's coroutine if it runs here and wait for it to end (True);
    else remember it, so that it never starts here (False). Run through ``Client.run``."""
    state = _state(dask_worker)
    inner = state["running"].get(attempt)
    if inner is None:
        _scope(state, scope)["cancelled"].add(attempt)
        return False
    inner.cancel()
    await asyncio.wait([inner], timeout=CLOSE_BOUND)
    return True


async def close_scope(scope: str, dask_worker: Any = None) -> int:
    """Close the worker-scoped resources of ``scope`` on this worker; how many were open.

    Run through ``Client.run`` when the run's session ends.
    """
    state = _state(dask_worker)
    resources = state["scopes"].pop(scope, None)
    if resources is None:
        return 0
    hosts = []
    for slot in resources["slots"].values():
        slot["close"].set()
        hosts.append(slot["host"])
    if hosts:
        await asyncio.wait(hosts, timeout=CLOSE_BOUND)
    for host in hosts:
        if host.done() and not host.cancelled() and host.exception() is not None:
            # Nobody awaits a host: say that a close failed rather than drop it.
            logging.getLogger("dremioframe_async.executors").error(
                "a worker-scoped resource failed to close", exc_info=host.exception()
            )
    return len(hosts)
