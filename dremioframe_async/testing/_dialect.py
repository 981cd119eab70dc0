"""Dremio's SQL dialect, translated to DuckDB's: one rule per Dremio construct.

FakeDremio runs SQL through DuckDB, which parses most of what Dremio accepts.
Where the two differ in a construct that clients really send (dbt-dremio's
catalog queries and date macros, mostly), a rule here rewrites that construct,
and only that construct, on the token stream of :mod:`._sqltext`. Each rule is a
:class:`Rule` in :data:`RULES`; the tests run every rule as a row of a table
(Dremio SQL in, DuckDB SQL out).

What no rule covers reaches DuckDB unchanged: a Dremio function missing here
fails the job with Dremio's "No match found for function signature" wording
(see :mod:`._errors`), never silently.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._sqltext import Token, code, join, matching_paren, split_top_level, strip, tokenize

__all__ = ["RULES", "Rule", "translate"]

Tokens = list[Token]


@dataclass(frozen=True, slots=True)
class Rule:
    """One Dremio construct and how it is written for DuckDB."""

    name: str
    dremio: str
    duckdb: str
    apply: Callable[[Tokens], Tokens]


def _calls(tokens: Tokens, function: str) -> list[tuple[int, int, int]]:
    """``(name, open paren, close paren)`` indexes of every call to ``function``, innermost last."""
    found: list[tuple[int, int, int]] = []
    items = list(code(tokens))
    for (i, tok), nxt in itertools.pairwise(items):
        if tok.is_word(function) and nxt[1].text == "(":
            found.append((i, nxt[0], matching_paren(tokens, nxt[0])))
    return found


def _rewrite_calls(
    tokens: Tokens, function: str, build: Callable[[list[str]], str | None]
) -> Tokens:
    """Replace each ``function(args...)`` by ``build(args)`` (None: leave that call alone)."""
    # Outermost calls only, right to left so that the indexes still to visit stay
    # valid; calls nested in the arguments are translated with the arguments.
    calls = _calls(tokens, function)
    outer = [c for c in calls if not any(o[1] < c[0] < o[2] for o in calls)]
    for name, open_, close in reversed(outer):
        if close >= len(tokens):
            continue
        args = [translate(join(strip(a))) for a in split_top_level(tokens[open_ + 1 : close])]
        text = build(args) if args != [""] else None
        if text is not None:
            tokens = [*tokens[:name], Token("word", text), *tokens[close + 1 :]]
    return tokens


def _ilike(args: Sequence[str]) -> str | None:
    # ilike(x, pattern[, escape]) is Dremio's function form; DuckDB has only the operator.
    if len(args) == 3:
        return f"({args[0]} ILIKE {args[1]} ESCAPE {args[2]})"
    return f"({args[0]} ILIKE {args[1]})" if len(args) == 2 else None


def _nvl(args: Sequence[str]) -> str | None:
    return f"COALESCE({args[0]}, {args[1]})" if len(args) == 2 else None


_UNITS = {
    "SQL_TSI_" + u: u for u in ("SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "YEAR")
} | {u: u for u in ("SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR")}


def _unit(text: str) -> str | None:
    return _UNITS.get(text.strip().strip("'\"").upper())


def _timestampadd(args: Sequence[str]) -> str | None:
    unit = _unit(args[0]) if len(args) == 3 else None
    if unit is None:
        return None
    step = "3 * INTERVAL 1 MONTH" if unit == "QUARTER" else f"INTERVAL 1 {unit}"
    return f"(CAST({args[2]} AS TIMESTAMP) + CAST({args[1]} AS BIGINT) * {step})"


def _timestampdiff(args: Sequence[str]) -> str | None:
    unit = _unit(args[0]) if len(args) == 3 else None
    if unit is None:
        return None
    # DuckDB's date_sub counts whole units, as TIMESTAMPDIFF does (date_diff counts
    # boundaries crossed, which is a different number).
    return f"date_sub('{unit.lower()}', CAST({args[1]} AS TIMESTAMP), CAST({args[2]} AS TIMESTAMP))"


_FORMAT = [
    ("YYYY", "%Y"),
    ("YY", "%y"),
    ("MM", "%m"),
    ("DD", "%d"),
    ("HH24", "%H"),
    ("HH", "%I"),
    ("MI", "%M"),
    ("SS", "%S"),
    ("FFF", "%g"),
]


def _strptime_format(literal: str) -> str | None:
    if not (literal.startswith("'") and literal.endswith("'")):
        return None
    text, out = literal[1:-1], ""
    while text:
        match = next(((d, p) for d, p in _FORMAT if text.upper().startswith(d)), None)
        if match is None:
            out, text = out + text[0].replace("%", "%%"), text[1:]
        else:
            out, text = out + match[1], text[len(match[0]) :]
    return "'" + out + "'"


def _to_date(args: Sequence[str]) -> str | None:
    fmt = _strptime_format(args[1]) if len(args) == 2 else None
    return f"CAST(strptime({args[0]}, {fmt}) AS DATE)" if fmt else None


Builder = Callable[[Sequence[str]], str | None]


def _function(name: str, build: Builder) -> Callable[[Tokens], Tokens]:
    return lambda tokens: _rewrite_calls(tokens, name, build)


RULES: tuple[Rule, ...] = (
    Rule("ilike function", "ilike(a, 'x%')", "(a ILIKE 'x%')", _function("ILIKE", _ilike)),
    Rule("nvl", "nvl(a, 0)", "COALESCE(a, 0)", _function("NVL", _nvl)),
    Rule(
        "timestampadd",
        "TIMESTAMPADD(DAY, 2, d)",
        "(CAST(d AS TIMESTAMP) + CAST(2 AS BIGINT) * INTERVAL 1 DAY)",
        _function("TIMESTAMPADD", _timestampadd),
    ),
    Rule(
        "timestampdiff",
        "TIMESTAMPDIFF(DAY, a, b)",
        "date_sub('day', CAST(a AS TIMESTAMP), CAST(b AS TIMESTAMP))",
        _function("TIMESTAMPDIFF", _timestampdiff),
    ),
    Rule(
        "to_date with a format",
        "TO_DATE(s, 'YYYY-MM-DD')",
        "CAST(strptime(s, '%Y-%m-%d') AS DATE)",
        _function("TO_DATE", _to_date),
    ),
)


def translate(sql: str) -> str:
    """``sql`` with every Dremio construct of :data:`RULES` rewritten for DuckDB."""
    if not any(rule.name.split()[0].upper() in sql.upper() for rule in RULES):
        return sql  # the common case: nothing to rewrite, no tokenizing
    tokens = tokenize(sql)
    for rule in RULES:
        tokens = rule.apply(tokens)
    return join(tokens)
