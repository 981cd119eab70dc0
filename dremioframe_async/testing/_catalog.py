"""FakeDremio's catalog: spaces, folders and datasets derived from registered table paths."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from ._json import dremio_type
from ._sql import SqlEngine

__all__ = ["CatalogView"]

_NAMESPACE = uuid.UUID("6f1c1d1e-2b8e-4f0a-9a57-3d5c0f7e9b10")


def _entity_id(parts: tuple[str, ...]) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


class CatalogView:
    """Read-only catalog entities computed from the engine's registered paths."""

    def __init__(self, engine: SqlEngine) -> None:
        self._engine = engine

    def root(self) -> list[dict[str, Any]]:
        """Top-level containers (one space per first path part)."""
        spaces: dict[str, tuple[str, ...]] = {}
        for parts in self._engine.paths:
            if len(parts) > 1:
                spaces.setdefault(parts[0].lower(), (parts[0],))
        return [
            {"id": _entity_id(p), "path": list(p), "type": "CONTAINER", "containerType": "SPACE"}
            for p in spaces.values()
        ]

    def by_path(self, raw_path: str) -> dict[str, Any] | None:
        """The entity at a ``/``-separated, percent-encoded path, or None."""
        parts = tuple(unquote(p) for p in raw_path.strip("/").split("/") if p)
        if not parts:
            return None
        table = self._engine.table(parts)
        if table is not None:
            return {
                "entityType": "dataset",
                "id": _entity_id(parts),
                "path": list(parts),
                "type": "PHYSICAL_DATASET",
                "fields": [{"name": f.name, "type": dremio_type(f.type)} for f in table.schema],
            }
        children = self._children(parts)
        if not children:
            return None
        return {
            "entityType": "space" if len(parts) == 1 else "folder",
            "id": _entity_id(parts),
            "path": list(parts),
            "children": children,
        }

    def _children(self, parts: tuple[str, ...]) -> list[dict[str, Any]]:
        wanted = tuple(p.lower() for p in parts)
        seen: dict[str, dict[str, Any]] = {}
        for path in self._engine.paths:
            if len(path) <= len(parts) or tuple(p.lower() for p in path[: len(parts)]) != wanted:
                continue
            child = (*parts, path[len(parts)])
            if len(path) == len(child):
                entry = {"type": "DATASET", "datasetType": "PROMOTED"}
            else:
                entry = {"type": "CONTAINER", "containerType": "FOLDER"}
            seen.setdefault(
                child[-1].lower(), {"id": _entity_id(child), "path": list(child), **entry}
            )
        return list(seen.values())
