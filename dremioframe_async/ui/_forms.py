"""The pipelines page (schedule and pause switch, graph, last runs, trigger form),
the sign-in page and plain message pages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..orchestration import MappedTask, Pipeline
from ..store import StateEntry
from ._graph import MAX_NODES, GraphNode, graph_svg, too_many_to_draw
from ._html import Markup, el, header_row
from ._launcher import planned_edges
from ._model import mask
from ._pages import Urls, badge, csrf_field
from ._params import ParamField
from ._pipelines import PipelineView
from ._times import stamp, when

__all__ = [
    "Refill",
    "login_page",
    "message_page",
    "pipeline_graph",
    "pipeline_section",
    "pipelines_page",
    "trigger_form",
]


def pipeline_graph(pipeline: Pipeline) -> Markup:
    edges = planned_edges(pipeline)
    if isinstance(edges, str):
        return el("p", {"class": "error-box"}, f"the graph cannot run: {edges}")
    if len(edges) > MAX_NODES:  # before a node is made for each of its tasks
        return too_many_to_draw(len(edges))
    plan = pipeline.plan()  # valid (and cached) once planned_edges succeeded
    mapped = {k for k, t in zip(plan.keys, plan.tasks, strict=True) if isinstance(t, MappedTask)}
    nodes = [
        GraphNode(k, up, "PLANNED", "(mapped)" if k in mapped else "") for k, up in edges.items()
    ]
    return graph_svg(nodes, title=f"graph of {pipeline.name}")


@dataclass(frozen=True, slots=True)
class Refill:
    """A refused trigger's form as it was sent, and why it was refused."""

    params: str = "{}"
    fields: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None


def _field(f: ParamField, refill: Mapping[str, str]) -> Markup:
    value = refill.get(f.input_name, f.text)
    attrs: dict[str, object] = {"name": f.input_name, "value": value}
    if f.kind == "bool":
        box = {"type": "checkbox", "name": f.input_name, "value": "true"}
        checked = value == "true"
        return el(
            "label",
            {"class": "check"},
            el("input", {"type": "hidden", "name": f.input_name, "value": "false"}),
            el("input", {**box, "checked": checked}),
            f.name,
        )
    kinds = {"int": "number", "float": "number", "date": "date", "secret": "password"}
    attrs["type"] = kinds.get(f.kind, "text")
    if f.kind == "int":
        attrs["step"] = "1"
    elif f.kind == "float":
        attrs["step"] = "any"
    elif f.kind == "secret":
        attrs.update(value="", autocomplete="off", placeholder="secret: never shown")
    elif f.kind == "json":
        attrs.update(spellcheck="false", placeholder="JSON")
    return el("label", None, f.name, el("input", attrs))


def trigger_form(
    urls: Urls, name: str, fields: Sequence[ParamField], csrf: str, refill: Refill
) -> Markup:
    """The trigger form: a field per declared param (see ``ui._params``), then raw JSON."""
    json_label = "More params (JSON object)" if fields else "Params (JSON object)"
    return el(
        "form",
        {"class": "trigger", "method": "post", "action": urls.trigger(name)},
        csrf_field(csrf),
        el("fieldset", {"class": "params"}, [_field(f, refill.fields) for f in fields])
        if fields
        else None,
        el(
            "label",
            None,
            json_label,
            el("textarea", {"name": "params", "rows": 3, "spellcheck": "false"}, refill.params),
        ),
        el("button", {"type": "submit"}, f"Trigger {name}"),
    )


def _schedule(urls: Urls, view: PipelineView, csrf: str) -> Markup:
    if view.schedule is None and view.paused_since is None:
        return el("p", None, "Schedule: none (triggered by hand or by the application)")
    parts: list[object] = ["Schedule: ", view.schedule or "run elsewhere"]
    if view.paused_since is not None:
        parts += [
            " · ",
            el("strong", {"class": "paused"}, "paused"),
            " since ",
            stamp(view.paused_since),
        ]
    elif view.next_fire is not None:
        parts += [" · next fire ", stamp(view.next_fire)]
    switch = None
    if view.runs_schedule:
        paused = view.paused_since is not None
        switch = el(
            "form",
            {"class": "pause", "method": "post", "action": urls.pause(view.name)},
            csrf_field(csrf),
            el("input", {"type": "hidden", "name": "paused", "value": "0" if paused else "1"}),
            el(
                "button",
                {
                    "type": "submit",
                    "class": "switch",
                    "aria-pressed": "true" if paused else "false",
                },
                "Resume schedule" if paused else "Pause schedule",
            ),
        )
    return el("div", {"class": "schedule"}, el("p", None, parts), switch)


def _runs_line(urls: Urls, view: PipelineView) -> Markup:
    total = sum(view.runs.values())
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(view.runs.items()))
    return el(
        "p",
        {"class": "runs-count"},
        el("a", {"href": urls.runs(pipeline=view.name)}, f"{total} run{'s' if total != 1 else ''}"),
        f" ({counts})" if counts else "",
    )


def pipeline_section(urls: Urls, view: PipelineView, csrf: str, refill: Refill | None) -> Markup:
    """One pipeline: schedule (next fire, pause switch), runs, graph, last runs, its
    state (``context.state``, masked) and, when served, the trigger form (``refill``
    brings back a refused trigger's text and the reason)."""
    runs = [
        el(
            "li",
            None,
            el("a", {"href": urls.run(r.run_id)}, r.run_id[:12]),
            " ",
            badge(r.status.value),
            " ",
            stamp(r.started),
        )
        for r in view.last
    ]
    entry = view.entry
    return el(
        "section",
        {"class": "pipeline", "data-pipeline": view.name, "id": f"pipeline-{view.name}"},
        el("h2", None, view.name),
        el("p", {"class": "error-box", "role": "alert"}, refill.error)
        if refill and refill.error
        else None,
        None
        if entry is not None
        else el("p", {"class": "muted"}, "not served by this UI: its runs are in the store"),
        _schedule(urls, view, csrf),
        _runs_line(urls, view),
        el("div", {"class": "scroll"}, pipeline_graph(entry.pipeline)) if entry else None,
        el("h3", None, "Last runs"),
        el("ul", {"class": "last-runs"}, runs)
        if runs
        else el("p", {"class": "muted"}, "no runs yet"),
        _state_table(view.state) if view.state else None,
        trigger_form(urls, view.name, view.fields, csrf, refill or Refill())
        if entry is not None
        else None,
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
    head = header_row("Key", "Value", "Updated", "Written by")
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
        or el("p", {"class": "muted"}, "no pipelines: none served (pipelines=[...]), no runs"),
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
