"""The HTML pages: the runs list, a run (and its live fragment), the pipelines."""

from __future__ import annotations

from functools import partial

import anyio
from aiohttp import web

from ..store import RunInfo, RunNotFound, StoreError
from . import _forms as forms
from . import _pages as pages
from ._api import parse_query
from ._html import Markup
from ._launcher import CANCELLABLE, planned_edges
from ._params import PREFIX
from ._pipelines import pipeline_views
from ._respond import html_page
from ._runlist import RunsFilter, runs_page
from ._state import CSRF_KEY, UI_KEY, RequestUrls, UIState
from ._threads import ui_threads

__all__ = ["add_page_routes"]

RENDER_IN_THREAD = 500  # tasks; a 10,000-task run page takes about 0.1 s to build


def _ui(request: web.Request) -> UIState:
    return request.app[UI_KEY]


async def runs_handler(request: web.Request) -> web.Response:
    ui = _ui(request)
    try:
        query = parse_query(request.query)
    except ValueError as exc:
        return html_page(request, "Runs", forms.message_page("Bad filter", str(exc)), 400)
    page = await ui.store.query_runs(query)
    number = request.query.get("page", "1")
    shown = RunsFilter(
        pipeline=query.pipeline or "",
        contains=query.pipeline_contains or "",
        status=query.status.value if query.status else "",
        since=request.query.get("since", ""),
        until=request.query.get("until", ""),
        backfill=query.backfill or "",
        size=query.limit,
    )
    body = runs_page(
        RequestUrls(request),
        page,
        sorted(ui.pipelines),
        shown,
        # The first page is page 1 whatever a link said (no cursor: the newest runs).
        int(number) if number.isdigit() and int(number) > 0 and page.newer else 1,
    )
    return html_page(request, "Runs", body)


async def _run_body(request: web.Request) -> tuple[RunInfo, Markup] | None:
    ui = _ui(request)
    run_id = request.match_info["run_id"]
    try:
        run, tasks = await ui.read_run(run_id)
    except RunNotFound:
        return None
    entry = ui.pipelines.get(run.pipeline)
    edges = planned_edges(entry.pipeline) if entry is not None else {}
    render = partial(
        pages.run_body,
        RequestUrls(request),
        run,
        tasks,
        csrf=request[CSRF_KEY],
        planned=edges if isinstance(edges, dict) else {},
        can_cancel=run.status in CANCELLABLE,
        can_resume=ui.can_resume(run),
    )
    # Rendering is pure CPU work over frozen views: a big run's goes off the loop.
    if len(tasks) > RENDER_IN_THREAD:
        return run, await anyio.to_thread.run_sync(render, limiter=ui_threads())
    return run, render()


async def run_handler(request: web.Request) -> web.Response:
    found = await _run_body(request)
    if found is None:
        text = f"no run {request.match_info['run_id']!r} in the store"
        return html_page(request, "Not found", forms.message_page("Not found", text), 404)
    run, body = found
    title = f"Run {run.run_id[:12]}"
    return html_page(request, title, pages.run_page(RequestUrls(request), run, body))


async def run_live_handler(request: web.Request) -> web.Response:
    found = await _run_body(request)
    if found is None:
        return web.Response(status=404, text="no such run")
    return web.Response(text=found[1], content_type="text/html")


def _refill(request: web.Request) -> tuple[str | None, forms.Refill]:
    """After a refused trigger (post/redirect/get): which pipeline, its form as sent
    and why it was refused."""
    query = request.query
    why = query.get("error")
    refused = query.get("refused")
    fields = {k: v for k, v in query.items() if k.startswith(PREFIX)}
    error = f"{refused} was not triggered: {why}" if why else None
    return refused, forms.Refill(query.get("params", "{}"), fields, error)


async def pipelines_handler(request: web.Request) -> web.Response:
    try:
        views = await pipeline_views(_ui(request))
    except StoreError as exc:
        body = forms.message_page("Store unavailable", f"the store cannot be read: {exc}")
        return html_page(request, "Pipelines", body, 503)
    refused, refill = _refill(request)
    urls, csrf = RequestUrls(request), request[CSRF_KEY]
    sections = [
        forms.pipeline_section(urls, v, csrf, refill if v.name == refused else None) for v in views
    ]
    return html_page(request, "Pipelines", forms.pipelines_page(sections))


def add_page_routes(router: web.UrlDispatcher) -> None:
    """Register the HTML pages (the task page is in ``_logs``)."""
    router.add_get("/", runs_handler, name="runs")
    router.add_get("/runs/{run_id}", run_handler, name="run")
    router.add_get("/runs/{run_id}/live", run_live_handler, name="run_live")
    router.add_get("/pipelines", pipelines_handler, name="pipelines")
