"""Request paths as the web servers and proxies in front of Dremio resolve them."""

from __future__ import annotations

__all__ = ["remove_dot_segments"]


def remove_dot_segments(raw_path: str) -> str:
    """RFC 3986's dot-segment removal on an encoded path (``%2E%2E`` is not a dot segment)."""
    if "/." not in raw_path:
        return raw_path
    out: list[str] = []
    segments = raw_path.split("/")
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    trailing = "/" if segments[-1] in (".", "..") else ""
    return "/" + "/".join(out) + trailing
