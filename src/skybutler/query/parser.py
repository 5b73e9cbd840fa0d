"""Parse where-clause text into the expression tree of :mod:`skybutler.query.expression`.

The grammar (LALR, lark) is the Rubin butler's documented where-language, so that
expressions users already write parse unchanged: ``visit > 100 AND detector IN
(1..50:5)``, ``visit.region OVERLAPS POINT(150.1, 2.2)``, ``instrument = :inst``,
``visit.timespan.begin > T'2024-01-11T00:59:40'``, ``REGION('CIRCLE 150 2 0.1')``.

The parser judges only the form of an expression; what it means (an unknown name or
function, a range outside IN, ``a < b < c``, comparing a string with a number) is
judged when the expression is compiled against a repository.  Every error is a
:class:`~skybutler.errors.QueryError` pointing at a 1-based column.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import QueryError
from .expression import (
    REGION_ARITY,
    BinaryOp,
    Bind,
    BoolLiteral,
    FloatLiteral,
    FunctionCall,
    Glob,
    Identifier,
    InList,
    IntLiteral,
    LogicalOp,
    Node,
    Not,
    NullLiteral,
    Overlaps,
    RangeLiteral,
    RegionFunction,
    StringLiteral,
    TimeLiteral,
    TimespanExpr,
    TimespanLiteral,
    UnaryOp,
    UuidLiteral,
)
from .limits import MAX_DIGITS, check_text, too_deep
from .times import parse_time_literal

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr | and_expr (OR and_expr)+ -> logical
?and_expr: not_expr | not_expr (AND not_expr)+ -> logical
?not_expr: comparison | NOT not_expr -> not_

?comparison: predicate
    | comparison COMP_OP predicate -> binary
    | comparison OVERLAPS predicate -> overlaps

?predicate: sum
    | sum IN "(" item ("," item)* ")" -> in_list
    | sum NOT IN "(" item ("," item)* ")" -> in_list

?sum: product | sum PLUS product -> binary | sum MINUS product -> binary
?product: unary | product (STAR | SLASH | PERCENT) unary -> binary
?unary: atom | MINUS unary -> neg | PLUS unary -> pos

?atom: literal
    | NAME -> ident
    | BIND -> bind
    | NAME "(" [or_expr ("," or_expr)*] ")" -> call
    | "(" or_expr ")" -> paren
    | "(" or_expr "," or_expr ("," or_expr)* ")" -> tuple

?literal: NUMBER -> number | STRING -> string | TIME -> time | RANGE -> range

?item: literal
    | MINUS NUMBER -> neg_number
    | PLUS NUMBER -> pos_number
    | NAME -> ident
    | BIND -> bind
    | NAME "(" [or_expr ("," or_expr)*] ")" -> item_call

OR.2: /OR(?![\w.])/i
AND.2: /AND(?![\w.])/i
NOT.2: /NOT(?![\w.])/i
IN.2: /IN(?![\w.])/i
OVERLAPS.2: /OVERLAPS(?![\w.])/i
TIME.3: /[Tt]'[^']*'/
RANGE.2: /-?\d+\s*\.\.\s*-?\d+(\s*:\s*[1-9]\d*)?/
NAME: /(?!(?i:OR|AND|NOT|IN|OVERLAPS)(?![\w.]))[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}/
BIND: /:[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|\d+([eE][+-]?\d+)?/
STRING: /'[^']*'/
COMP_OP: /<=|>=|!=|=|<|>/
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
PERCENT: "%"

%ignore /\s+/
"""

_WORDS = {
    "OR": "OR", "AND": "AND", "NOT": "NOT", "IN": "IN", "OVERLAPS": "OVERLAPS", "NAME": "a name",
    "BIND": "a :bind", "NUMBER": "a number", "STRING": "a 'string'", "TIME": "a time T'...'",
    "RANGE": "a range a..b", "COMP_OP": "a comparison (=, !=, <, <=, >, >=)", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "PERCENT": "'%'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','",
    "$END": "the end of the expression",
}
_VALUE_STARTS = {"NAME", "BIND", "NUMBER", "STRING", "TIME", "LPAR", "MINUS", "PLUS", "NOT", "RANGE"}
_OPERATORS = {"OR", "AND", "COMP_OP", "OVERLAPS", "IN", "NOT", "PLUS", "MINUS", "STAR", "SLASH", "PERCENT"}
#: Functions with a meaning; any other name(...) parses and is refused when compiled.
KNOWN_FUNCTIONS = ("POINT", "CIRCLE", "BOX", "POLYGON", "REGION", "GLOB", "UUID")
#: What may stand for a number in CIRCLE/BOX/POLYGON: numbers, names, binds, arithmetic.
_NUMBER_FORMS = (IntLiteral, FloatLiteral, Identifier, Bind, NullLiteral, BoolLiteral, BinaryOp, UnaryOp)
#: SQL words users try, and what to write instead.
_SQL_WORDS = {
    "IS": "write x = NULL or x != NULL",
    "BETWEEN": "write a <= x AND x <= b, or x IN (a..b) for integers",
    "LIKE": "write GLOB(x, 'pattern'), with * and ? as wildcards",
    "ILIKE": "write GLOB(x, 'pattern'), with * and ? as wildcards (GLOB is case-sensitive)",
}
_CONSTANTS = {"NULL": NullLiteral, "TRUE": BoolLiteral, "FALSE": BoolLiteral}


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
    shown = re.sub(r"[\r\n\t]", " ", text).encode("utf-8", "replace").decode()
    try:
        check_text(text)
    except QueryError as err:
        raise QueryError(err.message, shown if err.column else None, err.column) from None
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
        raise QueryError(too_deep(), shown, 1) from None


def _column(err: UnexpectedInput, text: str) -> int:
    token = getattr(err, "token", None)
    if isinstance(err, UnexpectedEOF) or (token is not None and token.type == "$END"):
        return len(text.rstrip()) + 1
    pos = getattr(token, "start_pos", None) if token is not None else getattr(err, "pos_in_stream", None)
    return pos + 1 if isinstance(pos, int) else (err.column if isinstance(err.column, int) else 1)


def _expected_words(expected: set[str]) -> str:
    words: list[str] = []
    rest = set(expected)
    if {"NAME", "NUMBER"} <= rest:
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
    """A plain-words message for a lark error, and its 1-based column; the usual slips
    of users coming from SQL or Python get a hint."""
    column = _column(err, text)
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        start = err.token.start_pos
        before = text[:start].rstrip()
        if err.token.type == "STRING" and text[start - 1 : start] == "'":
            return ("a string cannot hold a single quote ('' is not an escape in this language); "
                    "pass such a value as a bind parameter", start)
        if err.token == ">" and text[start - 1 : start] == "<":
            return "'<>' is not an operator; write != for 'not equal'", start
        if err.token == "=" and text[start - 1 : start] == "=":
            return "'==' is not an operator; write a single = for equality", start
        if err.token.type == "NAME" and err.token.upper() in _SQL_WORDS:
            return f"{err.token.upper()} is not in the query language; {_SQL_WORDS[err.token.upper()]}", column
        if err.token.type in ("NAME", "BIND") and re.search(r"\bIN$", before, re.IGNORECASE):
            return f"the list after IN needs parentheses: IN ({err.token})", column
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


def _integer(digits: str, column: int | None) -> int:
    """The integer written ``digits`` (a sign allowed); one too long for the registry's 64-bit
    integers is refused before Python converts it (which refuses 4,300 digits or more)."""
    if len(digits.lstrip("-").lstrip("0")) > MAX_DIGITS:
        shown = digits if len(digits) <= 40 else f"{digits[:20]}...({len(digits)} digits)"
        raise QueryError(f"the integer {shown} is outside the 64-bit integer range the registry holds",
                         column=column)
    return int(digits)


def _col(item: Tree | Token) -> int | None:
    if isinstance(item, Token):
        return item.start_pos + 1 if item.start_pos is not None else None
    return item.meta.start_pos + 1 if not item.meta.empty else None


def _tokens(tree: Tree) -> list[Token]:
    return [c for c in tree.children if isinstance(c, Token)]


class _Builder:
    """Turns a lark parse tree into expression nodes, checking the forms the grammar cannot
    (function arities, UUID text, time literals)."""

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
            return IntLiteral(value=sign * _integer(token, col), column=col)
        value = float(token)
        if value == float("inf"):
            raise QueryError(f"the number {token} is too large", column=col)
        return FloatLiteral(value=sign * value, column=col)

    def _neg_number(self, tree: Tree) -> Node:
        return self._number(tree, -1)

    def _pos_number(self, tree: Tree) -> Node:
        return self._number(tree)

    def _string(self, tree: Tree) -> Node:
        token = tree.children[0]
        return StringLiteral(value=token[1:-1], column=_col(token))

    def _time(self, tree: Tree) -> Node:
        token = tree.children[0]
        try:
            value = parse_time_literal(token[2:-1])
        except ValueError as err:
            raise QueryError(str(err), column=_col(token)) from None
        if isinstance(value, tuple):
            return TimespanLiteral(begin=value[0], end=value[1], column=_col(token))
        return TimeLiteral(value=value, column=_col(token))

    def _range(self, tree: Tree) -> Node:
        token = tree.children[0]
        match = re.fullmatch(r"(-?\d+)\s*\.\.\s*(-?\d+)(?:\s*:\s*(\d+))?", token)
        assert match is not None
        start, stop = _integer(match[1], _col(token)), _integer(match[2], _col(token))
        stride = _integer(match[3] or "1", _col(token))
        return RangeLiteral(start=start, stop=stop, stride=stride, column=_col(token))

    def _ident(self, tree: Tree) -> Node:
        token = tree.children[0]
        constant = _CONSTANTS.get(str(token).upper())
        if constant is NullLiteral:
            return NullLiteral(column=_col(token))
        if constant is BoolLiteral:
            return BoolLiteral(value=str(token).upper() == "TRUE", column=_col(token))
        return Identifier(name=str(token), column=_col(token))

    def _bind(self, tree: Tree) -> Node:
        token = tree.children[0]
        return Bind(name=str(token)[1:], column=_col(token))

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
        return BinaryOp(op=str(op), lhs=lhs, rhs=rhs, column=_col(op))

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

    def _overlaps(self, tree: Tree) -> Node:
        lhs, rhs = self._kids(tree)
        return Overlaps(lhs=lhs, rhs=rhs, column=_col(_tokens(tree)[0]))

    def _tuple(self, tree: Tree) -> Node:
        items = self._kids(tree)
        col = _col(tree)
        if len(items) != 2:
            raise QueryError(
                f"a tuple is a timespan (begin, end) and needs two items, found {len(items)}", column=col
            )
        return make_timespan(items[0], items[1], col)

    def _item_call(self, tree: Tree) -> Node:
        node = self._call(tree)
        if not isinstance(node, UuidLiteral):
            raise QueryError("an IN list holds literals, ranges, UUID('...') and bind names, not "
                             f"{node.to_text()!r}", column=node.column)
        return node

    def _call(self, tree: Tree) -> Node:
        name_token = tree.children[0]
        args = tuple(self._kids(tree))
        name, col = str(name_token).upper(), _col(name_token)
        if "." in name:
            raise QueryError(f"found '(' after {str(name_token)!r}; a function name has no dots", column=col)
        if name == "UUID":
            if len(args) != 1 or not isinstance(args[0], StringLiteral):
                raise QueryError("UUID() takes one 'string' argument", column=col)
            try:
                return UuidLiteral(value=args[0].value, column=col)
            except ValueError:
                raise QueryError(f"{args[0].value!r} is not a valid UUID", column=args[0].column) from None
        if name == "GLOB":
            if len(args) != 2 or not isinstance(args[0], Identifier) or not isinstance(
                    args[1], (StringLiteral, Identifier, Bind)):
                raise QueryError("GLOB() takes a name and a 'pattern' string: GLOB(detector.full_name, 'R22_*')",
                                 column=col)
            return Glob(operand=args[0], pattern=args[1], column=col)
        if name in REGION_ARITY:
            check_region_arity(name, args, col)
            return RegionFunction(name=name, args=args, column=col)  # type: ignore[arg-type]
        return FunctionCall(name=str(name_token), args=args, column=col)


def make_timespan(begin: Node, end: Node, column: int | None) -> Node:
    """A TimespanLiteral when both bounds are times or NULL (in order), else a
    TimespanExpr for the compiler (or bind resolution) to judge."""
    bounds = (begin, end)
    if all(isinstance(b, (TimeLiteral, NullLiteral)) for b in bounds):
        values = [b.value if isinstance(b, TimeLiteral) else None for b in bounds]
        if values[0] is None or values[1] is None or begin.time <= end.time:  # type: ignore[union-attr]
            return TimespanLiteral(begin=values[0], end=values[1], column=column)
    return TimespanExpr(begin=begin, end=end, column=column)


def check_region_arity(name: str, args: tuple[Node, ...], column: int | None) -> None:
    """Raise QueryError unless region function ``name`` has the right number of arguments."""
    arity = REGION_ARITY[name]
    if name == "REGION":
        if len(args) != 1 or not isinstance(args[0], (StringLiteral, Identifier, Bind, NullLiteral, BoolLiteral)):
            raise QueryError("REGION() takes one IVOA region string, e.g. REGION('CIRCLE 150 2.2 0.5')",
                             column=column)
        return
    if arity is not None and len(args) != arity:
        raise QueryError(f"{name}() takes {arity} arguments, found {len(args)}", column=column)
    if arity is None and (len(args) < 6 or len(args) % 2):
        raise QueryError(
            f"POLYGON() takes ra, dec pairs of at least 3 vertices, found {len(args)} numbers", column=column
        )
    if name != "POINT":  # the form of its numbers (their values are judged when compiled)
        for arg in args:
            if not isinstance(arg, _NUMBER_FORMS):
                raise QueryError(f"{name}() takes numbers in degrees, found {arg.to_text()!r}", column=arg.column)
