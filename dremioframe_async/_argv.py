"""Command-line values that may start with ``-``: a personal access token may.

argparse reads ``--pat -Xy3...`` as the option ``--pat`` followed by another option,
and stops with "expected one argument". One base64url token in 64 starts with
``-``. Before parsing, ``--pat VALUE`` becomes ``--pat=VALUE`` when the value starts
with a single ``-``. A value that starts with ``--`` could be a forgotten value
followed by the next option, so it is left alone (``--pat=--...`` passes it).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DASH_VALUE_OPTIONS", "glue_dash_values"]

DASH_VALUE_OPTIONS = ("--pat",)


def glue_dash_values(argv: Sequence[str], options: Sequence[str] = DASH_VALUE_OPTIONS) -> list[str]:
    """``argv`` with ``OPTION -VALUE`` written ``OPTION=-VALUE`` for each of ``options``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":  # the rest is positional: left as it is
            out.extend(argv[i:])
            break
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in options and nxt.startswith("-") and not nxt.startswith("--") and nxt != "-":
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out
