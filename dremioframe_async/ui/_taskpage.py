"""Parts of a task's page besides its attempts and log lines (``_logs.py``): its summary,
its stored result, and for a mapped task its instances, filtered by state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from .._masking import mask_text
from ..store import RunInfo, TaskInfo
from ._html import Markup, el, join
from ._model import result_text, shorten, shown_state
from ._pages import summary_list, task_badge
from ._times import elapsed, stamp

__all__ = ["TaskUrls", "task_instances", "task_result", "task_summary"]

MAX_INSTANCES = 500  # listed on one page; the JSON API has them all


class TaskUrls(Protocol):
    def run(self, run_id: str) -> str: ...
    def task(self, run_id: str, key: str, **query: str) -> str: ...


def _instances(urls: TaskUrls, task: TaskInfo, instances: Sequence[TaskInfo], state: str) -> Markup:
    counts = Counter(shown_state(t) for t in instances)
    shown = [t for t in instances if not state or shown_state(t) == state]
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
            el("td", None, task_badge(t)),
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


def task_summary(urls: TaskUrls, run: RunInfo, task: TaskInfo) -> Markup:
    """State, times (ticking while it runs), upstream tasks (linked) and reason."""
    running = task.state.value == "RUNNING"
    rows: list[tuple[str, object]] = [
        ("Run", el("a", {"href": urls.run(run.run_id)}, f"{run.pipeline} · {run.run_id[:12]}")),
        ("Started", stamp(task.started)),
        ("Finished", stamp(task.finished)),
        ("Duration", elapsed(task.started, task.finished, running)),
        (
            "Upstream",
            join(*[el("a", {"href": urls.task(run.run_id, u)}, u, " ") for u in task.upstream])
            if task.upstream
            else "-",
        ),
    ]
    if task.reason:
        rows.append(("Reason", mask_text(task.reason)))
    return summary_list(rows)


def task_instances(
    urls: TaskUrls, task: TaskInfo, instances: Sequence[TaskInfo], state: str = ""
) -> Markup | None:
    """A mapped task's instances, filtered by ``state`` (None for a task not mapped)."""
    return _instances(urls, task, instances, state) if instances else None


def task_result(task: TaskInfo) -> Markup | None:
    """The stored result (masked), or why none was stored."""
    if task.result_stored:
        return el("section", None, el("h2", None, "Result"), el("pre", None, result_text(task)))
    if task.result_note:
        return el("p", {"class": "muted"}, f"result {task.result_type}: {task.result_note}")
    return None
