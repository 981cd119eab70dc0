"""``demo [args ...]``: run the bundled demo (``dremioframe_async.demo``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from ._common import EXIT_FAILED, add_command


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``demo`` to the command line (for ``--help``; ``main`` hands ``demo`` over first)."""
    sub = add_command(commands, common, "demo", cmd_demo, "run the bundled demo", store=False)
    sub.add_argument("args", nargs=argparse.REMAINDER)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo with the arguments after ``demo``."""
    return run_demo(list(args.args))


def run_demo(argv: list[str]) -> int:
    """Run the demo's own ``main(argv)``; its exit code, or 1 when it is not installed."""
    try:
        demo = importlib.import_module("dremioframe_async.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "dremioframe_async.demo":
            raise
        print("the demo is not part of this installation of dremioframe_async", file=sys.stderr)
        return EXIT_FAILED
    code = demo.main(argv)
    return int(code or 0)
