"""ShellTask: an argv list (no shell), captured output, and a timeout that ends the command."""

from __future__ import annotations

import sys

import anyio

from dremioframe_async import Pipeline
from dremioframe_async.tasks import ShellTask

COUNT = "import sys, json; print(json.dumps(sys.argv[1:]))"


async def main() -> None:
    # The semicolon is data, not a second command: no shell ever parses argv.
    echo = ShellTask("echo", [sys.executable, "-c", COUNT, "orders; rm -rf /"])
    stuck = ShellTask("stuck", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    result = await Pipeline("shell").add_task(echo).add_task(stuck).run()
    print("arguments seen:", result["echo"].stdout.strip())
    print("stuck:", result.states["stuck"].value, type(result.tasks["stuck"].error).__name__)


if __name__ == "__main__":
    anyio.run(main)
