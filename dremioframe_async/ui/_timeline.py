"""The attempts of a run as a Gantt chart: one row per task instance, one bar per attempt."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..store import RunInfo, TaskInfo
from ._html import Markup, el, svg
from ._model import TaskGroup, group_tasks, shown_attempt_state, shown_state

__all__ = ["MAX_ROWS", "timeline_svg"]

MAX_ROWS = 200
MAX_INSTANCE_ROWS = 50  # per mapped task: the table lists them all, the chart shows a sample
LABEL_W, CHART_W, ROW_H, BAR_H, AXIS_H = 200, 700, 18, 12, 20
LABEL_CHARS = 28


def _span(run: RunInfo, tasks: Sequence[TaskInfo]) -> tuple[float, float]:
    ends = [a.finished or a.started or 0.0 for t in tasks for a in t.attempts]
    end = run.finished if run.finished is not None else max([time.time(), *ends])
    return run.started, max(end, run.started + 0.001)


def _seconds(s: float) -> str:
    if s < 10:
        return f"{s:.2f}s"
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.1f}m"


Row = tuple[TaskInfo, bool] | tuple[str, int]  # a task (True: an instance), or "n more"


def _rows(groups: Sequence[TaskGroup]) -> tuple[list[Row], int]:
    """Tasks in plan order, each mapped task followed by its instances, and how many
    top-level tasks did not fit.

    Every top-level task that started gets a row (up to :data:`MAX_ROWS` of them);
    the rows left are shared by the mapped tasks' instances, and the instances that
    do not fit collapse into one "n more" row under their task. A fan-out of 200 no
    longer pushes the tasks after it off the chart.
    """
    top = [g for g in groups if g.task.started is not None][:MAX_ROWS]
    hidden_top = sum(1 for g in groups if g.task.started is not None) - len(top)
    started = [[t for t in g.instances if t.started is not None] for g in top]
    mapped = sum(1 for s in started if s)
    budget = max(0, MAX_ROWS - len(top) - mapped)  # a "more" row each, at most
    share = min(MAX_INSTANCE_ROWS, budget // mapped) if mapped else 0
    rows: list[Row] = []
    for group, instances in zip(top, started, strict=True):
        rows.append((group.task, False))
        shown = instances if len(instances) <= share + 1 else instances[:share]
        rows.extend((t, True) for t in shown)
        if len(shown) < len(instances):
            rows.append((group.task.key, len(instances) - len(shown)))
    return rows, hidden_top


def _bar(cls: str, x: float, y: int, w: float, h: int, tip: str) -> Markup:
    attrs = {"class": cls, "x": f"{x:.1f}", "y": y, "width": f"{w:.1f}", "height": h}
    return el("rect", attrs, el("title", None, tip))


def timeline_svg(
    run: RunInfo, tasks: Sequence[TaskInfo], groups: Sequence[TaskGroup] | None = None
) -> Markup:
    """The chart as an ``<svg>``; tasks that never started have no row.

    A mapped task's row spans its instances (a thin bar); each instance follows it.
    """
    rows, hidden = _rows(groups if groups is not None else group_tasks(tasks))
    if not rows:
        return el("p", {"class": "muted"}, "no attempt has started yet")
    t0, t1 = _span(run, [r[0] for r in rows if isinstance(r[0], TaskInfo)])
    scale = CHART_W / (t1 - t0)
    now = min(time.time(), t1)
    body = []
    for i, row in enumerate(rows):
        y = AXIS_H + i * ROW_H
        if isinstance(row[0], str):
            more = f"… {row[1]} more instances of {row[0]} (see the table)"
            body.append(el("text", {"class": "tl-more", "x": 16, "y": y + BAR_H}, more))
            continue
        task, instance = row
        name = task.key if len(task.key) <= LABEL_CHARS else task.key[: LABEL_CHARS - 1] + "…"
        x_label = 16 if instance else 4
        body.append(el("text", {"class": "tl-label", "x": x_label, "y": y + BAR_H}, name))
        for a in task.attempts:
            if a.started is None:
                continue
            end = a.finished if a.finished is not None else now
            state = shown_attempt_state(task, a)  # INTERRUPTED apart from CANCELLED
            tip = f"{task.key} attempt {a.number}: {state}, {_seconds(end - a.started)}"
            x, w = LABEL_W + (a.started - t0) * scale, max(2.0, (end - a.started) * scale)
            body.append(_bar(f"bar s-{state}", x, y + 2, w, BAR_H, tip))
        if not task.attempts and task.started is not None:  # a mapped task: its span
            end = task.finished if task.finished is not None else now
            state = shown_state(task)
            tip = f"{task.key}: {state}, {_seconds(end - task.started)}"
            x, w = LABEL_W + (task.started - t0) * scale, max(2.0, (end - task.started) * scale)
            body.append(_bar(f"bar span s-{state}", x, y + 5, w, BAR_H - 6, tip))
    height = AXIS_H + len(rows) * ROW_H + 4
    width = LABEL_W + CHART_W + 10
    chart = svg("timeline", "attempts timeline", width, height, _axis(t1 - t0, height), body)
    note = el("p", {"class": "muted"}, f"{hidden} more tasks not drawn") if hidden else None
    return Markup(chart + (note or ""))


def _axis(span: float, height: int) -> list[Markup]:
    marks = []
    for i in range(6):
        x = LABEL_W + CHART_W * i / 5
        marks.append(
            el("line", {"class": "tick", "x1": x, "x2": x, "y1": AXIS_H - 4, "y2": height})
        )
        anchor = "end" if i == 5 else "start"
        text = f"+{_seconds(span * i / 5)}"
        marks.append(
            el("text", {"class": "tick-label", "x": x, "y": 12, "text-anchor": anchor}, text)
        )
    return marks
