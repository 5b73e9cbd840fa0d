"""Limits on the size and shape of a where-clause, checked before any SQL is made.

A where-clause may come from anyone a served repository answers, so what it costs must be
bounded before the work starts, and whatever is refused must be refused in words naming
the problem (never a database's own error, a hang or an exhausted memory):

* its nesting: at most ``MAX_DEPTH`` levels of parentheses, and at most ``MAX_OPERATORS``
  operators (NOT, AND/OR, arithmetic, functions) nested in one another -- two a level of
  ``(a AND NOT (b AND NOT (...)))`` -- which a tree sent by a remote client is held to too;
* its length: at most ``MAX_TEXT`` characters (parsing costs ~4 s of CPU a megabyte);
* the values of its IN lists, bind lists included: at most ``MAX_LIST_VALUES`` in all, and
  at most ``MAX_CONDITIONS`` other conditions (each costs parameters and planning);
* its integers: within the 64-bit range the registry holds (checked when compiled);
* its strings: text the databases can hold, without NUL characters or lone surrogates.
"""

from __future__ import annotations

import re

from ..errors import QueryError
from . import expression as ex

#: Levels of parentheses a where-clause may nest (50 is refused).
MAX_DEPTH = 49
#: Operators a where-clause may nest in one another.
MAX_OPERATORS = 2 * MAX_DEPTH + 1
#: Characters a where-clause may have.
MAX_TEXT = 2_000_000
#: Values all the IN lists of a where-clause may hold together, bind lists included (and
#: ``name = literal`` conditions, which an OR gathers into a list).
MAX_LIST_VALUES = 100_000
#: Other conditions (comparisons, IN lists, OVERLAPS, GLOB) a where-clause may hold.
MAX_CONDITIONS = 10_000
#: Digits of the longest integer literal parsed (the registry holds 19; a longer one that parses is
#: refused when compiled, as out of range, and Python refuses to convert 4,300 digits or more).
MAX_DIGITS = 1000

_NESTING = (ex.LogicalOp, ex.Not, ex.UnaryOp, ex.BinaryOp, ex.TimespanExpr, ex.RegionFunction, ex.FunctionCall,
            ex.Glob)


def check_text(text: str) -> None:
    """Refuse a where-clause text that is too long, nests its parentheses too deeply, or holds
    characters no database can store (before it is parsed: the parser would recurse)."""
    if len(text) > MAX_TEXT:
        raise QueryError(f"the where-clause is {len(text):,} characters long; at most {MAX_TEXT:,} are accepted "
                         "(list many values as a bind list: x IN (:values))")
    check_string(text, None)
    depth = 0
    for match in re.finditer(r"'[^']*'?|[()]", text):
        token = match.group()
        if token == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise QueryError(f"the where-clause nests parentheses more than {MAX_DEPTH} levels deep",
                                 text, match.start() + 1)
        elif token == ")":
            depth -= 1


def check_string(value: str, name: str | None, column: int | None = None) -> None:
    """Refuse a string holding a NUL character or a lone surrogate (neither can be stored or
    sent as UTF-8 text); ``name`` is the bind it came from, None for the where-clause text."""
    where = "the where-clause" if name is None else f"bind {name!r}"
    nul = value.find("\x00")
    if nul >= 0:
        raise QueryError(f"{where} holds a NUL character (at position {nul + 1}), which no string in the "
                         "registry can hold", column=column if name is not None or column else nul + 1)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise QueryError(f"{where} holds a lone surrogate {value[err.start]!r} (at position {err.start + 1}), "
                         "which is not text (UTF-8 cannot encode it)",
                         column=column if name is not None or column else err.start + 1) from None


def check_tree(tree: ex.Node | None, expression: str | None = None) -> None:
    """Refuse a tree nesting more than ``MAX_OPERATORS`` operators, listing more than
    ``MAX_LIST_VALUES`` values or holding more than ``MAX_CONDITIONS`` other conditions
    (iteratively: the tree may be a hostile client's)."""
    if tree is None:
        return
    values = conditions = 0
    stack: list[tuple[ex.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, _NESTING) and not (isinstance(node, ex.BinaryOp) and node.op in ex.COMPARISON_OPS):
            depth += 1
            if depth > MAX_OPERATORS:
                raise QueryError(too_deep(), expression, node.column)
        if isinstance(node, ex.BinaryOp) and node.op == "=" and isinstance(node.lhs, ex.Identifier) and isinstance(
                node.rhs, (ex.IntLiteral, ex.StringLiteral)):
            values += 1
        elif isinstance(node, (ex.InList, ex.Overlaps, ex.Glob)) or (
                isinstance(node, ex.BinaryOp) and node.op in ex.COMPARISON_OPS):
            conditions += 1
            if conditions > MAX_CONDITIONS:
                raise QueryError(f"the where-clause holds more than {MAX_CONDITIONS:,} conditions; list values "
                                 "with IN, e.g. visit IN (1, 2, 3), or select by a range a..b", expression,
                                 node.column)
        if isinstance(node, ex.InList):
            values += len(node.items)
        if values > MAX_LIST_VALUES:
            raise QueryError(f"the where-clause's IN lists hold more than {MAX_LIST_VALUES:,} values; "
                             "select fewer, or by a range a..b or a field", expression, node.column)
        if isinstance(node, ex.StringLiteral):
            check_string(node.value, None, node.column)
        stack.extend((child, depth) for child in node.children())


def too_deep() -> str:
    """The message refusing a where-clause that nests too many operators."""
    return (f"the where-clause nests more than {MAX_OPERATORS} operators (NOT, AND/OR, arithmetic, functions) "
            "in one another")
