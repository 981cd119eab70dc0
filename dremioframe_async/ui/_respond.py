"""How the UI answers: JSON, whole HTML pages, and server-sent event streams."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from aiohttp import web

from ._html import Markup
from ._pages import layout
from ._security import SECURITY_HEADERS
from ._state import CSRF_KEY, KIND_KEY, RequestUrls
from ._threads import ui_threads

__all__ = [
    "dumps_sliced",
    "event_bytes",
    "html_page",
    "json_error",
    "json_response",
    "json_response_in_thread",
    "open_stream",
    "send_event",
]


def json_response(data: Any, status: int = 200) -> web.Response:
    """``data`` as JSON (anything JSON cannot hold as its ``str``)."""
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


# List items encoded per call of the encoder. One call holds the GIL from its start to
# its end: 35 MB in one call kept the event loop waiting 0.4 s, even from a worker thread.
SLICE = 500
_encode = functools.partial(json.dumps, default=str)


def dumps_sliced(data: Any) -> str:
    """``json.dumps(data, default=str)``, with each long list (anywhere in dicts and lists
    of ``data``, except inside a long list's items) encoded ``SLICE`` items a call, so
    that a worker thread encoding it lets the event loop have the GIL in between."""
    if isinstance(data, list):
        if len(data) > SLICE:
            parts = (str(_encode(data[i : i + SLICE]))[1:-1] for i in range(0, len(data), SLICE))
            return "[" + ", ".join(parts) + "]"
        if any(_long(item) for item in data):
            return "[" + ", ".join(map(dumps_sliced, data)) + "]"
    elif _long(data):
        items = (f"{_encode(k)}: {dumps_sliced(v)}" for k, v in data.items())
        return "{" + ", ".join(items) + "}"
    return str(_encode(data))


def _long(value: Any) -> bool:
    """Whether ``value`` is a long list, or a dict (of str keys) with one in it."""
    if isinstance(value, list):
        return len(value) > SLICE or any(map(_long, value))
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return any(map(_long, value.values()))
    return False


async def json_response_in_thread(build: Callable[[], Any]) -> web.Response:
    """``build()`` as JSON, built and encoded in a worker thread, a slice at a time: for a
    large answer (a run of 100,000 tasks is 45 MB), whose loop then gets the GIL back
    every few milliseconds."""

    def encoded() -> bytes:
        return dumps_sliced(build()).encode("utf-8")

    body = await anyio.to_thread.run_sync(encoded, limiter=ui_threads())
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def json_error(message: str, status: int) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return json_response({"error": message}, status)


def html_page(request: web.Request, title: str, body: Markup, status: int = 200) -> web.Response:
    """A whole page around ``body`` (a sign-out button in a browser session)."""
    signed_in = request.get(KIND_KEY) == "session"
    text = layout(RequestUrls(request), title, request[CSRF_KEY], body, signed_in)
    return web.Response(text=text, content_type="text/html", status=status)


async def open_stream(request: web.Request) -> web.StreamResponse:
    """A started ``text/event-stream`` answer, with the UI's headers."""
    response = web.StreamResponse(
        headers={
            **SECURITY_HEADERS,
            "Content-Type": "text/event-stream",
            "X-Accel-Buffering": "no",  # a proxy must pass events on at once
        }
    )
    await response.prepare(request)
    return response


async def send_event(response: web.StreamResponse, event: str, data: Any) -> None:
    """One server-sent event, its data as JSON.

    :raises ConnectionError: once the client has gone.
    """
    await response.write(event_bytes(event, data))


def event_bytes(event: str, data: Any, *, sliced: bool = False) -> bytes:
    """One server-sent event as sent, its data as JSON; ``sliced`` (in a worker thread, for
    a large one): a slice at a time (see :func:`dumps_sliced`, which first looks through
    ``data`` for long lists: on the loop, for a small one, that would double the cost)."""
    text = dumps_sliced(data) if sliced else _encode(data)
    return f"event: {event}\ndata: {text}\n\n".encode()
