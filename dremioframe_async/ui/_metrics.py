"""``GET /metrics``: the process metrics and the store's runs, as Prometheus text.

The runs in the store are counted by pipeline and status when scraped
(``dremioframe_runs``), so runs made by other processes count too; the live
metrics of this process's own runs follow (see ``dremioframe_async._metrics``).
The route sits behind the UI's auth like every other.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import anyio.lowlevel
from aiohttp import web

from .._metrics import REGISTRY, Gauge
from ._state import UI_KEY

__all__ = ["add_metrics_route"]

CONTENT_TYPE = "text/plain; version=0.0.4"


def _store_runs(counts: dict[tuple[str, str], int]) -> Iterator[str]:
    gauge = Gauge(
        "dremioframe_runs", "Runs in the run store, by pipeline and status.", ("pipeline", "status")
    )
    # Labelled as this process labels its own runs: past PIPELINE_LABELS pipeline names,
    # the store's other pipelines count together too.
    label = REGISTRY.pipeline_label
    values: dict[tuple[str, ...], float] = {}
    for (pipeline, status), n in sorted(counts.items()):
        key = (label(pipeline), status)
        values[key] = values.get(key, 0.0) + n
    gauge.values = values
    yield from gauge.header()
    yield from gauge.samples()


# Lines rendered between trips around the event loop (about 2 ms' worth): a process
# with many pipelines of many tasks each has tens of thousands to render.
LINES_A_STEP = 1_000


async def metrics_handler(request: web.Request) -> web.Response:
    store = request.app[UI_KEY].store
    counts = getattr(store, "run_counts", None)
    lines = list(_store_runs(await counts())) if counts is not None else []
    for i, line in enumerate(REGISTRY.lines(), 1):
        lines.append(line)
        if not i % LINES_A_STEP:
            await anyio.lowlevel.checkpoint()
    lines.append("")
    response = web.Response(text="\n".join(lines))
    response.headers["Content-Type"] = CONTENT_TYPE + "; charset=utf-8"
    return response


def add_metrics_route(router: web.UrlDispatcher) -> None:
    """Register ``GET /metrics``."""
    router.add_get("/metrics", metrics_handler, name="metrics")
