"""HttpTask retries a flaky API (503, then 200); SlackAlertTask reports a failure to a webhook.

Both servers run in this process on 127.0.0.1, so the example needs no network.
"""

from __future__ import annotations

import json

import anyio
from aiohttp import web

from dremioframe_async import Pipeline, task
from dremioframe_async.tasks import HttpTask, SlackAlertTask


async def start_servers() -> tuple[web.AppRunner, str, list[str]]:
    calls = {"api": 0}
    posted: list[str] = []

    async def api(request: web.Request) -> web.Response:
        calls["api"] += 1
        if calls["api"] == 1:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.json_response({"rows": 3, "attempt": calls["api"]})

    async def webhook(request: web.Request) -> web.Response:
        posted.append((await request.json())["text"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/api/rows", api)
    app.router.add_post("/hooks/T000/B000/XXXX", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", posted


@task
async def load(payload: dict) -> None:
    raise RuntimeError(f"warehouse refused {payload['rows']} rows")


async def main() -> None:
    runner, base, posted = await start_servers()
    try:
        fetch = HttpTask("fetch", f"{base}/api/rows", retries=3, retry_delay=0.1)
        alert = SlackAlertTask("alert", f"{base}/hooks/T000/B000/XXXX", trigger_rule="one_failed")
        stored = load(fetch)
        stored >> alert
        result = await Pipeline("http").add_task(fetch).run()
        attempts = result.tasks["fetch"].attempts
        print(f"fetched after {attempts} attempts: {json.dumps(result['fetch'])}")
        print("alert posted:", posted[0].splitlines()[1])
        print("run status:", result.status)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    anyio.run(main)
