"""What one UI instance holds, shared by its pages, its API and its middleware."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
from aiohttp import web
from yarl import URL

from ..store import RunInfo, RunStore, TaskInfo
from ._launcher import PipelineEntry, RunLauncher
from ._live import LiveRuns
from ._security import Guard
from ._streams import StreamHub

__all__ = ["CSRF_KEY", "KIND_KEY", "UI_KEY", "RequestUrls", "UIState"]


@dataclass(slots=True)
class UIState:
    """The store, the served pipelines, this process's live runs and the run launcher."""

    store: RunStore
    pipelines: Mapping[str, PipelineEntry]
    live: LiveRuns
    launcher: RunLauncher
    guard: Guard
    poll_interval: float
    streams: StreamHub
    closing: anyio.Event | None = field(default=None)

    async def read_run(self, run_id: str) -> tuple[RunInfo, Sequence[TaskInfo]]:
        """The run as this process sees it live, else as the store has it.

        :raises RunNotFound: when neither knows ``run_id``.
        """
        live = self.live.get(run_id)
        if live is not None:
            run, tasks = await live.read()
            # What other processes write (cancel requests) and what preceded the run
            # (its fire time, its queueing) is in the store, not in this process's events.
            try:
                stored = await self.store.get_run(run_id)
            except LookupError:
                return run, tasks
            return (
                dataclasses.replace(
                    run,
                    scheduled_for=stored.scheduled_for,
                    queued_at=stored.queued_at,
                    cancel_requests=stored.cancel_requests,
                    resumed_by=stored.resumed_by,
                    interval=stored.interval,
                    backfill=stored.backfill,
                ),
                tasks,
            )
        run = await self.store.get_run(run_id)
        return run, await self.store.get_tasks(run_id)

    def can_resume(self, run: RunInfo) -> bool:
        return run.status.value in ("FAILED", "CANCELLED", "INTERRUPTED") and (
            run.pipeline in self.pipelines
        )


UI_KEY = web.AppKey("dremioframe_async.ui", UIState)
CSRF_KEY = web.RequestKey("dremioframe_async.ui.csrf", str)
KIND_KEY = web.RequestKey("dremioframe_async.ui.kind", str)  # bearer, basic, session, ...


class RequestUrls:
    """The UI's URLs for one request (they carry the prefix the UI is mounted under)."""

    def __init__(self, request: web.Request) -> None:
        self._router = request.app.router

    def _url(self, route: str, **parts: str) -> URL:
        return self._router[route].url_for(**parts)

    def runs(self, **query: str | None) -> str:
        kept = {k: v for k, v in query.items() if v}
        return str(self._url("runs").with_query(kept))

    def run(self, run_id: str) -> str:
        return str(self._url("run", run_id=run_id))

    def live(self, run_id: str) -> str:
        return str(self._url("run_live", run_id=run_id))

    def events(self, run_id: str) -> str:
        return str(self._url("api_run_events", run_id=run_id))

    def task(self, run_id: str, key: str, **query: str) -> str:
        return str(self._url("task", run_id=run_id).with_query({"key": key, **query}))

    def log_events(self, run_id: str, key: str, after: int) -> str:
        query = {"task": key, "after": str(after)}
        return str(self._url("api_run_log_events", run_id=run_id).with_query(query))

    def pipelines(self) -> str:
        return str(self._url("pipelines"))

    def trigger(self, name: str) -> str:
        return str(self._url("form_trigger", name=name))

    def pause(self, name: str) -> str:
        return str(self._url("form_pause", name=name))

    def cancel(self, run_id: str) -> str:
        return str(self._url("form_cancel", run_id=run_id))

    def resume(self, run_id: str) -> str:
        return str(self._url("form_resume", run_id=run_id))

    def static(self, name: str) -> str:
        return str(self._url("static", filename=name))

    def login(self) -> str:
        return str(self._url("login"))

    def logout(self) -> str:
        return str(self._url("logout"))
