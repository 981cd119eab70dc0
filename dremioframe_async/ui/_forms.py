"""The pipelines page (graph, last runs, trigger form), the sign-in page and plain
message pages."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..orchestration import MappedTask, Pipeline
from ..store import RunInfo, StateEntry
from ._graph import GraphNode, graph_svg
from ._html import Markup, el
from ._launcher import planned_edges
from ._model import mask
from ._pages import Urls, badge, csrf_field
from ._times import when

__all__ = ["login_page", "message_page", "pipeline_graph", "pipeline_section", "pipelines_page"]


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
    urls: Urls,
    pipeline: Pipeline,
    schedule: str | None,
    last: Sequence[RunInfo],
    csrf: str,
    params: str = "{}",
    error: str | None = None,
    state: Sequence[StateEntry] = (),
) -> Markup:
    """One served pipeline: graph, schedule, last runs, its state (``context.state``,
    masked) and the trigger form (``params`` and ``error`` refill it after a refused
    trigger)."""
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
        csrf_field(csrf),
        el(
            "label",
            None,
            "Params (JSON object)",
            el("textarea", {"name": "params", "rows": 3, "spellcheck": "false"}, params),
        ),
        el("button", {"type": "submit"}, f"Trigger {pipeline.name}"),
    )
    return el(
        "section",
        {"class": "pipeline", "data-pipeline": pipeline.name, "id": f"pipeline-{pipeline.name}"},
        el("h2", None, pipeline.name),
        el("p", {"class": "error-box", "role": "alert"}, error) if error else None,
        el("p", None, "Schedule: ", schedule or "none (triggered by hand or by the application)"),
        el("div", {"class": "scroll"}, pipeline_graph(pipeline)),
        el("h3", None, "Last runs"),
        el("ul", {"class": "last-runs"}, runs)
        if runs
        else el("p", {"class": "muted"}, "no runs yet"),
        _state_table(state) if state else None,
        form,
    )


def _state_table(entries: Sequence[StateEntry]) -> Markup:
    rows = [
        el(
            "tr",
            None,
            el("td", None, el("code", None, e.key)),
            el(
                "td", None, el("code", None, json.dumps(mask({e.key: e.value})[e.key], default=str))
            ),
            el("td", None, when(e.updated)),
            el(
                "td", None, f"{e.task} in {e.run_id[:12]}" if e.run_id and e.task else "set by hand"
            ),
        )
        for e in entries
    ]
    head = el("tr", None, [el("th", None, h) for h in ("Key", "Value", "Updated", "Written by")])
    return el(
        "div",
        {"class": "state"},
        el("h3", None, "State"),
        el("table", {"class": "state"}, el("thead", None, head), el("tbody", None, rows)),
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


def login_page(
    urls: Urls, csrf: str, failed: bool, token: bool = True, password: bool = False
) -> Markup:
    """The sign-in form: the access token, and/or a user name and password."""

    def field(label: str, name: str, kind: str, complete: str) -> Markup:
        attrs = {"type": kind, "name": name, "autocomplete": complete}
        return el("label", None, label, el("input", attrs))

    fields = []
    if token:
        fields.append(field("Access token", "token", "password", "current-password"))
    if password:
        fields.append(field("User", "user", "text", "username"))
        fields.append(field("Password", "password", "password", "current-password"))
    wrong = "wrong token" if not password else "wrong token, user or password"
    return el(
        "main",
        None,
        el("h1", None, "Sign in"),
        el("p", {"class": "error-box"}, wrong) if failed else None,
        el(
            "form",
            {"method": "post", "action": urls.login()},
            csrf_field(csrf),
            fields,
            el("button", {"type": "submit"}, "Sign in"),
        ),
    )


def message_page(title: str, text: str) -> Markup:
    return el("main", None, el("h1", None, title), el("p", None, text))
