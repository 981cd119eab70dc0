"""The HTML pages, built with :mod:`._html` (escaped by construction); no inline script."""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from .._masking import mask_text
from ..store import RunInfo, RunStatus, TaskInfo
from ._graph import GraphNode, graph_svg
from ._html import Markup, el, header_row, join
from ._model import (
    TaskGroup,
    group_tasks,
    instance_note,
    mask,
    result_text,
    shorten,
    shown_state,
    task_counts,
)
from ._timeline import timeline_svg
from ._times import elapsed, stamp, took, when

__all__ = [
    "Urls",
    "badge",
    "csrf_field",
    "layout",
    "run_body",
    "run_page",
    "run_took",
    "summary_list",
    "task_badge",
]

MAX_LISTED = 200  # instances, errors, results: a page stays light whatever the fan-out
# A run's tasks listed in its table: a 100,000-task run's page was 36 MB, and its loop
# spent up to 1.5 s on it. Past this, running and failed tasks are listed first (_RANK).
MAX_TASK_ROWS = 1_000
STATES = (
    "PENDING",
    "RUNNING",
    "SUCCESS",
    "FAILED",
    "UPSTREAM_FAILED",
    "SKIPPED",
    "CANCELLED",
    "INTERRUPTED",
)


class Urls(Protocol):
    """Where the pages link to (the UI may be mounted under any prefix)."""

    def runs(self, **query: str | None) -> str: ...
    def run(self, run_id: str) -> str: ...
    def live(self, run_id: str) -> str: ...
    def events(self, run_id: str) -> str: ...
    def pipelines(self) -> str: ...
    def trigger(self, name: str) -> str: ...
    def pause(self, name: str) -> str: ...
    def cancel(self, run_id: str) -> str: ...
    def resume(self, run_id: str) -> str: ...
    def static(self, name: str) -> str: ...
    def login(self) -> str: ...

    def logout(self) -> str: ...

    def task(self, run_id: str, key: str, **query: str) -> str: ...


def layout(urls: Urls, title: str, csrf: str, body: Markup, signed_in: bool = False) -> str:
    """A whole page around ``body`` (with a sign-out button in a browser session)."""
    head = el(
        "head",
        None,
        el("meta", {"charset": "utf-8"}),
        el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        el("meta", {"name": "csrf-token", "content": csrf}),
        el("meta", {"name": "server-time", "content": f"{time.time():.3f}"}),
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
        el(
            "form",
            {"method": "post", "action": urls.logout(), "class": "logout"},
            csrf_field(csrf),
            el("button", {"type": "submit"}, "Sign out"),
        )
        if signed_in
        else None,
    )
    return "<!doctype html>" + el("html", {"lang": "en"}, head, el("body", None, nav, body))


def badge(state: str, title: str | None = None) -> Markup:
    """A state as a coloured label."""
    return el("span", {"class": f"badge s-{state}", "title": title}, state)


def task_badge(task: TaskInfo) -> Markup:
    """A task's state as the pages show it: INTERRUPTED for one its run's death ended
    (stored CANCELLED, with that reason; see shown_state)."""
    shown = shown_state(task)
    return badge(shown, title=task.reason if task.interrupted else None)


def counts_line(counts: Mapping[str, int]) -> Markup:
    """Task-state counts as small badges, in state order."""
    parts = [
        el("span", {"class": f"count s-{s}", "title": s}, f"{counts[s]} {s.lower()}")
        for s in STATES
        if counts.get(s)
    ]
    return el("span", {"class": "counts"}, parts or "no tasks")


def summary_list(rows: Sequence[tuple[str, object]]) -> Markup:
    """Labelled values (a run's or a task's summary)."""
    return el(
        "dl", {"class": "summary"}, [join(el("dt", None, k), el("dd", None, v)) for k, v in rows]
    )


def csrf_field(csrf: str) -> Markup:
    return el("input", {"type": "hidden", "name": "csrf_token", "value": csrf})


def run_took(run: RunInfo) -> Markup | str:
    if run.status is RunStatus.RUNNING:
        return elapsed(run.started, None, True)
    if run.status is RunStatus.INTERRUPTED:
        # Its process died: the store knows only when the run last recorded something.
        return el(
            "span",
            {"title": "until its last record; the run's process ended without a word"},
            f"≥ {took(run.duration)}",
        )
    return took(run.duration)


# ---------------------------------------------------------------- run detail


def run_graph(
    tasks: Sequence[TaskInfo],
    groups: Sequence[TaskGroup],
    planned: Mapping[str, tuple[str, ...]],
    urls: Urls | None = None,
) -> Markup:
    """The run's DAG; edges of tasks not yet started come from the served pipeline's plan.
    Each node links to its task's page."""
    nodes = [
        GraphNode(
            g.task.key,
            g.task.upstream or planned.get(g.task.key, ()),
            shown_state(g.task),
            instance_note(g.instances),
            urls.task(g.task.run_id, g.task.key) if urls is not None else "",
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
                {
                    "method": "post",
                    "action": urls.cancel(run.run_id),
                    "data-confirm": f"Cancel run {run.run_id[:12]} of {run.pipeline}?",
                },
                csrf_field(csrf),
                el("button", {"class": "danger", "type": "submit"}, "Cancel run"),
            )
        )
    if can_resume:
        forms.append(
            el(
                "form",
                {"method": "post", "action": urls.resume(run.run_id)},
                csrf_field(csrf),
                el("button", {"type": "submit"}, "Resume"),
            )
        )
    return el("div", {"class": "actions"}, forms)


def _summary(urls: Urls, run: RunInfo, counts: Mapping[str, int] | None = None) -> Markup:
    rows = [
        ("Pipeline", run.pipeline),
        ("Status", badge(run.status.value)),
        ("Started", stamp(run.started)),
        ("Finished", stamp(run.finished)),
        ("Duration", run_took(run)),
        ("Tasks", counts_line(run.counts if counts is None else counts)),
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
    if run.interval is not None:
        rows.append(("Data interval", f"{run.interval[0]} → {run.interval[1]}"))
    if run.backfill:
        rows.append(("Backfill", el("a", {"href": urls.runs(backfill=run.backfill)}, run.backfill)))
    return summary_list(rows)


def _task_row(urls: Urls, task: TaskInfo, cls: str = "") -> Markup:
    last = task.attempts[-1] if task.attempts else None
    error = f"{last.error_type}: {last.error_message}" if last and last.error_type else ""
    if error:
        note = _expander(mask_text(error))
        kind = "note error"
    elif task.reason:  # why it was skipped or resumed: information, not an error
        note, kind = _expander(mask_text(task.reason)), "note reason"
    else:
        note = task.result_note and f"result {task.result_type}: {task.result_note}"
        kind = "note"
    return el(
        "tr",
        {"class": cls or None, "data-key": task.key},
        el("td", None, el("a", {"href": urls.task(task.run_id, task.key)}, task.key)),
        el("td", None, task_badge(task)),
        el("td", None, len(task.attempts)),
        el("td", None, stamp(task.started)),
        el("td", None, elapsed(task.started, task.finished, task.state.value == "RUNNING")),
        el("td", {"class": kind}, note),
    )


def _expander(text: str) -> Markup | str:
    """A long text as its first line, with the whole of it one click away."""
    short, cut = shorten(text)
    if not cut:
        return text
    return el("details", {"class": "long"}, el("summary", None, short), el("pre", None, text))


# Which tasks a capped table lists first: running ones, then those that went wrong,
# then any other state but success, then successes (each kind in the run's order).
_RANK = {"RUNNING": 0, "FAILED": 1, "UPSTREAM_FAILED": 1, "CANCELLED": 1, "SUCCESS": 3}


def _listed(groups: Sequence[TaskGroup]) -> Sequence[TaskGroup]:
    """At most ``MAX_TASK_ROWS`` groups, shown in the run's order, picked by ``_RANK``."""
    if len(groups) <= MAX_TASK_ROWS:
        return groups
    rank = [_RANK.get(g.task.state.value, 2) for g in groups]
    picked = heapq.nsmallest(MAX_TASK_ROWS, range(len(groups)), key=lambda i: (rank[i], i))
    return [groups[i] for i in sorted(picked)]


def _task_table(urls: Urls, groups: Sequence[TaskGroup]) -> Markup:
    body = []
    listed = _listed(groups)
    budget = MAX_TASK_ROWS  # instance rows in all: 1,000 mapped tasks could list 200,000
    for g in listed:
        body.append(_task_row(urls, g.task))
        if g.instances:
            count = min(len(g.instances), MAX_LISTED, budget)
            budget -= count
            shown = [_task_row(urls, t, "instance") for t in g.instances[:count]]
            table = el("table", {"class": "instances"}, shown) if shown else None
            inner = join(table, _more(len(g.instances), count))
            summary = el("summary", None, f"{len(g.instances)} mapped instances of {g.task.key}")
            body.append(
                el(
                    "tr",
                    {"class": "group"},
                    el("td", {"colspan": 6}, el("details", None, summary, inner)),
                )
            )
    head = header_row("Task", "State", "Attempts", "Started", "Duration", "Error / reason")
    table = el("table", {"class": "tasks"}, el("thead", None, head), el("tbody", None, body))
    if len(listed) == len(groups):
        return table
    left = len(groups) - len(listed)
    note = f"{left} more tasks not listed here (running and failed tasks are listed first); "
    return join(table, el("p", {"class": "muted"}, note + "see the JSON API"))


def _more(total: int, shown: int | None = None) -> Markup | None:
    """The note on what a list leaves out: all past ``shown`` (``MAX_LISTED`` when None)."""
    shown = MAX_LISTED if shown is None else shown
    if total <= shown:
        return None
    return el("p", {"class": "muted"}, f"{total - shown} more not listed here; see the JSON API")


def _errors(urls: Urls, tasks: Sequence[TaskInfo]) -> Markup:
    items = []
    for t in tasks:
        previous = None
        for a in t.attempts:
            if not a.error_type:
                continue
            message = mask_text(f"{a.error_type}: {a.error_message}")
            short, _ = shorten(message)
            same = message == previous
            head = f"{t.key} · attempt {a.number}: " + (
                f"same error as attempt {a.number - 1}" if same else short
            )
            items.append(
                el(
                    "details",
                    {"class": "error"},
                    el("summary", None, head),
                    el("pre", None, mask_text(a.error_traceback or message)),
                    el("a", {"href": urls.task(t.run_id, t.key)}, "log lines and attempts"),
                )
            )
            previous = message
    if not items:
        return Markup("")
    return el("section", None, el("h2", None, "Errors"), items[:MAX_LISTED], _more(len(items)))


def _results(groups: Sequence[TaskGroup]) -> Markup:
    items = []
    total = 0
    for g in groups:
        stored = [t for t in g.instances if t.result_stored]
        if g.task.result_stored and not g.instances:
            total += 1
            items.append(
                el(
                    "details",
                    None,
                    el("summary", None, g.task.key),
                    el("pre", None, result_text(g.task)),
                )
            )
        elif stored:
            total += len(stored)
            inner = [
                el("details", None, el("summary", None, t.key), el("pre", None, result_text(t)))
                for t in stored[:MAX_LISTED]
            ]
            summary = f"{g.task.key}: {len(stored)} mapped instance results"
            items.append(
                el(
                    "details",
                    {"class": "group"},
                    el("summary", None, summary),
                    inner,
                    _more(len(stored)),
                )
            )
    if not items:
        return Markup("")
    return el("section", None, el("h2", None, "Stored results"), items[:MAX_LISTED])


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
        _summary(urls, run, task_counts(groups)),
        el(
            "section",
            None,
            el("h2", None, "Graph"),
            el("div", {"class": "scroll"}, run_graph(tasks, groups, planned, urls)),
        ),
        el(
            "section",
            None,
            el("h2", None, "Timeline"),
            el("div", {"class": "scroll"}, timeline_svg(run, tasks, groups)),
        ),
        el("section", None, el("h2", None, "Tasks"), _task_table(urls, groups)),
        _errors(urls, tasks),
        _results(groups),
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
