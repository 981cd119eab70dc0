"""The DAG as an SVG laid out on the server: layers by longest path, order by barycentre.

Nothing is drawn in the browser and nothing is fetched from elsewhere. Nodes
carry their task key in ``data-key`` and their state as a class, so the page's
stylesheet colours them and a live update only swaps the fragment.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._html import Markup, el, svg

__all__ = ["MAX_NODES", "GraphNode", "graph_svg", "too_many_to_draw"]

MAX_NODES = 300  # past this an SVG is unreadable and heavy; the task table stays
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 170, 36, 40, 12, 8
# Characters that fit a box at the stylesheet's sizes (12px key, 10.5px note) with
# room to spare for wide glyphs; the rest is cut with an ellipsis (the title has all).
LABEL_CHARS, NOTE_CHARS = 22, 27


@dataclass(frozen=True, slots=True)
class GraphNode:
    """One box: a task key, its upstream keys, its state and an optional note (``×12``)."""

    key: str
    upstream: tuple[str, ...]
    state: str = "PENDING"
    note: str = ""
    href: str = ""  # the task's page, when it has one


def _layers(nodes: Mapping[str, GraphNode]) -> dict[str, int]:
    graph = {k: [u for u in n.upstream if u in nodes] for k, n in nodes.items()}
    layer: dict[str, int] = {}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:  # stored data never has one, but a page must not fail
        return dict.fromkeys(nodes, 0)
    for key in order:
        layer[key] = max((layer[u] + 1 for u in graph[key]), default=0)
    return layer


def _ordered(nodes: Mapping[str, GraphNode], layer: Mapping[str, int]) -> list[list[str]]:
    """Keys per layer, reordered by the mean position of their neighbours (a few sweeps)."""
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for key in nodes:
        columns[layer[key]].append(key)
    down: dict[str, list[str]] = {k: [] for k in nodes}
    for key, node in nodes.items():
        for up in node.upstream:
            if up in down:
                down[up].append(key)
    for sweep in range(4):
        pos = {k: i for col in columns for i, k in enumerate(col)}
        neighbours = (lambda k: nodes[k].upstream) if sweep % 2 == 0 else (lambda k: down[k])
        for col in columns:
            col.sort(key=lambda k: _barycentre(neighbours(k), pos, pos[k]))
    return columns


def _barycentre(keys: Sequence[str], pos: Mapping[str, int], default: int) -> float:
    found = [pos[k] for k in keys if k in pos]
    return sum(found) / len(found) if found else float(default)


def _label(key: str, limit: int = LABEL_CHARS) -> str:
    return key if len(key) <= limit else key[: limit - 1] + "…"


def too_many_to_draw(count: int) -> Markup:
    """What stands for a graph of more than ``MAX_NODES`` tasks."""
    return el("p", {"class": "muted"}, f"{count} tasks: too many to draw; see the table")


def graph_svg(nodes: Sequence[GraphNode], *, title: str = "task graph") -> Markup:
    """The graph as an ``<svg>`` element, or a note when it is too big to draw."""
    if not nodes:
        return el("p", {"class": "muted"}, "no tasks")
    if len(nodes) > MAX_NODES:
        return too_many_to_draw(len(nodes))
    by_key = {n.key: n for n in nodes}
    columns = _ordered(by_key, _layers(by_key))
    xy = {
        key: (PAD + c * (NODE_W + GAP_X), PAD + r * (NODE_H + GAP_Y))
        for c, col in enumerate(columns)
        for r, key in enumerate(col)
    }
    width = PAD * 2 + len(columns) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(col) for col in columns) * (NODE_H + GAP_Y) - GAP_Y
    edges = [_edge(xy[u], xy[n.key]) for n in nodes for u in n.upstream if u in xy]
    boxes = [_box(n, *xy[n.key]) for n in nodes]
    return svg(
        "dag",
        title,
        width,
        height,
        el("g", {"class": "edges"}, edges),
        el("g", {"class": "nodes"}, boxes),
    )


def _edge(src: tuple[int, int], dst: tuple[int, int]) -> Markup:
    x1, y1 = src[0] + NODE_W, src[1] + NODE_H // 2
    x2, y2 = dst[0], dst[1] + NODE_H // 2
    mid = (x1 + x2) / 2
    return el("path", {"class": "edge", "d": f"M{x1} {y1} C{mid} {y1} {mid} {y2} {x2} {y2}"})


def _box(node: GraphNode, x: int, y: int) -> Markup:
    # The key on one line and the note ("×200 (194 ok)") on its own below it, each cut
    # to the box: a long mapped label used to run into the next node.
    if node.note:
        texts = [
            el("text", {"class": "key", "x": x + 8, "y": y + 15}, _label(node.key)),
            el("text", {"class": "note", "x": x + 8, "y": y + 29}, _label(node.note, NOTE_CHARS)),
        ]
    else:
        texts = [
            el("text", {"class": "key", "x": x + 8, "y": y + NODE_H // 2 + 4}, _label(node.key))
        ]
    box = el(
        "g",
        {"class": f"node s-{node.state}", "data-key": node.key, "data-state": node.state},
        el("title", None, f"{node.key}: {node.state}" + (f" ({node.note})" if node.note else "")),
        el("rect", {"x": x, "y": y, "width": NODE_W, "height": NODE_H, "rx": 5}),
        texts,
    )
    return el("a", {"href": node.href}, box) if node.href else box
