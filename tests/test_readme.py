"""The README stays a short entry point whose links all lead into the repository.

``mkdocs build --strict`` checks the links of the pages under ``docs/``; the README is
outside the site, so its links are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move detail into docs/"


def test_readme_links_lead_to_files_in_the_repository() -> None:
    targets = [m.group("target") for m in _LINK.finditer(README.read_text(encoding="utf-8"))]
    assert targets, "the README links into the documentation"
    broken = []
    for target in targets:
        path = target.split("#", 1)[0]
        assert "://" not in path, f"the README links outside the repository: {target}"
        resolved = (ROOT / path).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert not broken, f"README links to nothing: {broken}"


def test_readme_links_every_top_level_page_of_the_site() -> None:
    text = README.read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")
    unlinked = [name for name in pages if f"(docs/{name}" not in text]
    assert not unlinked, f"the README does not link {unlinked}"
