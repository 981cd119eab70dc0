"""Every ```python block in the README and the documentation site runs, and prints what it says.

Each block runs in a child process of its own, in a fresh temporary working directory
(files it writes, ``runs.sqlite`` or ``daily.parquet``, land there). A block may use
``await`` at top level: it then runs inside an event loop, as in a notebook or
``python -m asyncio``.

A block's page may put one marker on the line just above its fence:

- ``<!-- example: setup=dremio -->``: the block runs against a FakeDremio (REST and
  Flight) serving ``sales``, ``big`` and ``lake.sales.orders``; ``DREMIO_URL``,
  ``DREMIO_PAT`` and ``DREMIO_FLIGHT_URL`` point at it and the names ``fake``, ``url``,
  ``PAT``, ``flight_url`` and an open ``client`` are defined (see ``_SETUPS``);
- ``<!-- example: setup=pipeline -->``: the names a page defined earlier, a small
  ``pipeline`` (also ``etl``; ``other`` is a second one), a ``store`` and ``task``;
- ``<!-- example: continues -->``: the block goes on from the page's block before it
  (the two run together, in one process, with that block's setup);
- ``<!-- example: not-runnable: REASON -->``: the block is only compiled (a syntax error
  still fails), never run; the reason is shown in the test's id. Kept to a minimum.

A ``print(...)`` line with a trailing ``# comment`` promises output: each such comment
must be found in a line the block prints, in order (a line holding all of a short
comment, or the whole line for an exact one).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^(?P<indent> *)```python\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)
_MARKER = re.compile(r"<!-- example: (?P<what>[^>]*?) -->\s*$")
_PROMISE = re.compile(r"^\s*print\(.*\)\s+# (?P<line>.+)$")


@dataclass(frozen=True, slots=True)
class Block:
    """One ```python block of a page."""

    page: str
    line: int
    code: str
    marker: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks() -> list[Block]:
    found: list[Block] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = _MARKER.search(before)
            what = marker.group("what") if marker else ""
            code = textwrap.dedent(match.group("body"))
            page_name = str(page.relative_to(ROOT))
            if what == "continues":
                previous = found[-1]
                assert previous.page == page_name, f"{page_name}: nothing to continue"
                code, what = previous.code + "\n" + code, previous.marker
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(page=page_name, line=line, code=code, marker=what))
    return found


BLOCKS = _blocks()
RUNNABLE = [b for b in BLOCKS if not b.marker.startswith("not-runnable")]
NOT_RUNNABLE = [b for b in BLOCKS if b.marker.startswith("not-runnable")]

# Runs in the child: the block's setup (an async context manager filling its
# namespace), then the block itself, compiled so that top-level `await` works.
_DRIVER = r"""
import ast, contextlib, inspect, logging, os, sys

import anyio

code, setup, name = sys.argv[1], sys.argv[2], sys.argv[3]


@contextlib.asynccontextmanager
async def no_setup(ns):
    yield


@contextlib.asynccontextmanager
async def dremio(ns):
    import pyarrow as pa

    from dremioframe_async import Pipeline
    from dremioframe_async.dremio import DremioClient
    from dremioframe_async.tasks import DremioQueryTask
    from dremioframe_async.testing import FakeDremio, sample_table

    async with FakeDremio(flight=True) as fake:
        fake.add_table(
            "sales",
            pa.table({"customer": ["ada", "bob", "ada"], "amount": [10.0, 5.0, 7.5]}),
        )
        fake.add_table("big", sample_table(2_000))
        fake.add_table("lake.sales.orders", sample_table(1_200))
        os.environ.update(
            DREMIO_URL=fake.url, DREMIO_PAT=fake.token, DREMIO_FLIGHT_URL=fake.flight_url
        )
        async with DremioClient(fake.url, token=fake.token) as client:
            ns.update(
                fake=fake, url=fake.url, PAT=fake.token, flight_url=fake.flight_url,
                client=client, Pipeline=Pipeline, DremioClient=DremioClient,
                DremioQueryTask=DremioQueryTask,
            )
            yield


@contextlib.asynccontextmanager
async def pipeline(ns):
    from dremioframe_async import Pipeline, task
    from dremioframe_async.store import MemoryStore

    @task
    async def extract(context=None):
        return "extracted"

    etl = Pipeline("etl").add_task(extract())
    other = Pipeline("other").add_task(extract())
    ns.update(
        pipeline=etl, etl=etl, other=other, store=MemoryStore(), task=task,
        Pipeline=Pipeline, logging=logging, anyio=anyio,
    )
    yield


SETUPS = {"": no_setup, "dremio": dremio, "pipeline": pipeline}
compiled = compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
ns = {"__name__": "__main__"}
if setup == "" and not compiled.co_flags & inspect.CO_COROUTINE:
    exec(compiled, ns)  # a whole script: it may call anyio.run() itself
else:

    async def main():
        async with SETUPS[setup](ns):
            awaitable = eval(compiled, ns)
            if awaitable is not None:
                await awaitable

    anyio.run(main)
"""


def _setup(block: Block) -> str:
    if not block.marker:
        return ""
    setup = block.marker.removeprefix("setup=")
    assert setup != block.marker, f"{block.id}: unknown marker {block.marker!r}"
    return setup


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_code_block_runs_and_prints_what_it_promises(block: Block, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, block.code, _setup(block), block.id],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id} failed:\n{proc.stderr[-4000:]}"
    promised = [m.group("line") for m in map(_PROMISE.match, block.code.splitlines()) if m]
    printed = iter(proc.stdout.splitlines())
    for line in promised:  # in order: each promised line after the one before
        assert any(line in out for out in printed), (
            f"{block.id} did not print {line!r} where promised; it printed:\n{proc.stdout}"
        )


def test_blocks_that_cannot_run_here_still_compile() -> None:
    for block in NOT_RUNNABLE:  # each with its reason in its marker
        compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_the_pages_hold_code_blocks_and_few_cannot_run() -> None:
    assert len(BLOCKS) >= 15, [b.id for b in BLOCKS]  # the extraction found them all
    assert len(NOT_RUNNABLE) <= 2, [b.id for b in NOT_RUNNABLE]
