"""Parse where-clause text into the expression tree of :mod:`skybutler.query.expression`.

The grammar (LALR, lark) accepts the expressions Rubin butler users write:
``visit > 100 AND detector IN (1..50:5)``, ``visit.region OVERLAPS POINT(150.1, 2.2)``,
``visit.timespan OVERLAPS T'2026-03-01/2026-03-02'``.  Every error is a
:class:`~skybutler.errors.QueryError` pointing at a 1-based column.
"""

from __future__ import annotations

import math
import numbers
import re
import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from astropy.time import Time
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import QueryError
from ..timespan import Timespan
from .expression import (
    REGION_ARITY, BinaryOp, BoolLiteral, FloatLiteral, Glob, Identifier, InList, IntLiteral, LogicalOp, Node,
    Not, NullLiteral, Overlaps, RangeLiteral, RegionFunction, StringLiteral, TimeLiteral, TimespanExpr,
    TimespanLiteral, UnaryOp, UuidLiteral, parse_time_literal,
)

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr | and_expr (OR and_expr)+ -> logical
?and_expr: not_expr | not_expr (AND not_expr)+ -> logical
?not_expr: comparison | NOT not_expr -> not_

?comparison: sum
    | sum COMP_OP sum -> binary
    | sum OVERLAPS sum -> overlaps
    | sum IN "(" item ("," item)* ")" -> in_list
    | sum NOT IN "(" item ("," item)* ")" -> in_list
    | sum IN IDENT -> in_bind
    | sum NOT IN IDENT -> in_bind

?sum: product | sum PLUS product -> binary | sum MINUS product -> binary
?product: unary | product (STAR | SLASH | PERCENT) unary -> binary
?unary: atom | MINUS unary -> neg | PLUS unary -> pos

?atom: literal
    | IDENT -> ident
    | IDENT "(" [or_expr ("," or_expr)*] ")" -> call
    | "(" or_expr ")" -> paren
    | "(" or_expr "," or_expr ("," or_expr)* ")" -> tuple

?literal: NUMBER -> number | STRING -> string | TIME -> time
    | TRUE -> true | FALSE -> false | NULL -> null

?item: literal
    | RANGE -> range
    | MINUS NUMBER -> neg_number
    | PLUS NUMBER -> pos_number
    | IDENT -> ident
    | IDENT "(" [or_expr ("," or_expr)*] ")" -> call

OR.2: /OR(?![\w.])/i
AND.2: /AND(?![\w.])/i
NOT.2: /NOT(?![\w.])/i
IN.2: /IN(?![\w.])/i
OVERLAPS.2: /OVERLAPS(?![\w.])/i
TRUE.2: /TRUE(?![\w.])/i
FALSE.2: /FALSE(?![\w.])/i
NULL.2: /NULL(?![\w.])/i
TIME.3: /[Tt]'[^']*'/
RANGE.2: /-?\d+\s*\.\.\s*-?\d+(\s*:\s*\d+)?/
IDENT: /(?!(?i:OR|AND|NOT|IN|OVERLAPS|TRUE|FALSE|NULL)(?![\w.]))[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?/
NUMBER: /(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|\d+([eE][+-]?\d+)?/
STRING: /'([^']|'')*'/
COMP_OP: /<=|>=|<>|!=|=|<|>/
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
PERCENT: "%"

%ignore /\s+/
"""

_WORDS = {
    "OR": "OR", "AND": "AND", "NOT": "NOT", "IN": "IN", "OVERLAPS": "OVERLAPS",
    "TRUE": "TRUE", "FALSE": "FALSE", "NULL": "NULL", "IDENT": "a name", "NUMBER": "a number",
    "STRING": "a 'string'", "TIME": "a time T'...'", "RANGE": "a range a..b",
    "COMP_OP": "a comparison (=, !=, <, <=, >, >=)", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'",
    "SLASH": "'/'", "PERCENT": "'%'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','",
    "$END": "the end of the expression",
}
_VALUE_STARTS = {"IDENT", "NUMBER", "STRING", "TIME", "TRUE", "FALSE", "NULL", "LPAR", "MINUS", "PLUS", "NOT", "RANGE"}
_OPERATORS = {"OR", "AND", "COMP_OP", "OVERLAPS", "IN", "NOT", "PLUS", "MINUS", "STAR", "SLASH", "PERCENT"}
_FUNCTIONS = ("POINT", "CIRCLE", "BOX", "POLYGON", "GLOB", "UUID")
_OVERLAPS_OPERANDS = (Identifier, RegionFunction, TimeLiteral, TimespanLiteral, TimespanExpr)
_NOT_NUMBERS = (StringLiteral, BoolLiteral, NullLiteral, TimeLiteral, TimespanLiteral, UuidLiteral, RegionFunction)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=False)


def parse_expression(text: str | None) -> Node | None:
    """Parse a where-clause; None for empty or blank text (no constraint).

    Raises `QueryError` with the expression and the 1-based column of the problem.
    Trees are immutable, so the last few hundred expressions' trees are kept: a program
    asking the same question repeatedly parses it once (parsing takes longer than the SQL
    of a small query).
    """
    if text is None or not text.strip():
        return None
    return _parse_cached(text)


@lru_cache(maxsize=512)
def _parse_cached(text: str) -> Node:
    shown = re.sub(r"[\r\n\t]", " ", text)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        message, column = _describe(err, text)
        raise QueryError(message, shown, column) from None
    try:
        return _Builder(text).build(tree)
    except QueryError as err:
        raise QueryError(err.message, shown, err.column) from None
    except RecursionError:
        raise QueryError("the expression is nested too deeply", shown, 1) from None


def _column(err: UnexpectedInput, text: str) -> int:
    token = getattr(err, "token", None)
    if isinstance(err, UnexpectedEOF) or (token is not None and token.type == "$END"):
        return len(text.rstrip()) + 1
    pos = getattr(token, "start_pos", None) if token is not None else getattr(err, "pos_in_stream", None)
    return pos + 1 if isinstance(pos, int) else (err.column if isinstance(err.column, int) else 1)


def _expected_words(expected: set[str]) -> str:
    words: list[str] = []
    rest = set(expected)
    if {"IDENT", "NUMBER"} <= rest:
        words.append("a value, a name or '('")
        rest -= _VALUE_STARTS
    if {"COMP_OP", "AND"} <= rest or {"COMP_OP", "PLUS"} <= rest:
        words.append("an operator such as =, <, +, AND, OR, IN or OVERLAPS")
        rest -= _OPERATORS
    words.extend(sorted(_WORDS.get(name, name) for name in rest))
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _paren_depth(text: str) -> int:
    """How many parentheses are open at the end of ``text`` (ignoring strings and times)."""
    depth = 0
    for part in re.sub(r"'[^']*'?", "", text):
        depth += {"(": 1, ")": -1}.get(part, 0)
    return depth


def _describe(err: UnexpectedInput, text: str) -> tuple[str, int]:
    """A plain-words message for a lark error, and its 1-based column."""
    column = _column(err, text)
    if isinstance(err, UnexpectedToken) and err.token.type == "NUMBER" and err.token.startswith("."):
        start = err.token.start_pos - 1
        if text[start : start + 1] == ".":
            while start > 0 and text[start - 1].isdigit():
                start -= 1
            return "a range a..b is only allowed in an IN list: x IN (a..b)", start + 1
    return _message(err, text), column


def _message(err: UnexpectedInput, text: str) -> str:
    if isinstance(err, UnexpectedCharacters):
        char = text[err.pos_in_stream]
        if char == "'":
            return "this string is never closed: a closing ' is missing"
        if char == '"':
            return "strings are written in single quotes, found a double quote"
        return f"found the character {char!r}, which is not part of the query language"
    if isinstance(err, UnexpectedToken):
        pos = err.token.start_pos if err.token.type != "$END" else len(text)
        expected = set(err.expected)
        if _paren_depth(text[:pos]) == 0:
            expected -= {"RPAR", "COMMA"}
        expected = _expected_words(expected)
        if err.token.type == "$END":
            return f"the expression ends too early; expected {expected}"
        return f"found {err.token.value!r}; expected {expected}"
    return "the expression ends too early"


def _col(item: Tree | Token) -> int | None:
    if isinstance(item, Token):
        return item.start_pos + 1 if item.start_pos is not None else None
    return item.meta.start_pos + 1 if not item.meta.empty else None


def _tokens(tree: Tree) -> list[Token]:
    return [c for c in tree.children if isinstance(c, Token)]


class _Builder:
    """Turns a lark parse tree into expression nodes, checking what the grammar cannot."""

    def __init__(self, text: str):
        self.text = text

    def build(self, item: Tree | Token) -> Node:
        if isinstance(item, Token):  # a bare literal or name reached through ?-rules
            raise AssertionError(f"unexpected token {item!r}")
        return getattr(self, "_" + item.data)(item)

    def _kids(self, tree: Tree) -> list[Node]:
        return [self.build(c) for c in tree.children if isinstance(c, Tree)]

    # -- literals -------------------------------------------------------------

    def _number(self, tree: Tree, sign: int = 1) -> Node:
        token = tree.children[-1]
        col = _col(tree.children[0])
        if re.fullmatch(r"\d+", token):
            return IntLiteral(value=sign * int(token), column=col)
        return FloatLiteral(value=sign * float(token), column=col)

    def _neg_number(self, tree: Tree) -> Node:
        return self._number(tree, -1)

    def _pos_number(self, tree: Tree) -> Node:
        return self._number(tree)

    def _string(self, tree: Tree) -> Node:
        token = tree.children[0]
        return StringLiteral(value=token[1:-1].replace("''", "'"), column=_col(token))

    def _time(self, tree: Tree) -> Node:
        token = tree.children[0]
        try:
            value = parse_time_literal(token[2:-1])
        except ValueError as err:
            raise QueryError(str(err), column=_col(token)) from None
        if isinstance(value, tuple):
            return TimespanLiteral(begin=value[0], end=value[1], column=_col(token))
        return TimeLiteral(value=value, column=_col(token))

    def _true(self, tree: Tree) -> Node:
        return BoolLiteral(value=True, column=_col(tree))

    def _false(self, tree: Tree) -> Node:
        return BoolLiteral(value=False, column=_col(tree))

    def _null(self, tree: Tree) -> Node:
        return NullLiteral(column=_col(tree))

    def _range(self, tree: Tree) -> Node:
        token = tree.children[0]
        match = re.fullmatch(r"(-?\d+)\s*\.\.\s*(-?\d+)(?:\s*:\s*(\d+))?", token)
        assert match is not None
        start, stop, stride = int(match[1]), int(match[2]), int(match[3] or 1)
        if stride <= 0:
            raise QueryError(f"the stride of range {token} must be a positive integer", column=_col(token))
        return RangeLiteral(start=start, stop=stop, stride=stride, column=_col(token))

    def _ident(self, tree: Tree) -> Node:
        token = tree.children[0]
        return Identifier(name=str(token), column=_col(token))

    # -- operators --------------------------------------------------------------

    def _logical(self, tree: Tree) -> Node:
        op = _tokens(tree)[0]
        return LogicalOp(op=op.type, operands=tuple(self._kids(tree)), column=_col(op))

    def _paren(self, tree: Tree) -> Node:
        (inner,) = self._kids(tree)
        return inner

    def _binary(self, tree: Tree) -> Node:
        lhs, rhs = self._kids(tree)
        op = _tokens(tree)[0]
        return BinaryOp(op="!=" if op == "<>" else str(op), lhs=lhs, rhs=rhs, column=_col(op))

    def _not_(self, tree: Tree) -> Node:
        (operand,) = self._kids(tree)
        return Not(operand=operand, column=_col(tree))

    def _neg(self, tree: Tree) -> Node:
        (operand,) = self._kids(tree)
        col = _col(tree)
        if isinstance(operand, (IntLiteral, FloatLiteral)) and operand.value >= 0:
            return type(operand)(value=-operand.value, column=col)
        return UnaryOp(operand=operand, column=col)

    def _pos(self, tree: Tree) -> Node:
        (operand,) = self._kids(tree)
        return operand

    def _in_list(self, tree: Tree) -> Node:
        lhs, *items = self._kids(tree)
        keyword = [t for t in _tokens(tree) if t.type == "IN"][0]
        negated = any(t.type == "NOT" for t in _tokens(tree))
        return InList(lhs=lhs, items=tuple(items), negated=negated, column=_col(keyword))

    def _in_bind(self, tree: Tree) -> Node:
        (lhs,) = self._kids(tree)
        tokens = _tokens(tree)
        name, keyword = tokens[-1], [t for t in tokens if t.type == "IN"][0]
        negated = any(t.type == "NOT" for t in tokens)
        item = Identifier(name=str(name), column=_col(name))
        return InList(lhs=lhs, items=(item,), negated=negated, column=_col(keyword))

    def _overlaps(self, tree: Tree) -> Node:
        lhs, rhs = self._kids(tree)
        for side in (lhs, rhs):
            if not isinstance(side, _OVERLAPS_OPERANDS):
                raise QueryError(
                    f"OVERLAPS needs a region or a time/timespan on each side, found {side.to_text()!r}",
                    column=side.column,
                )
        return Overlaps(lhs=lhs, rhs=rhs, column=_col(_tokens(tree)[0]))

    def _tuple(self, tree: Tree) -> Node:
        items = self._kids(tree)
        col = _col(tree)
        if len(items) != 2:
            raise QueryError(
                f"a tuple is a timespan (begin, end) and needs two items, found {len(items)}", column=col
            )
        return make_timespan(items[0], items[1], col)

    def _call(self, tree: Tree) -> Node:
        name_token = tree.children[0]
        args = self._kids(tree)
        name, col = str(name_token).upper(), _col(name_token)
        if name not in _FUNCTIONS:
            known = ", ".join(_FUNCTIONS)
            raise QueryError(f"unknown function {str(name_token)!r}; known functions are {known}", column=col)
        if name == "UUID":
            if len(args) != 1 or not isinstance(args[0], StringLiteral):
                raise QueryError("UUID() takes one 'string' argument", column=col)
            try:
                return UuidLiteral(value=args[0].value, column=col)
            except ValueError:
                raise QueryError(f"{args[0].value!r} is not a valid UUID", column=args[0].column) from None
        if name == "GLOB":
            if len(args) != 2 or not isinstance(args[1], (StringLiteral, Identifier)):
                raise QueryError("GLOB() takes an expression and a 'pattern' string", column=col)
            return Glob(operand=args[0], pattern=args[1], column=col)
        check_region_args(name, args, col)
        return RegionFunction(name=name, args=tuple(args), column=col)  # type: ignore[arg-type]


def make_timespan(begin: Node, end: Node, column: int | None) -> Node:
    """A TimespanLiteral when both bounds are times/NULL, else a TimespanExpr."""
    bounds = (begin, end)
    for bound in bounds:
        if not isinstance(bound, (TimeLiteral, NullLiteral, Identifier)):
            raise QueryError(
                f"a timespan (begin, end) needs times or NULL, found {bound.to_text()!r}", column=bound.column
            )
    if all(isinstance(b, (TimeLiteral, NullLiteral)) for b in bounds):
        values = [b.value if isinstance(b, TimeLiteral) else None for b in bounds]
        if values[0] is not None and values[1] is not None and begin.time > end.time:  # type: ignore[union-attr]
            raise QueryError(f"timespan ends ({values[1]}) before it begins ({values[0]})", column=column)
        return TimespanLiteral(begin=values[0], end=values[1], column=column)
    return TimespanExpr(begin=begin, end=end, column=column)


def check_region_args(name: str, args: list[Node] | tuple[Node, ...], column: int | None) -> None:
    """Raise QueryError unless ``args`` suit region function ``name`` (degrees)."""
    arity = REGION_ARITY[name]
    if arity is not None and len(args) != arity:
        raise QueryError(f"{name}() takes {arity} arguments, found {len(args)}", column=column)
    if arity is None and (len(args) < 6 or len(args) % 2):
        raise QueryError(
            f"POLYGON() takes ra, dec pairs of at least 3 vertices, found {len(args)} numbers", column=column
        )
    for arg in args:
        if isinstance(arg, _NOT_NUMBERS):
            raise QueryError(f"{name}() takes numbers in degrees, found {arg.to_text()!r}", column=arg.column)
    values: list[Any] = [a.value if isinstance(a, (IntLiteral, FloatLiteral)) else None for a in args]
    decs = values[1::2] if name == "POLYGON" else values[1:2]
    for dec in decs:
        if dec is not None and not -90 <= dec <= 90:
            raise QueryError(f"{name}() declination {dec} is outside [-90, 90]", column=column)
    sizes = values[2:] if name in ("CIRCLE", "BOX") else []
    for size in sizes:
        if size is not None and size < 0:
            raise QueryError(f"{name}() size {size} must not be negative", column=column)


# -- bind parameters ------------------------------------------------------------------


def resolve_binds(tree: Node | None, bind: Mapping[str, Any]) -> Node | None:
    """Replace identifiers named in ``bind`` by literal nodes.

    Supported values: int, float, str, bool, None, astropy ``Time``, ``Timespan``,
    ``uuid.UUID``; a list/tuple/set/range expands into the items of ``x IN (name)``.
    Raises `QueryError` naming the bind when a value cannot be used.
    """
    if tree is None or not bind:
        return tree
    return _resolve(tree, bind)


def _is_collection(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset, range))


def _resolve(node: Node, bind: Mapping[str, Any]) -> Node:
    if isinstance(node, Identifier):
        if node.name not in bind:
            return node
        value = bind[node.name]
        if _is_collection(value):
            raise QueryError(
                f"bind {node.name!r} holds several values; use it as an IN list: x IN ({node.name})",
                column=node.column,
            )
        return literal_from_value(value, node.name, node.column)
    if isinstance(node, InList):
        items: list[Node] = []
        for item in node.items:
            if isinstance(item, Identifier) and item.name in bind and _is_collection(bind[item.name]):
                items.extend(_collection_items(bind[item.name], item.name, item.column))
            else:
                items.append(_resolve(item, bind))
        if not items:  # x IN () matches nothing; x NOT IN () everything
            return BoolLiteral(value=node.negated, column=node.column)
        return InList(lhs=_resolve(node.lhs, bind), items=tuple(items), negated=node.negated, column=node.column)
    node = node.map_children(lambda child: _resolve(child, bind))
    if isinstance(node, TimespanExpr):
        return make_timespan(node.begin, node.end, node.column)
    if isinstance(node, RegionFunction):
        check_region_args(node.name, node.args, node.column)
    if isinstance(node, Overlaps):
        for side in (node.lhs, node.rhs):
            if not isinstance(side, _OVERLAPS_OPERANDS):
                raise QueryError(
                    f"OVERLAPS needs a region or a time/timespan, but a bind gives {side.to_text()!r}",
                    column=side.column,
                )
    if isinstance(node, Glob) and not isinstance(node.pattern, (StringLiteral, Identifier)):
        raise QueryError("a GLOB pattern bind must be a string", column=node.pattern.column)
    return node


def _collection_items(value: Any, name: str, column: int | None) -> list[Node]:
    if isinstance(value, range):
        if value.step > 0 and len(value):
            return [RangeLiteral(start=value.start, stop=value[-1], stride=value.step, column=column)]
        return [IntLiteral(value=v, column=column) for v in value]
    values = list(value)
    if isinstance(value, (set, frozenset)):
        try:
            values = sorted(values)
        except TypeError:
            pass
    for v in values:
        if _is_collection(v):
            raise QueryError(f"bind {name!r} holds a nested list, which is not supported", column=column)
    return [literal_from_value(v, name, column) for v in values]


def literal_from_value(value: Any, name: str, column: int | None = None) -> Node:
    """The literal node for one bind value; QueryError naming the bind if unsupported."""
    if value is None:
        return NullLiteral(column=column)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return BoolLiteral(value=bool(value), column=column)
    if isinstance(value, numbers.Integral):
        return IntLiteral(value=int(value), column=column)
    if isinstance(value, numbers.Real):
        if not math.isfinite(float(value)):
            raise QueryError(f"bind {name!r} is {value}, but only finite numbers are supported", column=column)
        return FloatLiteral(value=float(value), column=column)
    if isinstance(value, str):
        return StringLiteral(value=value, column=column)
    if isinstance(value, Time):
        if not value.isscalar:
            raise QueryError(f"bind {name!r} is an array of times; use one time", column=column)
        return TimeLiteral(value=value, column=column)
    if isinstance(value, Timespan):
        return TimespanLiteral(begin=value.begin, end=value.end, column=column)
    if isinstance(value, uuid.UUID):
        return UuidLiteral(value=str(value), column=column)
    raise QueryError(
        f"bind {name!r} has unsupported type {type(value).__name__}; use int, float, str, bool, None, "
        "astropy Time, Timespan, uuid.UUID or a list of those",
        column=column,
    )
