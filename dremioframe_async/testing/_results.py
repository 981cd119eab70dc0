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

from ._sqltext import Token, code, split_top_level, strip, tokenize

__all__ = ["dremio_arrow", "dremio_error", "dremio_names"]

_NOT_ALIASES = {"END", "NULL", "TRUE", "FALSE", "DAY", "HOUR", "MINUTE", "SECOND", "MONTH", "YEAR"}
_LIST_ENDS = {"FROM", "UNION", "EXCEPT", "INTERSECT", "ORDER", "LIMIT", "OFFSET", "FETCH"}


def _select_list(tokens: list[Token]) -> list[list[Token]] | None:
    """The items of the outermost SELECT's list (None: no plain SELECT at the top)."""
    depth, start, end = 0, None, len(tokens)
    for i, tok in enumerate(tokens):
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
        elif depth == 0 and tok.kind == "word":
            word = tok.text.upper()
            if start is None and word == "SELECT":
                start = i + 1
            elif start is not None and word in _LIST_ENDS:
                end = i
                break
    if start is None:
        return None
    items = [strip(item) for item in split_top_level(tokens[start:end])]
    first = items[0] if items else []
    while first and first[0].is_word("DISTINCT", "ALL"):
        first = strip(first[1:])
    return [first, *items[1:]] if items else None


def _is_column(item: Sequence[Token]) -> bool:
    """``a``, ``"a"``, ``t.a``, ``"s"."t"."a"``: a column reference keeps its name."""
    parts = [t for _, t in code(item)]
    names, dots = parts[0::2], parts[1::2]
    return (
        bool(parts)
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


def dremio_names(sql: str, names: Sequence[str]) -> list[str]:
    """``names`` with each unaliased expression of the select list renamed ``EXPR$<i>``."""
    items = _select_list(tokenize(sql))
    if items is None or len(items) != len(names):
        return list(names)  # SELECT *, set operations at the top: positions are not the list's
    if any(t.text == "*" and _is_star(item) for item in items for t in item):
        return list(names)
    return [
        name if _is_column(item) or _has_alias(item) else f"EXPR${i}"
        for i, (item, name) in enumerate(zip(items, names, strict=True))
    ]


def _is_star(item: Sequence[Token]) -> bool:
    parts = [t for _, t in code(item)]
    return bool(parts) and parts[-1].text == "*" and (len(parts) == 1 or parts[-2].text == ".")


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


def dremio_arrow(table: pa.Table, names: Sequence[str], hugeint: Sequence[int] = ()) -> pa.Table:
    """``table`` with Dremio's column ``names`` and types.

    ``hugeint``: the positions of the columns DuckDB typed HUGEINT (its integer sums).
    """
    columns = []
    for i, column in enumerate(table.columns):
        wanted = _dremio_type(column.type, i in hugeint)
        if pa.types.is_timestamp(column.type) and column.type.tz:
            column = column.cast(pa.timestamp(column.type.unit))  # UTC wall time, as Dremio's
        columns.append(column if wanted == column.type else column.cast(wanted, safe=False))
    fields = [pa.field(n, c.type, nullable=True) for n, c in zip(names, columns, strict=True)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# -- errors ---------------------------------------------------------------------------------------

_MISSING_TABLE = re.compile(r'Table with name "?([^"!]+?)"? does not exist')
_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found')
_MISSING_IN_TABLE = re.compile(r'Table "([^"]+)" does not have a column named "([^"]+)"')
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
    if match := _MISSING_COLUMN.search(message):
        return f"Column '{match.group(1)}' not found in any table"
    if match := _MISSING_IN_TABLE.search(message):
        return f"Column '{match.group(2)}' not found in table '{match.group(1)}'"
    if match := _MISSING_FUNCTION.search(message):
        name = match.group(1)
        return f"No match found for function signature {name}({_argument_kinds(sql, name)})"
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[0] if lines else message
