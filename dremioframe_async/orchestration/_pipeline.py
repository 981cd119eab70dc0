"""Pipeline: the set of tasks to run, its limits, and the entry point ``run()``."""

from __future__ import annotations

import dataclasses
import json
import operator
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from ._awaited import run_call
from ._dispatch import Listener, dispatching, normalize_listeners
from ._errors import ArgumentError, PipelineDefinitionError
from ._executor import Executor, ExecutorSession, LocalExecutor, TaskCall
from ._graph import KEEP_RESULTS, KeepResults, Plan, build_plan, mermaid
from ._logs import LogCapture, capture_settings, run_logs
from ._metering import run_metrics
from ._observe import observers
from ._placement import on_executor, placement_problems
from ._pstate import RunState, StateSource
from ._recorder import PriorRun, ResumeRefused, RunAttendant, RunRecorder
from ._resources import ResourceFactory, check_factories, run_factories, run_resources
from ._result import RunResult
from ._runner import Run
from ._task import Task, call_hint, contains_task
from ._tracing import run_tracing

__all__ = ["Pipeline"]


def _check_limit(pipeline: str, what: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(
            f"pipeline {pipeline!r}: {what} must be a whole number >= 1, got {value!r}"
        )
    return value


def _changed_params(stored: Mapping[str, Any], given: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Names of the parameters in which ``given`` differs from a run's ``stored`` ones.

    Compared as stored: through JSON, with anything JSON cannot hold written as
    its ``repr`` (the stores keep params that way).
    """
    if given is None:
        return ()
    as_stored = json.loads(json.dumps(dict(given), default=repr))
    keys = sorted(set(stored) | set(as_stored), key=str)
    return tuple(str(k) for k in keys if stored.get(k, _MISSING) != as_stored.get(k, _MISSING))


_MISSING = object()
# Edits only ever grow, so a plan's tasks have the same sum of them exactly when
# none of their edges changed: one int tells a cached plan apart from a stale one.
_EDITS = operator.attrgetter("edits")


def _changes(stored: Mapping[str, Any], given: Mapping[str, Any], names: Sequence[str]) -> str:
    """``day was '2030-01-01', now '2030-01-02'`` for each changed name."""

    def shown(params: Mapping[str, Any], name: str) -> str:
        if name not in params:
            return "not given"
        text = repr(params[name])
        return text if len(text) <= 60 else text[:57] + "..."

    return "; ".join(f"{n} was {shown(stored, n)}, now {shown(given, n)}" for n in names)


def _check_grace(pipeline: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ArgumentError(
            f"pipeline {pipeline!r}: cleanup_grace must be a number of seconds >= 0, got {value!r}"
        )
    return float(value)


def _check_executor(executor: object) -> Executor | None:
    if executor is None or isinstance(executor, LocalExecutor):
        return None  # the run's own threads, without the seam's indirection
    if not isinstance(executor, Executor):
        raise ArgumentError(
            f"executor must be an Executor (LocalExecutor(), DaskExecutor(), ...), "
            f"got {type(executor).__name__}"
        )
    return executor


def _check_calls(
    executor: Executor, tasks: Sequence[tuple[str, Task]], factories: Mapping[str, Any]
) -> None:
    """Let the executor refuse a call before anything runs (an unpicklable argument, say)."""
    for key, t in tasks:
        args = tuple(a for a in t.args if not contains_task(a))
        kwargs = {k: v for k, v in t.kwargs.items() if not contains_task(v)}
        scoped = {n: factories[n].factory for n in t.options.resources} if t.is_async else {}
        executor.check(TaskCall(key, t.action, args, kwargs, is_async=t.is_async, resources=scoped))


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Pipeline:
    """A named set of connected tasks and the limits they run under.

    :param name: the pipeline's name (events and the store use it).
    :param max_concurrency: at most this many task attempts run at once in one
        run (``max_workers`` is accepted as an alias); None for no limit.
    :param pools: named limits, ``{"dremio": 8}``; a task joins one with
        ``@task(pool="dremio")``. A value may also be an ``anyio.CapacityLimiter``
        to share one limit across pipelines and runs.
    :param cleanup_grace: when a run is cancelled, its running tasks are
        cancelled, then its ``all_done`` and ``always`` tasks whose upstream
        tasks have all ended still run, shielded from the cancellation, for at
        most this many seconds (``math.inf``: no bound; 0: not at all). A
        second cancellation (see ``run(stop_cleanup=...)``) ends them sooner.
    :param resources: run-scoped resources by name, each made by a zero-argument
        factory returning an async context manager (entered when the first task
        that needs it starts, exited when the run ends, also on failure or
        cancellation), an awaitable, or an object used as it is. Each run opens
        its own, at most once; tasks declare what they need with
        ``@task(resources=("dremio",))``.
    :param executor: where plain-function tasks run (see
        ``dremioframe_async.executors``): the run's worker threads by default.
        Tasks declared ``@task(executor="local")``, plain-function tasks that need a
        resource, and coroutine tasks run in this process, unless a coroutine task
        names the executor (``@task(executor="dask")``) or the executor takes them
        all (``DaskExecutor(coroutines=True)``) and each resource it needs is
        :func:`worker_scoped` (opened once per worker).
    :param max_active_runs: at most this many runs of this pipeline taken from a
        store's run queue run at once, across every process serving that store
        (see ``dremioframe_async.service``); None for no limit. ``run()`` itself
        does not wait for it.
    :param resume_interrupted: a process serving this pipeline resumes each of
        its runs that ends INTERRUPTED, once.
    :param keep_results: which results a run's :class:`RunResult` holds:
        ``"all"``, ``"leaves"`` (the tasks nothing depends on) or ``"none"``. A
        run of a large fan-out whose results nobody reads then holds none of them
        in memory. Results other tasks take as arguments are kept for the run
        whatever this says, every result when some task takes ``context``, and
        a store attached to the run records every result as usual.
    :raises ArgumentError: for an empty name, a limit that is not a whole number >= 1,
        a ``keep_results`` other than those three,
        a negative ``cleanup_grace``, a resource factory that is not callable, or an
        executor that is not one.
    """

    def __init__(
        self,
        name: str,
        max_concurrency: int | None = None,
        pools: Mapping[str, int | anyio.CapacityLimiter] | None = None,
        *,
        max_workers: int | None = None,
        cleanup_grace: float = 30.0,
        resources: Mapping[str, ResourceFactory] | None = None,
        executor: Executor | None = None,
        max_active_runs: int | None = None,
        resume_interrupted: bool = False,
        keep_results: KeepResults = "all",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ArgumentError(f"a pipeline needs a non-empty name, got {name!r}")
        if max_concurrency is not None and max_workers is not None:
            raise ArgumentError("give max_concurrency or its alias max_workers, not both")
        self.name = name
        limit = max_concurrency if max_concurrency is not None else max_workers
        self.max_concurrency = _check_limit(name, "max_concurrency", limit)
        self.max_active_runs = _check_limit(name, "max_active_runs", max_active_runs)
        self.resume_interrupted = bool(resume_interrupted)
        if keep_results not in KEEP_RESULTS:
            raise ArgumentError(
                f"pipeline {name!r}: keep_results must be one of {', '.join(KEEP_RESULTS)}, "
                f"got {keep_results!r}"
            )
        self.keep_results: KeepResults = keep_results
        self.pools: dict[str, int | anyio.CapacityLimiter] = {}
        for pool, size in (pools or {}).items():
            if not isinstance(size, anyio.CapacityLimiter):
                _check_limit(name, f"pool {pool!r}", size)
            self.pools[pool] = size
        self.cleanup_grace = _check_grace(name, cleanup_grace)
        self.resources = check_factories(f"pipeline {name!r}", resources)
        self.executor = _check_executor(executor)
        self._added: dict[Task, None] = {}
        self._plan: tuple[int, frozenset[str] | None, Plan] | None = None

    def add_task(self, task: Task) -> Pipeline:
        """Add ``task`` (and so every task connected to it); returns self to chain.

        :raises ArgumentError: if ``task`` is not a Task.
        """
        if not isinstance(task, Task):
            raise ArgumentError(
                f"add_task needs a Task, got {type(task).__name__}{call_hint(task)}"
            )
        self._added[task] = None
        self._plan = None
        return self

    @property
    def tasks(self) -> tuple[Task, ...]:
        """Every task a run would include, in creation order (validated)."""
        return self.plan().tasks

    def plan(self, resources: Collection[str] | None = None) -> Plan:
        """The validated graph; rebuilt only when some edge or task changed.

        :param resources: the resource names a run declares; a task needing
            another is then one of the problems (None: not checked).
        :raises CycleError: when the graph has a cycle.
        :raises PipelineDefinitionError: for every other problem, all at once.
        """
        names = None if resources is None else frozenset(resources)
        if self._plan is not None:
            stamp, checked, plan = self._plan
            # A plan checked for some resource names is the plan unchecked too: a
            # reader of the graph (the UI's) does not evict a run's, and rebuild it.
            if (names is None or checked == names) and sum(map(_EDITS, plan.tasks)) == stamp:
                return plan
        plan = build_plan(self.name, self._added, self.pools, names)
        self._plan = (sum(map(_EDITS, plan.tasks)), names, plan)
        return plan

    def visualize(self, path: str | Path | None = None) -> str:
        """Return the graph as Mermaid text; also write it to ``path`` if given."""
        text = mermaid(self.plan())
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def _limiters(self) -> tuple[anyio.CapacityLimiter | None, dict[str, anyio.CapacityLimiter]]:
        run_limiter = anyio.CapacityLimiter(self.max_concurrency) if self.max_concurrency else None
        pools = {
            name: size if isinstance(size, anyio.CapacityLimiter) else anyio.CapacityLimiter(size)
            for name, size in self.pools.items()
        }
        return run_limiter, pools

    @run_call  # used without ``await``, it says so (see _awaited.py)
    async def run(
        self,
        context: Mapping[str, Any] | None = None,
        *,
        on_event: Listener | Sequence[Listener] | None = None,
        store: RunRecorder | None = None,
        resume: str | None = None,
        resume_params_changed: bool = False,
        run_id: str | None = None,
        stop_cleanup: anyio.Event | None = None,
        resources: Mapping[str, ResourceFactory] | None = None,
        executor: Executor | None = None,
        capture_logs: bool | LogCapture = True,
        tracer_provider: Any = None,
    ) -> RunResult:
        """Run every task once, within the caller's event loop.

        Task failures do not raise: they are in the result (see
        :meth:`RunResult.raise_for_status`).

        A run of 1,000 tasks or more makes its per-task state frozen, so that it
        triggers no full collection of the application's heap: it collects the
        young generations, then makes each slice with Python's cyclic collector
        paused and freezes it (``gc.freeze()``). Once the last slice is made it
        unfreezes everything, the application's objects frozen meanwhile
        included. Skipped when the application has disabled the collector or
        frozen objects itself, and after a run that failed, was cancelled or
        retried, until the collector's next full collection.

        :param context: parameters every task's context can read.
        :param on_event: a callable (sync or async), or several, receiving each
            lifecycle event in order; one that raises is logged and ignored.
        :param store: a run recorder (see ``dremioframe_async.store``) that gets
            every event, batched, before ``run()`` returns. Events are handed over
            off the tasks' path; without ``on_event``, when 20,000 of them wait
            for the store, the run's tasks wait too (memory stays bounded).
        :param resume: with ``store``, the id of an earlier run of this pipeline
            whose successful, stored results are reused instead of re-running
            those tasks; its parameters are reused unless ``context`` is given.
            The ``all_done``, ``always`` and ``one_*`` tasks run again: they react
            to how this run's tasks end.
            Refused while that run's process is alive, and when ``context``
            differs from its parameters unless ``resume_params_changed`` is true
            (each reused task's recorded reason then says so).
        :param resume_params_changed: allow ``resume`` with other parameters.
        :param stop_cleanup: the second cancellation. Once this event is set, the
            cleanup tasks of a cancelled run (see ``cleanup_grace``) are cancelled
            too; the command line sets it on the second Ctrl-C.
        :param resources: resource factories for this run, added to the
            pipeline's (a name in both: this one is used). Every run, resumed
            ones too, opens its own resources and closes them before returning.
        :param executor: where this run's plain-function tasks run, instead of the
            pipeline's executor. It is opened before the first task starts (a
            local Dask cluster starts then) and closed after the last one ends.
        :param capture_logs: keep each task attempt's log lines (any logger, any
            thread of the task) and send them with the run's events, to ``store``
            and ``on_event`` (see :class:`LogCapture` for the bounds); False: off.
            A task opts out with ``@task(capture_logs=False)``. Nothing is
            captured when nobody listens (no ``store``, no ``on_event``).
        :param tracer_provider: an OpenTelemetry ``TracerProvider`` for this run's
            spans (extra ``otel``); None: the global provider when one is set,
            else no tracing at all.
        :returns: the :class:`RunResult`; its ``history_error`` is set when some of
            the run's events could not be recorded in ``store``.
        :raises CycleError: for a cycle, before any task starts.
        :raises PipelineDefinitionError: for other graph problems (a task needing
            a resource nobody declared among them), before any task starts.
        :raises LookupError: when ``resume`` names a run the store does not know.
        :raises ResumeRefused: (an ``ArgumentError``) when resuming that run now is unsafe.
        :raises StoreError: when ``store`` cannot record the run's start (no task ran).
        :raises ArgumentError: for ``resume`` without ``store`` or a run of another pipeline,
            a ``capture_logs`` that is not a bool or a LogCapture,
            a ``context`` that is not a mapping, an ``on_event`` that is not callable,
            a resource factory that is not callable, or an executor that is not one.
        :raises ExecutorError: when the executor cannot start (see ``dremioframe_async.executors``).
        """
        if context is not None and not isinstance(context, Mapping):
            raise ArgumentError(f"run(context=...) needs a mapping, got {type(context).__name__}")
        given = check_factories(f"pipeline {self.name!r}: run()", resources)
        plan = self.plan({**self.resources, **given})
        chosen = _check_executor(executor) if executor is not None else self.executor
        listeners = normalize_listeners(on_event)
        logging_to = capture_settings(capture_logs)
        run_id = run_id or uuid.uuid4().hex
        prior = await self._prior_run(store, resume, context, resume_params_changed, run_id)
        if context is None:
            context = prior.params if prior is not None else {}
        run_limiter, pools = self._limiters()
        remote = _RemoteCancel(stop_cleanup)
        factories = run_factories(self._needing_resources(plan), self.resources, given)
        try:
            async with (
                self._executor_session(plan, chosen, factories) as session,
                dispatching(listeners, store) as dispatch,
                remote.attended(store, run_id),
                run_resources(factories) as opened,
                run_logs(run_id, self.name, logging_to, dispatch.emit) as logs,
                run_tracing(
                    tracer_provider,
                    self.name,
                    run_id,
                    prior.run_id if prior else None,
                    getattr(store, "get_traceparent", None),  # a store that keeps them
                ) as tracing,
                run_metrics(self.name, run_limiter, pools) as metrics,
            ):
                run = Run(
                    plan,
                    run_id=run_id,
                    params=context,
                    run_limiter=run_limiter,
                    pools=pools,
                    emit=dispatch.emit,
                    prior=prior,
                    cleanup_grace=self.cleanup_grace,
                    stop_cleanup=remote.stop_cleanup,
                    on_start=dispatch.flush,
                    task_records=dispatch.task_records,
                    executor=session,
                    resources=opened,
                    observe=observers(logs, tracing, metrics),
                    state=RunState(self.name, store if isinstance(store, StateSource) else None),
                    keep_results=self.keep_results,
                    backlog=dispatch.backlog,
                )
                if dispatch.task_records:
                    dispatch.started_records = run.started_records
                    run.wake_at = dispatch.wake_at
                with remote.scope:
                    result = await run.execute()
                if remote.scope.cancelled_caught:  # cancelled from elsewhere: a result still
                    result = run.result()
                if tracing is not None:
                    tracing.finish(result.status.value)
                if metrics is not None:
                    metrics.finished(result)
            result.history_error = dispatch.history_error
            return result
        except BaseExceptionGroup as group:
            # Task errors are in the result; what escapes (a KeyboardInterrupt in a
            # task, say) surfaces as itself, not wrapped by the run's task groups.
            # Keep its own cause (a store error's driver exception, say).
            sole = _sole_exception(group)
            raise sole from sole.__cause__

    @staticmethod
    def _needing_resources(plan: Plan) -> tuple[Task, ...]:
        return tuple(plan.tasks[i] for i in plan.needing)  # found while planning

    @staticmethod
    def _naming_executors(plan: Plan) -> list[tuple[str, Task]]:
        return [(plan.keys[i], plan.tasks[i]) for i in plan.naming]  # found while planning

    @asynccontextmanager
    async def _executor_session(
        self, plan: Plan, executor: Executor | None, factories: Mapping[str, Any]
    ) -> AsyncIterator[ExecutorSession | None]:
        # Open the executor only when some task will use it: a pipeline of
        # coroutines starts no cluster (unless the executor takes coroutines).
        # Without an executor nothing else is scanned: a wide plan's scan held the
        # loop for milliseconds on every run.
        problems = placement_problems(self._naming_executors(plan), executor, factories)
        if problems:
            raise PipelineDefinitionError(self.name, problems)
        if executor is None:
            yield None
            return
        tasks = [
            (key, t)
            for key, t in zip(plan.keys, plan.tasks, strict=True)
            if on_executor(t.is_async, t.options, executor, factories)
        ]
        if not tasks:
            yield None
            return
        await anyio.to_thread.run_sync(_check_calls, executor, tasks, factories)
        async with executor.session(concurrency=self.max_concurrency) as session:
            yield session

    async def _prior_run(
        self,
        store: RunRecorder | None,
        resume: str | None,
        context: Mapping[str, Any] | None,
        params_changed_ok: bool,
        run_id: str,
    ) -> PriorRun | None:
        if resume is None:
            return None
        if store is None:
            raise ArgumentError("run(resume=...) needs the store that recorded that run: store=...")
        prior = await store.load_prior_run(resume)
        if prior.pipeline != self.name:
            raise ArgumentError(
                f"run {resume} belongs to pipeline {prior.pipeline!r}, not {self.name!r}"
            )
        if prior.status == "RUNNING":
            raise ResumeRefused(
                resume,
                # The store marks a run INTERRUPTED only when it can see the owner is gone;
                # an owner on another host (SQLite) cannot be checked, so claim nothing more.
                f"it is still running as far as the store can tell (owner "
                f"{prior.owner or 'unknown'}: alive, or on another host where it cannot be "
                "checked from here); resume it once it has ended or its process is gone",
            )
        changed = _changed_params(prior.params, context)
        if changed and not params_changed_ok:
            what = _changes(prior.params, context or {}, changed)
            raise ResumeRefused(
                resume,
                f"its results were computed with other params ({what}); "
                "pass resume_params_changed=True (CLI: --allow-param-change) to reuse them anyway",
            )
        if isinstance(store, RunAttendant):  # of two resumes of one run, one is accepted
            await store.claim_resume(resume, run_id)
        return dataclasses.replace(prior, params_changed=changed) if changed else prior

    async def enqueue(self, store: RunQueue, params: Mapping[str, Any] | None = None) -> str:
        """Queue a run of this pipeline in ``store``; a process serving it runs it.

        :returns: the queued run's id (its status is QUEUED until a process claims it).
        """
        return await store.enqueue(self.name, params)

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}>"


class RunQueue(Protocol):
    """A store with a run queue (every store of ``dremioframe_async.store``)."""

    async def enqueue(self, pipeline: str, params: Mapping[str, Any] | None = None) -> str: ...


class _RemoteCancel:
    """Cancel requests from other processes, delivered by the store's attendance.

    The first cancels the run as the caller's own cancellation would, so cleanup
    tasks still run; the second stops them (as a second Ctrl-C does). The run's
    result is still returned, with status CANCELLED. The second stops this run's
    cleanup only: the caller's ``stop_cleanup`` (which a scheduler shares between
    its runs) is forwarded to the run, never set from here.
    """

    def __init__(self, stop_cleanup: anyio.Event | None) -> None:
        self.scope = anyio.CancelScope()
        self.given = stop_cleanup
        self.stop_cleanup = stop_cleanup if stop_cleanup is not None else anyio.Event()

    def __call__(self, requests: int) -> None:
        self.scope.cancel()
        if requests >= 2:
            self.stop_cleanup.set()

    @asynccontextmanager
    async def attended(self, store: object, run_id: str) -> AsyncIterator[None]:
        """Attend the run in ``store`` while it runs (nothing without a store to attend it)."""
        if not isinstance(store, RunAttendant):
            yield None
            return
        given = self.given
        if given is not None:
            self.stop_cleanup = anyio.Event()  # this run's own, set by the caller's too
        # Shielded: the caller's second Ctrl-C comes while the caller's scope is
        # cancelled (the first one), and must still reach the run's cleanup.
        forwarding = anyio.CancelScope(shield=True)
        async with store.attend(run_id, self), anyio.create_task_group() as tg:
            if given is not None:
                tg.start_soon(_forward, given, self.stop_cleanup, forwarding)
            try:
                yield None
            finally:
                forwarding.cancel()
                tg.cancel_scope.cancel()


async def _forward(given: anyio.Event, own: anyio.Event, scope: anyio.CancelScope) -> None:
    with scope:
        await given.wait()
        own.set()
