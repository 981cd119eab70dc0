"""The ``dremioframe-async`` console script, outside the package on purpose.

Importing ``dremioframe_async`` takes a few tenths of a second. A Ctrl-C in that
time raises ``KeyboardInterrupt`` inside the import, before any code of the
package could catch it, and the console script would end in a traceback. Here
the import itself is guarded, so an early Ctrl-C reads like a later one: one
line and exit 130. ``dremioframe_async.cli.main`` stays the command line's API.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> int:
    """Import the command line and run it; a Ctrl-C during the import is exit 130."""
    try:
        from dremioframe_async.cli import main as cli_main
    except KeyboardInterrupt:
        command = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
        prog = "dremioframe-async" + (f" {command}" if command else "")
        print(f"{prog}: error: interrupted", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
