"""A SQL tokenizer small enough to read: what FakeDremio's dialect rules work on.

Rewriting SQL with regular expressions goes wrong inside string literals, quoted
identifiers and nested parentheses (``ilike(substring(a, 1, 2), 'x,y')``). The
tokens here keep those whole, so a rule can find a function call, split its
arguments at top-level commas and put the text back together unchanged
elsewhere: joining the tokens of a statement gives the statement back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["CLOSERS", "OPENERS", "Token", "join", "split_top_level", "tokenize"]

# Parentheses, and DuckDB's list [..] and struct {..} literals a test may send.
OPENERS, CLOSERS = ("(", "[", "{"), (")", "]", "}")

Kind = Literal["space", "comment", "string", "quoted", "word", "number", "punct"]

_PATTERN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<quoted>"(?:[^"]|"")*"?)
  | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
  | (?P<punct>::|<>|<=|>=|!=|\|\||.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token and its exact source text."""

    kind: Kind
    text: str

    def is_word(self, *words: str) -> bool:
        """True for an unquoted word equal (case-insensitively) to one of ``words``."""
        return self.kind == "word" and self.text.upper() in words

    @property
    def name(self) -> str:
        """An identifier's name: quotes removed (doubled quotes undone), bare words as written."""
        if self.kind == "quoted":
            return self.text[1:-1].replace('""', '"')
        return self.text


def tokenize(sql: str) -> list[Token]:
    """Every token of ``sql``, whitespace and comments included."""
    out: list[Token] = []
    for match in _PATTERN.finditer(sql):
        kind = match.lastgroup
        assert kind is not None
        out.append(Token(kind, match.group()))  # type: ignore[arg-type]
    return out


def join(tokens: Sequence[Token]) -> str:
    """The source text of ``tokens``."""
    return "".join(t.text for t in tokens)


def code(tokens: Sequence[Token]) -> Iterator[tuple[int, Token]]:
    """``(index, token)`` for the tokens that are not whitespace or comments."""
    return ((i, t) for i, t in enumerate(tokens) if t.kind not in ("space", "comment"))


def matching_paren(tokens: Sequence[Token], open_index: int) -> int:
    """The index of the ``)`` closing the ``(`` at ``open_index`` (len(tokens) if none)."""
    depth = 0
    for i in range(open_index, len(tokens)):
        if tokens[i].text == "(":
            depth += 1
        elif tokens[i].text == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(tokens)


def split_top_level(tokens: Sequence[Token], separator: str = ",") -> list[list[Token]]:
    """``tokens`` cut at every ``separator`` outside parentheses."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.text in OPENERS:
            depth += 1
        elif token.text in CLOSERS:
            depth -= 1
        if depth == 0 and token.kind == "punct" and token.text == separator:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def strip(tokens: Sequence[Token]) -> list[Token]:
    """``tokens`` without leading and trailing whitespace and comments."""
    items = list(tokens)
    while items and items[0].kind in ("space", "comment"):
        items.pop(0)
    while items and items[-1].kind in ("space", "comment"):
        items.pop()
    return items
