"""Run with: python -m examples.project_layout (from the repository root)."""

from __future__ import annotations

import anyio

from .pipelines.daily import build


async def main() -> None:
    result = await build().run()
    result.raise_for_status()
    print("validated rows:", result["validate"])


anyio.run(main)
