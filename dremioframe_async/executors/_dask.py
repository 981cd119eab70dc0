"""Plain-function tasks on a Dask cluster, driven from the caller's event loop.

The engine stays where it is: graph, limits, retries, timeouts and events on the
caller's loop. Each attempt pickles ``(fn, args, kwargs)`` on the driver (so an
unpicklable part fails before anything is sent, with its name), submits it with
``pure=False`` (identical calls are separate attempts, never merged), and awaits
the future through distributed's asynchronous client, which never blocks the
loop. The worker pickles the result itself, so its size is known exactly.

Coroutine tasks (``@task(executor="dask")`` on an ``async def``, or every one
with ``DaskExecutor(coroutines=True)``) run on the worker's own event loop,
where distributed awaits coroutine functions, rather than in a worker thread
with a loop of its own. Why: no thread is held per task; and worker-scoped
resources (:func:`~dremioframe_async.orchestration.worker_scoped`: a Dremio
client, an HTTP session) are bound to an event loop, so only one loop per
worker lets every coroutine task there share them. The cost is the rule that
holds on the driver's loop too: a coroutine must not block (blocking work goes
to a thread, as the Dremio client's Flight reads do), or it stalls the worker's
heartbeats and transfers as well. distributed does not interrupt a running task
whose future is cancelled; a cancelled or timed-out coroutine attempt is
cancelled on its worker (:func:`._remote.cancel_attempt`), and its future
released, before the cancellation reaches the engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
import warnings
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import sniffio
from dask.sizeof import sizeof
from distributed import Client, LocalCluster
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from .._telemetry import traceparent
from ..orchestration import ArgumentError, ResourceError, RunContext, TaskCall
from . import _pickling, _remote
from ._errors import (
    ExecutorError,
    RemoteTaskError,
    ResultSizeWarning,
    TaskPickleError,
    WorkerLostError,
)

__all__ = ["DaskExecutor", "DaskSession"]

logger = logging.getLogger("dremioframe_async.executors")

LARGE_RESULT_BYTES = 16 * 2**20  # results over this warn: they should be references
OFF_LOOP_BYTES = 2**20  # pickling more than this goes to a worker thread, off the loop
CANCEL_BOUND = 10.0  # seconds a cancelled attempt may spend telling the scheduler
CLOSE_BOUND = 60.0  # seconds closing a client and its local cluster may take
START_BOUND = 120.0  # seconds a local cluster may take to start


def _require_asyncio() -> None:
    library = sniffio.current_async_library()
    if library != "asyncio":
        raise ExecutorError(
            f"DaskExecutor needs asyncio (distributed's client runs on asyncio only), "
            f"not {library}; run the pipeline under asyncio or use the local executor"
        )


def _portable(call: TaskCall) -> TaskCall:
    """``call`` with a run context replaced by a copy a worker can use."""
    context = call.kwargs.get("context")
    if not isinstance(context, RunContext):
        return call
    values = {k: context[k] for k in context}
    copy = _remote.Context(context.run_id, context.params, values, context.log.logger.name)
    return dataclasses.replace(call, kwargs={**call.kwargs, "context": copy})


async def _off_loop(fn: Any, arg: Any, nbytes: int) -> Any:
    if nbytes <= OFF_LOOP_BYTES:
        return fn(arg)
    return await anyio.to_thread.run_sync(fn, arg)


def _hand_back_lines(call: TaskCall, shipped: Any) -> None:
    """File the log lines a worker captured under the attempt (see ``TaskCall.logs``)."""
    if call.logs is not None and isinstance(shipped, tuple) and len(shipped) == 2:
        lines, dropped = shipped
        call.logs.add(lines, dropped)


async def _closing(cluster: LocalCluster) -> None:
    closing = cluster.close()  # typed as maybe-None: it is a coroutine on an async cluster
    if closing is not None:
        await closing


def _start_failed(exc: Exception) -> ExecutorError:
    """The error for a local cluster that did not start, naming its root cause.

    distributed reports a worker that failed to start as "Nanny failed to start",
    and the reason (an unknown option's TypeError) only in its log and as the cause.
    """
    if isinstance(exc, TimeoutError):
        return ExecutorError(f"DaskExecutor: cannot start a local cluster within {START_BOUND:g} s")
    text = f"{type(exc).__name__}: {exc}"
    root = exc
    while root.__cause__ is not None and isinstance(root.__cause__, Exception):
        root = root.__cause__
    if root is not exc and not isinstance(root, AssertionError):
        text += f" ({type(root).__name__}: {root})"
    return ExecutorError(f"DaskExecutor: cannot start a local cluster: {text}")


class DaskSession:
    """A connected Dask client, used by one run.

    ``scope`` names the run's worker-scoped resources on the workers; they are
    closed by :meth:`close_scope` when the run ends.
    """

    name = "dask"

    def __init__(self, client: Client, large_result_bytes: int, coroutines: bool = False) -> None:
        self.client = client
        self.coroutines = coroutines
        self.scope = uuid.uuid4().hex
        self.sent_coroutines = False
        self._large = large_result_bytes

    async def close_scope(self) -> None:
        """Close this run's worker-scoped resources on every worker (bounded, shielded)."""
        if not self.sent_coroutines:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_BOUND) as bound:
            await self.client.run(_remote.close_scope, self.scope, on_error="return")
        if bound.cancelled_caught:
            logger.warning("closing worker-scoped resources took over %ss", CLOSE_BOUND)

    async def run(self, call: TaskCall) -> Any:
        """Run ``call`` on a Dask worker; see :class:`~dremioframe_async.executors.Executor`.

        :raises TaskPickleError: when the function, an argument or the result
            cannot be pickled (before anything is sent, for the first two).
        :raises WorkerLostError: when the worker running the attempt died.
        :raises ExecutorError: when the cluster cancelled or lost the task.
        """
        try:
            call = _portable(call)
            try:
                size = sizeof((call.args, call.kwargs))
            except Exception:  # an estimate only: pickle it and see
                size = OFF_LOOP_BYTES + 1
            payload = await _off_loop(_pickling.pack, call, size)
            capture = call.logs.limits if call.logs is not None else None
            try:
                if call.is_async:
                    outcome = await self._submit_coroutine(call, payload, capture)
                else:
                    outcome = await self._submit(call.key, payload, capture)
            except Exception as exc:
                _hand_back_lines(call, getattr(exc, "dremioframe_log_lines", None))
                raise
            if capture is not None:
                _hand_back_lines(call, outcome[-1])
                outcome = outcome[:-1]
        finally:
            # A cancelled future stops the task if it has not started; a running
            # one cannot be interrupted and ends in the worker's own thread.
            if call.release is not None:
                call.release()
        return await self._unpack(call.key, outcome)

    async def _submit_coroutine(
        self, call: TaskCall, payload: bytes, capture: tuple[int, int, int] | None
    ) -> tuple[Any, ...]:
        scoped = _pickling.pack_resources(call)
        self.sent_coroutines = True
        attempt = f"{call.key}-{uuid.uuid4().hex}"
        future = self.client.submit(
            _remote.run_coroutine,
            payload,
            scoped,
            attempt,
            self.scope,
            traceparent(),
            capture,
            key=attempt,
            pure=False,
        )
        return await self._await(call.key, future, attempt)

    async def _submit(
        self, key: str, payload: bytes, capture: tuple[int, int, int] | None
    ) -> tuple[Any, ...]:
        future = self.client.submit(
            _remote.run_payload,
            payload,
            capture,
            traceparent(),  # the attempt's span: work on the worker joins its trace
            key=f"{key}-{uuid.uuid4().hex}",
            pure=False,
        )
        return await self._await(key, future, None)

    async def _await(self, key: str, future: Any, attempt: str | None) -> tuple[Any, ...]:
        try:
            outcome: tuple[Any, ...] = await future
            return outcome
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                if attempt is not None:  # a coroutine: cancel it where it runs, and wait
                    # Bounded on its own: a coroutine that ignores its cancellation
                    # must not keep the future from being cancelled below.
                    with anyio.move_on_after(CANCEL_BOUND):
                        await self.client.run(
                            _remote.cancel_attempt, attempt, self.scope, on_error="return"
                        )
                with anyio.move_on_after(CANCEL_BOUND):
                    reason = f"task {key!r} cancelled"
                    await self.client.cancel([future], force=True, reason=reason)
            raise
        except KilledWorker as exc:
            raise WorkerLostError(key, str(exc)) from exc
        except FutureCancelledError as exc:
            raise ExecutorError(f"task {key!r}: cancelled on the Dask cluster ({exc})") from exc
        finally:
            future.release()

    async def _unpack(self, key: str, outcome: tuple[Any, ...]) -> Any:
        if outcome[0] == "cancelled":  # only when this run's attempt was cancelled meanwhile
            raise ExecutorError(f"task {key!r}: cancelled on its Dask worker")
        if outcome[0] == "resource":
            _, name, detail = outcome
            raise ResourceError(name, "open", f"{detail} (on a Dask worker)")
        if outcome[0] == "unpicklable":
            _, type_name, reason = outcome
            raise TaskPickleError(key, "its result", type_name, reason)
        if outcome[0] == "raised":
            _, type_name, message, reason, text = outcome
            raise RemoteTaskError(key, type_name, message, reason, text)
        data: bytes = outcome[1]
        if len(data) > self._large:
            warnings.warn(ResultSizeWarning(key, len(data), self._large), stacklevel=2)
        return await _off_loop(_pickling.loads, data, len(data))


class DaskExecutor:
    """Run plain-function tasks, and coroutine tasks that ask, on a Dask cluster (needs
    the ``dask`` extra).

    Coroutine tasks stay on the event loop unless declared ``@task(executor="dask")``,
    or unless ``coroutines=True``; tasks declared ``@task(executor="local")`` stay
    here. Retries, timeouts, pools and ``max_concurrency`` keep their meaning: an
    attempt holds its slots while its future is out.

    :param address: a running scheduler (``"tcp://scheduler:8786"``). The
        executor connects at the start of each run and disconnects at its end.
    :param client: an existing ``distributed.Client`` created with
        ``asynchronous=True`` on the same event loop; never closed here.
    :param large_result_bytes: results larger than this, pickled, raise a
        :class:`ResultSizeWarning` naming the task (default 16 MiB).
    :param coroutines: run every coroutine task on the workers' event loops too,
        except those that need a run-scoped resource (they stay here; mark the
        factory :func:`~dremioframe_async.orchestration.worker_scoped` to send them).
        A worker runs at most its thread count of tasks at once, coroutines
        included (distributed counts them so): size ``threads_per_worker`` for the
        I/O concurrency wanted per worker.
    :param cluster_options: with neither ``address`` nor ``client``, options for
        the ``distributed.LocalCluster`` the executor starts (``n_workers=2``,
        ``threads_per_worker=1``, ...). Worker processes, a random dashboard
        port and no silent retries of a task whose worker died are the defaults.

    Lifetime: a run opens the executor and closes it when the run ends, so a
    local cluster lives for one run. To keep one cluster (or connection) across
    runs, enter the executor: ``async with DaskExecutor() as dask: ...``; it
    closes when the block ends. Concurrent runs share what is open.

    :raises ArgumentError: for ``address`` with ``client``, cluster options with
        either, or a client that is not asynchronous.
    """

    name = "dask"

    def __init__(
        self,
        address: str | None = None,
        client: Client | None = None,
        *,
        large_result_bytes: int = LARGE_RESULT_BYTES,
        coroutines: bool = False,
        **cluster_options: Any,
    ) -> None:
        if address is not None and client is not None:
            raise ArgumentError("DaskExecutor: give a scheduler address or a client, not both")
        if cluster_options and (address is not None or client is not None):
            names = ", ".join(sorted(cluster_options))
            raise ArgumentError(
                f"DaskExecutor: cluster options ({names}) configure a local cluster; "
                f"they do not apply with an address or a client"
            )
        if client is not None and not client.asynchronous:
            raise ArgumentError(
                "DaskExecutor: the client must be created with Client(..., asynchronous=True)"
            )
        if isinstance(large_result_bytes, bool) or not isinstance(large_result_bytes, int):
            raise ArgumentError(f"large_result_bytes must be an int, got {large_result_bytes!r}")
        if not isinstance(coroutines, bool):
            raise ArgumentError(f"coroutines must be True or False, got {coroutines!r}")
        self.address = address
        self.coroutines = coroutines
        self._given_client = client
        self._large = large_result_bytes
        self._cluster_options = cluster_options
        self._lock = anyio.Lock()
        self._checked: weakref.WeakSet[Any] = weakref.WeakSet()  # functions that pickle
        self._users = 0
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None

    @property
    def client(self) -> Client | None:
        """The client in use while the executor is open, else None."""
        return self._client

    @property
    def cluster(self) -> LocalCluster | None:
        """The local cluster this executor started, while it is open."""
        return self._cluster

    def check(self, call: TaskCall) -> None:
        """Pickle the function, the arguments known before the run and the factories
        of the worker-scoped resources it needs.

        :raises TaskPickleError: naming the task and what cannot be pickled.
        """
        # A fan-out calls the same function many times: pickle it once.
        try:
            known = call.fn in self._checked
        except TypeError:  # not weakly referenceable
            known = False
        _pickling.pack(call, with_function=not known)
        with contextlib.suppress(TypeError):
            self._checked.add(call.fn)
        unchecked = [f for f in call.resources.values() if f not in self._checked]
        if unchecked:  # a fan-out shares its factories: pickle each once
            _pickling.pack_resources(call)
            for factory in unchecked:
                with contextlib.suppress(TypeError):
                    self._checked.add(factory)

    def session(self, *, concurrency: int | None) -> AbstractAsyncContextManager[DaskSession]:
        """Open the executor for one run (the cluster bounds nothing of its own)."""
        return self._session()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[DaskSession]:
        client = await self._acquire()
        try:
            session = DaskSession(client, self._large, self.coroutines)
            try:
                yield session
            finally:
                await session.close_scope()
        finally:
            await self._release()

    async def __aenter__(self) -> DaskExecutor:
        await self._acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._release()

    async def _acquire(self) -> Client:
        _require_asyncio()
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
            self._users += 1
            return self._client

    async def _release(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._users -= 1
                if self._users:
                    return
                client, cluster = self._client, self._cluster
                self._client = self._cluster = None
                with anyio.move_on_after(CLOSE_BOUND) as scope:
                    await self._close(client, cluster)
                if scope.cancelled_caught:
                    logger.warning("closing the Dask client or cluster took over %ss", CLOSE_BOUND)

    async def _connect(self) -> Client:
        if self._given_client is not None:
            return self._given_client
        if self.address is not None:
            try:
                client: Client = await Client(self.address, asynchronous=True)
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(
                    f"DaskExecutor: cannot reach the scheduler at {self.address}: {exc}"
                ) from exc
            return client
        return await self._start_local()

    async def _start_local(self) -> Client:
        options: dict[str, Any] = {"processes": True, "dashboard_address": ":0"}
        options.update(self._cluster_options)
        # A task whose worker dies fails its attempt; the task's own retry policy
        # decides, rather than the scheduler re-running it silently.
        options["scheduler_kwargs"] = {"allowed_failures": 0, **options.get("scheduler_kwargs", {})}
        options["asynchronous"] = True
        try:
            cluster = LocalCluster(**options)  # asynchronous: built here, started below
        except Exception as exc:
            raise _start_failed(exc) from exc
        client: Client | None = None
        try:
            # A half-started cluster cannot be closed: let the start finish (it
            # takes seconds; bounded) even if the run is cancelled meanwhile.
            with anyio.CancelScope(shield=True), anyio.fail_after(START_BOUND):
                await cluster
            client = await Client(cluster, asynchronous=True)
            # Typed for the sync client; on an asynchronous one it returns a coroutine.
            await client.wait_for_workers(len(cluster.workers))  # type: ignore[misc]
        except BaseException as exc:
            # No process may outlive a start that failed or was cancelled.
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_BOUND):
                await self._close(client, cluster)
            if isinstance(exc, Exception):  # cancellation passes as it is
                raise _start_failed(exc) from exc
            raise
        self._cluster = cluster
        return client

    async def _close(self, client: Client | None, cluster: LocalCluster | None) -> None:
        if client is not None and client is not self._given_client:
            await client.close()
        if cluster is not None:
            await _closing(cluster)

    def __repr__(self) -> str:
        if self._given_client is not None:
            where = f"client={self._given_client!r}"
        elif self.address is not None:
            where = f"address={self.address!r}"
        else:
            where = ", ".join(f"{k}={v!r}" for k, v in self._cluster_options.items())
        if self.coroutines:
            where += ", coroutines=True" if where else "coroutines=True"
        return f"DaskExecutor({where})"
