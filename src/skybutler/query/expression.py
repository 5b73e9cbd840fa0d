"""The expression tree of a where-clause: pydantic models that travel as JSON.

Every node has a ``kind`` discriminator, a ``column`` (1-based position in the
source text, for error messages; ignored by ``==``) and :meth:`to_text`, which
prints canonical text that parses back to an equal tree.  Times are stored as
canonical ISO strings on the TAI scale.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal, Union

from astropy.time import Time
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, TypeAdapter, field_validator

from ..timespan import Timespan, time_to_ns
from .times import canonical_time

# Precedence levels used to decide where to_text() needs parentheses.
P_OR, P_AND, P_NOT, P_CMP, P_ADD, P_MUL, P_UNARY, P_ATOM = range(1, 9)

COMPARISON_OPS = ("=", "!=", "<", "<=", ">", ">=")
_OP_PRECEDENCE = {"OR": P_OR, "AND": P_AND, "+": P_ADD, "-": P_ADD, "*": P_MUL, "/": P_MUL, "%": P_MUL}
_OP_PRECEDENCE.update({op: P_CMP for op in COMPARISON_OPS})

#: Number of arguments each region function takes (POLYGON: an even count >= 6).
REGION_ARITY = {"POINT": 2, "CIRCLE": 3, "BOX": 4, "POLYGON": None, "REGION": 1}


def _time_value(value: Any) -> str:
    if isinstance(value, Time):
        return canonical_time(value)
    return canonical_time(Time(value, scale="tai"))


_FIELDS: dict[type, tuple[str, ...]] = {}


class _NodeBase(BaseModel):
    """Common behaviour of all nodes: immutability, equality without columns, traversal."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    level: ClassVar[int] = P_ATOM

    column: int | None = Field(default=None, description="1-based column in the source text")

    @property
    def precedence(self) -> int:
        """Binding strength, used by to_text() to place parentheses."""
        return self.level

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in type(self).model_fields if name != "column")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    @classmethod
    def _fields(cls) -> tuple[str, ...]:
        """The fields that may hold sub-expressions (read once per class: pydantic's
        ``model_fields`` costs more than a walk of a small tree otherwise)."""
        found = _FIELDS.get(cls)
        if found is None:
            found = _FIELDS[cls] = tuple(n for n in cls.model_fields if n not in ("column", "kind"))
        return found

    def children(self) -> tuple[Node, ...]:
        """The direct sub-expressions of this node, in source order."""
        out: list[Any] = []
        for name in self._fields():
            value = getattr(self, name)
            if isinstance(value, _NodeBase):
                out.append(value)
            elif isinstance(value, tuple):
                out.extend(v for v in value if isinstance(v, _NodeBase))
        return tuple(out)

    def map_children(self, fn: Any) -> Any:
        """A copy of this node with ``fn`` applied to every direct child node."""
        update: dict[str, Any] = {}
        for name in self._fields():
            value = getattr(self, name)
            if isinstance(value, _NodeBase):
                update[name] = fn(value)
            elif isinstance(value, tuple) and any(isinstance(v, _NodeBase) for v in value):
                update[name] = tuple(fn(v) if isinstance(v, _NodeBase) else v for v in value)
        return self.model_copy(update=update) if update else self

    def to_text(self) -> str:
        """Canonical expression text that parses back to an equal tree."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.to_text()


def _wrap(node: _NodeBase, need: bool) -> str:
    text = node.to_text()
    return f"({text})" if need else text


# -- literals -------------------------------------------------------------------


class IntLiteral(_NodeBase):
    """An integer literal (negative numbers are folded into the literal)."""

    kind: Literal["int"] = "int"
    value: StrictInt

    def to_text(self) -> str:
        return str(self.value)


class FloatLiteral(_NodeBase):
    """A finite floating-point literal."""

    kind: Literal["float"] = "float"
    value: StrictFloat

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"float literal must be finite, not {value}")
        return value

    def to_text(self) -> str:
        return repr(float(self.value))


class StringLiteral(_NodeBase):
    """A single-quoted string.  The language has no escape for a quote inside a string
    (as in the Rubin butler's); such a value comes from a bind, and prints with the quote
    doubled for reading only."""

    kind: Literal["string"] = "string"
    value: str

    def to_text(self) -> str:
        return "'" + self.value.replace("'", "''") + "'"


class BoolLiteral(_NodeBase):
    """TRUE or FALSE."""

    kind: Literal["bool"] = "bool"
    value: StrictBool

    def to_text(self) -> str:
        return "TRUE" if self.value else "FALSE"


class NullLiteral(_NodeBase):
    """NULL."""

    kind: Literal["null"] = "null"

    def to_text(self) -> str:
        return "NULL"


class TimeLiteral(_NodeBase):
    """An instant; ``value`` is a canonical ISO string on the TAI scale."""

    kind: Literal["time"] = "time"
    value: str

    @field_validator("value", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> str:
        return _time_value(value)

    @property
    def time(self) -> Time:
        """The instant as an astropy ``Time`` (TAI)."""
        return Time(self.value, scale="tai", format="isot")

    @property
    def ns(self) -> int:
        """The instant as integer TAI nanoseconds since 1970 (the registry's encoding)."""
        return time_to_ns(self.time)

    def to_text(self) -> str:
        return f"T'{self.value}/tai'"


class TimespanLiteral(_NodeBase):
    """A half-open interval ``[begin, end)``; ``None`` is an unbounded side."""

    kind: Literal["timespan"] = "timespan"
    begin: str | None = None
    end: str | None = None

    @field_validator("begin", "end", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> str | None:
        return None if value is None else _time_value(value)

    @property
    def timespan(self) -> Timespan:
        """The interval as a :class:`~skybutler.timespan.Timespan`."""
        begin = None if self.begin is None else Time(self.begin, scale="tai", format="isot")
        end = None if self.end is None else Time(self.end, scale="tai", format="isot")
        return Timespan(begin, end)

    def to_text(self) -> str:
        begin = "NULL" if self.begin is None else f"T'{self.begin}/tai'"
        end = "NULL" if self.end is None else f"T'{self.end}/tai'"
        return f"({begin}, {end})"


class UuidLiteral(_NodeBase):
    """``UUID('...')``; ``value`` is the canonical lower-case hyphenated form."""

    kind: Literal["uuid"] = "uuid"
    value: str

    @field_validator("value", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> str:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))

    def to_text(self) -> str:
        return f"UUID('{self.value}')"


class RangeLiteral(_NodeBase):
    """``start..stop[:stride]``, both ends inclusive: parsed anywhere, meaningful only in an IN list."""

    kind: Literal["range"] = "range"
    start: StrictInt
    stop: StrictInt
    stride: StrictInt = Field(default=1, gt=0)

    def values(self) -> range:
        """The integers the range stands for."""
        return range(self.start, self.stop + 1, self.stride)

    def to_text(self) -> str:
        text = f"{self.start}..{self.stop}"
        return text if self.stride == 1 else f"{text}:{self.stride}"


# -- names and operators ----------------------------------------------------------


class Identifier(_NodeBase):
    """A dimension, ``element.field``, ``element.timespan.begin``, dataset field or bare bind
    name (resolved later)."""

    kind: Literal["identifier"] = "identifier"
    name: str

    def to_text(self) -> str:
        return self.name


class Bind(_NodeBase):
    """``:name``, a bind parameter that must be given in ``bind``."""

    kind: Literal["bind"] = "bind"
    name: str

    def to_text(self) -> str:
        return f":{self.name}"


class UnaryOp(_NodeBase):
    """Unary minus on a number-valued expression."""

    kind: Literal["unary"] = "unary"
    level: ClassVar[int] = P_UNARY
    op: Literal["-"] = "-"
    operand: Node

    def to_text(self) -> str:
        text = self.operand.to_text()
        if self.operand.precedence < P_UNARY or text.startswith("-") or isinstance(self.operand, RangeLiteral):
            text = f"({text})"
        return f"-{text}"


class BinaryOp(_NodeBase):
    """A comparison or arithmetic operation (``<>`` is stored as ``!=``)."""

    kind: Literal["binary"] = "binary"
    op: Literal["=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"]
    lhs: Node
    rhs: Node

    @property
    def precedence(self) -> int:
        """Binding strength of this operator."""
        return _OP_PRECEDENCE[self.op]

    def to_text(self) -> str:
        p = self.precedence
        left_need = self.lhs.precedence <= p if p == P_CMP else self.lhs.precedence < p
        return f"{_wrap(self.lhs, left_need)} {self.op} {_wrap(self.rhs, self.rhs.precedence <= p)}"


class LogicalOp(_NodeBase):
    """``a AND b AND ...`` or ``a OR b OR ...``: one flat node per unparenthesized chain.

    A chain is n-ary rather than nested binary so that long generated clauses
    (hundreds of ORed data IDs) stay shallow for Python and for JSON.
    """

    kind: Literal["logical"] = "logical"
    op: Literal["AND", "OR"]
    operands: tuple[Node, ...] = Field(min_length=2)

    @property
    def precedence(self) -> int:
        """Binding strength of this operator."""
        return _OP_PRECEDENCE[self.op]

    def to_text(self) -> str:
        p = self.precedence
        return f" {self.op} ".join(_wrap(x, x.precedence <= p) for x in self.operands)


class Not(_NodeBase):
    """Logical negation."""

    kind: Literal["not"] = "not"
    level: ClassVar[int] = P_NOT
    operand: Node

    def to_text(self) -> str:
        return f"NOT {_wrap(self.operand, self.operand.precedence < P_NOT)}"


class InList(_NodeBase):
    """``lhs [NOT] IN (items)``; items are literals, ranges or identifiers."""

    kind: Literal["in"] = "in"
    level: ClassVar[int] = P_CMP
    lhs: Node
    items: tuple[Node, ...] = Field(min_length=1)
    negated: bool = False

    def to_text(self) -> str:
        items = ", ".join(item.to_text() for item in self.items)
        op = "NOT IN" if self.negated else "IN"
        return f"{_wrap(self.lhs, self.lhs.precedence <= P_CMP)} {op} ({items})"


class Overlaps(_NodeBase):
    """``lhs OVERLAPS rhs`` between regions or timespans/times."""

    kind: Literal["overlaps"] = "overlaps"
    level: ClassVar[int] = P_CMP
    lhs: Node
    rhs: Node

    def to_text(self) -> str:
        lhs = _wrap(self.lhs, self.lhs.precedence <= P_CMP)
        return f"{lhs} OVERLAPS {_wrap(self.rhs, self.rhs.precedence <= P_CMP)}"


class TimespanExpr(_NodeBase):
    """A ``(begin, end)`` tuple that is not two time literals (bind names, or anything the
    parser accepts and the compiler then judges)."""

    kind: Literal["timespan_expr"] = "timespan_expr"
    begin: Node
    end: Node

    def to_text(self) -> str:
        return f"({self.begin.to_text()}, {self.end.to_text()})"


class RegionFunction(_NodeBase):
    """``POINT(ra, dec)``, ``CIRCLE(ra, dec, r)``, ``BOX(ra, dec, w, h)``, ``POLYGON(ra1, dec1, ...)``
    in degrees, or ``REGION('CIRCLE ra dec r')`` with an IVOA (SIAv2 POS) region string."""

    kind: Literal["region"] = "region"
    name: Literal["POINT", "CIRCLE", "BOX", "POLYGON", "REGION"]
    args: tuple[Node, ...]

    def numbers(self) -> list[float] | None:
        """The arguments as floats, or None while some are not numeric literals."""
        if all(isinstance(a, (IntLiteral, FloatLiteral)) for a in self.args):
            return [float(a.value) for a in self.args]  # type: ignore[attr-defined]
        return None

    def to_text(self) -> str:
        return f"{self.name}({', '.join(a.to_text() for a in self.args)})"


class FunctionCall(_NodeBase):
    """``name(args)`` of a function the language does not know: parsed, refused when compiled."""

    kind: Literal["call"] = "call"
    name: str
    args: tuple[Node, ...] = ()

    def to_text(self) -> str:
        return f"{self.name}({', '.join(a.to_text() for a in self.args)})"


class Glob(_NodeBase):
    """``GLOB(operand, 'pattern')``: shell-style match with ``*`` and ``?``."""

    kind: Literal["glob"] = "glob"
    operand: Node
    pattern: Node

    def to_text(self) -> str:
        return f"GLOB({self.operand.to_text()}, {self.pattern.to_text()})"


#: Any expression node; pydantic picks the class from ``kind``.
Node = Annotated[
    Union[  # noqa: UP007
        IntLiteral, FloatLiteral, StringLiteral, BoolLiteral, NullLiteral, TimeLiteral,
        TimespanLiteral, UuidLiteral, RangeLiteral, Identifier, Bind, UnaryOp, BinaryOp, LogicalOp, Not,
        InList, Overlaps, TimespanExpr, RegionFunction, FunctionCall, Glob
    ],
    Field(discriminator="kind"),
]

for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, _NodeBase) and _cls is not _NodeBase:
        _cls.model_rebuild()

NODE_ADAPTER: TypeAdapter[Node] = TypeAdapter(Node)



def node_to_json(node: Node) -> str:
    """Serialise a tree to JSON."""
    return NODE_ADAPTER.dump_json(node).decode()


def node_from_json(data: str | bytes) -> Node:
    """Rebuild a tree from :func:`node_to_json` output."""
    return NODE_ADAPTER.validate_json(data)


def walk(node: Node | None) -> Iterator[Node]:
    """Every node of the tree, parents before children (nothing for None)."""
    if node is None:
        return
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children()))


def identifiers(node: Node | None) -> set[str]:
    """The names of all identifiers in the tree (not ``:name`` binds)."""
    return {n.name for n in walk(node) if isinstance(n, Identifier)}


def bind_names(node: Node | None) -> set[str]:
    """The names of all ``:name`` binds in the tree."""
    return {n.name for n in walk(node) if isinstance(n, Bind)}
