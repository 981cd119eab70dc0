"""DuckDB results shaped as Dremio's: column names, Arrow types, and error wording.

- **Names.** Dremio (Calcite) names an unaliased expression of the select list
  ``EXPR$<position>`` (``SELECT a, COUNT(*)`` gives ``a, EXPR$1``); DuckDB names it
  after its text (``count_star()``).
- **Types.** Dremio's vectors are millisecond-based: DATE is Arrow ``date64``,
  TIMESTAMP ``timestamp[ms]`` without a zone, TIME ``time32[ms]``; TINYINT and
  SMALLINT are INTEGER; every field is nullable. DuckDB sums integers into
  HUGEINT (Arrow ``decimal128(38, 0)``) where Dremio's ``SUM`` of an integer is
  BIGINT.
- **Errors.** Calcite's wording, which Dremio reports and clients match on:
  ``Object 'x' not found within 'a.b'``, ``Column 'x' not found in any table``,
  ``No match found for function signature f(<NUMERIC>)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pyarrow as pa

from ._sqltext import CLOSERS, OPENERS, Token, code, tokenize

__all__ = ["dremio_arrow", "dremio_arrow_schema", "dremio_error", "name_expressions"]

_NOT_ALIASES = {"END", "NULL", "TRUE", "FALSE", "DAY", "HOUR", "MINUTE", "SECOND", "MONTH", "YEAR"}
_LITERAL_WORDS = {"NULL", "TRUE", "FALSE", "CURRENT_DATE", "CURRENT_TIMESTAMP", "CURRENT_TIME"}
_LIST_ENDS = {"FROM", "UNION", "EXCEPT", "INTERSECT", "ORDER", "LIMIT", "OFFSET", "FETCH"}


def _select_items(tokens: list[Token], select: int) -> list[tuple[int, int]]:
    """``(first, last)`` token indexes of each item of the list of the SELECT at ``select``."""
    items: list[tuple[int, int]] = []
    depth, start = 0, select + 1
    for i in range(select + 1, len(tokens) + 1):
        tok = tokens[i] if i < len(tokens) else Token("punct", ";")
        if tok.text in OPENERS:
            depth += 1
            continue
        ends = depth == 0 and (tok.text in (")", ";") or tok.is_word(*_LIST_ENDS))
        if tok.text in CLOSERS:
            depth -= 1
        if ends or (depth == 0 and tok.text == ","):
            items.append((start, i - 1))
            start = i + 1
        if ends:
            return items
    return items


def _code_span(tokens: list[Token], first: int, last: int) -> list[tuple[int, Token]]:
    return [(first + i, t) for i, t in code(tokens[first : last + 1])]


def name_expressions(sql: str) -> str:
    """``sql`` with ``AS "EXPR$<i>"`` after each unaliased expression of every select list.

    Calcite (so Dremio) names such a column after its position; aliasing it in the
    SQL lets DuckDB carry the name through subqueries, views and ``SELECT *``.
    Lists with a ``*`` are left alone (the positions would not be the list's).
    """
    if "select" not in sql.lower():
        return sql
    tokens = tokenize(sql)
    selects = [i for i, t in enumerate(tokens) if t.is_word("SELECT")]
    for select in reversed(selects):  # later lists first: inserting keeps earlier indexes
        spans = [_code_span(tokens, a, b) for a, b in _select_items(tokens, select)]
        if spans and spans[0] and spans[0][0][1].is_word("DISTINCT", "ALL"):
            spans[0] = spans[0][1:]
        items = [[t for _, t in span] for span in spans]
        if not items or any(not item or _is_star(item) for item in items):
            continue
        for position in reversed(range(len(items))):
            item, span = items[position], spans[position]
            if _is_column(item) or _has_alias(item):
                continue
            at = span[-1][0] + 1
            tokens[at:at] = [Token("space", " "), Token("word", f'AS "EXPR${position}"')]
    return "".join(t.text for t in tokens)


def _is_column(item: Sequence[Token]) -> bool:
    """``a``, ``"a"``, ``t.a``, ``"s"."t"."a"``: a column reference keeps its name."""
    parts = [t for _, t in code(item)]
    names, dots = parts[0::2], parts[1::2]
    return (
        bool(parts)
        and not parts[-1].is_word(*_LITERAL_WORDS)
        and len(parts) % 2 == 1
        and all(t.kind in ("word", "quoted") for t in names)
        and all(t.text == "." for t in dots)
    )


def _has_alias(item: Sequence[Token]) -> bool:
    parts = [t for _, t in code(item)]
    if len(parts) < 2 or parts[-1].kind not in ("word", "quoted"):
        return False
    if parts[-2].is_word("AS"):
        return True
    last, before = parts[-1], parts[-2]
    # "expr alias": an identifier right after an operand (not after an operator or a dot).
    return (
        not last.is_word(*_NOT_ALIASES)
        and before.text not in (".", "+", "-", "*", "/", "||", "(", ",")
        and (before.text == ")" or before.kind in ("string", "number", "quoted", "word"))
        and not before.is_word("SELECT", "DISTINCT", "AS", "CASE", "NOT", "AND", "OR", "IS")
    )


def _is_star(item: Sequence[Token]) -> bool:
    """``*``, ``t.*``, ``"s"."t".*``, and DuckDB's ``* EXCLUDE (...)``: a star first."""
    parts = [t for _, t in code(item)]
    for i, tok in enumerate(parts):
        if tok.text == "*":
            return i == 0 or parts[i - 1].text == "."
        if tok.kind not in ("word", "quoted") and tok.text != ".":
            return False
    return False


def _dremio_type(t: pa.DataType, hugeint: bool) -> pa.DataType:
    if hugeint:
        return pa.int64()
    if pa.types.is_date(t):
        return pa.date64()
    if pa.types.is_timestamp(t):
        return pa.timestamp("ms")
    if pa.types.is_time(t):
        return pa.time32("ms")
    if pa.types.is_integer(t) and t.bit_width < 32:
        return pa.int32()
    if pa.types.is_unsigned_integer(t):
        return pa.int64()
    return t


def dremio_arrow_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` as a query of the table returns it (Dremio's types, nullable fields)."""
    return pa.schema([pa.field(f.name, _dremio_type(f.type, False)) for f in schema])


def dremio_arrow(table: pa.Table, hugeint: Sequence[int] = ()) -> pa.Table:
    """``table`` with Dremio's types.

    ``hugeint``: the positions of the columns DuckDB typed HUGEINT (its integer sums).
    """
    columns = []
    for i, column in enumerate(table.columns):
        wanted = _dremio_type(column.type, i in hugeint)
        if pa.types.is_timestamp(column.type) and column.type.tz:
            column = column.cast(pa.timestamp(column.type.unit))  # UTC wall time, as Dremio's
        columns.append(column if wanted == column.type else column.cast(wanted, safe=False))
    names = table.column_names
    fields = [pa.field(n, c.type, nullable=True) for n, c in zip(names, columns, strict=True)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# -- errors ---------------------------------------------------------------------------------------

_MISSING_TABLE = re.compile(r'Table with name "?([^"!]+?)"? does not exist')
_MISSING_SCHEMA = re.compile(r"Schema with name \"?([^\"!\s]+)\"? does not exist")
_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found')
_MISSING_IN_TABLE = re.compile(
    r'(?:Table|Values list) "([^"]+)" does not have a column named "([^"]+)"'
)
_MISSING_FUNCTION = re.compile(r"(?:Scalar|Aggregate|Table) Function with name (\S+) does not")


def _object_not_found(parts: Sequence[str], known: Callable[[tuple[str, ...]], bool]) -> str:
    """Calcite's message: the first part that does not resolve, within the prefix that does."""
    for i in range(1, len(parts)):
        if not known(tuple(parts[:i])):
            return _within(parts[i - 1], parts[: i - 1])
    return _within(parts[-1], parts[:-1])


def _within(name: str, prefix: Sequence[str]) -> str:
    if not prefix:
        return f"Object '{name}' not found"
    return f"Object '{name}' not found within '{'.'.join(prefix)}'"


def _argument_kinds(sql: str, function: str) -> str:
    """``<NUMERIC>, <CHARACTER>``... for the first call's literal arguments (else ``<ANY>``)."""
    tokens = [t for _, t in code(tokenize(sql))]
    for i, tok in enumerate(tokens[:-1]):
        if tok.is_word(function.upper()) and tokens[i + 1].text == "(":
            depth, args, current = 0, [], list[Token]()
            for t in tokens[i + 1 :]:
                depth += t.text == "("
                depth -= t.text == ")"
                if depth == 0 or (depth == 1 and t.text == ","):
                    args.append(current)
                    current = []
                    if depth == 0:
                        break
                elif not (depth == 1 and t.text == "("):
                    current.append(t)
            return ", ".join(_kind(a) for a in args if a)
    return ""


def _kind(arg: Sequence[Token]) -> str:
    if len(arg) == 1 and arg[0].kind == "number":
        return "<NUMERIC>"
    if len(arg) == 1 and arg[0].kind == "string":
        return "<CHARACTER>"
    return "<ANY>"


def dremio_error(message: str, sql: str, known: Callable[[tuple[str, ...]], bool]) -> str:
    """DuckDB's error ``message`` for ``sql`` in Dremio's words (the first line if unmapped).

    ``known(parts)`` tells whether a catalog container exists at ``parts``.
    """
    if match := _MISSING_TABLE.search(message):
        return _object_not_found(match.group(1).split("."), known)
    if match := _MISSING_SCHEMA.search(message):
        return _object_not_found(match.group(1).split("."), known)
    if match := _MISSING_COLUMN.search(message):
        return f"Column '{match.group(1)}' not found in any table"
    if match := _MISSING_IN_TABLE.search(message):
        return f"Column '{match.group(2)}' not found in table '{match.group(1)}'"
    if match := _MISSING_FUNCTION.search(message):
        name = match.group(1)
        return f"No match found for function signature {name}({_argument_kinds(sql, name)})"
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[0] if lines else message
