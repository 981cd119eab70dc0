"""Runs the UI starts, in the UI's own event loop, and how they are cancelled.

One supervisor task per application owns an anyio task group (started and
stopped with the application through aiohttp's ``cleanup_ctx``); each triggered
run is a child of it, inside a cancel scope of its own that ``cancel()``
cancels. The engine then cancels the run's tasks, records it CANCELLED and
re-raises into that scope. Stopping the application cancels the runs still going.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..errors import DremioFrameError
from ..orchestration import Pipeline, PipelineDefinitionError
from ..store import RunStatus, RunStore
from ._live import LiveRuns

__all__ = ["ActionRefused", "PipelineEntry", "RunLauncher", "planned_edges"]

log = logging.getLogger("dremioframe_async.ui")
START_TIMEOUT = 30.0
RESUMABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED})


class ActionRefused(DremioFrameError):
    """A trigger, cancel or resume that cannot be done; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 409) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class PipelineEntry:
    """A pipeline the UI serves, with the schedule it runs on (text shown on its page).

    ``schedule`` is descriptive (e.g. ``"cron 0 * * * *"``): the UI shows it but
    does not run it; ``schedule_pipeline`` does.
    """

    pipeline: Pipeline
    schedule: str | None = None


def planned_edges(pipeline: Pipeline) -> dict[str, tuple[str, ...]] | str:
    """Each task key's upstream keys, or the message of the graph's problem (a cycle...)."""
    try:
        plan = pipeline.plan()
    except PipelineDefinitionError as exc:
        return str(exc)
    return dict(zip(plan.keys, plan.upstream_keys, strict=True))


class RunLauncher:
    """Triggers, resumes and cancels runs in the application's loop."""

    def __init__(self, store: RunStore, pipelines: Mapping[str, PipelineEntry], live: LiveRuns):
        self.store = store
        self.pipelines = pipelines
        self.live = live
        self._tg: TaskGroup | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._done: dict[str, anyio.Event] = {}

    def running_here(self, run_id: str) -> bool:
        """Whether this process runs ``run_id`` (so it can be cancelled here)."""
        return run_id in self._scopes

    async def trigger(
        self, name: str, params: Mapping[str, Any] | None, *, resume: str | None = None
    ) -> str:
        """Start a run of pipeline ``name``; return its id once it has started.

        :raises ActionRefused: (404) for an unknown pipeline, (409) when the run
            could not start (a bad graph, a refused resume), (503) when stopping.
        """
        entry = self.pipelines.get(name)
        if entry is None:
            raise ActionRefused(f"this UI serves no pipeline named {name!r}", 404)
        if self._tg is None:
            raise ActionRefused("the UI is not running (or is stopping)", 503)
        run_id = uuid.uuid4().hex
        started = self.live.expect(run_id)
        failure: list[BaseException] = []
        self._scopes[run_id] = scope = anyio.CancelScope()
        self._done[run_id] = anyio.Event()
        self._tg.start_soon(self._run, entry.pipeline, params, resume, run_id, scope, failure)
        with anyio.move_on_after(START_TIMEOUT):
            await started.wait()
        if failure and self.live.get(run_id) is None:  # it ended before it began
            raise ActionRefused(f"the run could not start: {failure[0]}") from failure[0]
        return run_id

    async def _run(
        self,
        pipeline: Pipeline,
        params: Mapping[str, Any] | None,
        resume: str | None,
        run_id: str,
        scope: anyio.CancelScope,
        failure: list[BaseException],
    ) -> None:
        try:
            with scope:
                await pipeline.run(
                    params, store=self.store, on_event=self.live, resume=resume, run_id=run_id
                )
        except Exception as exc:
            failure.append(exc)
            log.warning("run %s of %s ended with an error: %r", run_id, pipeline.name, exc)
        finally:
            self._scopes.pop(run_id, None)
            self._done.pop(run_id).set()
            self.live.expect(run_id).set()  # wake a trigger() still waiting for the start
            self.live.forget_expected(run_id)

    async def wait(self, run_id: str) -> None:
        """Return once run ``run_id`` of this process has ended and been recorded."""
        done = self._done.get(run_id)
        if done is not None:
            await done.wait()

    def cancel(self, run_id: str) -> None:
        """Cancel a run this process is running.

        :raises ActionRefused: (409) when this process does not run it.
        """
        scope = self._scopes.get(run_id)
        if scope is None:
            raise ActionRefused(f"run {run_id} is not running in this process")
        scope.cancel()

    async def resume(self, run_id: str) -> str:
        """Start a run that re-runs what ``run_id`` did not finish; return the new id.

        :raises ActionRefused: (404) for an unknown run, (409) for one that did not
            fail or whose pipeline this UI does not serve.
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

    async def lifespan(self) -> AsyncIterator[None]:
        """Own the task group for the application's lifetime (an aiohttp ``cleanup_ctx``)."""
        ready, stop = asyncio.Event(), asyncio.Event()

        async def supervise() -> None:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                ready.set()
                try:
                    await stop.wait()
                finally:
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
