"""The attempts of a run as a Gantt chart: one row per task instance, one bar per attempt."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..store import RunInfo, TaskInfo
from ._html import Markup, el

__all__ = ["MAX_ROWS", "timeline_svg"]

MAX_ROWS = 200
LABEL_W, CHART_W, ROW_H, BAR_H, AXIS_H = 200, 700, 18, 12, 20
LABEL_CHARS = 28


def _span(run: RunInfo, tasks: Sequence[TaskInfo]) -> tuple[float, float]:
    ends = [a.finished or a.started or 0.0 for t in tasks for a in t.attempts]
    end = run.finished if run.finished is not None else max([time.time(), *ends])
    return run.started, max(end, run.started + 0.001)


def _seconds(s: float) -> str:
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.1f}m"


def timeline_svg(run: RunInfo, tasks: Sequence[TaskInfo]) -> Markup:
    """The chart as an ``<svg>``; tasks that never started have no row."""
    rows = [t for t in tasks if any(a.started is not None for a in t.attempts)]
    if not rows:
        return el("p", {"class": "muted"}, "no attempt has started yet")
    hidden = max(0, len(rows) - MAX_ROWS)
    rows = rows[:MAX_ROWS]
    t0, t1 = _span(run, rows)
    scale = CHART_W / (t1 - t0)
    now = time.time()
    body = []
    for i, task in enumerate(rows):
        y = AXIS_H + i * ROW_H
        label = task.key if len(task.key) <= LABEL_CHARS else task.key[: LABEL_CHARS - 1] + "…"
        body.append(el("text", {"class": "tl-label", "x": 4, "y": y + BAR_H}, label))
        for a in task.attempts:
            if a.started is None:
                continue
            end = a.finished if a.finished is not None else min(now, t1)
            x = LABEL_W + (a.started - t0) * scale
            w = max(2.0, (end - a.started) * scale)
            tip = f"{task.key} attempt {a.number}: {a.state.value}, {_seconds(end - a.started)}"
            body.append(
                el(
                    "rect",
                    {
                        "class": f"bar s-{a.state.value}",
                        "x": f"{x:.1f}",
                        "y": y + 2,
                        "width": f"{w:.1f}",
                        "height": BAR_H,
                    },
                    el("title", None, tip),
                )
            )
    height = AXIS_H + len(rows) * ROW_H + 4
    svg = el(
        "svg",
        {
            "class": "timeline",
            "role": "img",
            "aria-label": "attempts timeline",
            "viewBox": f"0 0 {LABEL_W + CHART_W + 10} {height}",
            "width": LABEL_W + CHART_W + 10,
            "height": height,
            "xmlns": "http://www.w3.org/2000/svg",
        },
        _axis(t1 - t0, height),
        body,
    )
    note = el("p", {"class": "muted"}, f"{hidden} more rows not drawn") if hidden else None
    return Markup(svg + (note or ""))


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
