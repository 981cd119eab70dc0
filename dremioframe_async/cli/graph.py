"""``graph module:pipeline``: print a pipeline's graph as Mermaid."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_OK, add_command, load_pipeline


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``graph`` to the command line."""
    text = "print a pipeline's graph as Mermaid"
    sub = add_command(commands, common, "graph", cmd_graph, text, store=False, reads_only=True)
    sub.add_argument("pipeline", metavar="module:pipeline")


def cmd_graph(args: argparse.Namespace) -> int:
    """Print the graph."""
    print(load_pipeline(args.pipeline).visualize())
    return EXIT_OK
