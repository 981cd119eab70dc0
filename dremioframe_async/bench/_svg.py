"""Charts as standalone SVG text, written directly (no plotting library, no browser).

Two charts are all the benchmarks need: throughput and p95 latency against
concurrency (two y axes), and horizontal bars of per-task cost. Each is a few
dozen elements, so the markup is built here; every label is XML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape, quoteattr

from ._results import Step, Sweep

__all__ = ["bar_chart", "sweep_chart"]

_W, _H = 760, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 80, 56, 70
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
_FONT = 'font-family="sans-serif" font-size="12"'


def sweep_chart(
    sweeps: Sequence[Sweep], title: str = "Throughput and p95 latency", subtitle: str = ""
) -> str:
    """Throughput (queries/s, solid, left axis) and p95 latency (ms, dashed, right axis)
    against concurrency, one colour per sweep; the knee is ringed, steps with errors
    are marked with a red cross.
    """
    levels = sorted({s.concurrency for sw in sweeps for s in sw.steps}) or [1]
    top_qps = _nice_max(max((s.queries_per_s for sw in sweeps for s in sw.steps), default=1.0))
    top_ms = _nice_max(max((_ms(s.latency.p95) for sw in sweeps for s in sw.steps), default=1.0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(level: int) -> float:
        if len(levels) == 1:
            return _LEFT + plot_w / 2
        return _LEFT + levels.index(level) * plot_w / (len(levels) - 1)

    def y(value: float, top: float) -> float:
        return _TOP + plot_h * (1 - (value / top if top else 0.0))

    out = _open(title)
    if subtitle:
        out.append(_text(_W / 2, 40, subtitle, anchor="middle", size=11))
    out += _axes(plot_w, plot_h, top_qps, top_ms, y)
    for level in levels:
        out.append(_text(x(level), _TOP + plot_h + 18, str(level), anchor="middle"))
    out.append(_text(_LEFT + plot_w / 2, _H - 28, "concurrency", anchor="middle"))
    for i, sw in enumerate(sweeps):
        colour = _COLOURS[i % len(_COLOURS)]
        qps = [(x(s.concurrency), y(s.queries_per_s, top_qps)) for s in sw.steps]
        p95 = [(x(s.concurrency), y(_ms(s.latency.p95), top_ms)) for s in sw.steps if _ok(s)]
        out += _series(sw.label, "throughput", qps, colour, dashed=False)
        out += _series(sw.label, "p95", p95, colour, dashed=True)
        knee = sw.knee
        if knee is not None:
            kx, ky = x(knee.concurrency), y(knee.queries_per_s, top_qps)
            out.append(
                f'<circle class="knee" cx="{kx:.1f}" cy="{ky:.1f}" r="9" fill="none" '
                f'stroke="{colour}" stroke-width="2"><title>knee</title></circle>'
            )
        for s in sw.steps:
            if s.flagged:
                out.append(_cross(x(s.concurrency), y(s.queries_per_s, top_qps), s.error_count))
        out += _legend(i, sw.label, colour)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def bar_chart(
    groups: Sequence[tuple[str, Sequence[tuple[str, float]]]], unit: str, title: str
) -> str:
    """Horizontal bars, grouped (e.g. per shape, one bar per implementation)."""
    rows = sum(len(bars) + 1 for _, bars in groups)
    height = _TOP + rows * 20 + 40
    top = _nice_max(max((v for _, bars in groups for _, v in bars), default=1.0))
    left, width = 230, _W - 230 - 40
    out = _open(title, height)
    row = 0
    for gi, (group, bars) in enumerate(groups):
        out.append(_text(10, _TOP + row * 20 + 14, group, weight="bold"))
        row += 1
        for label, value in bars:
            y0 = _TOP + row * 20
            w = max(0.0, width * value / top) if top else 0.0
            colour = _COLOURS[gi % len(_COLOURS)]
            out.append(
                f'<g class="bar" data-label={quoteattr(f"{group} {label}")}>'
                f'<rect x="{left}" y="{y0 + 3}" width="{w:.1f}" height="14" fill="{colour}"/>'
                f"{_text(left - 6, y0 + 14, label, anchor='end')}"
                f"{_text(left + w + 4, y0 + 14, f'{value:.3g} {unit}')}</g>"
            )
            row += 1
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _open(title: str, height: int = _H) -> list[str]:
    return [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" {_FONT}>',
        f"<title>{escape(title)}</title>",
        f'<rect width="{_W}" height="{height}" fill="white"/>',
        _text(_W / 2, 24, title, anchor="middle", size=15),
    ]


def _axes(
    plot_w: float, plot_h: float, top_qps: float, top_ms: float, y: Callable[[float, float], float]
) -> list[str]:
    right = _LEFT + plot_w
    out = [
        f'<g class="axes" stroke="#444" fill="none">'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}"/>'
        f'<line x1="{right}" y1="{_TOP}" x2="{right}" y2="{_TOP + plot_h}"/>'
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{right}" y2="{_TOP + plot_h}"/></g>'
    ]
    for k in range(5):
        frac = k / 4
        ty = y(frac * top_qps, top_qps)
        out.append(f'<line x1="{_LEFT}" y1="{ty:.1f}" x2="{right}" y2="{ty:.1f}" stroke="#ddd"/>')
        out.append(_text(_LEFT - 6, ty + 4, _fmt(frac * top_qps), anchor="end"))
        out.append(_text(right + 6, ty + 4, _fmt(frac * top_ms)))
    out.append(_text(16, _TOP + plot_h / 2, "queries/s (solid)", anchor="middle", rotate=True))
    out.append(
        _text(_W - 16, _TOP + plot_h / 2, "p95 latency ms (dashed)", anchor="middle", rotate=True)
    )
    return out


def _series(
    label: str, kind: str, points: list[tuple[float, float]], colour: str, *, dashed: bool
) -> list[str]:
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    marks = "".join(
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"/>' for px, py in points
    )
    return [
        f'<g class="series {kind}" data-series={quoteattr(f"{label} {kind}")}>'
        f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        f"{marks}</g>"
    ]


def _legend(i: int, label: str, colour: str) -> list[str]:
    lx, ly = _LEFT + 10 + i * 260, _H - 10
    return [
        f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{colour}" '
        'stroke-width="2"/>',
        _text(lx + 30, ly, f"{label}: q/s, p95 (dashed); ring = knee"),
    ]


def _cross(cx: float, cy: float, errors: int) -> str:
    return (
        f'<g class="errors" stroke="#c00" stroke-width="2">'
        f'<line x1="{cx - 6:.1f}" y1="{cy - 6:.1f}" x2="{cx + 6:.1f}" y2="{cy + 6:.1f}"/>'
        f'<line x1="{cx - 6:.1f}" y1="{cy + 6:.1f}" x2="{cx + 6:.1f}" y2="{cy - 6:.1f}"/>'
        f"<title>{errors} errors</title></g>"
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    size: int = 12,
    weight: str = "normal",
    rotate: bool = False,
) -> str:
    turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'font-weight="{weight}"{turn}>{escape(text)}</text>'
    )


def _ms(seconds: float) -> float:
    return 0.0 if math.isnan(seconds) else seconds * 1e3


def _ok(step: Step) -> bool:
    return step.queries > 0  # a step where every call failed has no latency to draw


def _nice_max(value: float) -> float:
    """A round axis top at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if not value > 0 or math.isinf(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"
