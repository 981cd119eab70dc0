"""The FakeDremio page's "FakeDremio outside pytest" example runs and prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "fake-dremio.md"


def _example() -> str:
    text = PAGE.read_text(encoding="utf-8")
    block = re.search(r"<!-- fake-dremio-example -->\n```python\n(.*?)```", text, re.DOTALL)
    assert block is not None, "docs/fake-dremio.md lost its FakeDremio example"
    return block.group(1)


def test_fake_dremio_page_example_prints_what_it_promises() -> None:
    code = _example()
    promised = [line.split("# ", 1)[1] for line in code.splitlines() if "print(" in line]
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == promised
