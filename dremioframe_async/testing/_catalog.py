"""FakeDremio's catalog API: entities built from the engine's datasets and folders.

Shapes follow Dremio's catalog reference: every entity has ``id``, ``path``,
``tag`` (a version that changes when the entity does) and ``createdAt``; a space
has its ``name``; containers list ``children``; datasets are
``PHYSICAL_DATASET`` (tables) or ``VIRTUAL_DATASET`` (views).
The root also lists the user's home space ``@<username>``, as Dremio's does, which
some clients read to learn the username a PAT belongs to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import uuid
from typing import Any
from urllib.parse import unquote

from ._json import dremio_type
from ._sql import SqlEngine

__all__ = ["CatalogView"]

_NAMESPACE = uuid.UUID("6f1c1d1e-2b8e-4f0a-9a57-3d5c0f7e9b10")

Entity = dict[str, Any]


def _entity_id(parts: tuple[str, ...]) -> str:
    # Dremio's identifiers are case-insensitive: one entity, one id, whatever the spelling.
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(p.lower() for p in parts)))


def _tag(*content: object) -> str:
    digest = hashlib.sha256(repr(content).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16]))


class CatalogView:
    """Catalog entities computed from the engine's datasets and folders."""

    def __init__(self, engine: SqlEngine, username: str) -> None:
        self._engine = engine
        self.home = f"@{username}"
        self._created: dict[str, str] = {}
        self._lock = threading.Lock()

    def _created_at(self, entity_id: str) -> str:
        with self._lock:
            if entity_id not in self._created:
                now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
                self._created[entity_id] = now.replace("+00:00", "Z")
            return self._created[entity_id]

    def _base(self, parts: tuple[str, ...], *content: object) -> Entity:
        entity_id = _entity_id(parts)
        return {
            "id": entity_id,
            "path": list(parts),
            "tag": _tag(parts, *content),
            "createdAt": self._created_at(entity_id),
        }

    def _containers(self) -> dict[tuple[str, ...], tuple[str, ...]]:
        """Every space and folder, lower-cased path -> path as first spelled."""
        found: dict[tuple[str, ...], tuple[str, ...]] = {}
        for parts in [*self._engine.folders, *self._engine.paths]:
            last = len(parts) if parts in self._engine.folders else len(parts) - 1
            for i in range(1, last + 1):
                found.setdefault(tuple(p.lower() for p in parts[:i]), parts[:i])
        return found

    def root(self) -> list[Entity]:
        """Top-level containers: the home space, then one space per first path part."""
        home = {**self._base((self.home,)), "type": "CONTAINER", "containerType": "HOME"}
        spaces = [p for p in self._containers().values() if len(p) == 1]
        entries = [{**self._base(p), "type": "CONTAINER", "containerType": "SPACE"} for p in spaces]
        return [home, *entries]

    def by_path(self, raw_path: str) -> Entity | None:
        """The entity at a ``/``-separated, percent-encoded path, or None."""
        parts = tuple(unquote(p) for p in raw_path.strip("/").split("/") if p)
        return self.entity(parts) if parts else None

    def by_id(self, entity_id: str) -> Entity | None:
        """The entity with ``id``, or None."""
        candidates = [(self.home,), *self._containers().values(), *self._engine.paths]
        parts = next((p for p in candidates if _entity_id(p) == entity_id), None)
        return self.entity(parts) if parts is not None else None

    def entity(self, parts: tuple[str, ...]) -> Entity | None:
        """The entity at ``parts`` (case-insensitive), or None."""
        dataset = self._engine.dataset(parts)
        if dataset is not None:
            return self._dataset(parts, *dataset)
        if tuple(p.lower() for p in parts) == (self.home.lower(),):
            return {**self._base(parts), "entityType": "home", "name": self.home, "children": []}
        spelled = self._containers().get(tuple(p.lower() for p in parts))
        if spelled is None:
            return None
        children = self._children(spelled)
        entity = {**self._base(spelled, [c["id"] for c in children]), "children": children}
        if len(spelled) == 1:
            return {"entityType": "space", "name": spelled[0], **entity}
        return {"entityType": "folder", **entity}

    def _dataset(self, parts: tuple[str, ...], kind: str, schema: Any) -> Entity:
        fields = [{"name": f.name, "type": dremio_type(f.type)} for f in schema]
        entity: Entity = {"entityType": "dataset", **self._base(parts, fields)}
        entity["type"] = "VIRTUAL_DATASET" if kind == "VIEW" else "PHYSICAL_DATASET"
        return {**entity, "fields": fields}

    def _children(self, parts: tuple[str, ...]) -> list[Entity]:
        wanted = tuple(p.lower() for p in parts)
        seen: dict[str, Entity] = {}
        for path in [*self._containers().values(), *self._engine.paths]:
            if len(path) != len(parts) + 1 or tuple(p.lower() for p in path[:-1]) != wanted:
                continue
            dataset = self._engine.dataset(path)
            if dataset is None:
                entry = {"type": "CONTAINER", "containerType": "FOLDER"}
            else:
                kind = "VIRTUAL" if dataset[0] == "VIEW" else "PROMOTED"
                entry = {"type": "DATASET", "datasetType": kind}
            seen.setdefault(path[-1].lower(), {**self._base(path), **entry})
        return list(seen.values())

    def create(self, body: dict[str, Any]) -> tuple[int, Entity | None]:
        """``POST /catalog`` of a space (``name``) or folder (``path``): the HTTP status
        (200, 400 not understood, 409 already there) and the new entity."""
        kind = body.get("entityType")
        if kind == "space" and isinstance(body.get("name"), str):
            parts: tuple[str, ...] = (body["name"],)
        elif kind == "folder" and isinstance(body.get("path"), list) and body["path"]:
            parts = tuple(str(p) for p in body["path"])
        else:
            return 400, None
        if self._engine.is_container(parts) or self._engine.dataset(parts) is not None:
            return 409, None
        self._engine.add_folder(parts)
        return 200, self.entity(parts)

    def delete(self, entity_id: str) -> bool:
        """``DELETE /catalog/{id}``: a dataset or an empty folder; False if not found."""
        entity = self.by_id(entity_id)
        if entity is None or entity.get("children"):
            return False
        parts = tuple(entity["path"])
        return self._engine.drop(parts) or self._engine.remove_folder(parts)
