"""Text tables for sweeps and engine reports, and the live progress line."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TextIO

from ..progress import format_table
from ._engine import BASELINES, EngineReport
from ._results import Machine, Step, Sweep
from ._sweep import Progress

__all__ = ["ProgressLine", "engine_table", "machine_line", "sweep_table"]

PHASES = ("submit", "queue", "execute", "fetch")


def machine_line(before: Machine, after: Machine) -> str:
    """CPU count and load average before and after: the context every figure needs."""
    la, lb = before.load_average, after.load_average
    return (
        f"{before.cpu_count} CPUs, load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} before, "
        f"{lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f} after; Python {before.python}"
    )


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f}"


def _phases(sweep: Sweep) -> list[str]:
    seen = {name for step in sweep.steps for name in step.phases}
    return [p for p in PHASES if p in seen] + sorted(seen - set(PHASES))


def _row(step: Step, phases: Sequence[str], knee: Step | None) -> list[object]:
    errors = ", ".join(f"{k} x{v}" for k, v in step.errors.items()) or "-"
    mark = "<- knee" if step is knee else ("ERRORS" if step.flagged else "")
    return [
        step.concurrency,
        f"{step.measured_concurrency:.1f}",
        step.queries,
        f"{step.queries_per_s:.1f}",
        f"{step.rows_per_s:,.0f}",
        f"{step.mb_per_s:.2f}",
        _ms(step.latency.p50),
        _ms(step.latency.p95),
        _ms(step.latency.p99),
        *(_ms(step.phases[p].p95) if p in step.phases else "-" for p in phases),
        errors,
        mark,
    ]


def sweep_table(sweep: Sweep) -> str:
    """One sweep as a table: a row per step, the knee marked, errors named."""
    phases = _phases(sweep)
    headers = [
        "conc",
        "real",
        "queries",
        "q/s",
        "rows/s",
        "MB/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        *(f"{p} p95" for p in phases),
        "errors",
        "",
    ]
    knee = sweep.knee
    table = format_table(headers, [_row(s, phases, knee) for s in sweep.steps])
    span = f"{sweep.duration:g} s" if sweep.duration is not None else f"{sweep.queries} queries"
    head = f"{sweep.label}: {span} per step, {sweep.warmup:g} s warm-up excluded"
    note = (
        "real = measured concurrency (time-averaged calls in flight); knee = the last step "
        "whose q/s grew >= 10% with p95 <= 2x the first step's"
    )
    examples: dict[str, str] = {}
    for step in sweep.steps:
        for name, message in step.error_examples.items():
            examples.setdefault(name, message)
    said = "".join(f"\n  {name}: {message}" for name, message in examples.items())
    errors = f"\nerrors, as first seen:{said}" if said else ""
    return f"{head}\n{table}{errors}\n{note}"


def engine_table(report: EngineReport) -> str:
    """Per-task cost and ratios of every shape and implementation."""
    rows = []
    for row in report.rows:
        ratios = [report.ratio(row, base) for base in BASELINES]
        rows.append(
            [
                row.shape,
                row.tasks,
                row.impl,
                f"{row.median_s * 1e3:.1f}",
                f"{row.per_task_us:.2f}",
                *(
                    "-" if r is None or row.impl == b else f"{r:.2f}x"
                    for r, b in zip(ratios, BASELINES, strict=True)
                ),
            ]
        )
    headers = [
        "shape",
        "tasks",
        "implementation",
        "median ms",
        "us/task",
        "x raw-anyio",
        "x gather",
    ]
    note = (
        f"median of {report.reps} on asyncio; us/task = (median - the 20 ms sleep on the sleep "
        "shape's path) / tasks; engine = a reused Pipeline, engine cold = build + validate + "
        "first run"
    )
    return f"{format_table(headers, rows)}\n{note}"


class ProgressLine:
    """Live progress on stderr: one rewritten line on a terminal, a line per step elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def __call__(self, p: Progress) -> None:
        what = "warm-up" if p.warmup else "measuring"
        rate = p.queries / p.elapsed if p.elapsed > 0 else 0.0
        line = (
            f"{p.label} concurrency {p.concurrency}: {what} {p.elapsed:.1f} s, "
            f"{p.queries} queries ({rate:.1f}/s), {p.errors} errors"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if p.done else ""))
        elif p.done and not p.warmup:
            self.stream.write(line + "\n")
        self.stream.flush()
