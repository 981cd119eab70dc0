"""The Dremio DDL FakeDremio's mutable catalog understands, parsed from the token stream.

- ``CREATE [OR REPLACE] VIEW <path> AS <query>``
- ``CREATE TABLE [IF NOT EXISTS] <path> [options] AS <query>`` (CTAS; Dremio's
  ``PARTITION BY``/``STORE AS``... options between the path and ``AS`` are ignored)
- ``DROP {TABLE | VIEW} [IF EXISTS] <path>``
- ``CREATE FOLDER [IF NOT EXISTS] <path>``
- ``ALTER {PDS | TABLE} <path> REFRESH METADATA ...``: accepted, nothing to refresh

Anything else is not DDL here and runs as a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._sqltext import Token, code, join, tokenize

__all__ = ["Statement", "parse_ddl"]

Action = Literal["create_view", "create_table", "drop", "create_folder", "refresh"]


@dataclass(frozen=True, slots=True)
class Statement:
    """One DDL statement: what to do, on which path, with which query."""

    action: Action
    path: tuple[str, ...]
    query: str = ""
    replace: bool = False
    if_exists: bool = False
    kind: str = ""  # TABLE or VIEW, for DROP


def _path(items: list[tuple[int, Token]], at: int) -> tuple[tuple[str, ...], int]:
    """The dotted path starting at ``items[at]`` and the index after it."""
    parts: list[str] = []
    while at < len(items) and items[at][1].kind in ("word", "quoted"):
        if items[at][1].is_word("AS"):  # no path at all: "CREATE TABLE AS ..."
            break
        parts.append(items[at][1].name)
        if at + 1 < len(items) and items[at + 1][1].text == ".":
            at += 2
        else:
            at += 1
            break
    return tuple(parts), at


def _words(items: list[tuple[int, Token]], at: int, *words: str) -> bool:
    return all(at + k < len(items) and items[at + k][1].is_word(w) for k, w in enumerate(words))


def _query_after_as(tokens: list[Token], items: list[tuple[int, Token]], at: int) -> str:
    depth = 0
    for index, tok in items[at:]:
        depth += (tok.text == "(") - (tok.text == ")")
        if depth == 0 and tok.is_word("AS"):
            return join(tokens[index + 1 :]).strip()
    return ""


def parse_ddl(sql: str) -> Statement | None:
    """The DDL statement ``sql`` is, or None when it is a query (or DDL not handled here)."""
    upper = sql.upper()  # a cheap test first: most statements are queries
    if not any(w in upper for w in ("CREATE", "DROP", "ALTER")):
        return None
    tokens = tokenize(sql)
    items = list(code(tokens))
    if items and items[-1][1].text == ";":
        items.pop()
    if _words(items, 0, "CREATE", "OR", "REPLACE", "VIEW") or _words(items, 0, "CREATE", "VIEW"):
        replace = _words(items, 1, "OR")
        path, at = _path(items, 4 if replace else 2)
        return Statement("create_view", path, _query_after_as(tokens, items, at), replace)
    if _words(items, 0, "CREATE", "TABLE"):
        guarded = _words(items, 2, "IF", "NOT", "EXISTS")
        path, at = _path(items, 5 if guarded else 2)
        query = _query_after_as(tokens, items, at)
        return Statement("create_table", path, query, if_exists=guarded)
    if _words(items, 0, "CREATE", "FOLDER"):
        guarded = _words(items, 2, "IF", "NOT", "EXISTS")
        path, _ = _path(items, 5 if guarded else 2)
        return Statement("create_folder", path, if_exists=guarded)
    if _words(items, 0, "DROP") and len(items) > 1 and items[1][1].is_word("TABLE", "VIEW"):
        guarded = _words(items, 2, "IF", "EXISTS")
        path, _ = _path(items, 4 if guarded else 2)
        kind = items[1][1].text.upper()
        return Statement("drop", path, if_exists=guarded, kind=kind)
    if _words(items, 0, "ALTER") and len(items) > 1 and items[1][1].is_word("PDS", "TABLE"):
        path, at = _path(items, 2)
        if _words(items, at, "REFRESH", "METADATA"):
            return Statement("refresh", path)
    return None
