"""The session object ``POST /apiv2/login`` answers with (Dremio's ``UserLoginSession``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

__all__ = ["session_json"]

_PERMISSIONS = (
    "canUploadProfiles",
    "canDownloadProfiles",
    "canEmailForSupport",
    "canChatForSupport",
    "canViewAllJobs",
    "canCreateUser",
    "canCreateRole",
    "canCreateSource",
    "canUploadFile",
    "canManageNodeActivity",
    "canManageEngines",
    "canManageQueues",
    "canManageEngineRouting",
    "canManageSupportSettings",
)
# Dremio's login tokens live 30 hours.
_TOKEN_LIFETIME_MS = 30 * 3600 * 1000
VERSION = "26.0.0-fake"
_CLUSTER = uuid.UUID("5b0e6c1e-0f4e-4c55-9c1a-6a9b1d2f3e40")


def session_json(username: str, token: str, started_ms: int) -> dict[str, Any]:
    """The login answer for ``username`` holding ``token``; ``started_ms``: the server's start."""
    now = int(time.time() * 1000)
    return {
        "token": token,
        "userName": username,
        "firstName": username,
        "lastName": "",
        "expires": now + _TOKEN_LIFETIME_MS,
        "email": f"{username}@example.com",
        "userId": str(uuid.uuid5(_CLUSTER, username)),
        "admin": True,
        "clusterId": str(_CLUSTER),
        "clusterCreatedAt": started_ms,
        "showUserAndUserProperties": True,
        "version": VERSION,
        "permissions": {name: name != "canChatForSupport" for name in _PERMISSIONS},
        "userCreatedAt": started_ms,
    }
