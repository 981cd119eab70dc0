"""Runs the UI starts, in the UI's own event loop, and how they are cancelled.

One supervisor task per application owns an anyio task group (started and
stopped with the application through aiohttp's ``cleanup_ctx``); each triggered
run is a child of it, inside a cancel scope of its own that ``cancel()``
cancels. The engine then cancels the run's tasks, records it CANCELLED and
re-raises into that scope. Stopping the application cancels the runs still going.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .._masking import mask_text
from ..errors import DremioFrameError
from ..orchestration import (
    Pipeline,
    PipelineDefinitionError,
    ResumeRefused,
    RunFinished,
    RunStarted,
)
from ..schedule import Clock, Schedule, SystemClock, queue_fires
from ..store import QueuedRun, RunStatus, RunStore, SchedulePauses, StoreError
from ._live import LiveRuns

__all__ = [
    "CANCELLABLE",
    "ActionRefused",
    "Edges",
    "PipelineEntry",
    "RunLauncher",
    "planned",
    "planned_edges",
]

log = logging.getLogger("dremioframe_async.ui")
# How long a trigger waits for its queued run to start here before answering.
QUEUED_START_WAIT = 2.0
# The longest wait between looks at the queue (PostgreSQL wakes the launcher sooner).
QUEUE_WAIT = 1.0
# How long a drain, or the application's stop, waits for a claim in flight to end (one
# statement; a hung store must not hang the stop).
CLAIM_STOP_WAIT = 15.0
# How long recording the end of a run that never started may take (shielded: a stop
# must not cut it off, nor a hung store hold the stop).
END_WAIT = 10.0
RESUMABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED})
CANCELLABLE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


class ActionRefused(DremioFrameError):
    """A trigger, cancel or resume that cannot be done; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 409) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class PipelineEntry:
    """A pipeline the UI serves, with its schedule and the defaults of its trigger form.

    A :class:`~dremioframe_async.schedule.Schedule` (or several) is run by the UI:
    its fires are queued in the store (each claimed once across every process on
    it) while the UI runs, and its page shows the next fire and a switch that
    pauses it. Text (e.g. ``"cron 0 * * * *"``) only describes a schedule run
    elsewhere. ``params`` are the trigger form's fields and their defaults (see
    ``ui._params``).

    :raises TypeError: for a schedule of another pipeline, or a schedule that is
        none of these (a list of Schedules is taken as a tuple).
    """

    pipeline: Pipeline
    schedule: str | Schedule | tuple[Schedule, ...] | None = None
    params: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        given: object = self.schedule  # checked: callers are not always type-checked
        if isinstance(given, list):  # frozen: store the tuple the annotation promises
            object.__setattr__(self, "schedule", given := tuple(given))
        if not (
            given is None
            or isinstance(given, str | Schedule)
            or (isinstance(given, tuple) and all(isinstance(s, Schedule) for s in given))
        ):
            raise TypeError(f"schedule must be text, a Schedule or Schedules, got {given!r}")
        for schedule in self.schedules:
            if schedule.pipeline is not self.pipeline:
                raise TypeError(
                    f"a schedule of {schedule.pipeline.name!r} was given for "
                    f"{getattr(self.pipeline, 'name', self.pipeline)!r}"
                )

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        """The schedules the UI runs for this pipeline."""
        if isinstance(self.schedule, Schedule):
            return (self.schedule,)
        return self.schedule if isinstance(self.schedule, tuple) else ()

    def describe(self) -> str | None:
        """The schedule as text (``"every 60 s"``, ``"cron 0 2 * * *"``), if any."""
        if isinstance(self.schedule, str) or self.schedule is None:
            return self.schedule
        return " and ".join(s.describe() for s in self.schedules) or None


Edges = dict[str, tuple[str, ...]] | str  # each task key's upstream keys, or the problem


def planned(pipeline: Pipeline) -> tuple[int, Callable[[], Edges]]:
    """How many tasks the pipeline plans (0 when its graph has a problem), and a call
    that makes its edges (from the plan made here, which nothing changes: a worker
    thread may make them)."""
    try:
        plan = pipeline.plan()
    except PipelineDefinitionError as exc:
        return 0, functools.partial(str, exc)

    def edges() -> Edges:
        return dict(zip(plan.keys, plan.upstream_keys, strict=True))

    return len(plan.tasks), edges


def planned_edges(pipeline: Pipeline) -> Edges:
    """Each task key's upstream keys, or the message of the graph's problem (a cycle...)."""
    return planned(pipeline)[1]()


class RunLauncher:
    """Triggers, resumes and cancels runs, and runs what the store queues for its pipelines.

    Triggers write a QUEUED run to the store; this launcher, and every other
    process serving the pipeline (``dremioframe-async serve`` or ``ui``), claims
    queued runs of its pipelines, within each pipeline's ``max_active_runs`` and
    this process's ``max_runs``, and runs them. Cancels are requests written to
    the store, so a run is cancelled wherever it runs; the first cancels it
    gracefully, the second stops its cleanup. The schedules of its entries
    (:attr:`PipelineEntry.schedules`) queue their fires from here, skipping
    those that come while the schedule is paused in the store.
    """

    def __init__(
        self,
        store: RunStore,
        pipelines: Mapping[str, PipelineEntry],
        live: LiveRuns,
        *,
        max_runs: int | None = None,
    ):
        self.store = store
        self.pipelines = pipelines
        self.live = live
        self.max_runs = max_runs
        self.draining = False
        # While set, nothing is claimed (serve() holds claims until its port is bound).
        self.holding = False
        self._tg: TaskGroup | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._stops: dict[str, anyio.Event] = {}
        self._done: dict[str, anyio.Event] = {}
        self._limits = {name: e.pipeline.max_active_runs for name, e in pipelines.items()}
        self._kicked: anyio.Event | None = None
        self._claims_stopped: anyio.Event | None = None
        self._released: anyio.Event | None = None
        self._scheduling: anyio.CancelScope | None = None
        # Set once a drain cancels the runs going: a run claimed later is cancelled at
        # once (and its cleanup stopped once the drain stops cleanups).
        self._cancelling = False
        self._cleanups_stopped = False
        # Where the schedules' fire times come from (tests swap in a virtual clock).
        self.clock: Clock = SystemClock()

    def running_here(self, run_id: str) -> bool:
        """Whether this process runs ``run_id``."""
        return run_id in self._scopes

    @property
    def running(self) -> list[str]:
        """The runs this process runs now."""
        return list(self._scopes)

    async def trigger(
        self, name: str, params: Mapping[str, Any] | None, *, resume: str | None = None
    ) -> str:
        """Queue a run of pipeline ``name`` (with ``resume``: the one run resuming that
        run); return its id.

        A queued run that this process can take at once has started when this
        returns; one held back by ``max_active_runs`` waits in the queue.

        :raises ActionRefused: (404) for an unknown pipeline, (400) for params JSON
            cannot hold (NaN), (409) when the run could not start (a bad graph, a
            refused resume), (503) when stopping or when the store cannot be reached.
        """
        entry = self.pipelines.get(name)
        if entry is None:
            raise ActionRefused(f"this UI serves no pipeline named {name!r}", 404)
        if self._tg is None or self.draining:
            raise ActionRefused("the UI is not running (or is stopping)", 503)
        problem = planned_edges(entry.pipeline)
        if isinstance(problem, str):
            raise ActionRefused(f"the run could not start: {problem}")
        try:
            if resume is not None:  # claimed as its one resume, then queued like any run
                run_id = await self.store.enqueue_resume(resume)
            else:
                run_id = await self.store.enqueue(name, params)
        except ResumeRefused as exc:
            raise ActionRefused(str(exc)) from exc
        except LookupError:
            raise ActionRefused(f"no run {resume!r} in the store", 404) from None
        except StoreError as exc:
            raise ActionRefused(f"the run could not be queued: {exc}", 503) from exc
        except ValueError as exc:  # params JSON cannot hold (NaN): the caller's, not retried
            raise ActionRefused(f"the run could not be queued: {exc}", 400) from exc
        started = self.live.expect(run_id)
        self._kick()
        try:
            with anyio.move_on_after(QUEUED_START_WAIT):
                await started.wait()
        finally:
            if not started.is_set() and run_id not in self._scopes:
                self.live.forget_expected(run_id)  # left queued, or run by another process
        return run_id

    def _register(self, run_id: str) -> tuple[anyio.CancelScope, anyio.Event]:
        self._scopes[run_id] = scope = anyio.CancelScope()
        self._stops[run_id] = stop = anyio.Event()
        self._done[run_id] = anyio.Event()
        return scope, stop

    async def _run(
        self,
        pipeline: Pipeline,
        params: Mapping[str, Any] | None,
        resume: str | None,
        run_id: str,
        scope: anyio.CancelScope,
        stop: anyio.Event,
        failure: list[BaseException],
    ) -> None:
        returned = False
        try:
            with scope:
                await pipeline.run(
                    params,
                    store=self.store,
                    on_event=self.live,
                    resume=resume,
                    run_id=run_id,
                    stop_cleanup=stop,
                )
                returned = True
        except Exception as exc:
            failure.append(exc)
            shown = mask_text(repr(exc))
            log.warning("run %s of %s ended with an error: %s", run_id, pipeline.name, shown)
        finally:
            if not returned:
                # Failed or cancelled, maybe before the run recorded anything (a resume
                # reads its prior run first): it must not stay RUNNING with no one
                # running it (recorded shielded: the stop that cancelled it must not cut
                # this off).
                ended = RunStatus.FAILED if failure else RunStatus.CANCELLED
                await _end_unstarted(self.store, pipeline.name, run_id, ended)
            self._scopes.pop(run_id, None)
            self._stops.pop(run_id, None)
            self._done.pop(run_id).set()
            self.live.expect(run_id).set()  # wake a trigger() still waiting for the start
            self.live.forget_expected(run_id)
            self._kick()

    def release(self) -> None:
        """Start claiming queued runs (and queueing fires), after :attr:`holding`."""
        self.holding = False
        if self._released is not None:
            self._released.set()
        self._kick()

    def _kick(self) -> None:
        if self._kicked is not None:
            self._kicked.set()

    async def _claim_loop(self) -> None:
        """Take queued runs of this launcher's pipelines while there is room, until draining."""
        try:
            await self._claim_until_draining()
        finally:
            if self._claims_stopped is not None:
                self._claims_stopped.set()

    async def _claim_until_draining(self) -> None:
        while not self.draining:
            claimed = None
            if not self.holding and (self.max_runs is None or len(self._scopes) < self.max_runs):
                try:
                    claimed = await self.store.claim_next(self._limits)
                except StoreError as exc:  # the store is down: try again shortly
                    log.warning("cannot take queued runs: %s", exc)
            if claimed is not None:
                if self._tg is None:
                    # The stop gave up waiting for this claim (a store slower than
                    # CLAIM_STOP_WAIT): nothing runs it here now, so it ends.
                    await _end_unstarted(
                        self.store, claimed.pipeline, claimed.run_id, RunStatus.CANCELLED
                    )
                    return
                self._start_claimed(claimed)
                continue
            self._kicked = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_first_of, tg, self.store.wait_queued(QUEUE_WAIT))
                tg.start_soon(_first_of, tg, self._kicked.wait())

    def _start_claimed(self, claimed: QueuedRun) -> None:
        pipeline = self.pipelines[claimed.pipeline].pipeline
        scope, stop = self._register(claimed.run_id)
        assert self._tg is not None
        if self._cancelling:  # claimed after a drain gave up waiting for the claim
            scope.cancel()
            if self._cleanups_stopped:
                stop.set()
        self._tg.start_soon(
            self._run,
            pipeline,
            claimed.params,
            claimed.resumed_from,
            claimed.run_id,
            scope,
            stop,
            [],
        )

    async def wait(self, run_id: str) -> None:
        """Return once run ``run_id`` of this process has ended and been recorded."""
        done = self._done.get(run_id)
        if done is not None:
            await done.wait()

    async def cancel(self, run_id: str) -> str:
        """Ask for ``run_id`` to be cancelled, wherever it runs; returns what happened.

        A queued run is cancelled at once. A running one is cancelled gracefully by
        its process (this one at once); a second request stops its cleanup.

        :raises ActionRefused: (404) for an unknown run, (409) for one that has ended.
        """
        try:
            outcome = await self.store.request_cancel(run_id)
        except LookupError:
            raise ActionRefused(f"no run {run_id!r} in the store", 404) from None
        except StoreError as exc:
            raise ActionRefused(f"the cancel could not be recorded: {exc}", 503) from exc
        if outcome.status not in (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.CANCELLED) or (
            outcome.status is RunStatus.CANCELLED and outcome.requests
        ):
            raise ActionRefused(outcome.message)
        if run_id in self._scopes:  # running here: no need to wait for the next poll
            self._scopes[run_id].cancel()
            if outcome.requests >= 2:
                self._stops[run_id].set()
        return outcome.message

    async def drain(self, grace: float, stop_cleanup: anyio.Event | None = None) -> None:
        """Take no more runs (and queue no more fires); let running ones end within
        ``grace`` s, then cancel them.

        Cancelled runs still run their cleanup (within their pipeline's
        ``cleanup_grace``) unless ``stop_cleanup`` is set meanwhile; setting it
        during the grace also ends the grace.
        """
        await self._stop_claims()
        with anyio.move_on_after(grace):
            async with anyio.create_task_group() as tg:
                if stop_cleanup is not None:  # a second signal: stop now, not after the grace
                    tg.start_soon(_first_of, tg, stop_cleanup.wait())
                await self._wait_all()
                tg.cancel_scope.cancel()
        self._cancelling = True
        for scope in list(self._scopes.values()):
            scope.cancel()
        async with anyio.create_task_group() as tg:
            if stop_cleanup is not None:
                tg.start_soon(self._stop_cleanups, stop_cleanup)
            await self._wait_all()
            tg.cancel_scope.cancel()

    async def _stop_claims(self) -> None:
        """Take no more runs and queue no more fires; return once a claim in flight ended.

        A claim in flight ends by starting its run here, where a drain or the stop
        sees and cancels it; cut off, it would leave the run RUNNING in the store with
        no one running it (until another process declares it dead).
        """
        self.draining = True
        if self._scheduling is not None:
            self._scheduling.cancel()
        self._kick()
        if self._claims_stopped is not None:
            with anyio.move_on_after(CLAIM_STOP_WAIT, shield=True):
                await self._claims_stopped.wait()

    async def _wait_all(self) -> None:
        while self._done:
            await next(iter(self._done.values())).wait()

    async def _stop_cleanups(self, stop_cleanup: anyio.Event) -> None:
        await stop_cleanup.wait()
        self._cleanups_stopped = True
        for stop in list(self._stops.values()):
            stop.set()

    async def resume(self, run_id: str) -> str:
        """Start a run that re-runs what ``run_id`` did not finish; return the new id.

        :raises ActionRefused: (404) for an unknown run, (409) for one that did not
            fail, whose pipeline this UI does not serve, or that another run resumes.
        """
        try:
            run = await self.store.get_run(run_id)
        except LookupError:
            raise ActionRefused(f"no run {run_id!r} in the store", 404) from None
        if run.status not in RESUMABLE:
            raise ActionRefused(f"run {run_id} is {run.status.value}: only failed runs resume")
        if run.pipeline not in self.pipelines:
            raise ActionRefused(f"this UI does not serve pipeline {run.pipeline!r}")
        return await self.trigger(run.pipeline, None, resume=run_id)

    async def _run_schedules(self) -> None:
        """Queue the fires of the schedules this launcher runs, once it claims runs."""
        schedules = [s for e in self.pipelines.values() for s in e.schedules]
        if not schedules:
            return
        while self.holding:  # serve() holds until its port is bound: so do the fires
            self._released = anyio.Event()
            await self._released.wait()
        async with anyio.create_task_group() as tg:
            self._scheduling = tg.cancel_scope  # a drain ends it: no fire is queued past it
            if self.draining:
                tg.cancel_scope.cancel()
            for schedule in schedules:
                tg.start_soon(queue_fires, schedule, self.store, self.clock)

    async def pause(self, name: str, paused: bool = True) -> bool:
        """Pause (or resume) the schedule of ``name`` that this launcher runs, in the
        store: every process on the store then skips its fires. Whether it changed.

        :raises ActionRefused: (404) when this launcher runs no schedule of ``name``,
            (409) for a store that keeps no pauses, (503) when the store cannot be reached.
        """
        entry = self.pipelines.get(name)
        if entry is None or not entry.schedules:
            raise ActionRefused(f"this UI runs no schedule of {name!r}", 404)
        if not isinstance(self.store, SchedulePauses):
            raise ActionRefused(f"{self.store!r} keeps no paused schedules")
        try:
            return await self.store.pause_schedule(name, paused)
        except StoreError as exc:
            raise ActionRefused(f"the pause could not be recorded: {exc}", 503) from exc

    async def lifespan(self) -> AsyncIterator[None]:
        """Own the task group for the application's lifetime (an aiohttp ``cleanup_ctx``)."""
        ready, stop = asyncio.Event(), asyncio.Event()

        async def supervise() -> None:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._claims_stopped = anyio.Event()
                tg.start_soon(self._claim_loop)
                tg.start_soon(self._run_schedules)
                ready.set()
                try:
                    await stop.wait()
                finally:
                    await self._stop_claims()
                    self._tg = None
                    tg.cancel_scope.cancel()

        # One task owns the group, so its cancel scopes enter and exit in one task
        # (aiohttp may run startup and cleanup in different tasks).
        supervisor = asyncio.ensure_future(supervise())
        await ready.wait()
        try:
            yield
        finally:
            stop.set()
            with suppress(asyncio.CancelledError):
                await supervisor


async def _first_of(tg: TaskGroup, waiting: Awaitable[object]) -> None:
    """Await ``waiting``, then end its siblings in ``tg``."""
    await waiting
    tg.cancel_scope.cancel()


async def _end_unstarted(store: RunStore, pipeline: str, run_id: str, ended: RunStatus) -> None:
    """Record ``ended`` a claimed run that ended before it recorded its start, so that it
    shows no RUNNING ghost (a run that recorded its start recorded its end too).

    Shielded, so the stop that cancelled the run cannot cut this off, and bounded by
    ``END_WAIT``, so a hung store cannot hold that stop.
    """
    try:
        with anyio.CancelScope(shield=True), anyio.move_on_after(END_WAIT):
            run = await store.get_run(run_id)
            if run.status is RunStatus.RUNNING and not run.counts:
                now = time.time()
                await store.record(
                    [
                        RunStarted(run_id, pipeline, now, dict(run.params), ()),
                        RunFinished(run_id, pipeline, ended, now, run.started),
                    ]
                )
    except Exception as exc:  # the store is gone: its heartbeat will tell the others
        log.warning("could not record the end of run %s: %s", run_id, exc)
