"""The HTML pages, built with :mod:`._html` (escaped by construction); no inline script."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from ..orchestration import MappedTask, Pipeline
from ..store import RunInfo, RunPage, RunStatus, TaskInfo
from ._graph import GraphNode, graph_svg
from ._html import Markup, el, join
from ._launcher import planned_edges
from ._model import TaskGroup, group_tasks, instance_note, mask, result_text
from ._timeline import timeline_svg

__all__ = ["Urls", "layout", "login_page", "pipelines_page", "run_body", "runs_page"]

MAX_LISTED = 200  # instances, errors, results: a page stays light whatever the fan-out
STATES = ("PENDING", "RUNNING", "SUCCESS", "FAILED", "UPSTREAM_FAILED", "SKIPPED", "CANCELLED")


class Urls(Protocol):
    """Where the pages link to (the UI may be mounted under any prefix)."""

    def runs(self, **query: str | None) -> str: ...
    def run(self, run_id: str) -> str: ...
    def live(self, run_id: str) -> str: ...
    def events(self, run_id: str) -> str: ...
    def pipelines(self) -> str: ...
    def trigger(self, name: str) -> str: ...
    def cancel(self, run_id: str) -> str: ...
    def resume(self, run_id: str) -> str: ...
    def static(self, name: str) -> str: ...
    def login(self) -> str: ...


def when(t: float | None) -> str:
    """Epoch seconds as UTC text."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def took(seconds: float | None) -> str:
    """A duration as text."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def layout(urls: Urls, title: str, csrf: str, body: Markup) -> str:
    """A whole page around ``body``."""
    head = el(
        "head",
        None,
        el("meta", {"charset": "utf-8"}),
        el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        el("meta", {"name": "csrf-token", "content": csrf}),
        el("title", None, f"{title} · dremioframe_async"),
        el("link", {"rel": "stylesheet", "href": urls.static("ui.css")}),
        el("link", {"rel": "icon", "href": "data:,"}),  # no favicon request
        el("script", {"src": urls.static("ui.js"), "defer": True}),
    )
    nav = el(
        "nav",
        None,
        el("a", {"href": urls.runs(), "class": "brand"}, "dremioframe_async"),
        el("a", {"href": urls.runs()}, "Runs"),
        el("a", {"href": urls.pipelines()}, "Pipelines"),
    )
    return "<!doctype html>" + el("html", {"lang": "en"}, head, el("body", None, nav, body))


def badge(state: str) -> Markup:
    return el("span", {"class": f"badge s-{state}"}, state)


def counts_line(counts: Mapping[str, int]) -> Markup:
    """Task-state counts as small badges, in state order."""
    parts = [
        el("span", {"class": f"count s-{s}", "title": s}, f"{counts[s]} {s.lower()}")
        for s in STATES
        if counts.get(s)
    ]
    return el("span", {"class": "counts"}, parts or "no tasks")


def _csrf_field(csrf: str) -> Markup:
    return el("input", {"type": "hidden", "name": "csrf_token", "value": csrf})


# ---------------------------------------------------------------- runs


def _filters(urls: Urls, pipelines: Sequence[str], pipeline: str, status: str) -> Markup:
    options = [el("option", {"value": ""}, "any status")] + [
        el("option", {"value": s.value, "selected": s.value == status}, s.value) for s in RunStatus
    ]
    names = el(
        "datalist", {"id": "pipeline-names"}, [el("option", {"value": n}) for n in pipelines]
    )
    return el(
        "form",
        {"class": "filters", "method": "get", "action": urls.runs()},
        el(
            "input",
            {
                "name": "pipeline",
                "value": pipeline,
                "placeholder": "pipeline",
                "list": "pipeline-names",
                "aria-label": "pipeline",
            },
        ),
        names,
        el("select", {"name": "status", "aria-label": "status"}, options),
        el("button", {"type": "submit"}, "Filter"),
    )


def runs_page(
    urls: Urls, page: RunPage, pipelines: Sequence[str], pipeline: str, status: str
) -> Markup:
    """The runs list: filters, one row per run, and newer/older links."""
    rows = [
        el(
            "tr",
            {"data-run": r.run_id},
            el("td", None, el("a", {"href": urls.run(r.run_id)}, r.run_id[:12])),
            el("td", None, r.pipeline),
            el("td", None, badge(r.status.value)),
            el("td", None, when(r.started)),
            el("td", None, took(r.duration)),
            el("td", None, counts_line(r.counts)),
        )
        for r in page.runs
    ]
    keep = {k: v for k, v in (("pipeline", pipeline), ("status", status)) if v}
    links = el(
        "p",
        {"class": "pager"},
        el("a", {"href": urls.runs(**keep, after=page.newer), "rel": "prev"}, "← newer")
        if page.newer
        else None,
        f" {page.total} run{'s' if page.total != 1 else ''} ",
        el("a", {"href": urls.runs(**keep, before=page.older), "rel": "next"}, "older →")
        if page.older
        else None,
    )
    head = el(
        "tr",
        None,
        [el("th", None, h) for h in ("Run", "Pipeline", "Status", "Started", "Duration", "Tasks")],
    )
    table = el("table", {"class": "runs"}, el("thead", None, head), el("tbody", None, rows))
    running = any(r.status is RunStatus.RUNNING for r in page.runs)
    return el(
        "main",
        {"id": "runs", "data-refresh": "5" if running else None},
        el("h1", None, "Runs"),
        _filters(urls, pipelines, pipeline, status),
        el(
            "div",
            {"id": "runs-list"},
            table if rows else el("p", {"class": "muted"}, "no runs match"),
            links,
        ),
    )


# ---------------------------------------------------------------- run detail


def run_graph(
    tasks: Sequence[TaskInfo], groups: Sequence[TaskGroup], planned: Mapping[str, tuple[str, ...]]
) -> Markup:
    """The run's DAG; edges of tasks not yet started come from the served pipeline's plan."""
    nodes = [
        GraphNode(
            g.task.key,
            g.task.upstream or planned.get(g.task.key, ()),
            g.task.state.value,
            instance_note(g.instances),
        )
        for g in groups
    ]
    return graph_svg(nodes, title="run graph")


def _actions(urls: Urls, run: RunInfo, csrf: str, can_cancel: bool, can_resume: bool) -> Markup:
    forms = []
    if can_cancel:
        forms.append(
            el(
                "form",
                {"method": "post", "action": urls.cancel(run.run_id)},
                _csrf_field(csrf),
                el("button", {"class": "danger", "type": "submit"}, "Cancel run"),
            )
        )
    if can_resume:
        forms.append(
            el(
                "form",
                {"method": "post", "action": urls.resume(run.run_id)},
                _csrf_field(csrf),
                el("button", {"type": "submit"}, "Resume"),
            )
        )
    return el("div", {"class": "actions"}, forms)


def _summary(urls: Urls, run: RunInfo) -> Markup:
    rows = [
        ("Pipeline", run.pipeline),
        ("Status", badge(run.status.value)),
        ("Started", when(run.started)),
        ("Finished", when(run.finished)),
        ("Duration", took(run.duration)),
        ("Tasks", counts_line(run.counts)),
        (
            "Params",
            el("code", None, json.dumps(mask(dict(run.params)), sort_keys=True, default=str)),
        ),
    ]
    if run.scheduled_for is not None:
        rows.insert(2, ("Scheduled for", when(run.scheduled_for)))
    if run.resumed_from:
        rows.append(
            ("Resumed from", el("a", {"href": urls.run(run.resumed_from)}, run.resumed_from))
        )
    if run.resumed_by:
        rows.append(("Resumed by", el("a", {"href": urls.run(run.resumed_by)}, run.resumed_by)))
    if run.cancel_requests:
        rows.append(("Cancel", f"requested {run.cancel_requests} time(s)"))
    return el(
        "dl", {"class": "summary"}, [join(el("dt", None, k), el("dd", None, v)) for k, v in rows]
    )


def _task_row(task: TaskInfo, cls: str = "") -> Markup:
    last = task.attempts[-1] if task.attempts else None
    error = f"{last.error_type}: {last.error_message}" if last and last.error_type else ""
    note = (
        error
        or task.reason
        or (task.result_note and f"result {task.result_type}: {task.result_note}")
    )
    return el(
        "tr",
        {"class": cls or None, "data-key": task.key},
        el("td", None, task.key),
        el("td", None, badge(task.state.value)),
        el("td", None, len(task.attempts)),
        el("td", None, when(task.started)),
        el(
            "td",
            None,
            took(
                None
                if task.started is None or task.finished is None
                else task.finished - task.started
            ),
        ),
        el("td", {"class": "note"}, note),
    )


def _task_table(groups: Sequence[TaskGroup]) -> Markup:
    body = []
    for g in groups:
        body.append(_task_row(g.task))
        if g.instances:
            shown = [_task_row(t, "instance") for t in g.instances[:MAX_LISTED]]
            inner = join(el("table", {"class": "instances"}, shown), _more(len(g.instances)))
            summary = el("summary", None, f"{len(g.instances)} mapped instances of {g.task.key}")
            body.append(
                el(
                    "tr",
                    {"class": "group"},
                    el("td", {"colspan": 6}, el("details", None, summary, inner)),
                )
            )
    head = el(
        "tr",
        None,
        [
            el("th", None, h)
            for h in ("Task", "State", "Attempts", "Started", "Duration", "Error / reason")
        ],
    )
    return el("table", {"class": "tasks"}, el("thead", None, head), el("tbody", None, body))


def _more(total: int) -> Markup | None:
    if total <= MAX_LISTED:
        return None
    return el(
        "p", {"class": "muted"}, f"{total - MAX_LISTED} more not listed here; see the JSON API"
    )


def _errors(tasks: Sequence[TaskInfo]) -> Markup:
    items = [
        el(
            "details",
            {"class": "error"},
            el("summary", None, f"{t.key} · attempt {a.number}: {a.error_type}: {a.error_message}"),
            el("pre", None, a.error_traceback or "(no traceback)"),
        )
        for t in tasks
        for a in t.attempts
        if a.error_type
    ]
    if not items:
        return Markup("")
    return el("section", None, el("h2", None, "Errors"), items[:MAX_LISTED], _more(len(items)))


def _results(tasks: Sequence[TaskInfo]) -> Markup:
    stored = [t for t in tasks if t.result_stored]
    items = [
        el("details", None, el("summary", None, t.key), el("pre", None, result_text(t)))
        for t in stored[:MAX_LISTED]
    ]
    if not items:
        return Markup("")
    return el("section", None, el("h2", None, "Stored results"), items, _more(len(stored)))


def run_body(
    urls: Urls,
    run: RunInfo,
    tasks: Sequence[TaskInfo],
    *,
    csrf: str,
    planned: Mapping[str, tuple[str, ...]],
    can_cancel: bool,
    can_resume: bool,
) -> Markup:
    """Everything the run page shows that can change while it runs (live updates swap it)."""
    groups = group_tasks(tasks)
    return el(
        "div",
        {"id": "run-live", "data-status": run.status.value},
        _actions(urls, run, csrf, can_cancel, can_resume),
        _summary(urls, run),
        el(
            "section",
            None,
            el("h2", None, "Graph"),
            el("div", {"class": "scroll"}, run_graph(tasks, groups, planned)),
        ),
        el(
            "section",
            None,
            el("h2", None, "Timeline"),
            el("div", {"class": "scroll"}, timeline_svg(run, tasks, groups)),
        ),
        el("section", None, el("h2", None, "Tasks"), _task_table(groups)),
        _errors(tasks),
        _results(tasks),
    )


def run_page(urls: Urls, run: RunInfo, body: Markup) -> Markup:
    live = run.status is RunStatus.RUNNING
    attrs = {
        "id": "run",
        "data-run": run.run_id,
        "data-events": urls.events(run.run_id) if live else None,
        "data-live": urls.live(run.run_id) if live else None,
    }
    return el("main", attrs, el("h1", None, "Run ", el("code", None, run.run_id)), body)


# ---------------------------------------------------------------- pipelines


def pipeline_graph(pipeline: Pipeline) -> Markup:
    edges = planned_edges(pipeline)
    if isinstance(edges, str):
        return el("p", {"class": "error-box"}, f"the graph cannot run: {edges}")
    plan = pipeline.plan()  # valid (and cached) once planned_edges succeeded
    mapped = {k for k, t in zip(plan.keys, plan.tasks, strict=True) if isinstance(t, MappedTask)}
    nodes = [
        GraphNode(k, up, "PLANNED", "(mapped)" if k in mapped else "") for k, up in edges.items()
    ]
    return graph_svg(nodes, title=f"graph of {pipeline.name}")


def pipeline_section(
    urls: Urls, pipeline: Pipeline, schedule: str | None, last: Sequence[RunInfo], csrf: str
) -> Markup:
    runs = [
        el(
            "li",
            None,
            el("a", {"href": urls.run(r.run_id)}, r.run_id[:12]),
            " ",
            badge(r.status.value),
            " ",
            when(r.started),
        )
        for r in last
    ]
    form = el(
        "form",
        {"class": "trigger", "method": "post", "action": urls.trigger(pipeline.name)},
        _csrf_field(csrf),
        el(
            "label",
            None,
            "Params (JSON object)",
            el("textarea", {"name": "params", "rows": 3, "spellcheck": "false"}, "{}"),
        ),
        el("button", {"type": "submit"}, f"Trigger {pipeline.name}"),
    )
    return el(
        "section",
        {"class": "pipeline", "data-pipeline": pipeline.name},
        el("h2", None, pipeline.name),
        el("p", None, "Schedule: ", schedule or "none (triggered by hand or by the application)"),
        el("div", {"class": "scroll"}, pipeline_graph(pipeline)),
        el("h3", None, "Last runs"),
        el("ul", {"class": "last-runs"}, runs)
        if runs
        else el("p", {"class": "muted"}, "no runs yet"),
        form,
    )


def pipelines_page(sections: Sequence[Markup], error: str | None = None) -> Markup:
    return el(
        "main",
        None,
        el("h1", None, "Pipelines"),
        el("p", {"class": "error-box"}, error) if error else None,
        sections
        or el("p", {"class": "muted"}, "this UI serves no pipelines (pass pipelines=[...])"),
    )


def login_page(urls: Urls, csrf: str, failed: bool) -> Markup:
    return el(
        "main",
        None,
        el("h1", None, "Sign in"),
        el("p", {"class": "error-box"}, "wrong token") if failed else None,
        el(
            "form",
            {"method": "post", "action": urls.login()},
            _csrf_field(csrf),
            el(
                "label",
                None,
                "Access token",
                el(
                    "input",
                    {"type": "password", "name": "token", "autocomplete": "current-password"},
                ),
            ),
            el("button", {"type": "submit"}, "Sign in"),
        ),
    )


def message_page(title: str, text: str) -> Markup:
    return el("main", None, el("h1", None, title), el("p", None, text))
