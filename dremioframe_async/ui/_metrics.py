"""``GET /metrics``: the process metrics and the store's runs, as Prometheus text.

The runs in the store are counted by pipeline and status when scraped
(``dremioframe_runs``), so runs made by other processes count too; the live
metrics of this process's own runs follow (see ``dremioframe_async._metrics``).
The route sits behind the UI's auth like every other.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web

from .._metrics import REGISTRY, Gauge
from ._state import UI_KEY

__all__ = ["add_metrics_route"]

CONTENT_TYPE = "text/plain; version=0.0.4"


def _store_runs(counts: dict[tuple[str, str], int]) -> Iterator[str]:
    gauge = Gauge(
        "dremioframe_runs", "Runs in the run store, by pipeline and status.", ("pipeline", "status")
    )
    gauge.values = {k: float(n) for k, n in counts.items()}
    yield from gauge.header()
    yield from gauge.samples()


async def metrics_handler(request: web.Request) -> web.Response:
    store = request.app[UI_KEY].store
    counts = getattr(store, "run_counts", None)
    lines = list(_store_runs(await counts())) if counts is not None else []
    text = REGISTRY.render(lines)
    response = web.Response(text=text)
    response.headers["Content-Type"] = CONTENT_TYPE + "; charset=utf-8"
    return response


def add_metrics_route(router: web.UrlDispatcher) -> None:
    """Register ``GET /metrics``."""
    router.add_get("/metrics", metrics_handler, name="metrics")
