"""Where the client connects and how it authenticates, resolved once from arguments and env."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._errors import DremioConfigError

__all__ = ["CLOUD_URL", "DremioConfig", "Secret", "resolve_config"]

CLOUD_URL = "https://api.dremio.cloud"


@dataclass(frozen=True, slots=True)
class Secret:
    """A token or password: its repr and str never show the value."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class DremioConfig:
    """A resolved configuration: ``root`` is the server, ``api`` the REST prefix below it."""

    root: str
    api: str
    auth: Literal["pat", "password"]
    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    project_id: str | None = None

    @property
    def cloud(self) -> bool:
        """Whether this is Dremio Cloud (project-scoped paths, PAT only)."""
        return self.project_id is not None


def resolve_config(
    url: str | None,
    token: str | None,
    username: str | None,
    password: str | None,
    project_id: str | None,
    env: Mapping[str, str] | None = None,
) -> DremioConfig:
    """Merge arguments with ``DREMIO_*`` environment variables; arguments win.

    :raises DremioConfigError: no URL (Software), no credentials, or a password on Cloud.
    """
    env = os.environ if env is None else env
    project_id = project_id or env.get("DREMIO_PROJECT_ID") or None
    url = url or env.get("DREMIO_URL") or (CLOUD_URL if project_id else None)
    if not url:
        raise DremioConfigError("no URL: pass url= or set DREMIO_URL")
    if token is None and username is None:
        token = env.get("DREMIO_PAT") or None
        username = env.get("DREMIO_USERNAME") or None
    if username is not None and password is None:
        password = env.get("DREMIO_PASSWORD") or None
    root = url.rstrip("/")
    api = f"/v0/projects/{project_id}" if project_id else "/api/v3"
    if token:
        return DremioConfig(root, api, "pat", token=Secret(token), project_id=project_id)
    if project_id:
        raise DremioConfigError("Dremio Cloud needs a personal access token (token= or DREMIO_PAT)")
    if username and password:
        return DremioConfig(root, api, "password", username=username, password=Secret(password))
    raise DremioConfigError(
        "no credentials: pass token= (or DREMIO_PAT), or username= and password= "
        "(or DREMIO_USERNAME and DREMIO_PASSWORD)"
    )
