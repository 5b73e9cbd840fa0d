"""GLOB(name, 'pattern') as the Rubin butler matches it: case-sensitive, ``*`` any run of
characters, ``?`` one character, a backslash makes the next ``*``, ``?``, ``[``, ``]`` or
backslash literal (before any other character it is itself literal, as on the Rubin
butler's SQLite), and every other character, ``[``, ``]``, ``%`` and ``_`` included,
matches only itself.

SQLite's LIKE ignores case, so SQLite gets its case-sensitive GLOB operator with the
literal characters bracketed; other databases get LIKE with an escape character.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

ANY, ONE = object(), object()


def glob_tokens(pattern: str) -> list[Any]:
    """The pattern as a list of ANY, ONE and literal characters."""
    tokens: list[Any] = []
    escaped = False
    for char in pattern:
        if escaped:
            tokens.extend([char] if char in "*?[]\\" else ["\\", char])
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            tokens.append(ANY if char == "*" else ONE if char == "?" else char)
    if escaped:
        tokens.append("\\")
    return tokens


class GlobMatch(sa.sql.expression.ColumnElement[bool]):
    """``operand`` matches a glob pattern, compiled for the database at hand."""

    type = sa.Boolean()
    inherit_cache = False

    def __init__(self, operand: sa.ColumnElement, pattern: str) -> None:
        self.operand = operand
        self.tokens = glob_tokens(pattern)


def glob_match(operand: sa.ColumnElement, pattern: str) -> sa.ColumnElement:
    """The condition; ``'*'`` alone is true for every row, NULL values too, as the Rubin butler has it."""
    return sa.true() if glob_tokens(pattern) == [ANY] else GlobMatch(operand, pattern)


@compiles(GlobMatch)
def _like(element: GlobMatch, compiler: Any, **kw: Any) -> str:
    text = "".join("%" if t is ANY else "_" if t is ONE else "\\" + t if t in "%_\\" else t for t in element.tokens)
    return compiler.process(element.operand.like(sa.literal(text), escape="\\"), **kw)


@compiles(GlobMatch, "sqlite")
def _sqlite_glob(element: GlobMatch, compiler: Any, **kw: Any) -> str:
    text = "".join("*" if t is ANY else "?" if t is ONE else f"[{t}]" if t in "*?[]" else t for t in element.tokens)
    return compiler.process(element.operand.op("GLOB")(sa.literal(text)), **kw)
