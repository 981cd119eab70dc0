"""A tiny HTML builder where escaping is the default, not a habit.

Every ``str`` that reaches a page goes through :func:`html.escape`; only
:class:`Markup` (text this module built) passes through as it is. Pages are
composed with :func:`el`, so a task named ``<script>`` or an error message
written to look like HTML is shown as text wherever it appears.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

__all__ = ["Markup", "el", "header_row", "join", "svg"]


class Markup(str):
    """Text that is already HTML (built here); everything else gets escaped."""

    __slots__ = ()


def _render(child: object) -> str:
    if child is None or child is False:
        return ""
    if isinstance(child, Markup):
        return child
    if isinstance(child, str):
        return html.escape(child, quote=False)
    if isinstance(child, int | float):
        return html.escape(str(child), quote=False)
    if isinstance(child, Iterable):
        return "".join(_render(c) for c in child)
    raise TypeError(f"cannot render {type(child).__name__} into HTML")


def _attrs(attrs: Mapping[str, object] | None) -> str:
    if not attrs:
        return ""
    parts = []
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")  # class_ -> class, data_key -> data-key
        if value is True:
            parts.append(f" {name}")
        else:
            parts.append(f' {name}="{html.escape(str(value), quote=True)}"')
    return "".join(parts)


_VOID = frozenset({"meta", "link", "input", "br", "hr", "img"})


def el(tag: str, attrs: Mapping[str, object] | None = None, *children: object) -> Markup:
    """``<tag attrs>children</tag>``, every attribute value and text child escaped."""
    if tag in _VOID:
        return Markup(f"<{tag}{_attrs(attrs)}>")
    return Markup(f"<{tag}{_attrs(attrs)}>{_render(children)}</{tag}>")


def join(*children: object) -> Markup:
    """Several children as one piece of markup (each escaped unless Markup)."""
    return Markup(_render(children))


def header_row(*names: str) -> Markup:
    """A table's header row: one ``<th>`` per name."""
    return el("tr", None, [el("th", None, n) for n in names])


def svg(cls: str, label: str, width: int, height: int, *children: object) -> Markup:
    """An ``<svg>`` drawing of ``width`` x ``height`` (scaled down by the stylesheet),
    read out as an image named ``label``."""
    attrs = {
        "class": cls,
        "role": "img",
        "aria-label": label,
        "viewBox": f"0 0 {width} {height}",
        "width": width,
        "height": height,
        "xmlns": "http://www.w3.org/2000/svg",
    }
    return el("svg", attrs, *children)
