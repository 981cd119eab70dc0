"""The JSON API under ``/api/`` and the server-sent events of a run.

Live updates: ``GET /api/runs/{run_id}/events`` streams ``run`` events (the run
and the tasks that changed since the last one) until the run ends, then one
``end`` event. A run of this process is read from its own events, at most
:data:`UPDATE_GAP` apart; any other run is read from the store every
``poll_interval`` seconds, once for all of its streams (:mod:`._streams`). Past
``max_streams`` open streams a new one gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import anyio
from aiohttp import web

from ..store import RunInfo, RunNotFound, RunQuery, RunStatus, StateStore, StoreError, TaskInfo
from ._launcher import CANCELLABLE
from ._live import LiveRun
from ._model import mask, run_json, task_json, task_state_json
from ._pipelines import pipeline_json, pipeline_views, planned_size
from ._respond import (
    event_bytes,
    json_error,
    json_response,
    json_response_in_thread,
    open_stream,
    send_event,
)
from ._state import CSRF_KEY, UI_KEY, RequestUrls, UIState
from ._streams import RunWatch
from ._threads import IN_THREAD_FROM, ui_threads
from ._times import parse_time

__all__ = ["add_api_routes", "parse_query"]

UPDATE_GAP = 0.1  # coalesce bursts of events into at most ten updates a second
HEARTBEAT = 15.0  # a comment line now and then, so a closed client is noticed
STREAMS_RETRY_AFTER = 5  # seconds, for a stream refused because too many are open
JSON_IN_THREAD = IN_THREAD_FROM  # a run's tasks from which its JSON is built in a thread
T = TypeVar("T")


def _time(query: Mapping[str, str], name: str, end: bool = False) -> float | None:
    text = query.get(name) or None
    if text is None:
        return None
    try:
        return parse_time(text, end=end)
    except ValueError as exc:
        raise ValueError(f"{name}=: {exc}") from None


def parse_query(query: Mapping[str, str]) -> RunQuery:
    """A :class:`RunQuery` from ``pipeline``, ``pipeline_contains``, ``status``,
    ``since``, ``until`` (dates or times in UTC, or epoch seconds; a date ``until``
    includes its day), ``before``, ``after``, ``limit`` and ``backfill``.

    :raises ValueError: for a bad value (the message says which).
    """
    status = query.get("status") or None
    if status is not None and status not in RunStatus.__members__:
        raise ValueError(f"status must be one of {', '.join(RunStatus.__members__)}")
    try:
        limit = int(query.get("limit") or 50)
    except ValueError:
        raise ValueError("limit must be a whole number") from None
    return RunQuery(
        pipeline=query.get("pipeline") or None,
        status=RunStatus(status) if status else None,
        before=query.get("before") or None,
        after=query.get("after") or None,
        limit=limit,
        backfill=query.get("backfill") or None,
        pipeline_contains=query.get("pipeline_contains") or None,
        since=_time(query, "since"),
        until=_time(query, "until", end=True),
    )


QUERY_NAMES = (
    "pipeline",
    "pipeline_contains",
    "status",
    "since",
    "until",
    "before",
    "after",
    "limit",
    "backfill",
)


def refuse_unknown(query: Mapping[str, str]) -> None:
    """Refuse a parameter the run list does not take (a ``cursor=`` would else be ignored).

    :raises ValueError: naming the first unknown parameter.
    """
    for name in query:
        if name not in QUERY_NAMES:
            raise ValueError(
                f"unknown parameter {name!r}: the run list takes {', '.join(QUERY_NAMES)}"
            )


def _ui(request: web.Request) -> UIState:
    return request.app[UI_KEY]


async def list_runs(request: web.Request) -> web.Response:
    try:
        refuse_unknown(request.query)
        query = parse_query(request.query)
    except ValueError as exc:
        return json_error(str(exc), 400)
    page = await _ui(request).store.query_runs(query)
    return json_response(
        {
            "runs": [run_json(r) for r in page.runs],
            "total": page.total,
            "older": page.older,
            "newer": page.newer,
        }
    )


async def get_run(request: web.Request) -> web.Response:
    ui = _ui(request)
    run_id = request.match_info["run_id"]
    try:
        run, tasks = await ui.read_run(run_id)
    except RunNotFound as exc:
        return json_error(str(exc), 404)
    cancellable, resumable = run.status in CANCELLABLE, ui.can_resume(run)
    url = RequestUrls(request).run(run_id)

    def answer() -> dict[str, Any]:
        return {
            "run": run_json(run),
            "tasks": [task_json(t) for t in tasks],
            "cancellable": cancellable,
            "resumable": resumable,
            "url": url,
        }

    if len(tasks) < JSON_IN_THREAD:
        return json_response(answer())
    return await json_response_in_thread(answer)


async def list_pipelines(request: web.Request) -> web.Response:
    """Every pipeline the UI serves or the store has runs of (see ``ui._pipelines``)."""
    try:
        views = await pipeline_views(_ui(request))
    except StoreError as exc:
        return json_error(f"the store cannot be read: {exc}", 503)

    def answer() -> dict[str, Any]:
        return {"pipelines": [pipeline_json(v) for v in views]}

    # Each served pipeline lists its tasks: 100,000 of them took 0.3 s of the loop.
    if sum(map(planned_size, views)) < JSON_IN_THREAD:
        return json_response(answer())
    return await json_response_in_thread(answer)


async def pipeline_state(request: web.Request) -> web.Response:
    """``context.state`` of a pipeline: each key's (masked) value and who last wrote it."""
    store = _ui(request).store
    if not isinstance(store, StateStore):
        return json_error(f"{store!r} keeps no pipeline state", 404)
    entries = await store.state_entries(request.match_info["name"])
    return json_response(
        {
            "pipeline": request.match_info["name"],
            "state": [
                {
                    "key": e.key,
                    "value": mask({e.key: e.value})[e.key],
                    "updated": e.updated,
                    "run_id": e.run_id,
                    "task": e.task,
                }
                for e in entries
            ],
        }
    )


async def csrf(request: web.Request) -> web.Response:
    return json_response({"csrf_token": request[CSRF_KEY]})


# ---------------------------------------------------------------- server-sent events


class _Diff:
    """What changed since the last update: the run, and the tasks whose state moved."""

    def __init__(self) -> None:
        self._tasks: dict[str, dict[str, Any]] = {}
        self._run: dict[str, Any] | None = None

    def update(self, run: RunInfo, tasks: Sequence[TaskInfo]) -> dict[str, Any] | None:
        run_data = run_json(run)
        changed = []
        for t in tasks:
            data = task_state_json(t)
            if self._tasks.get(t.key) != data:
                self._tasks[t.key] = data
                changed.append(data)
        if not changed and run_data == self._run:
            return None
        self._run = run_data
        return {"run": run_data, "tasks": changed}


def _changes(
    diff: _Diff, run: RunInfo, tasks: Sequence[TaskInfo], sliced: bool = False
) -> bytes | None:
    """The ``run`` event of what changed, as sent; None when nothing did."""
    payload = diff.update(run, tasks)
    return None if payload is None else event_bytes("run", payload, sliced=sliced)


async def run_events(request: web.Request) -> web.StreamResponse:
    ui = _ui(request)
    run_id = request.match_info["run_id"]
    hub = ui.streams
    if hub.full:
        response = json_error(
            f"too many open event streams ({hub.max_streams}); try again shortly", 503
        )
        response.headers["Retry-After"] = str(STREAMS_RETRY_AFTER)
        return response
    hub.enter()
    watch = None if ui.live.get(run_id) is not None else hub.watch(run_id)
    try:
        return await _stream(request, ui, run_id, watch)
    finally:
        if watch is not None:
            hub.release(watch)
        hub.leave()


async def _stream(
    request: web.Request, ui: UIState, run_id: str, watch: RunWatch | None
) -> web.StreamResponse:
    seen = 0
    try:
        if watch is not None:
            seen, snapshot = await watch.next(0)
            assert snapshot is not None  # version 1 and later carry one
            run, tasks = snapshot
        else:
            run, tasks = await ui.read_run(run_id)
    except RunNotFound as exc:
        return json_error(str(exc), 404)
    resp = await open_stream(request)
    diff = _Diff()
    # Streams opened together would all send their heartbeat at the same instant, every
    # time: spread the first one over half a period so that they stay spread.
    quiet_since = anyio.current_time() - random.uniform(0, HEARTBEAT / 2)
    try:
        while True:
            if len(tasks) < JSON_IN_THREAD:
                sent = _changes(diff, run, tasks)
            else:  # a 100,000-task run's first event is 12 MB, and each look compares them all
                sent = await anyio.to_thread.run_sync(
                    _changes, diff, run, tasks, True, limiter=ui_threads()
                )
            if sent is not None:
                await resp.write(sent)
                quiet_since = anyio.current_time()
            elif anyio.current_time() - quiet_since >= HEARTBEAT:
                await resp.write(b": still running\n\n")  # fails once the client has gone
                quiet_since = anyio.current_time()
            if run.status is not RunStatus.RUNNING:
                await send_event(resp, "end", {"status": run.status.value})
                break
            if watch is not None:
                # Another process's run: the read shared by every stream of the run.
                wait = HEARTBEAT - (anyio.current_time() - quiet_since)
                got = await _unless_closing(ui, partial(watch.next, seen, max(wait, 0.0)))
                if got is None:
                    break  # the application is stopping
                seen, snapshot = got
                if snapshot is not None:
                    run, tasks = snapshot
                continue
            live = ui.live.get(run_id)
            version = live.version if live is not None else 0
            if await _unless_closing(ui, partial(_change, ui, live, version)) is None:
                break
            run, tasks = await ui.read_run(run_id)
    except (ConnectionError, RunNotFound):
        pass  # the client went away, or the run left the store
    return resp


async def _change(ui: UIState, live: LiveRun | None, version: int) -> bool:
    """Wait for the next change of a live run (or a poll or heartbeat)."""
    if live is not None:
        with anyio.move_on_after(HEARTBEAT):
            await live.wait_changed(version)
        await anyio.sleep(UPDATE_GAP)
    else:
        await anyio.sleep(ui.poll_interval)
    return True


async def _unless_closing(ui: UIState, wait: Callable[[], Awaitable[T]]) -> T | None:
    """``await wait()``, or None once the UI is closing."""
    closing = ui.closing
    if closing is None or closing.is_set():
        return None
    result: list[T] = []
    async with anyio.create_task_group() as tg:

        async def waiting() -> None:
            result.append(await wait())
            tg.cancel_scope.cancel()

        async def stopping() -> None:
            await closing.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(waiting)
        tg.start_soon(stopping)
    return result[0] if result and not closing.is_set() else None


def add_api_routes(router: web.UrlDispatcher) -> None:
    """Register the JSON API's routes."""
    router.add_get("/api/runs", list_runs, name="api_runs")
    router.add_get("/api/runs/{run_id}", get_run, name="api_run")
    router.add_get("/api/runs/{run_id}/events", run_events, name="api_run_events")
    router.add_get("/api/pipelines", list_pipelines, name="api_pipelines")
    router.add_get("/api/pipelines/{name}/state", pipeline_state, name="api_state")
    router.add_get("/api/csrf", csrf, name="api_csrf")
