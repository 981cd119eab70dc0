"""The page of one task of a run: its state, its attempts with their errors, its result,
and for a mapped task its instances, filtered by state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from .._masking import mask_text
from ..store import AttemptInfo, RunInfo, TaskInfo
from ._html import Markup, el, join
from ._model import result_text, shorten
from ._times import elapsed, stamp, took

__all__ = ["TaskUrls", "task_page"]

MAX_INSTANCES = 500  # listed on one page; the JSON API has them all


class TaskUrls(Protocol):
    def run(self, run_id: str) -> str: ...
    def task(self, run_id: str, key: str, **query: str) -> str: ...


def _badge(state: str) -> Markup:
    return el("span", {"class": f"badge s-{state}"}, state)


def _attempt_row(a: AttemptInfo) -> Markup:
    running = a.state.value == "RUNNING"
    error: Markup | str = ""
    if a.error_type:
        message = mask_text(f"{a.error_type}: {a.error_message}")
        short, _ = shorten(message)
        trace = mask_text(a.error_traceback or message)
        error = el(
            "details", {"class": "error"}, el("summary", None, short), el("pre", None, trace)
        )
    return el(
        "tr",
        {"data-attempt": a.number},
        el("td", None, a.number),
        el("td", None, _badge(a.state.value)),
        el("td", None, stamp(a.started)),
        el("td", None, elapsed(a.started, a.finished, running)),
        el("td", None, took(a.retry_delay) if a.retry_delay is not None else ""),
        el("td", {"class": "note error" if a.error_type else "note"}, error),
    )


def _attempts(task: TaskInfo) -> Markup:
    if not task.attempts:
        return el("p", {"class": "muted"}, "no attempt (the task did not run)")
    head = el(
        "tr",
        None,
        [el("th", None, h) for h in ("#", "State", "Started", "Duration", "Retry in", "Error")],
    )
    return el(
        "table",
        {"class": "attempts"},
        el("thead", None, head),
        el("tbody", None, [_attempt_row(a) for a in task.attempts]),
    )


def _instances(urls: TaskUrls, task: TaskInfo, instances: Sequence[TaskInfo], state: str) -> Markup:
    counts = Counter(t.state.value for t in instances)
    shown = [t for t in instances if not state or t.state.value == state]
    filters = [
        el(
            "a",
            {
                "href": urls.task(task.run_id, task.key, **({"state": s} if s else {})),
                "class": "filter current" if s == state else "filter",
            },
            f"{s.lower()} ({n})" if s else f"all ({len(instances)})",
        )
        for s, n in [("", len(instances)), *sorted(counts.items())]
    ]
    rows = [
        el(
            "tr",
            {"data-key": t.key},
            el("td", None, el("a", {"href": urls.task(t.run_id, t.key)}, t.key)),
            el("td", None, _badge(t.state.value)),
            el("td", None, len(t.attempts)),
            el("td", None, elapsed(t.started, t.finished, t.state.value == "RUNNING")),
            el("td", {"class": "note"}, _note(t)),
        )
        for t in shown[:MAX_INSTANCES]
    ]
    more = len(shown) - len(rows)
    return el(
        "section",
        None,
        el("h2", None, f"Mapped instances ({len(instances)})"),
        el("p", {"class": "state-filter"}, filters),
        el("table", {"class": "instances"}, el("tbody", None, rows))
        if rows
        else el("p", {"class": "muted"}, "no instance in this state"),
        el("p", {"class": "muted"}, f"{more} more not listed; see the JSON API") if more else None,
    )


def _note(task: TaskInfo) -> str:
    last = task.attempts[-1] if task.attempts else None
    if last is not None and last.error_type:
        return shorten(mask_text(f"{last.error_type}: {last.error_message}"))[0]
    return shorten(mask_text(task.reason))[0] if task.reason else ""


def task_page(
    urls: TaskUrls,
    run: RunInfo,
    task: TaskInfo,
    instances: Sequence[TaskInfo] = (),
    state: str = "",
) -> Markup:
    """The page of ``task`` in ``run``; ``instances`` when it was mapped, filtered by ``state``."""
    running = task.state.value == "RUNNING"
    rows: list[tuple[str, object]] = [
        ("Run", el("a", {"href": urls.run(run.run_id)}, f"{run.pipeline} · {run.run_id[:12]}")),
        ("State", _badge(task.state.value)),
        ("Started", stamp(task.started)),
        ("Finished", stamp(task.finished)),
        ("Duration", elapsed(task.started, task.finished, running)),
        (
            "Upstream",
            join(*[el("a", {"href": urls.task(run.run_id, u)}, u) for u in task.upstream])
            if task.upstream
            else "-",
        ),
    ]
    if task.reason:
        rows.append(("Reason", mask_text(task.reason)))
    summary = el(
        "dl", {"class": "summary"}, [join(el("dt", None, k), el("dd", None, v)) for k, v in rows]
    )
    result: Markup | None = None
    if task.result_stored:
        result = el("section", None, el("h2", None, "Result"), el("pre", None, result_text(task)))
    elif task.result_note:
        result = el("p", {"class": "muted"}, f"result {task.result_type}: {task.result_note}")
    return el(
        "main",
        {"id": "task", "data-key": task.key},
        el("h1", None, "Task ", el("code", None, task.key)),
        summary,
        _instances(urls, task, instances, state) if instances else None,
        el("section", None, el("h2", None, "Attempts"), _attempts(task)),
        result,
    )
