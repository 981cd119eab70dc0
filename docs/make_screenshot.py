"""Re-make docs/ui-run-detail.png: a sample run's detail page, shot by the system's Chromium.

    .venv/bin/python docs/make_screenshot.py

Needs ``chromium`` (``apt-get install -y chromium``) and ``playwright`` (the test
extra); Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import anyio

from dremioframe_async import Pipeline, task
from dremioframe_async.store import MemoryStore
from dremioframe_async.ui import serve, ui_app

OUT = Path(__file__).with_name("ui-run-detail.png")
attempts: dict[str, int] = {}


@task
async def list_tables() -> list[str]:
    return ["sales", "users", "orders", "events"]


@task(retries=1, retry_delay=0.05)
async def extract(table: str) -> int:
    attempts[table] = attempts.get(table, 0) + 1
    await anyio.sleep(0.05 * len(table))
    if table == "orders" and attempts[table] == 1:
        raise ConnectionError("Dremio answered 503 Service Unavailable")
    return len(table) * 1000


@task
async def transform(counts: list[int]) -> int:
    await anyio.sleep(0.1)
    return sum(counts)


@task
async def validate(total: int) -> None:
    await anyio.sleep(0.05)
    raise ValueError(f"row count {total} differs from Dremio's 24000")


@task
async def load() -> None: ...


@task(trigger_rule="one_failed")
async def alert() -> str:
    return "paged the on-call"


@task(trigger_rule="all_done")
async def cleanup() -> None:
    await anyio.sleep(0.02)


def pipeline() -> Pipeline:
    checked = validate(transform(extract.expand(table=list_tables())))
    checked >> load()
    checked >> alert()
    checked >> cleanup()
    return Pipeline("nightly_extract").add_task(checked)


async def main() -> None:
    from playwright.async_api import async_playwright

    executable = "/usr/lib/chromium/chromium"  # the real binary; /usr/bin/chromium wraps it
    if not shutil.which("chromium") or not os.access(executable, os.X_OK):
        sys.exit("install chromium first: apt-get install -y chromium")
    store = MemoryStore()
    p = pipeline()
    result = await p.run({"day": "2026-12-01"}, store=store)
    async with anyio.create_task_group() as tg:
        ready, urls = anyio.Event(), []
        tg.start_soon(
            lambda: serve(
                ui_app(store, [p]), "127.0.0.1", 0, on_ready=lambda u: (urls.append(u), ready.set())
            )
        )
        await ready.wait()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1000, "height": 1020})
            await page.goto(f"{urls[0]}runs/{result.run_id}")
            await page.screenshot(path=str(OUT))
            await browser.close()
        tg.cancel_scope.cancel()
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    anyio.run(main)
