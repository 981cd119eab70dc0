"""The web UI mounted in an application's own aiohttp app, next to its own routes.

The application's runs go through the UI's launcher, so they run in the same
process and event loop, are recorded in the store, show live in the UI, and can
be cancelled from it; a run the application awaits itself shows live through
``run_listener(ui)``. ``python examples/07_web_ui.py --serve`` keeps serving on
http://127.0.0.1:8080/ (the UI at /pipelines/); without ``--serve`` the script
starts the app, triggers a run through the app's own route, reads it back through
the UI's JSON API and stops.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import aiohttp
import anyio
from aiohttp import web

from dremioframe_async import Pipeline, task
from dremioframe_async.store import SQLiteStore
from dremioframe_async.ui import PipelineEntry, run_launcher, run_listener, serve, ui_app


@task(retries=1, retry_delay=0.01)
async def extract(table: str) -> int:
    await anyio.sleep(0.05)  # stands in for a Dremio query
    return len(table) * 100


@task
async def report(counts: list[int]) -> int:
    return sum(counts)


def etl_pipeline() -> Pipeline:
    tables = ["sales", "users", "orders"]
    return Pipeline("etl").add_task(report([extract(t) for t in tables]))


def make_app(store: SQLiteStore) -> web.Application:
    app = web.Application()
    ui = ui_app(store, [PipelineEntry(etl_pipeline(), schedule="hourly, by the app's cron")])

    async def home(request: web.Request) -> web.Response:
        return web.Response(text="my application; its pipelines are at /pipelines/\n")

    async def start_etl(request: web.Request) -> web.Response:
        # The application's own trigger (its own auth and checks would go here): the
        # run goes in the UI's loop, so the UI shows it live and can cancel it.
        run_id = await run_launcher(ui).trigger("etl", {"day": request.query.get("day", "today")})
        return web.json_response({"run_id": run_id, "ui": f"/pipelines/runs/{run_id}"})

    async def run_etl_here(request: web.Request) -> web.Response:
        # A run the application drives itself (here within the request) shows live
        # in the UI too: it only needs the UI's listener and the same store.
        result = await etl_pipeline().run(store=store, on_event=run_listener(ui))
        return web.json_response({"run_id": result.run_id, "status": result.status})

    app.router.add_get("/", home)
    app.router.add_post("/etl", start_etl)
    app.router.add_post("/etl/inline", run_etl_here)
    app.add_subapp("/pipelines/", ui)
    return app


async def demo(store: SQLiteStore) -> None:
    async with anyio.create_task_group() as tg:
        ready = anyio.Event()
        urls: list[str] = []

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        tg.start_soon(lambda: serve(make_app(store), "127.0.0.1", 0, on_ready=on_ready))
        await ready.wait()
        base = urls[0]
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "etl?day=2026-12-01") as response:
                run_id = (await response.json())["run_id"]
            with anyio.fail_after(10):
                while True:  # a client of the API polls (a browser gets server-sent events)
                    async with http.get(f"{base}pipelines/api/runs/{run_id}") as response:
                        run = (await response.json())["run"]
                    if run["status"] != "RUNNING":
                        break
                    await anyio.sleep(0.05)
            async with http.get(f"{base}pipelines/runs/{run_id}") as response:
                page = await response.text()
            async with http.post(base + "etl/inline") as response:
                inline = await response.json()
            async with http.get(f"{base}pipelines/api/runs?pipeline=etl") as response:
                listed = [r["run_id"] for r in (await response.json())["runs"]]
        print(f"run {run_id[:12]} {run['status']} with {run['counts']}")
        print("run page has the graph:", 'class="dag"' in page)
        print(f"inline run {inline['status']}, listed by the UI:", inline["run_id"] in listed)
        tg.cancel_scope.cancel()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteStore(Path(tmp) / "runs.sqlite") as store:
            if "--serve" in sys.argv:
                await serve(make_app(store), "127.0.0.1", 8080, on_ready=print)
            else:
                await demo(store)


if __name__ == "__main__":
    anyio.run(main)
