"""Task logs in the UI: the JSON pages, the live tail over server-sent events, the task page.

``GET /api/runs/{run_id}/logs?task=&attempt=&after=&limit=`` returns one page of
captured lines in store order; ``next_after`` asks for the page after it.
``GET /api/runs/{run_id}/logs/events?task=&after=`` streams ``lines`` events with
what is new until the run ends, then one ``end`` event. ``/runs/{run_id}/task?key=``
shows a task's attempts, each with its traceback and its lines, tailing live
while the run goes. Lines are always read from the store (whose line ids a
stream follows); a run's state, from its own events when this process runs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from aiohttp import web

from .._masking import mask_text
from ..store import (
    LogEntry,
    LogPage,
    LogQuery,
    LogReader,
    RunInfo,
    RunNotFound,
    RunStatus,
    TaskInfo,
    drop_marker,
)
from ._html import Markup, el, join
from ._model import instances_of, shown_attempt_state, shown_state
from ._pages import badge, task_badge
from ._respond import (
    html_page,
    json_error,
    json_response,
    json_response_in_thread,
    open_stream,
    send_event,
)
from ._state import UI_KEY, RequestUrls, UIState
from ._taskpage import task_instances, task_result, task_summary
from ._threads import IN_THREAD_FROM
from ._times import took, when

__all__ = ["add_log_routes", "entry_json", "log_query"]

PAGE_LINES = 1000  # lines a task page shows per attempt before pointing to the API
_GOING = (RunStatus.QUEUED, RunStatus.RUNNING)  # a run whose tasks may still log
TAIL_GAP = 0.25  # seconds between reads of a followed task's new lines


def log_query(run_id: str, query: Mapping[str, str]) -> LogQuery:
    """A :class:`LogQuery` from ``task``, ``attempt``, ``after`` and ``limit``.

    :raises ValueError: for a value that is not a whole number or out of range.
    """
    try:
        attempt = int(query["attempt"]) if query.get("attempt") else None
        after = int(query.get("after") or 0)
        limit = int(query.get("limit") or 500)
    except ValueError:
        raise ValueError("attempt, after and limit must be whole numbers") from None
    return LogQuery(run_id, query.get("task") or None, attempt, after, limit)


def entry_json(line: LogEntry) -> dict[str, Any]:
    """One line as the API gives it."""
    marker = drop_marker(line.dropped_before) if line.dropped_before else None
    return {"id": line.id, **line.json_fields(), "marker": marker}


def _ui(request: web.Request) -> UIState:
    return request.app[UI_KEY]


def _reader(ui: UIState) -> LogReader:
    store = ui.store
    if not isinstance(store, LogReader):  # pragma: no cover - every store here reads logs
        raise TypeError(f"{store!r} keeps no task logs")
    return store


async def _status(ui: UIState, run_id: str) -> RunStatus:
    """The run's status: from its own events when this process runs it, else the store's.

    :raises RunNotFound: when neither knows ``run_id``.
    """
    live = ui.live.get(run_id)
    run = await live.read_run() if live is not None else await ui.store.get_run(run_id)
    return run.status


async def _checked(
    request: web.Request, query: Mapping[str, str]
) -> tuple[LogQuery, RunStatus] | web.Response:
    """The log query of ``request`` and its run's status, or the error answer (400 for a
    bad parameter, 404 for an unknown run)."""
    run_id = request.match_info["run_id"]
    try:
        return log_query(run_id, query), await _status(_ui(request), run_id)
    except ValueError as exc:
        return json_error(str(exc), 400)
    except RunNotFound as exc:
        return json_error(str(exc), 404)


async def logs_api(request: web.Request) -> web.Response:
    checked = await _checked(request, request.query)
    if isinstance(checked, web.Response):
        return checked
    page = await _reader(_ui(request)).get_logs(checked[0])

    def answer() -> dict[str, Any]:
        lines = [entry_json(x) for x in page.lines]
        return {"lines": lines, "next_after": page.next_after, "more": page.more}

    # 10,000 lines (``limit``'s most) took 55-113 ms of the loop to build and encode.
    if len(page.lines) < IN_THREAD_FROM:
        return json_response(answer())
    return await json_response_in_thread(answer)


async def log_events(request: web.Request) -> web.StreamResponse:
    ui = _ui(request)
    checked = await _checked(request, {**request.query, "limit": "1000", "attempt": ""})
    if isinstance(checked, web.Response):
        return checked
    query, status = checked
    resp = await open_stream(request)
    # The client may go away, or the run leave the store: the stream just ends.
    with contextlib.suppress(ConnectionError, RunNotFound):
        await _tail(ui, resp, _reader(ui), query, query.run_id, status in _GOING)
    return resp


async def _tail(
    ui: UIState,
    resp: web.StreamResponse,
    reader: LogReader,
    query: LogQuery,
    run_id: str,
    running: bool,
) -> None:
    after = query.after
    closing = ui.closing
    while True:
        page = await reader.get_logs(_after(query, after))
        if page.lines:
            await send_event(resp, "lines", [entry_json(x) for x in page.lines])
            after = page.next_after
        if page.more:
            continue
        if not running or closing is None or closing.is_set():
            await send_event(resp, "end", {"after": after})
            return
        await anyio.sleep(TAIL_GAP)
        # Read the lines once more after the run ends: the last ones land with its end.
        running = await _status(ui, run_id) in _GOING


def _after(query: LogQuery, after: int) -> LogQuery:
    return LogQuery(query.run_id, query.key, query.attempt, after, query.limit)


# ---------------------------------------------------------------- the task page


def _line(line: LogEntry) -> Markup:
    marker = (
        el("span", {"class": "line dropped"}, drop_marker(line.dropped_before), "\n")
        if line.dropped_before
        else None
    )
    message = mask_text(line.message)
    text = f"{when(line.time)[11:19]} {line.level:<8} {line.logger}: {message}\n"
    return join(marker, el("span", {"class": f"line lvl-{line.level}"}, text))


def _attempt_section(task: TaskInfo, number: int, lines: Sequence[LogEntry], more: bool) -> Markup:
    found = [a for a in task.attempts if a.number == number]
    attempt = found[0] if found else None
    state = shown_attempt_state(task, attempt) if attempt is not None else shown_state(task)
    started = attempt.started if attempt is not None else task.started
    finished = attempt.finished if attempt is not None else task.finished
    duration = None if started is None or finished is None else finished - started
    traceback = (
        el(
            "details",
            {"class": "error", "open": True},
            el("summary", None, mask_text(f"{attempt.error_type}: {attempt.error_message}")),
            el("pre", None, mask_text(attempt.error_traceback or "(no traceback)")),
        )
        if attempt is not None and attempt.error_type
        else None
    )
    note = el("p", {"class": "muted"}, "more lines: see the JSON API") if more else None
    return el(
        "section",
        {"class": "attempt", "data-attempt": number},
        el("h2", None, f"Attempt {number} ", badge(state), f" {when(started)} · {took(duration)}"),
        traceback,
        el("pre", {"class": "log", "data-attempt": number}, [_line(x) for x in lines]),
        note,
    )


def task_page(
    urls: RequestUrls,
    run: RunInfo,
    task: TaskInfo,
    lines: Sequence[LogEntry],
    after: int,
    more: bool,
    instances: Sequence[TaskInfo] = (),
    state: str = "",
) -> Markup:
    """A task's attempts, each with its error and log lines; followed live while it runs."""
    by_attempt: dict[int, list[LogEntry]] = {}
    for line in lines:
        by_attempt.setdefault(line.attempt, []).append(line)
    numbers = sorted({*by_attempt, *(a.number for a in task.attempts)} or {1})
    live = run.status in _GOING
    follow = urls.log_events(run.run_id, task.key, after) if live else None
    return el(
        "main",
        {"id": "task", "data-run": run.run_id, "data-task": task.key, "data-follow": follow},
        el("h1", None, "Task ", el("code", None, task.key), " ", task_badge(task)),
        task_summary(urls, run, task),
        task_instances(urls, task, instances, state),
        el(
            "div",
            {"id": "attempts"},
            [_attempt_section(task, n, by_attempt.get(n, ()), more) for n in numbers],
        ),
        task_result(task),
    )


async def task_handler(request: web.Request) -> web.Response:
    ui = _ui(request)
    run_id, key = request.match_info["run_id"], request.query.get("key", "")
    try:
        run, tasks = await ui.read_run(run_id)
    except RunNotFound:
        return html_page(request, "Not found", el("p", None, f"no run {run_id!r}"), 404)
    found = [t for t in tasks if t.key == key]
    if not found:
        return html_page(request, "Not found", el("p", None, f"no task {key!r} in run"), 404)
    page: LogPage = await _reader(ui).get_logs(LogQuery(run_id, key, limit=PAGE_LINES))
    instances = instances_of(tasks, key)
    state = request.query.get("state", "")
    body = task_page(
        RequestUrls(request),
        run,
        found[0],
        page.lines,
        page.next_after,
        page.more,
        instances,
        state,
    )
    return html_page(request, f"Task {key}", body)


def add_log_routes(router: web.UrlDispatcher) -> None:
    """Register the log API, its event stream and the task page."""
    router.add_get("/api/runs/{run_id}/logs", logs_api, name="api_run_logs")
    router.add_get("/api/runs/{run_id}/logs/events", log_events, name="api_run_log_events")
    router.add_get("/runs/{run_id}/task", task_handler, name="task")
