"""The web UI: runs, run detail (live DAG, timeline, errors), pipelines, and actions.

``ui_app(store, pipelines=None, auth=None)`` returns an ``aiohttp.web.Application``
to serve on its own (``dremioframe-async ui``) or to mount in an application with
``app.add_subapp("/pipelines/", ui_app(...))``. See :mod:`._security` for what it
protects and how, and :mod:`._api` for the JSON API and the live updates.
"""

from __future__ import annotations

from ._app import run_launcher, run_listener, ui_app
from ._launcher import ActionRefused, PipelineEntry, RunLauncher
from ._live import LiveRuns
from ._security import (
    BasicAuth,
    BearerAuth,
    UnsafeBind,
    auth_from_env,
    check_bind,
    hash_password,
)
from ._serve import serve

__all__ = [
    "ActionRefused",
    "BasicAuth",
    "BearerAuth",
    "LiveRuns",
    "PipelineEntry",
    "RunLauncher",
    "UnsafeBind",
    "auth_from_env",
    "check_bind",
    "hash_password",
    "run_launcher",
    "run_listener",
    "serve",
    "ui_app",
]
