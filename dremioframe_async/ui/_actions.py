"""The UI's actions: trigger, cancel, resume, and pause a schedule.

Each action is declared once (:class:`Action`): how the JSON API and the HTML
form read their input, what the launcher does, and how each answers. The API
answers JSON (202, or the refusal's status); a form redirects (post/redirect/get)
to the page that shows the outcome, or shows the refusal. Both pass through the
UI's middleware like every POST: auth, then the Origin and CSRF checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from .._masking import mask_text
from .._telemetry import continuing
from . import _forms as forms
from ._launcher import ActionRefused
from ._params import PREFIX, read_fields, standard_json
from ._respond import html_page, json_error, json_response
from ._state import UI_KEY, RequestUrls, UIState

__all__ = ["add_action_routes", "read_params"]

MAX_ECHO = 4000  # characters of a refused form's text carried back to it


@dataclass(frozen=True, slots=True)
class Action:
    """One action. ``api_input`` and ``form_input`` read a request (raising ValueError
    for a bad one), ``act`` does it, ``api_answer`` and ``form_target`` say what then."""

    act: Callable[[UIState, web.Request, Any], Awaitable[Any]]
    api_input: Callable[[web.Request], Awaitable[Any]]
    form_input: Callable[[web.Request], Awaitable[Any]]
    api_answer: Callable[[web.Request, Any, Any], web.Response]
    form_target: Callable[[web.Request, Any, Any], str]

    async def _do(self, request: web.Request, given: Any) -> Any:
        return await self.act(request.app[UI_KEY], request, given)

    async def api(self, request: web.Request) -> web.Response:
        try:
            given = await self.api_input(request)
        except ValueError as exc:
            return json_error(str(exc), 400)
        try:
            done = await self._do(request, given)
        except ActionRefused as exc:
            return json_error(str(exc), exc.status)
        return self.api_answer(request, given, done)

    async def form(self, request: web.Request) -> web.Response:
        given = await self.form_input(request)
        try:
            done = await self._do(request, given)
        except ActionRefused as exc:
            body = forms.message_page("Refused", str(exc))
            return html_page(request, "Refused", body, exc.status)
        raise web.HTTPSeeOther(self.form_target(request, given, done))


def _json_object(text: str | None, what: str, example: str) -> dict[str, Any]:
    """JSON text holding an object; none at all is an empty one.

    :raises ValueError: for anything else, naming ``what`` and showing ``example``.
    """
    if text is None or not text.strip():
        return {}
    try:
        value = standard_json(text)
    except ValueError as exc:
        raise ValueError(f"{what} must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, e.g. {example}")
    return value


def read_params(text: str | None) -> dict[str, Any]:
    """Run parameters from JSON text: an object, or nothing.

    :raises ValueError: when the text is not a JSON object.
    """
    return _json_object(text, "params", '{"day": "2026-12-01"}')


async def _json_body(request: web.Request) -> dict[str, Any]:
    return _json_object(await request.text(), "the body", '{"params": {...}}')


async def _nothing(request: web.Request) -> None:
    return None


def _run_id(request: web.Request) -> str:
    return request.match_info["run_id"]


def _name(request: web.Request) -> str:
    return request.match_info["name"]


def _started(request: web.Request, given: Any, run_id: str) -> web.Response:
    return json_response({"run_id": run_id, "url": RequestUrls(request).run(run_id)}, 202)


def _to_run(request: web.Request, given: Any, run_id: str) -> str:
    return RequestUrls(request).run(run_id)


# ---------------------------------------------------------------- trigger


async def _trigger(ui: UIState, request: web.Request, params: dict[str, Any]) -> str:
    # A caller's traceparent goes with the queued run: its span is the caller's child.
    with continuing(request.headers.get("traceparent")):
        return await ui.launcher.trigger(_name(request), params)


async def _trigger_api_input(request: web.Request) -> dict[str, Any]:
    params = (await _json_body(request)).get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("params must be a JSON object")
    return params


async def _trigger_form_input(request: web.Request) -> dict[str, Any]:
    """The form's fields, then its JSON box (which wins); a bad value sends the form
    back (post/redirect/get) with what was typed and the reason."""
    form = await request.post()
    texts = [(k, v) for k, v in form.items() if isinstance(v, str)]
    raw = form.get("params")
    try:
        return {**read_fields(texts), **read_params(raw if isinstance(raw, str) else None)}
    except ValueError as exc:
        name = _name(request)
        query = {
            "refused": name,
            # The URL lands in browser history and access logs: no secret rides on it.
            "error": mask_text(str(exc)),
            "params": mask_text(raw[:MAX_ECHO]) if isinstance(raw, str) else "",
            **{k: v[:MAX_ECHO] for k, v in texts if k.startswith(PREFIX) and "secret" not in k},
        }
        target = URL(RequestUrls(request).pipelines()).with_query(query)
        raise web.HTTPSeeOther(f"{target}#pipeline-{name}") from None


TRIGGER = Action(_trigger, _trigger_api_input, _trigger_form_input, _started, _to_run)


# ---------------------------------------------------------------- cancel and resume


async def _cancel(ui: UIState, request: web.Request, given: None) -> str:
    await ui.launcher.cancel(_run_id(request))
    return _run_id(request)


def _accepted(request: web.Request, given: Any, done: Any) -> web.Response:
    return json_response({"ok": True}, 202)


async def _resume(ui: UIState, request: web.Request, given: None) -> str:
    return await ui.launcher.resume(_run_id(request))


CANCEL = Action(_cancel, _nothing, _nothing, _accepted, _to_run)
RESUME = Action(_resume, _nothing, _nothing, _started, _to_run)


# ---------------------------------------------------------------- pause


async def _pause(ui: UIState, request: web.Request, paused: bool) -> bool:
    return await ui.launcher.pause(_name(request), paused)


async def _pause_api_input(request: web.Request) -> bool:
    paused = (await _json_body(request)).get("paused", True)
    if not isinstance(paused, bool):
        raise ValueError('give {"paused": true} or {"paused": false}')
    return paused


async def _pause_form_input(request: web.Request) -> bool:
    return (await request.post()).get("paused") != "0"


def _paused(request: web.Request, paused: bool, changed: bool) -> web.Response:
    return json_response({"pipeline": _name(request), "paused": paused, "changed": changed})


def _to_pipeline(request: web.Request, paused: bool, changed: bool) -> str:
    return f"{RequestUrls(request).pipelines()}#pipeline-{_name(request)}"


PAUSE = Action(_pause, _pause_api_input, _pause_form_input, _paused, _to_pipeline)


def add_action_routes(router: web.UrlDispatcher) -> None:
    """Register each action's API route and form route."""
    router.add_post("/api/pipelines/{name}/runs", TRIGGER.api, name="api_trigger")
    router.add_post("/pipelines/{name}/trigger", TRIGGER.form, name="form_trigger")
    router.add_post("/api/runs/{run_id}/cancel", CANCEL.api, name="api_cancel")
    router.add_post("/runs/{run_id}/cancel", CANCEL.form, name="form_cancel")
    router.add_post("/api/runs/{run_id}/resume", RESUME.api, name="api_resume")
    router.add_post("/runs/{run_id}/resume", RESUME.form, name="form_resume")
    router.add_post("/api/pipelines/{name}/pause", PAUSE.api, name="api_pause")
    router.add_post("/pipelines/{name}/pause", PAUSE.form, name="form_pause")
